"""The value range a model's graph says each numeric input takes: where synthetic inputs are drawn from.

Synthetic floats in [0, 1) and integers in [0, 10) mean nothing to a model that rescales its input from
pixels or looks ids up in an embedding: a MobileNetV3 (its preprocessing, `x / 127.5 - 1`, is in the graph)
sees an image that is all -1 to within 0.008, and an int8 calibration on it keeps none of the variation the
model reads (cosine 0.53 against the SavedModel). So the shared frozen graph is read, through Identity and
Cast nodes, from each input to the op that first uses it:
- a float input multiplied (or divided) by a constant of at most 1/64 before anything else is pixels:
  [0, 255] (Keras `Rescaling(1/255)` and `Rescaling(1/127.5, offset=-1)`, the applications' preprocessing);
- an integer input that indexes a constant table (GatherV2, ResourceGather, an embedding) within a few ops
  takes its ids: [0, rows of the table) (the smallest, when it indexes several).
What was inferred, and from which op, goes in the samples' source; `--input-range` wins over it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

PASS_THROUGH_OPS = frozenset({"Identity", "Cast", "IdentityN", "StopGradient", "Snapshot"})
SCALE_OPS = frozenset({"Mul", "RealDiv"})
GATHER_OPS = frozenset({"GatherV2", "ResourceGather", "Gather"})
PIXEL_SCALE = 1 / 64  # a multiplier at most this small rescales pixels, not features
PIXEL_RANGE = (0.0, 255.0)
ID_DEPTH = 4  # computing ops between an integer input and the gather it indexes
INDEX_OPS = PASS_THROUGH_OPS | {
    "Less",
    "GreaterEqual",
    "AddV2",
    "Add",
    "SelectV2",
    "Select",
    "Minimum",
    "Maximum",
    "ClipByValue",
}  # what keeps an id an id: negative ids wrapped, ids clipped
FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})


@dataclass(frozen=True)
class InferredRange:
    low: float
    high: float
    why: str  # "rescaled by 0.00784 (Mul node …)", for the samples' source


def graph_input_ranges(graph_def: Any, input_tensors: Mapping[str, str], dtypes: Mapping[str, str]):
    """Signature input name -> InferredRange, for the inputs whose range the graph says."""
    nodes = {node.name: node for node in graph_def.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for source in node.input:
            consumers.setdefault(_node_name(source), []).append(node)
    ranges: dict[str, InferredRange] = {}
    for name, tensor in input_tensors.items():
        dtype = dtypes.get(name, "")
        found = None
        if dtype in FLOAT_DTYPES:
            found = _pixels(list(_first_users(_node_name(tensor), consumers)), nodes)
        elif "int" in dtype:
            found = _ids(_node_name(tensor), consumers, nodes)
        if found is not None:
            ranges[name] = found
    return ranges


def _first_users(start: str, consumers: Mapping[str, list[Any]]) -> Iterable[Any]:
    """The nodes that first compute with `start`, looking through pass-through nodes."""
    seen, frontier = {start}, [start]
    while frontier:
        for user in consumers.get(frontier.pop(), []):
            if user.name in seen:
                continue
            seen.add(user.name)
            if user.op in PASS_THROUGH_OPS:
                frontier.append(user.name)
            else:
                yield user


def _pixels(users: list[Any], nodes: Mapping[str, Any]) -> InferredRange | None:
    scales = [_scale(user, nodes) for user in users]
    if not users or any(scale is None or not 0 < abs(scale) <= PIXEL_SCALE for scale in scales):
        return None
    return InferredRange(*PIXEL_RANGE, f"pixels: rescaled by {scales[0]:.4g} in the graph ({users[0].name})")


def _scale(node: Any, nodes: Mapping[str, Any]) -> float | None:
    """The constant factor a Mul (either operand) or RealDiv (its divisor) scales its input by."""
    if node.op not in SCALE_OPS or len(node.input) != 2:
        return None
    operands = node.input[1:] if node.op == "RealDiv" else node.input
    value = next((v for v in (_scalar(_const(source, nodes)) for source in operands) if v is not None), None)
    if value is None or value == 0:
        return None
    return 1 / value if node.op == "RealDiv" else value


def _ids(start: str, consumers: Mapping[str, list[Any]], nodes: Mapping[str, Any]) -> InferredRange | None:
    """The rows of the constant tables the input indexes, through at most ID_DEPTH of INDEX_OPS (Keras 3's
    Embedding first wraps negative ids: Less, AddV2, SelectV2, then GatherV2); a table lookup (Equal against
    its keys) is no index."""
    rows: dict[int, str] = {}
    seen, frontier = {start}, [(start, 0)]
    while frontier:
        name, depth = frontier.pop()
        for user in consumers.get(name, []):
            if user.name in seen:
                continue
            seen.add(user.name)
            if user.op in GATHER_OPS and len(user.input) >= 2 and _node_name(user.input[1]) in seen | {name}:
                shape = _const_shape(_const(user.input[0], nodes))
                if shape:
                    rows.setdefault(shape[0], user.name)
            elif depth < ID_DEPTH and user.op in INDEX_OPS:
                frontier.append((user.name, depth + (user.op not in PASS_THROUGH_OPS)))
    if not rows:
        return None
    smallest = min(rows)
    return InferredRange(0, smallest, f"ids: they index a table of {smallest} rows ({rows[smallest]})")


def _const(tensor: str, nodes: Mapping[str, Any]) -> Any:
    """The Const node behind `tensor`, through pass-through nodes (a frozen variable is Identity(Const))."""
    node = nodes.get(_node_name(tensor))
    while node is not None and node.op in PASS_THROUGH_OPS and node.input:
        node = nodes.get(_node_name(node.input[0]))
    return node if node is not None and node.op == "Const" else None


def _scalar(node: Any) -> float | None:
    if node is None:
        return None
    from tensorflow.python.framework import tensor_util

    value = tensor_util.MakeNdarray(node.attr["value"].tensor)
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        return None
    return float(value.reshape(()))


def _const_shape(node: Any) -> tuple[int, ...] | None:
    if node is None:
        return None
    dims = node.attr["value"].tensor.tensor_shape.dim
    return tuple(int(d.size) for d in dims) or None


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]
