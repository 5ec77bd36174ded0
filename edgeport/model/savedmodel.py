"""SavedModel front-end: load once, pick the signature, run reference outputs, freeze once.

Two ways in: `tf.saved_model.load` (TF2 object graph) and, when that fails on a legacy SavedModel, the
MetaGraph loaded in a v1 session. Either way the rest of edgeport sees the same `LoadedModel`: a `Signature`
keyed by the signature's own names, a signature function (a TF2 ConcreteFunction taking keyword arguments
named like the inputs and returning a dict named like the outputs) and a frozen GraphDef computed once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.data import Feeds, Signature, TensorSpec
from edgeport.errors import ConversionError, ModelLoadError, UsageError, first_line
from edgeport.model.saved_model_proto import read_saved_model_proto
from edgeport.model.tf_quiet import import_tensorflow
from edgeport.model.weight_references import REFERENCE_MIN_BYTES, WeightReference, freeze_by_reference

DEFAULT_SIGNATURE = "serving_default"
LARGE_MODEL_BYTES = 256 << 20  # weights from here on are a large model (large_model_threshold)
LARGE_MODEL_ENV = "EDGEPORT_LARGE_MODEL_BYTES"  # overrides it (tests force the large-model paths on small models)
DEFAULT_TAGS = ("serve",)
FUNCTION_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
CONTROL_FLOW_OPS = frozenset(
    {
        "While",
        "StatelessWhile",
        "If",
        "StatelessIf",
        "Case",
        "StatelessCase",
        "Enter",
        "Exit",
        "Switch",
        "Merge",
        "LoopCond",
        "NextIteration",
    }
)


@dataclass(frozen=True)
class FrozenGraph:
    """The signature with variables folded to constants; tensor names map signature names into the graph.

    A large model's big variables stay out of it (`references`, model/weight_references.py): each is a
    Placeholder its writers read from the variable, one at a time, and whoever runs the graph feeds.
    """

    graph_def: Any  # tf.compat.v1.GraphDef, function library included (control flow bodies)
    input_tensors: dict[str, str]  # signature input name -> "placeholder:0"
    output_tensors: dict[str, str]  # signature output name -> "Identity:0"
    references: tuple[WeightReference, ...] = ()  # weights kept by reference (large models only)

    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        nodes = list(self.graph_def.node)
        for function in self.graph_def.library.function:
            nodes.extend(function.node_def)
        for node in nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_saved_model_dir(path: Path) -> None:
    """Cheap checks before TensorFlow is imported: each failure is one line naming the path."""
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 raises RuntimeError on a loop
            raise ModelLoadError(f"model {path} is a symlink loop; pass the real SavedModel folder") from None
        except OSError as exc:
            if "loop" in str(exc).lower() or getattr(exc, "errno", None) == 40:  # ELOOP
                raise ModelLoadError(f"model {path} is a symlink loop; pass the real SavedModel folder") from None
            raise ModelLoadError(
                f"model {path} is a symlink to {os.readlink(path)}, which does not exist; fix the link"
            ) from None
    if not path.exists():
        raise UsageError(f"model not found: {path} does not exist; pass the folder that holds saved_model.pb")
    if not path.is_dir():
        raise ModelLoadError(f"model {path} is a file; pass the SavedModel folder that holds saved_model.pb")
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelLoadError(
            f"{path} is not a SavedModel: it has no saved_model.pb; export one with model.export(...) or "
            "tf.saved_model.save(...)"
        )


class LoadedModel:
    """One SavedModel signature, loaded once per run. Built by `load_model`."""

    def __init__(
        self,
        *,
        path: Path,
        tags: tuple[str, ...],
        signature: Signature,
        mode: str,
        signature_keys: tuple[str, ...],
        notes: tuple[str, ...],
        backend: Any,
    ):
        self.path = path
        self.tags = tags
        self.signature = signature
        self.mode = mode  # "tf2" or "v1-session"
        self.signature_keys = signature_keys
        self.notes = notes
        self._backend = backend

    @property
    def concrete_function(self):
        """TF2 ConcreteFunction: kwargs by input name -> dict by output name."""
        return self._backend.concrete_function()

    @property
    def trackable(self):
        """The object that owns the function's variables (TFLite needs it to write a signature)."""
        return self._backend.trackable()

    @functools.cached_property
    def frozen(self) -> FrozenGraph:
        """Frozen once per run; a large model's with its big variables by reference (TF2 loader only)."""
        if self.large and self.mode == "tf2":
            return self._backend.freeze_by_reference(min(REFERENCE_MIN_BYTES, large_model_threshold()))
        return self._backend.freeze()

    @functools.cached_property
    def tables(self):
        """The lookup tables the frozen graph reads, by the node it reads each through (lookup_tables)."""
        return self._backend.table_contents(self.frozen)

    @functools.cached_property
    def frozen_function(self) -> FrozenFunction:
        """The frozen graph wrapped as a signature function: converters start from constants, not variables."""
        if self.mode == "v1-session":
            return FrozenFunction(self.concrete_function, self.trackable)
        return wrap_frozen_graph(self.frozen, self.signature)

    def fixed_batch_function(self) -> tuple[FrozenFunction, dict[str, tuple[int | None, ...]]]:
        """The frozen graph as a signature function with every dynamic batch dimension fixed to 1.

        For converters that need static shapes where the batch is dynamic (TFLite's TensorList ops in an LSTM
        or GRU). Other dynamic dimensions (a sequence's length) stay dynamic. The recurrent layers' element
        shapes, traced as [-1, units] with the dynamic batch, are fixed to the batch too
        (edgeport.model.fixed_batch). Returns the function and the shapes it fixed (None: still dynamic).
        """
        fixed: dict[str, tuple[int | None, ...]] = {
            spec.name: (1, *spec.shape[1:]) for spec in self.signature.inputs if spec.shape and spec.shape[0] is None
        }
        if not fixed:
            return wrap_frozen_graph(self.frozen, self.signature, fixed), fixed
        from edgeport.model.fixed_batch import fixed_batch_graph_def

        graph_def, _ = fixed_batch_graph_def(self.frozen.graph_def, batch=1)
        patched = FrozenGraph(graph_def, self.frozen.input_tensors, self.frozen.output_tensors)
        return wrap_frozen_graph(patched, self.signature, fixed), fixed

    def reference(self, feeds: list[Feeds]) -> list[Feeds]:
        return [self._backend.run(feed) for feed in feeds]

    def session_runner(self):
        """A callable feed -> outputs for timing the SavedModel on TensorFlow (the baseline row)."""
        return self._backend.run

    def parameter_count(self) -> int:
        return _count_parameters(self.path)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def weights_bytes(self) -> int:
        """The checkpoint's size (variables/): what every copy of the weights costs in memory."""
        return sum(p.stat().st_size for p in (self.path / "variables").glob("*") if p.is_file())

    @property
    def large(self) -> bool:
        """Weights past large_model_threshold(): converters take the paths that keep one copy of them."""
        return self.weights_bytes() >= large_model_threshold()


def large_model_threshold() -> int:
    """LARGE_MODEL_BYTES, or the EDGEPORT_LARGE_MODEL_BYTES environment variable (bytes)."""
    value = os.environ.get(LARGE_MODEL_ENV, "").strip()
    try:
        return int(value) if value else LARGE_MODEL_BYTES
    except ValueError:
        raise UsageError(f"{LARGE_MODEL_ENV}={value!r} is not a number of bytes") from None


def load_model(
    path: Path, signature_key: str | None = None, tags: tuple[str, ...] | None = None, force_v1: bool = False
) -> LoadedModel:
    path = Path(path)
    check_saved_model_dir(path)
    proto = read_saved_model_proto(path)
    meta = _pick_meta_graph(proto, path, tags)
    tags = tuple(meta.meta_info_def.tags)
    keys = tuple(sorted(k for k in meta.signature_def if not k.startswith("__")))
    key = _pick_signature(keys, signature_key, path)
    notes: list[str] = []
    backend: _TF2Backend | _V1SessionBackend | None = None
    failures: list[BaseException] = []
    if not force_v1:
        try:
            backend = _TF2Backend(path, tags, key)
        except Exception as exc:  # noqa: BLE001 - any loader failure means: try the v1 session
            failures.append(exc)
            notes.append(
                f"tf.saved_model.load failed ({type(exc).__name__}: {first_line(exc)}); "
                "loaded the MetaGraph in a v1 session instead"
            )
    else:
        notes.append("loaded the MetaGraph in a v1 session (forced)")
    if backend is None:
        try:
            backend = _V1SessionBackend(path, tags, key, meta.signature_def[key], meta)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(_load_failure(path, [*failures, exc])) from None
    return LoadedModel(
        path=path,
        tags=tags,
        signature=backend.signature,
        mode=backend.mode,
        signature_keys=keys,
        notes=tuple(notes),
        backend=backend,
    )


_CORRUPT_DATA_ERRORS = ("DataLossError", "OutOfRangeError")  # what a truncated or corrupt checkpoint raises


def _load_failure(path: Path, failures: list[BaseException]) -> str:
    """One line for a SavedModel neither loader could load; a corrupt variables/ folder is named as such."""
    exc = failures[-1]
    if any(type(failure).__name__ in _CORRUPT_DATA_ERRORS for failure in failures):
        files = sorted(p.name for p in (path / "variables").glob("variables.*")) or ["(none)"]
        return (
            f"cannot load SavedModel {path}: its variables ({path / 'variables'}: {', '.join(files)}) are corrupt "
            "or truncated; copy or export the SavedModel again"
        )
    return f"cannot load SavedModel {path}: {type(exc).__name__}: {first_line(exc)}"


def _pick_meta_graph(proto, path: Path, tags):
    wanted = set(tags or DEFAULT_TAGS)
    for meta in proto.meta_graphs:
        if set(meta.meta_info_def.tags) == wanted:
            return meta
    if tags is None and len(proto.meta_graphs) == 1:
        return proto.meta_graphs[0]
    present = ["/".join(m.meta_info_def.tags) or "(none)" for m in proto.meta_graphs]
    raise UsageError(f"{path} has no MetaGraph tagged {'/'.join(sorted(wanted))}; present: {', '.join(present)}")


def _pick_signature(keys: tuple[str, ...], wanted: str | None, path: Path) -> str:
    if wanted:
        if wanted not in keys:
            raise UsageError(
                f"signature {wanted!r} not found in {path}; present: {', '.join(keys) or '(none)'}; "
                "pass one with --signature"
            )
        return wanted
    if DEFAULT_SIGNATURE in keys:
        return DEFAULT_SIGNATURE
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise ModelLoadError(f"{path} has no signatures; export the model with a serving signature")
    raise UsageError(
        f"{path} has several signatures and none is {DEFAULT_SIGNATURE}: {', '.join(keys)}; pick one with --signature"
    )


def _spec(tf, name: str, dtype, shape) -> TensorSpec:
    dims = None if shape.rank is None else tuple(shape.as_list())
    return TensorSpec(name=name, dtype=tf.as_dtype(dtype).name, shape=dims)


class _TF2Backend:
    mode = "tf2"

    def __init__(self, path: Path, tags, key: str):
        tf = import_tensorflow()
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path), tags=list(tags))
        self._fn = self._loaded.signatures[key]
        _, kwargs = self._fn.structured_input_signature
        self.input_names = tuple(sorted(kwargs))
        self.output_names = tuple(sorted(self._fn.structured_outputs))
        self.signature = Signature(
            key=key,
            inputs=tuple(_spec(tf, n, kwargs[n].dtype, kwargs[n].shape) for n in self.input_names),
            outputs=tuple(
                _spec(tf, n, self._fn.structured_outputs[n].dtype, self._fn.structured_outputs[n].shape)
                for n in self.output_names
            ),
        )

    def concrete_function(self):
        return self._fn

    def trackable(self):
        return self._loaded

    def run(self, feed: Feeds) -> Feeds:
        tf = self._tf
        args = {name: tf.constant(feed[name]) for name in self.input_names}
        return {name: value.numpy() for name, value in self._fn(**args).items()}

    def freeze(self) -> FrozenGraph:
        """The frozen signature; integer-keyed lookup tables become tensor ops (edgeport.model.lookup_tables)."""
        from edgeport.model.lookup_tables import lower_integer_lookups, table_contents

        frozen = freeze_function(self._fn, self.input_names, self.output_names)
        frozen = self._inline_noinline_calls(frozen)
        contents = table_contents(frozen.graph_def, self._fn)
        if contents:
            lower_integer_lookups(frozen.graph_def, contents)
        return frozen

    def freeze_by_reference(self, min_bytes: int) -> FrozenGraph:
        """The frozen signature with every variable of at least `min_bytes` that it only reads kept by reference.
        Calls the freeze left (`_noinline`) stay calls: inlining them prunes the graph, which needs every
        placeholder fed."""
        from edgeport.model.lookup_tables import lower_integer_lookups, table_contents

        graph_def, inputs, outputs, references = freeze_by_reference(self._fn, min_bytes)
        frozen = FrozenGraph(
            graph_def=graph_def,
            input_tensors=dict(zip(self.input_names, inputs, strict=True)),
            output_tensors=dict(zip(self.output_names, outputs, strict=True)),
            references=references,
        )
        contents = table_contents(frozen.graph_def, self._fn)
        if contents:
            lower_integer_lookups(frozen.graph_def, contents)
        return frozen

    def table_contents(self, frozen: FrozenGraph):
        from edgeport.model.lookup_tables import table_contents

        return table_contents(frozen.graph_def, self._fn)

    def _inline_noinline_calls(self, frozen: FrozenGraph) -> FrozenGraph:
        """Calls the freeze left (`_noinline` functions, edgeport.model.noinline_calls) inlined; the graph as
        frozen when there are none or inlining fails (converters then name the call)."""
        from edgeport.model.noinline_calls import clear_noinline, has_function_calls

        if not has_function_calls(frozen.graph_def):
            return frozen
        graph_def = type(frozen.graph_def)()
        graph_def.CopyFrom(frozen.graph_def)
        if not clear_noinline(graph_def):
            return frozen
        try:
            _, pruned = prune_frozen_graph(
                FrozenGraph(graph_def, frozen.input_tensors, frozen.output_tensors), self.signature, {}
            )
            return freeze_function(pruned, self.input_names, self.output_names)
        except Exception:  # noqa: BLE001 - the graph as frozen is still valid; converters report the call
            return frozen


class _V1SessionBackend:
    mode = "v1-session"

    def __init__(self, path: Path, tags, key: str, signature_def, meta):
        tf = import_tensorflow()
        self._tf = tf
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            load_without_saver(self._session, path, meta)
        self.input_names = tuple(sorted(signature_def.inputs))
        self.output_names = tuple(sorted(signature_def.outputs))
        self._in = {n: signature_def.inputs[n].name for n in self.input_names}
        self._out = {n: signature_def.outputs[n].name for n in self.output_names}

        def spec(name, tensor_name):
            tensor = self._graph.get_tensor_by_name(tensor_name)
            return _spec(tf, name, tensor.dtype, tensor.shape)

        self.signature = Signature(
            key=key,
            inputs=tuple(spec(n, self._in[n]) for n in self.input_names),
            outputs=tuple(spec(n, self._out[n]) for n in self.output_names),
        )
        self._wrapped: FrozenFunction | None = None
        self._frozen: FrozenGraph | None = None

    def run(self, feed: Feeds) -> Feeds:
        values = self._session.run(self._out, feed_dict={self._in[n]: feed[n] for n in self.input_names})
        return dict(values)

    def freeze(self) -> FrozenGraph:
        if self._frozen is None:
            self._frozen = self._freeze()
        return self._frozen

    def _freeze(self) -> FrozenGraph:
        """Variables folded from the session, then, when the graph calls into a function library (a TF2-era
        graph loaded in a v1 session: one StatefulPartitionedCall at the top), every call inlined, so converters
        get the same plain graph whichever loader produced it."""
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_from_session_graph,
        )

        tf = self._tf
        output_nodes = sorted({name.split(":")[0] for name in self._out.values()})
        graph_def = convert_variables_to_constants_from_session_graph(
            self._session, self._graph.as_graph_def(add_shapes=True), output_nodes
        )
        if not any(node.op in FUNCTION_CALL_OPS for node in graph_def.node):
            graph_def = tf.compat.v1.graph_util.remove_training_nodes(graph_def, protected_nodes=output_nodes)
            return self._with_integer_lookups_lowered(graph_def)
        # remove_training_nodes would drop the function library: Grappler inlines the calls instead, on the
        # GraphDef alone (importing it would re-register functions the freeze edited under their old names)
        from tensorflow.python.framework.convert_to_constants import disable_lower_using_switch_merge

        from edgeport.model.grappler import INLINE, run_grappler
        from edgeport.model.noinline_calls import clear_noinline

        clear_noinline(graph_def)
        for function in graph_def.library.function:
            if "api_implements" in function.attr:  # a GPU twin of an RNN layer keeps the call from inlining
                del function.attr["api_implements"]
        fetches = [*self._in.values(), *self._out.values()]
        try:
            inlined = run_grappler(
                disable_lower_using_switch_merge(graph_def), fetches=fetches, optimizers=INLINE, aggressive=True
            )
        except Exception as exc:  # noqa: BLE001 - any failure to inline is a conversion error naming it
            raise ConversionError(
                f"the v1-session graph calls functions that cannot be inlined ({type(exc).__name__}: "
                f"{first_line(exc)}); load it without --legacy if tf.saved_model.load works"
            ) from None
        left = sorted({node.op for node in inlined.node if node.op in FUNCTION_CALL_OPS})
        if left:
            raise ConversionError(
                f"the v1-session graph still calls functions after inlining ({', '.join(left)}); "
                "load it without --legacy if tf.saved_model.load works"
            )
        return self._with_integer_lookups_lowered(inlined)

    def _with_integer_lookups_lowered(self, graph_def) -> FrozenGraph:
        from edgeport.model.lookup_tables import lower_integer_lookups, session_table_contents

        contents = session_table_contents(graph_def, self._session)
        if contents:
            lower_integer_lookups(graph_def, contents)
        return FrozenGraph(graph_def=graph_def, input_tensors=dict(self._in), output_tensors=dict(self._out))

    def table_contents(self, frozen: FrozenGraph):
        from edgeport.model.lookup_tables import session_table_contents

        return session_table_contents(frozen.graph_def, self._session)

    def concrete_function(self):
        return self._wrap().function

    def trackable(self):
        return self._wrap().owner

    def _wrap(self) -> FrozenFunction:
        if self._wrapped is None:
            self._wrapped = wrap_frozen_graph(self.freeze(), self.signature)
        return self._wrapped


def load_without_saver(session, path: Path, meta) -> None:
    """The MetaGraph in `session`'s graph as tf.compat.v1.saved_model.loader.load leaves it, without running
    any of its saver: the variables are read from `path`/variables by a checkpoint reader and assigned by
    edgeport's own ops (reference and resource variables alike), then the init op runs with the assets fed,
    unless it is the saver's. A model's restore op could read or write any path; this reads variables/ only."""
    from tensorflow.python.saved_model import loader_impl

    from edgeport.model.scan import saver_nodes

    tf = import_tensorflow()
    tf.compat.v1.train.import_meta_graph(meta)
    prefix = path / "variables" / "variables"
    if prefix.with_suffix(".index").is_file():
        try:
            _assign_from_checkpoint(session, tf.train.load_checkpoint(str(prefix)), saver_restore_keys(meta))
        except (IndexError, ValueError) as exc:  # the checkpoint reader on damaged bytes: a DataLossError, as TF's
            raise tf.errors.DataLossError(None, None, f"{prefix}: {first_line(exc)}") from None
    init_op = loader_impl.get_init_op(meta)
    if init_op is not None and init_op.name not in saver_nodes(meta):
        session.run(init_op, feed_dict=loader_impl.get_asset_tensors(str(path), meta))


_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_ASSIGN_BATCH_BYTES = 64 << 20  # values fed per session.run while restoring


def _assign_from_checkpoint(session, reader, restored: dict[str, str]) -> None:
    """Every variable of the session's graph that the checkpoint holds, assigned its value; `restored`: the
    key the saver's restore subgraph reads for each variable node, else its name or shared_name."""
    keys = _checkpoint_keys(reader)
    batch: dict[Any, Any] = {}
    assigns: list[Any] = []
    for op in session.graph.get_operations():
        key = None
        if op.type in _VARIABLE_OPS:
            key = restored[op.name] if restored.get(op.name) in keys else _checkpoint_key(op, keys)
        if key is None:
            continue
        value = reader.get_tensor(key)
        assign, placeholder = _assign_op(op, value)
        assigns.append(assign)
        batch[placeholder] = value
        if sum(v.nbytes for v in batch.values()) >= _ASSIGN_BATCH_BYTES:
            session.run(assigns, feed_dict=batch)
            batch, assigns = {}, []
    if assigns:
        session.run(assigns, feed_dict=batch)


def saver_restore_keys(meta) -> dict[str, str]:
    """variable node -> the checkpoint key the MetaGraph's restore subgraph assigns it, read off the graph (a
    TF1 saver's Assign from RestoreV2:i, a TF2 `__inference__traced_restore`'s AssignVariableOp on argument k
    of its call); nothing of it runs."""
    top = {node.name: node for node in meta.graph_def.node}
    library = {function.signature.name: function for function in meta.graph_def.library.function}
    keys: dict[str, str] = {}
    for node in top.values():
        if node.op in ("Assign", "AssignVariableOp") and len(node.input) > 1:
            key, variable = _restored_key(top, node.input[1]), _traced(top, node.input[0])[1]
            if key and variable is not None:
                keys[variable.name] = key
        elif node.op in FUNCTION_CALL_OPS and node.attr["f"].func.name in library:
            keys.update(_keys_restored_by_call(top, node, library[node.attr["f"].func.name]))
    return keys


def _keys_restored_by_call(top: dict[str, Any], call, function) -> dict[str, str]:
    args = [arg.name for arg in function.signature.input_arg]
    body = {node.name: node for node in function.node_def}
    keys: dict[str, str] = {}
    for node in function.node_def:
        if node.op != "AssignVariableOp" or len(node.input) < 2:
            continue
        key, resource = _restored_key(body, node.input[1]), _traced(body, node.input[0])[0].split(":")[0]
        if key and resource in args and args.index(resource) < len(call.input):
            variable = _traced(top, call.input[args.index(resource)])[1]
            if variable is not None:
                keys[variable.name] = key
    return keys


def _traced(nodes: dict[str, Any], tensor: str) -> tuple[str, Any]:
    """(tensor, its node) through Identity; (tensor, None) for a function argument."""
    for _ in range(len(nodes) + 1):
        node = nodes.get(tensor.lstrip("^").split(":")[0])
        if node is None or node.op != "Identity" or not node.input:
            return tensor, node
        tensor = node.input[0]
    return tensor, None


def _restored_key(nodes: dict[str, Any], tensor: str) -> str | None:
    """The checkpoint key of `tensor` when it is output i of a RestoreV2 (`name:i`, `name:tensors:i`)."""
    tensor, node = _traced(nodes, tensor)
    if node is None or node.op != "RestoreV2" or len(node.input) < 2:
        return None
    index = int(tensor.split(":")[-1]) if ":" in tensor else 0
    names = _traced(nodes, node.input[1])[1]
    if names is None or names.op != "Const":
        return None
    values = names.attr["value"].tensor.string_val
    return values[index].decode() if index < len(values) else None


def _checkpoint_keys(reader) -> dict[str, str]:
    """name -> checkpoint key: a TF1 saver's keys are the variables' names; a TF2 checkpoint's object graph
    maps each variable's name (its VarHandleOp's shared_name) to its key."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    keys = {key: key for key in reader.get_variable_to_shape_map()}
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in keys:
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        for node in graph.nodes:
            for attribute in node.attributes:
                if attribute.full_name and attribute.checkpoint_key in keys:
                    keys.setdefault(attribute.full_name, attribute.checkpoint_key)
    return keys


def _checkpoint_key(op, keys: dict[str, str]) -> str | None:
    shared = op.get_attr("shared_name").decode() if "shared_name" in op.node_def.attr else ""
    for name in (shared, op.name):
        if name and name in keys:
            return keys[name]
    return None


def _assign_op(op, value):
    """(an op assigning a new placeholder to the variable `op`, the placeholder)."""
    tf = import_tensorflow()
    dtype = tf.as_dtype(op.get_attr("dtype"))
    placeholder = tf.compat.v1.placeholder(dtype, value.shape, name=f"edgeport_restore/{op.name}")
    if op.type == "VarHandleOp":
        return tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=placeholder), placeholder
    return tf.compat.v1.assign(op.outputs[0], placeholder, validate_shape=False).op, placeholder


def freeze_function(function, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> FrozenGraph:
    """A signature function with its variables folded to constants and its function calls inlined."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf = import_tensorflow()
    frozen = convert_variables_to_constants_v2(function, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    return FrozenGraph(
        graph_def=graph_def,
        input_tensors=dict(zip(input_names, (t.name for t in inputs), strict=True)),
        output_tensors=dict(zip(output_names, (t.name for t in frozen.outputs), strict=True)),
    )


@dataclass(frozen=True)
class FrozenFunction:
    """The frozen graph as a TF2 signature function: kwargs by input name -> dict by output name."""

    function: Any  # ConcreteFunction
    owner: Any  # tf.Module keeping the imported graph alive (TFLite writes the signature from it)


def prune_frozen_graph(frozen: FrozenGraph, signature: Signature, fixed_shapes: Mapping[str, tuple[int | None, ...]]):
    """(the imported graph, a function of the signature's inputs in order returning its outputs in order).

    `fixed_shapes`: inputs fed through new placeholders of these static shapes, so shape inference sees them.
    """
    tf = import_tensorflow()
    feeds: dict[str, str] = dict(frozen.input_tensors)

    def build() -> None:
        replacements = {}
        for index, spec in enumerate(signature.inputs):
            if spec.name in fixed_shapes:
                placeholder = tf.compat.v1.placeholder(spec.dtype, fixed_shapes[spec.name], f"edgeport_fixed_{index}")
                replacements[frozen.input_tensors[spec.name]] = placeholder
                feeds[spec.name] = placeholder.name
        tf.compat.v1.import_graph_def(frozen.graph_def, input_map=replacements, name="")

    wrapped = tf.compat.v1.wrap_function(build, [])
    pruned = wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name(feeds[s.name]) for s in signature.inputs],
        fetches=[wrapped.graph.get_tensor_by_name(frozen.output_tensors[s.name]) for s in signature.outputs],
    )
    return wrapped, pruned


def wrap_frozen_graph(
    frozen: FrozenGraph, signature: Signature, fixed_shapes: Mapping[str, tuple[int | None, ...]] | None = None
) -> FrozenFunction:
    """The frozen graph as a signature function; `fixed_shapes` gives inputs a static shape (a fixed batch)."""
    tf = import_tensorflow()
    fixed = dict(fixed_shapes or {})
    input_names = tuple(s.name for s in signature.inputs)
    output_names = tuple(s.name for s in signature.outputs)
    wrapped, pruned = prune_frozen_graph(frozen, signature, fixed)

    def signature_fn(**kwargs):
        outputs = pruned(*[kwargs[n] for n in input_names])
        return dict(zip(output_names, outputs, strict=True))

    specs = {
        s.name: tf.TensorSpec(
            list(fixed[s.name]) if s.name in fixed else ([*s.shape] if s.shape is not None else None),
            s.dtype,
            name=s.name,
        )
        for s in signature.inputs
    }
    function = tf.function(signature_fn)
    concrete = function.get_concrete_function(**specs)
    owner = tf.Module()
    owner.signature_fn = function
    owner.keepalive = (wrapped, pruned)
    return FrozenFunction(function=concrete, owner=owner)


def _count_parameters(path: Path) -> int:
    """Weights in the checkpoint, without optimizer slots or bookkeeping."""
    tf = import_tensorflow()
    prefix = path / "variables" / "variables"
    if not prefix.with_suffix(".index").is_file():
        return 0
    total = 0
    for name, shape in tf.train.list_variables(str(prefix)):
        lowered = name.lower()
        if (
            name == "_CHECKPOINTABLE_OBJECT_GRAPH"
            or "optimizer" in lowered
            or "OPTIMIZER_SLOT" in name
            or "save_counter" in lowered
            or "global_step" in lowered
        ):
            continue
        count = 1
        for dim in shape:
            count *= dim
        total += count
    return total
