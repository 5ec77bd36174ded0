"""The frozen graph the run already holds -> an ONNX ModelProto, through tf2onnx's Python API.

Graph inputs and outputs are renamed to the signature's names. Layout: inputs/outputs named in
`inputs_as_nchw`/`outputs_as_nchw` become NCHW (tf2onnx inserts the transposes and pushes them away).
tf2onnx continues past ops it cannot map and leaves them as TensorFlow nodes; those are found in the result
and reported together, each with what would help (a higher opset, allow_custom_ops).

Lookup tables (string <-> int64) become ONNX-ML CategoryMapper nodes: the graph reads each through a HashTableV2
node and tf2onnx is handed the tables' contents (`initialized_tables`, which its `from_graph_def` does not
take, so the same steps are run here: import, tf_optimize, process_tf_graph, optimize_graph).
"""

from __future__ import annotations

import re

from edgeport.converters.onnx.opsets import CUSTOM_DOMAINS, ML_DOMAIN, ONNX_DOMAINS, op_support, tf2onnx_max_opset
from edgeport.errors import ConversionError, first_line
from edgeport.formats.onnx.conventions import all_nodes
from edgeport.model.lookup_tables import TableContents
from edgeport.model.savedmodel import FrozenGraph
from edgeport.run.capture import capture_output

_UNSUPPORTED_LOG = re.compile(r"Tensorflow op \[[^\]]*: (\w+)\] is not supported")


def export_onnx(
    frozen: FrozenGraph,
    *,
    opset: int,
    inputs_as_nchw: tuple[str, ...],
    outputs_as_nchw: tuple[str, ...],
    allow_custom_ops: bool,
    target: str,
    tables: tuple[TableContents, ...] = (),
    optimize: bool = True,
):
    """Convert; return (ModelProto, captured warnings). Names in the *_as_nchw tuples are signature names.

    Weights the frozen graph keeps by reference (`frozen.references`) are graph inputs of the result, named like
    their placeholders' tensors, for weight_binding.bind_weights to turn into initializers.

    `tables`: the contents of the HashTableV2 nodes in `frozen` (shared_name = node name). `optimize`: run
    tf2onnx's graph optimizers (each works on a deep copy of the whole graph, constants included: a 0.3 GB
    model peaked at 18 GB in them, 6.5 GB without; onnxruntime's offline optimization still runs after).
    """
    from onnx import helper

    renames = {tensor: name for name, tensor in {**frozen.input_tensors, **frozen.output_tensors}.items()}
    extra_opset = [helper.make_opsetid(domain, 1) for domain in CUSTOM_DOMAINS] if allow_custom_ops else None
    with capture_output() as captured:
        try:
            model = _tf2onnx(
                frozen.graph_def,
                input_names=[*frozen.input_tensors.values(), *(ref.tensor for ref in frozen.references)],
                output_names=list(frozen.output_tensors.values()),
                opset=opset,
                extra_opset=extra_opset,
                inputs_as_nchw=[frozen.input_tensors[name] for name in inputs_as_nchw],
                outputs_as_nchw=[frozen.output_tensors[name] for name in outputs_as_nchw],
                tensors_to_rename=renames,
                initialized_tables={table.node.encode(): (table.keys, table.values) for table in tables},
                optimize=optimize,
                weights=tuple(ref.node for ref in frozen.references),
            )
        except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types; each becomes one line
            raise ConversionError(f"{target}: tf2onnx failed at opset {opset}: {first_line(exc)}") from None
    unconverted = sorted(
        {node.op_type for node in all_nodes(model.graph) if not _is_runnable(node, opset, allow_custom_ops)}
        | {m.group(1) for line in captured.lines for m in _UNSUPPORTED_LOG.finditer(line)}
    )
    if unconverted:
        max_opset = tf2onnx_max_opset()
        advice = "; ".join(op_support(op).advice(opset, max_opset) for op in unconverted)
        raise ConversionError(f"{target}: tf2onnx cannot map {len(unconverted)} op(s) at opset {opset}: {advice}")
    _check_names(model, frozen, target)
    return model, captured.warnings()


def _tf2onnx(
    graph_def,
    *,
    input_names: list[str],
    output_names: list[str],
    optimize: bool = True,
    weights: tuple[str, ...] = (),
    **kwargs,
):
    """tf2onnx.convert.from_graph_def's steps, with the keyword arguments it does not pass on (tables).
    `weights`: placeholders of weights kept by reference, whose shapes Grappler must not see (it would
    allocate each: edgeport.model.grappler.hide_placeholder_shapes)."""
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader
    from tf2onnx.tfonnx import process_tf_graph

    from edgeport.model.grappler import hide_placeholder_shapes, restore_placeholder_shapes

    with tf.device("/cpu:0"), tf.Graph().as_default() as tf_graph, tf_loader.tf_session(graph=tf_graph) as sess:
        tf.import_graph_def(graph_def, name="")
        input_names = tf_loader.inputs_without_resource(sess, input_names)
        hidden = type(graph_def)()
        hidden.CopyFrom(graph_def)  # a small graph when it has weights to hide
        shapes = hide_placeholder_shapes(hidden, weights)
        optimized = tf_loader.tf_optimize(input_names, output_names, hidden)
        restore_placeholder_shapes(optimized, shapes)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(optimized, name="")
        graph = process_tf_graph(
            tf_graph, continue_on_error=True, input_names=input_names, output_names=output_names, **kwargs
        )
        onnx_graph = optimizer.optimize_graph(graph, True) if optimize else graph
        return onnx_graph.make_model("converted from edgeport")


def _is_runnable(node, opset: int, allow_custom_ops: bool) -> bool:
    from onnx import defs

    if node.domain in ONNX_DOMAINS:
        return defs.has(node.op_type, opset, "")
    if node.domain == ML_DOMAIN:
        return defs.has(node.op_type, ML_DOMAIN)
    return allow_custom_ops and node.domain in CUSTOM_DOMAINS


def _check_names(model, frozen: FrozenGraph, target: str) -> None:
    inputs = {value.name for value in model.graph.input}
    outputs = {value.name for value in model.graph.output}
    missing = sorted((set(frozen.input_tensors) - inputs) | (set(frozen.output_tensors) - outputs))
    if missing:
        raise ConversionError(
            f"{target}: the ONNX graph lost signature tensors {', '.join(missing)} "
            f"(inputs {sorted(inputs)}, outputs {sorted(outputs)}); please report it"
        )
