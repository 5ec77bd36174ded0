"""Fused ops the TF.js runtime executes: create FusedDepthwiseConv2dNative, undo fusions it cannot run.

TF.js runs `_FusedConv2D`, `_FusedMatMul` and `FusedDepthwiseConv2dNative` with `fused_ops` =
[BiasAdd] or [BiasAdd, <activation>] where the activation is one tfjs-core's fused kernels apply. Grappler's
remapper also emits fusions TF.js rejects (FusedBatchNorm, a residual Add, Tanh, Gelu...): those are split
back into plain ops here.
"""

from __future__ import annotations

import math

import numpy as np

from edgeport.converters.tfjs.graph_edit import GraphIndex, node_name
from edgeport.errors import ConversionError

FUSED_OPS = ("_FusedConv2D", "_FusedMatMul", "_FusedDepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
BASE_OP = {
    "_FusedConv2D": "Conv2D",
    "_FusedMatMul": "MatMul",
    "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
}
FUSION_ATTRS = ("fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs")
ACTIVATION_OPS = ("Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh")
CONV_ATTRS = ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings")


def bias_before_activations(graph_def, protected: set[str], activations: frozenset[str]) -> int:
    """Conv2D / DepthwiseConv2dNative / MatMul feeding an activation directly gets a zero BiasAdd between.

    Fused kernels take [BiasAdd, activation]; a layer without bias (or whose zero bias constant folding
    removed) would otherwise run as two ops.
    """
    index = GraphIndex(graph_def, protected)
    added = 0
    for node in [n for n in graph_def.node if n.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul")]:
        reader = index.only_consumer(node.name)
        weights = index.const_value(node.input[1]) if len(node.input) > 1 else None
        if reader is None or reader.op not in ACTIVATION_OPS or reader.op.lower() not in activations:
            continue
        if weights is None or node.attr["T"].type != 1 or node.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        channels = output_channels(node, weights)
        zeros = index.add_const(f"{node.name}/zero_bias", np.zeros(channels, np.float32))
        bias_add = index.add_node(f"{node.name}/BiasAdd", "BiasAdd", [node.name, zeros])
        bias_add.attr["T"].type = 1
        bias_add.attr["data_format"].s = b"NHWC"
        reader.input[[node_name(i) for i in reader.input].index(node.name)] = bias_add.name
        added += 1
    return added


def output_channels(node, weights) -> int:
    if node.op == "MatMul":
        return weights.shape[0] if node.attr["transpose_b"].b else weights.shape[1]
    if node.op == "DepthwiseConv2dNative":
        return weights.shape[2] * weights.shape[3]
    return weights.shape[3]


def fuse_depthwise(graph_def, protected: set[str], activations: frozenset[str]) -> int:
    """DepthwiseConv2dNative -> BiasAdd [-> activation] becomes one FusedDepthwiseConv2dNative."""
    index = GraphIndex(graph_def, protected)
    fused = 0
    for conv in [n for n in graph_def.node if n.op == "DepthwiseConv2dNative"]:
        bias_add = index.only_consumer(conv.name)
        if bias_add is None or bias_add.op != "BiasAdd" or node_name(bias_add.input[0]) != conv.name:
            continue
        last, activation = bias_add, None
        reader = index.only_consumer(bias_add.name)
        if reader is not None and reader.op in ACTIVATION_OPS and reader.op.lower() in activations:
            last, activation = reader, reader.op
        alpha = last.attr["alpha"].f if activation == "LeakyRelu" else None
        attrs = {key: conv.attr[key] for key in CONV_ATTRS if key in conv.attr}
        inputs = [conv.input[0], conv.input[1], bias_add.input[1]]
        index.remove({conv.name} | ({bias_add.name} if last is not bias_add else set()))
        last.op = "FusedDepthwiseConv2dNative"
        del last.input[:]
        last.input.extend(inputs)
        last.ClearField("attr")
        for key, value in attrs.items():
            last.attr[key].CopyFrom(value)
        last.attr["fused_ops"].list.s.extend([b"BiasAdd"] + ([activation.encode()] if activation else []))
        last.attr["num_args"].i = 1
        if alpha is not None:
            last.attr["leakyrelu_alpha"].f = alpha
        fused += 1
    index.commit()
    return fused


def runs_on_tfjs(node, activations: frozenset[str]) -> bool:
    steps = [s.decode() for s in node.attr["fused_ops"].list.s]
    if steps == ["BiasAdd"]:
        return node.attr["num_args"].i == 1
    return (
        len(steps) == 2
        and steps[0] == "BiasAdd"
        and steps[1].lower() in activations
        and steps[1].lower() != "prelu"
        and node.attr["num_args"].i == 1
    )


def undo_unsupported_fusions(graph_def, protected: set[str], activations: frozenset[str]) -> list[str]:
    """Split every fused op TF.js cannot execute into plain ops; returns the fusions that were undone."""
    index = GraphIndex(graph_def, protected)
    undone = []
    for node in [n for n in graph_def.node if n.op in FUSED_OPS]:
        if runs_on_tfjs(node, activations):
            if node.op == "_FusedDepthwiseConv2dNative":
                node.op = "FusedDepthwiseConv2dNative"  # TF's internal name; TF.js knows it without "_"
            continue
        steps = [s.decode() for s in node.attr["fused_ops"].list.s]
        undone.append(f"{node.op}[{','.join(steps)}]")
        _split(index, node, steps)
    index.commit()
    return undone


def _split(index: GraphIndex, node, steps: list[str]) -> None:
    data = [name for name in node.input if not name.startswith("^")]
    control = [name for name in node.input if name.startswith("^")]
    num_args = node.attr["num_args"].i
    args = data[2 : 2 + num_args]
    base = index.add_node(f"{node.name}/{BASE_OP[node.op]}", BASE_OP[node.op], data[:2] + control)
    for key, value in node.attr.items():
        if key not in FUSION_ATTRS:
            base.attr[key].CopyFrom(value)
    current = base.name
    dtype = node.attr["T"].type
    for position, step in enumerate(steps):
        current, args = _apply_step(index, node, step, current, args, dtype, position)
    # the last plain op takes the fused node's place under its name, so readers need no change
    final = index.nodes[current]
    node.op = "Identity"
    del node.input[:]
    node.input.append(final.name)
    node.ClearField("attr")
    node.attr["T"].type = dtype


def _apply_step(index: GraphIndex, fused, step: str, current: str, args: list[str], dtype: int, position: int):
    prefix = f"{fused.name}/{step}_{position}"
    if step == "BiasAdd":
        node = _op(index, prefix, "BiasAdd", [current, args[0]], dtype)
        node.attr["data_format"].s = fused.attr["data_format"].s or b"NHWC"
        return node.name, args[1:]
    if step == "Add":
        return _op(index, prefix, "AddV2", [current, args[0]], dtype).name, args[1:]
    if step == "FusedBatchNorm":
        node = _op(index, prefix, "FusedBatchNormV3", [current, *args[:4]], dtype)
        node.attr["U"].type = dtype
        node.attr["epsilon"].f = fused.attr["epsilon"].f
        node.attr["is_training"].b = False
        node.attr["data_format"].s = fused.attr["data_format"].s or b"NHWC"
        return node.name, args[4:]
    if step in ACTIVATION_OPS:
        node = _op(index, prefix, step, [current], dtype)
        if step == "LeakyRelu":
            node.attr["alpha"].f = fused.attr["leakyrelu_alpha"].f
        return node.name, args
    if step in ("GeluExact", "GeluApproximate"):
        return _gelu(index, prefix, current, dtype, exact=step == "GeluExact"), args
    raise ConversionError(
        f"tfjs: the graph optimizer fused {step} into {fused.op} at node {fused.name}; TF.js "
        "cannot run it and edgeport cannot split it; convert with the option optimize=false"
    )


def _op(index: GraphIndex, name: str, op: str, inputs: list[str], dtype: int):
    node = index.add_node(name, op, inputs)
    node.attr["T"].type = dtype
    return node


def _gelu(index: GraphIndex, prefix: str, x: str, dtype: int, *, exact: bool) -> str:
    def const(label, value):
        return index.add_const(f"{prefix}/{label}", np.array(value, np.float32))

    if exact:  # 0.5 * x * (1 + erf(x / sqrt(2)))
        inner = _op(index, f"{prefix}/scaled", "Mul", [x, const("rsqrt2", 1 / math.sqrt(2))], dtype).name
        curve = _op(index, f"{prefix}/erf", "Erf", [inner], dtype).name
    else:  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        cube = _op(index, f"{prefix}/cube", "Pow", [x, const("three", 3.0)], dtype).name
        cubic = _op(index, f"{prefix}/cubic", "Mul", [cube, const("coefficient", 0.044715)], dtype).name
        total = _op(index, f"{prefix}/sum", "AddV2", [x, cubic], dtype).name
        inner = _op(index, f"{prefix}/scaled", "Mul", [total, const("sqrt2_pi", math.sqrt(2 / math.pi))], dtype).name
        curve = _op(index, f"{prefix}/tanh", "Tanh", [inner], dtype).name
    plus_one = _op(index, f"{prefix}/plus_one", "AddV2", [curve, const("one", 1.0)], dtype).name
    half_x = _op(index, f"{prefix}/half_x", "Mul", [x, const("half", 0.5)], dtype).name
    return _op(index, f"{prefix}/gelu", "Mul", [half_x, plus_one], dtype).name
