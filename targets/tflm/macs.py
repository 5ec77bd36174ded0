"""Multiply-accumulates per inference, per operator and in total, from a .tflite model's tensor shapes.

Counted: CONV_2D (output elements x kernel H x W x input channels per group), DEPTHWISE_CONV_2D (output
elements x kernel H x W), FULLY_CONNECTED (output elements x input depth), TRANSPOSE_CONV (input elements x
kernel H x W x output channels), BATCH_MATMUL (output elements x inner dimension). Other ops do no
multiply-accumulate work worth counting and are left out. Independent of edgeport: takes the flatbuffer's
object-API model (schema ModelT) and a builtin-code -> name map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class OpMacs:
    index: int  # operator index in the main subgraph
    op: str
    macs: int


def _shape(subgraph, tensor_index: int) -> list[int]:
    shape = subgraph.tensors[tensor_index].shape
    return [int(d) for d in shape] if shape is not None else []


def _elements(shape: list[int]) -> int:
    return math.prod(shape) if shape else 0


def _conv(subgraph, op) -> int:
    _, kernel_h, kernel_w, depth = _shape(subgraph, op.inputs[1])  # [out_ch, kh, kw, in_ch / groups]
    return _elements(_shape(subgraph, op.outputs[0])) * kernel_h * kernel_w * depth


def _depthwise(subgraph, op) -> int:
    _, kernel_h, kernel_w, _ = _shape(subgraph, op.inputs[1])  # [1, kh, kw, out_ch]
    return _elements(_shape(subgraph, op.outputs[0])) * kernel_h * kernel_w


def _fully_connected(subgraph, op) -> int:
    weights = _shape(subgraph, op.inputs[1])  # [units, depth]
    return _elements(_shape(subgraph, op.outputs[0])) * weights[-1]


def _transpose_conv(subgraph, op) -> int:
    out_channels, kernel_h, kernel_w, _ = _shape(subgraph, op.inputs[1])  # inputs: shape, weights, input
    return _elements(_shape(subgraph, op.inputs[2])) * kernel_h * kernel_w * out_channels


def _batch_matmul(subgraph, op) -> int:
    lhs = _shape(subgraph, op.inputs[0])
    adjoint = bool(getattr(op.builtinOptions, "adjX", False))
    inner = lhs[-2] if adjoint else lhs[-1]
    return _elements(_shape(subgraph, op.outputs[0])) * inner


COUNTERS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "TRANSPOSE_CONV": _transpose_conv,
    "BATCH_MATMUL": _batch_matmul,
}


def count_macs(model, names: dict[int, str]) -> list[OpMacs]:
    """MACs of every counted operator of the main subgraph, in execution order."""
    subgraph = model.subgraphs[0]
    counted = []
    for index, op in enumerate(subgraph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        counter = COUNTERS.get(name)
        if counter:
            counted.append(OpMacs(index=index, op=name, macs=int(counter(subgraph, op))))
    return counted
