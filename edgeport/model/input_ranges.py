"""The value range a model's graph says each numeric input takes: where synthetic inputs are drawn from.

Synthetic floats in [0, 1) and integers in [0, 10) mean nothing to a model that rescales its input from
pixels or looks ids up in an embedding: a MobileNetV3 (its preprocessing, `x / 127.5 - 1`, is in the graph)
sees an image that is all -1 to within 0.008, and an int8 calibration on it keeps none of the variation the
model reads (cosine 0.53 against the SavedModel). So the shared frozen graph is read, through Identity and
Cast nodes, from each input to the op that first uses it:
- a float input multiplied (or divided) by a constant of at most 1/64 before anything else is pixels:
  [0, 255] (Keras `Rescaling(1/255)` and `Rescaling(1/127.5, offset=-1)`, the applications' preprocessing);
- an integer input that indexes a constant table (GatherV2, ResourceGather, an embedding) within a few ops
  takes its ids: [0, rows of the table) (the smallest, when it indexes several). So does a float input the
  graph casts to integers on the way (Cast, Floor, Round, Rint, Ceil: `tf.cast(x, tf.int32)` before an
  Embedding): [0, 1) would make every id 0, every output the same, and any artifact "agree". Past a rounding
  up (Round, Rint, Ceil) the top is rows - 1, so no id falls off the table.
- a float input from which a constant mean is subtracted and that is then divided by a constant (Keras
  `Normalization`: `(x - mean) / max(sqrt(variance), eps)`, constants folded here) takes, per feature, the
  values of its data: uniform over mean ± sqrt(3)·std, which has the data's mean and variance. A tabular model
  fed [0, 1) sees every feature several deviations away from anything it was trained on.
What was inferred, and from which op, goes in the samples' source; `--input-range` wins over it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
ROUNDING_OPS = frozenset({"Floor", "Round", "Rint", "Ceil"})  # a float made an id: depth-free, like a Cast
ROUNDING_UP = frozenset({"Round", "Rint", "Ceil"})  # x in [0, rows) may become rows
INDEX_OPS = INDEX_OPS | ROUNDING_OPS
FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})


@dataclass(frozen=True)
class InferredRange:
    low: float
    high: float
    why: str  # "rescaled by 0.00784 (Mul node …)", for the samples' source
    per_feature: tuple[tuple[float, float], ...] = ()  # (low, high) per index of the last axis, when they differ
    standardized_by: tuple[str, ...] = ()  # the graph's Sub and divide nodes that standardize the input

    def bounds(self):
        """(low, high) for numpy's uniform: scalars, or arrays over the last axis."""
        if not self.per_feature:
            return self.low, self.high
        return tuple(np.array(side, dtype=np.float64) for side in zip(*self.per_feature, strict=True))


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
            users = list(_first_users(_node_name(tensor), consumers))
            found = _pixels(users, nodes) or _standardized(users, consumers, nodes)
            if found is None:  # cast to integers and used as ids
                found = _ids(_node_name(tensor), consumers, nodes, {_node_name(t) for t in input_tensors.values()})
        elif "int" in dtype:
            tables = {_node_name(t) for t in input_tensors.values()}  # not tables: the signature's inputs
            found = _ids(_node_name(tensor), consumers, nodes, tables)
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


def _standardized(
    users: list[Any], consumers: Mapping[str, list[Any]], nodes: Mapping[str, Any]
) -> InferredRange | None:
    """Sub(x, mean) then RealDiv by (or Mul by the inverse of) a constant std, both constant-foldable."""
    if len(users) != 1 or users[0].op != "Sub" or len(users[0].input) != 2:
        return None
    mean = _value(users[0].input[1], nodes)
    after = [node for node in consumers.get(users[0].name, []) if node.op in SCALE_OPS]
    if mean is None or len(after) != 1 or len(after[0].input) != 2:
        return None
    divide = after[0]
    factor = _value(divide.input[1], nodes)
    if factor is None and divide.op == "Mul":
        factor = _value(divide.input[0], nodes)
    if factor is None:
        return None
    std = np.abs(factor if divide.op == "RealDiv" else 1 / np.where(factor == 0, np.inf, factor)).ravel()
    mean = mean.ravel()
    if mean.size != std.size and std.size != 1 or not np.all(np.isfinite(std)) or not np.all(std > 0):
        return None
    half = np.sqrt(3) * np.broadcast_to(std, mean.shape)
    lows, highs = mean - half, mean + half
    per_feature = tuple(zip(lows.tolist(), highs.tolist(), strict=True)) if mean.size > 1 else ()
    why = f"standardized in the graph by {mean.size} mean(s) and std(s) ({divide.name}): mean ± sqrt(3)·std"
    return InferredRange(float(lows.min()), float(highs.max()), why, per_feature, (users[0].name, divide.name))


FOLDABLE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sqrt": np.sqrt,
    "Rsqrt": lambda v: 1 / np.sqrt(v),
    "Reciprocal": lambda v: 1 / v,
    "Neg": np.negative,
}
FOLDABLE_PAIRS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Maximum": np.maximum,
    "Minimum": np.minimum,
    "Mul": np.multiply,
    "AddV2": np.add,
    "Add": np.add,
}


def _value(tensor: str, nodes: Mapping[str, Any], depth: int = 0) -> np.ndarray | None:
    """The value of `tensor` when it is computed from constants alone by a few elementwise ops (Keras
    Normalization's max(sqrt(variance), eps)); None otherwise."""
    node = nodes.get(_node_name(tensor))
    if node is None or depth > 8:
        return None
    if node.op in PASS_THROUGH_OPS and node.input:
        return _value(node.input[0], nodes, depth + 1)
    if node.op == "Const":
        from tensorflow.python.framework import tensor_util

        value = tensor_util.MakeNdarray(node.attr["value"].tensor)
        return value.astype(np.float64) if np.issubdtype(value.dtype, np.number) else None
    values = [_value(source, nodes, depth + 1) for source in node.input if not source.startswith("^")]
    operands = [value for value in values if value is not None]
    if len(operands) != len(values):
        return None
    if node.op in FOLDABLE and len(operands) == 1:
        return FOLDABLE[node.op](operands[0])
    if node.op in FOLDABLE_PAIRS and len(operands) == 2:
        return FOLDABLE_PAIRS[node.op](operands[0], operands[1])
    return None


def _scale(node: Any, nodes: Mapping[str, Any]) -> float | None:
    """The constant factor a Mul (either operand) or RealDiv (its divisor) scales its input by."""
    if node.op not in SCALE_OPS or len(node.input) != 2:
        return None
    operands = node.input[1:] if node.op == "RealDiv" else node.input
    value = next((v for v in (_scalar(_const(source, nodes)) for source in operands) if v is not None), None)
    if value is None or value == 0:
        return None
    return 1 / value if node.op == "RealDiv" else value


def _ids(
    start: str, consumers: Mapping[str, list[Any]], nodes: Mapping[str, Any], inputs: set[str]
) -> InferredRange | None:
    """The rows of the constant tables the input indexes, through at most ID_DEPTH of INDEX_OPS (Keras 3's
    Embedding first wraps negative ids: Less, AddV2, SelectV2, then GatherV2); a table lookup (Equal against
    its keys) is no index. A table may be a large model's weight kept by reference: a Placeholder that is
    not one of the signature's `inputs` (model/weight_references.py)."""
    rows: dict[int, tuple[str, bool]] = {}
    seen, frontier = {start}, [(start, 0, False)]
    while frontier:
        name, depth, rounded_up = frontier.pop()
        for user in consumers.get(name, []):
            if user.name in seen:
                continue
            seen.add(user.name)
            if user.op in GATHER_OPS and len(user.input) >= 2 and _node_name(user.input[1]) in seen | {name}:
                shape = _const_shape(_const(user.input[0], nodes, inputs))
                if shape and (shape[0] not in rows or rounded_up):  # a rounding up anywhere: rows - 1
                    rows[shape[0]] = (user.name, rounded_up)
            elif depth < ID_DEPTH and user.op in INDEX_OPS:
                counts = user.op not in PASS_THROUGH_OPS | ROUNDING_OPS
                frontier.append((user.name, depth + counts, rounded_up or user.op in ROUNDING_UP))
    if not rows:
        return None
    smallest = min(rows)
    gather, rounded_up = rows[smallest]
    high = smallest - 1 if rounded_up else smallest
    if high <= 0:
        return None
    return InferredRange(0, high, f"ids: they index a table of {smallest} rows ({gather})")


def _const(tensor: str, nodes: Mapping[str, Any], inputs: set[str] | None = None) -> Any:
    """The Const node behind `tensor`, through pass-through nodes (a frozen variable is Identity(Const));
    with `inputs`, also a Placeholder that is none of them (a weight kept by reference)."""
    node = nodes.get(_node_name(tensor))
    while node is not None and node.op in PASS_THROUGH_OPS and node.input:
        node = nodes.get(_node_name(node.input[0]))
    if node is not None and inputs is not None and node.op == "Placeholder" and node.name not in inputs:
        return node
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
    shape = node.attr["shape"].shape if node.op == "Placeholder" else node.attr["value"].tensor.tensor_shape
    dims = shape.dim
    return tuple(int(d.size) for d in dims) or None


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]
