"""A large model's freeze that keeps its big variables out of the GraphDef: weights by reference.

Freezing folds every variable into the GraphDef as a constant; TensorFlow then imports that GraphDef into a
function graph and serializes it again, and every converter copies it: 9x the weights after the freeze alone
(benchmarks/bench_scale.py), and past protobuf's 2 GB a GraphDef cannot be written at all. Here a variable
of at least REFERENCE_MIN_BYTES that the signature only reads (ReadVariableOp in the inlined main graph; not
passed into a loop or a function) stays out: its resource placeholder becomes a Placeholder of the variable's
dtype and shape, its reads become Identity ops, and a `WeightReference` says which variable it stands for.
Writers (ONNX external data, TF.js weight shards) then read each variable's value when they write it, one at
a time: the weights exist once in memory, in the loaded SavedModel. Smaller variables are constants as usual.

The freeze is TensorFlow's own (convert_to_constants' converter data, told which captures to leave); only
the TF2 loader's graphs are frozen this way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

REFERENCE_MIN_BYTES = 1 << 20  # smaller variables are frozen to constants as usual
CHUNK_BYTES = 16 << 20  # WeightReference.chunks: the most of a variable read at a time
READS = frozenset({"ReadVariableOp", "ResourceGather"})  # what may read a variable kept by reference


@dataclass(frozen=True)
class WeightReference:
    """A Placeholder node of the frozen graph that stands for one variable of the loaded SavedModel."""

    node: str  # the Placeholder's node name in the frozen graph
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]
    variable: Any  # the tf.Variable; read by value()

    @property
    def tensor(self) -> str:
        return f"{self.node}:0"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def value(self) -> np.ndarray:
        """The variable's value (a copy of this one variable, for as long as the caller keeps it); eager: call it
        outside graph building and sessions."""
        return self.variable.numpy()

    def chunks(self, max_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The value in slices along its first axis of at most `max_bytes` (one row at least), in order: a
        writer that streams it holds one slice, not a copy of the whole (an embedding of 262 MB cost that)."""
        if not self.shape or self.nbytes <= max_bytes:
            yield self.value()
            return
        row = max(1, self.nbytes // self.shape[0])
        step = max(1, max_bytes // row)
        for start in range(0, self.shape[0], step):
            yield self.variable[start : start + step].numpy()


def freeze_by_reference(function, min_bytes: int = REFERENCE_MIN_BYTES):
    """(GraphDef with shapes, input tensor names, output tensor names, references) for a signature function.

    The GraphDef is the inlined, frozen signature graph in which every variable kept by reference is a
    Placeholder named in the references; feed those with WeightReference.value() to run it.
    """
    from tensorflow.python.framework import convert_to_constants as freezing

    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    variables = _captured_variables(function)

    class _LeavingLargeVariables(freezing._FunctionConverterDataInEager):  # noqa: SLF001 - TF's freeze, told what to leave
        kept: dict[str, Any] | None = None

        def _should_convert(self, name: str) -> bool:
            if self.kept is None:
                self.kept = _variables_to_keep(self.graph_def, variables, min_bytes)
            return name not in self.kept and super()._should_convert(name)

    data = _LeavingLargeVariables(func=function, lower_control_flow=False, aggressive_inlining=True)
    graph_def, _ = freezing._replace_variables_by_constants(converter_data=data)  # noqa: SLF001
    kept = data.kept or {}
    consumers = _consumers(graph_def)
    references = tuple(_reference(graph_def, consumers, name, variable) for name, variable in kept.items())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    captured = {internal.name for _, internal in function.graph.captures}
    inputs = [t.name for t in function.inputs if t.dtype != tf.resource and t.name not in captured]
    outputs = [t.name for t in function.outputs]
    return graph.as_graph_def(add_shapes=True), inputs, outputs, references


def write_aligned(sink, position: int, pieces: Iterable[np.ndarray], dtype, alignment: int) -> tuple[int, int]:
    """Pad `sink` (at `position`) to `alignment`, then write each piece as little-endian `dtype`, in order;
    returns (the offset the data starts at, its length). The writers of weights kept by reference share it."""
    offset = -(-position // alignment) * alignment
    sink.write(b"\0" * (offset - position))
    length = 0
    for piece in pieces:
        data = np.ascontiguousarray(piece, dtype=np.dtype(dtype).newbyteorder("<"))
        sink.write(data.reshape(-1).data.cast("B"))
        length += data.nbytes
    return offset, length


def reference_feeds(references: Iterable[WeightReference]) -> dict[str, np.ndarray]:
    """{placeholder tensor: value} for running a frozen graph that holds references (one copy of each)."""
    return {ref.tensor: ref.value() for ref in references}


def _captured_variables(function) -> dict[str, Any]:
    """{capture placeholder node name: the variable it reads} for the function's captured variables."""
    by_handle = {id(variable.handle): variable for variable in function.graph.variables}
    found = {}
    for external, internal in function.graph.captures:
        variable = by_handle.get(id(external))
        if variable is not None:
            found[internal.name.split(":")[0]] = variable
    return found


def _variables_to_keep(graph_def, variables: dict[str, Any], min_bytes: int) -> dict[str, Any]:
    """{capture placeholder name: variable} for the captured variables of at least `min_bytes` that the main
    graph only reads (the handle through Identity ops, the inlined calls' inputs, into READS) and no function
    body names: those can stand as plain placeholders."""
    consumers = _consumers(graph_def)
    in_functions = {
        source.lstrip("^").split(":")[0]
        for function in graph_def.library.function
        for node in function.node_def
        for source in node.input
    }
    kept = {}
    for name, variable in variables.items():
        dtype = variable.dtype
        if not (dtype.is_floating or dtype.is_integer) or not variable.shape.is_fully_defined():
            continue
        size = int(np.prod(variable.shape.as_list(), dtype=np.int64)) * dtype.size
        if size < min_bytes or name in in_functions:
            continue
        if _handle_chain(name, consumers) is not None:
            kept[name] = variable
    return kept


def _handle_chain(name: str, consumers: dict[str, list[Any]]) -> tuple[str, ...] | None:
    """The Identity and ReadVariableOp nodes a variable's handle reaches, or None if it reaches anything else."""
    chain, pending = [], [name]
    while pending:
        for node in consumers.get(pending.pop(), []):
            if node.op == "Identity":
                pending.append(node.name)
            elif node.op not in READS:
                return None
            chain.append(node.name)
    return tuple(chain) if chain else None


def _consumers(graph_def) -> dict[str, list[Any]]:
    """{node name: the main-graph nodes that take it as an input, data or control}."""
    consumers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for source in node.input:
            consumers.setdefault(source.lstrip("^").split(":")[0], []).append(node)
    return consumers


def _reference(graph_def, consumers: dict[str, list[Any]], name: str, variable) -> WeightReference:
    """Turn the capture placeholder `name` into a Placeholder of the variable's value, the Identity ops its
    handle flows through into Identity ops of that value, its reads into Identity ops too; return its reference."""
    dtype = variable.dtype
    chain = set(_handle_chain(name, consumers) or ())
    for node in graph_def.node:
        if node.name == name:
            node.ClearField("attr")
            node.op = "Placeholder"
            node.attr["dtype"].type = dtype.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(variable.shape.as_proto())
        elif node.name in chain and node.op == "ResourceGather":
            _as_gather(graph_def, node, dtype)
        elif node.name in chain:
            node.op = "Identity"
            node.ClearField("attr")
            node.attr["T"].type = dtype.as_datatype_enum
    return WeightReference(
        node=name, dtype=np.dtype(dtype.as_numpy_dtype).name, shape=tuple(variable.shape.as_list()), variable=variable
    )


def _as_gather(graph_def, node, dtype) -> None:
    """ResourceGather(handle, indices) -> GatherV2(value, indices, axis 0), as TensorFlow's freeze does."""
    from tensorflow.core.framework import types_pb2

    axis = graph_def.node.add()
    axis.name = f"{node.name}/axis"
    axis.op = "Const"
    axis.attr["dtype"].type = types_pb2.DT_INT32
    axis.attr["value"].tensor.dtype = types_pb2.DT_INT32
    axis.attr["value"].tensor.int_val.append(0)
    axis.attr["value"].tensor.tensor_shape.SetInParent()
    batch_dims = node.attr["batch_dims"].i if "batch_dims" in node.attr else 0
    indices_type = node.attr["Tindices"].type
    node.op = "GatherV2"
    node.ClearField("attr")
    node.attr["Tparams"].type = dtype.as_datatype_enum
    node.attr["Tindices"].type = indices_type
    node.attr["Taxis"].type = types_pb2.DT_INT32
    node.attr["batch_dims"].i = batch_dims
    data, rest = list(node.input[:2]), [source for source in node.input[2:] if source.startswith("^")]
    del node.input[:]
    node.input.extend([*data, axis.name, *rest])
