"""Fold per-channel scale/shift chains (inference batch norm) into the weights of the op before them.

`Conv2D|DepthwiseConv2dNative|MatMul (const weights) -> BiasAdd / Mul / Add / Sub / RealDiv by constants`
becomes `op (scaled weights) -> BiasAdd`, which Grappler's remapper and the depthwise fusion then turn
into one fused TF.js op. Grappler folds `Mul` into a bare Conv2D (MulConvPushDown) but not through a
BiasAdd nor into depthwise convolutions, which is what Keras' BatchNormalization leaves behind.
"""

from __future__ import annotations

import numpy as np

from edgeport.converters.tfjs.fused_ops import output_channels
from edgeport.converters.tfjs.graph_edit import GraphIndex

WEIGHTED_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
SHIFT_OPS = ("BiasAdd", "Add", "AddV2", "Sub")
SCALE_OPS = ("Mul", "RealDiv")


def fold_channel_affine(graph_def, protected: set[str]) -> int:
    """Returns how many chains were folded."""
    index = GraphIndex(graph_def, protected)
    folded = 0
    for node in list(graph_def.node):
        if node.name not in index.doomed and _fold_after(index, node):
            folded += 1
    index.commit()
    return folded


def _fold_after(index: GraphIndex, node) -> bool:
    if node.op not in WEIGHTED_OPS or node.attr["T"].type != 1:  # DT_FLOAT
        return False
    if node.op != "MatMul" and node.attr["data_format"].s not in (b"", b"NHWC"):
        return False
    weights = index.const_value(node.input[1])
    if weights is None or len(node.input) != 2:
        return False
    channels = output_channels(node, weights)
    scale, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    chain = []
    current = node
    while (reader := index.only_consumer(current.name)) is not None:
        step = _affine_step(index, reader, current.name, channels)
        if step is None:
            break
        kind, value = step
        if kind == "shift":
            bias = bias + value
        else:
            scale, bias = scale * value, bias * value
        chain.append(reader)
        current = reader
    if not chain or (len(chain) == 1 and chain[0].op == "BiasAdd"):
        return False
    _rewrite(index, node, weights, scale, bias, chain)
    return True


def _affine_step(index: GraphIndex, reader, source: str, channels: int):
    """('shift', vector) or ('scale', vector) when `reader` applies a per-channel constant to `source`."""
    if len(reader.input) != 2 or reader.attr["T"].type != 1:
        return None
    first, second = reader.input
    if reader.op in ("BiasAdd", "Sub", "RealDiv"):
        if first != source and first != f"{source}:0":
            return None
        constant = second
    else:
        constant = second if first in (source, f"{source}:0") else first
    value = index.const_value(constant)
    vector = _per_channel(value, channels)
    if vector is None or reader.op not in SHIFT_OPS + SCALE_OPS:
        return None
    if reader.op == "Sub":
        return "shift", -vector
    if reader.op == "RealDiv":
        return "scale", 1.0 / vector
    return ("shift" if reader.op in SHIFT_OPS else "scale"), vector


def _per_channel(value, channels: int):
    if value is None or value.dtype != np.float32:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(()), np.float32)
    if value.size == channels and value.shape[-1] == channels:
        return value.reshape(channels)
    return None


def _rewrite(index: GraphIndex, node, weights, scale, bias, chain) -> None:
    if node.op == "MatMul":
        scaled = weights * (scale[:, None] if node.attr["transpose_b"].b else scale[None, :])
    elif node.op == "DepthwiseConv2dNative":
        scaled = weights * scale.reshape(weights.shape[2], weights.shape[3])
    else:
        scaled = weights * scale
    node.input[1] = index.add_const(f"{node.name}/folded_weights", scaled.astype(np.float32))
    last = chain[-1]
    bias_name = index.add_const(f"{node.name}/folded_bias", bias.astype(np.float32))
    index.remove({step.name for step in chain[:-1]})
    last.op = "BiasAdd"
    del last.input[:]
    last.input.extend([node.name, bias_name])
    dtype = last.attr["T"].type
    last.ClearField("attr")
    last.attr["T"].type = dtype
    last.attr["data_format"].s = b"NHWC"
