"""Two-operand Einsum lowered to Transpose / Reshape / (Batch)MatMul, which every TF.js backend runs.

TF.js maps Einsum, but its wasm backend has no Einsum kernel ("Kernel 'Einsum' not registered for backend
'wasm'"), and keras MultiHeadAttention / EinsumDense are made of Einsums. Each operand is transposed to
[batch..., free..., contracted...] (resp. [batch..., contracted..., free...]), reshaped to 3-D (2-D without
batch labels), multiplied, reshaped back and transposed to the output order; labels only one operand has
and the output lacks are summed first. The rewritten chain ends in a node keeping the Einsum's name, so
its readers are unchanged. Operand shapes are read by importing the graph; one dynamic dim per Reshape (a
batch of None) becomes -1. Equations with ellipsis, a label repeated in one operand, broadcast sizes or
more dynamic dims than that are left as they are. Graph level only (not inside function bodies).
"""

from __future__ import annotations

import math
import re

import numpy as np

from edgeport.converters.tfjs.graph_edit import GraphIndex, static_shapes

_EQUATION = re.compile(r"^([a-zA-Z]*),([a-zA-Z]*)->([a-zA-Z]*)$")
INT32 = 3  # DataType enum


def lower_einsums(graph_def, protected: set[str]) -> int:
    """Rewrites every lowerable two-operand Einsum of the graph; returns how many."""
    einsums = [node for node in graph_def.node if node.op == "Einsum" and len(_data_inputs(node)) == 2]
    if not einsums:
        return 0
    shapes = static_shapes(graph_def, {name for node in einsums for name in _data_inputs(node)})
    index = GraphIndex(graph_def, protected)
    lowered = 0
    for node in einsums:
        plan = _plan(node.attr["equation"].s.decode(), *(shapes.get(name) for name in _data_inputs(node)))
        if plan is not None:
            _rewrite(index, node, plan)
            lowered += 1
    return lowered


def _data_inputs(node) -> list[str]:
    return [name for name in node.input if not name.startswith("^")]


def _product(dims: list[int | None]) -> int:
    """The product of the dims as a Reshape entry: -1 when one of them is unknown (dynamic)."""
    return -1 if None in dims else math.prod(d for d in dims if d is not None)


def _plan(equation: str, shape_a: list | None, shape_b: list | None) -> dict | None:
    match = _EQUATION.match(equation.replace(" ", ""))
    if match is None or shape_a is None or shape_b is None:
        return None
    lhs, rhs, out = match.groups()
    if len(set(lhs)) != len(lhs) or len(set(rhs)) != len(rhs) or len(set(out)) != len(out):
        return None
    if len(lhs) != len(shape_a) or len(rhs) != len(shape_b) or not set(out) <= set(lhs) | set(rhs):
        return None
    size = dict(zip(lhs, shape_a, strict=False))
    for label, dim in zip(rhs, shape_b, strict=False):
        known = size.get(label, dim)
        if known is not None and dim is not None and known != dim:
            return None  # broadcasting a size-1 dim: not lowered
        size[label] = dim if known is None else known
    batch = [label for label in out if label in lhs and label in rhs]
    contract = [label for label in lhs if label in rhs and label not in out]
    free_a = [label for label in lhs if label not in rhs and label in out]
    free_b = [label for label in rhs if label not in lhs and label in out]
    kept_a = [label for label in lhs if label in out or label in rhs]
    kept_b = [label for label in rhs if label in out or label in lhs]
    lead = [_product([size[label] for label in batch])] if batch else []
    a_flat = lead + [_product([size[label] for label in free_a]), _product([size[label] for label in contract])]
    b_flat = lead + [_product([size[label] for label in contract]), _product([size[label] for label in free_b])]
    labels = batch + free_a + free_b
    unflat = [-1 if size[label] is None else size[label] for label in labels]
    if any(shape.count(-1) > 1 for shape in (a_flat, b_flat, unflat)):
        return None  # a Reshape can infer one dynamic dim, not two
    return {
        "sum_a": [lhs.index(label) for label in lhs if label not in kept_a],
        "sum_b": [rhs.index(label) for label in rhs if label not in kept_b],
        "perm_a": [kept_a.index(label) for label in batch + free_a + contract],
        "perm_b": [kept_b.index(label) for label in batch + contract + free_b],
        "a_dims": [size[label] for label in batch + free_a + contract],
        "a_flat": a_flat,
        "b_dims": [size[label] for label in batch + contract + free_b],
        "b_flat": b_flat,
        "product": lead + a_flat[-2:-1] + b_flat[-1:],
        "unflat": unflat,
        "out_perm": [labels.index(label) for label in out],
        "batched": bool(batch),
    }


def _rewrite(index: GraphIndex, node, plan: dict) -> None:
    dtype = node.attr["T"].type
    a, b = _data_inputs(node)
    control = [name for name in node.input if name.startswith("^")]
    prefix = f"{node.name}/lowered"
    steps: list[tuple[str, str, list[str], dict]] = []  # (name, op, inputs, attrs) for the chain's nodes

    def step(op: str, inputs: list[str], operand=None, **attrs) -> str:
        name = index.unique_name(f"{prefix}/{op}")
        index.nodes[name] = None  # reserve the name
        if operand is not None:
            inputs = [*inputs, index.add_const(f"{name}/arg", np.asarray(operand, np.int32))]
        steps.append((name, op, inputs, attrs))
        return name

    def reshaped(source: str, dims: list, flat: list[int]) -> str:
        return source if dims == flat else step("Reshape", [source], flat)

    def transposed(source: str, perm: list[int]) -> str:
        return source if perm == list(range(len(perm))) else step("Transpose", [source], perm)

    a = step("Sum", [a], plan["sum_a"], keep_dims=False) if plan["sum_a"] else a
    a = reshaped(transposed(a, plan["perm_a"]), plan["a_dims"], plan["a_flat"])
    b = step("Sum", [b], plan["sum_b"], keep_dims=False) if plan["sum_b"] else b
    b = reshaped(transposed(b, plan["perm_b"]), plan["b_dims"], plan["b_flat"])
    product = step("BatchMatMulV2" if plan["batched"] else "MatMul", [a, b])
    transposed(reshaped(product, plan["product"], plan["unflat"]), plan["out_perm"])
    _commit(index, node, steps, dtype, control)


def _commit(index: GraphIndex, node, steps, dtype: int, control: list[str]) -> None:
    """Adds the chain; its last node takes the Einsum's name (and place), so the Einsum's readers follow."""
    final_name = steps[-1][0]
    for name, op, inputs, attrs in steps:
        target = node if name == final_name else index.graph_def.node.add(name=name)
        if target is node:
            node.ClearField("attr")
            del node.input[:]
        target.op = op
        target.input.extend(inputs + control)
        target.attr["T"].type = dtype
        if op == "Transpose":
            target.attr["Tperm"].type = INT32
        elif op == "Reshape":
            target.attr["Tshape"].type = INT32
        elif op == "Sum":
            target.attr["Tidx"].type = INT32
            target.attr["keep_dims"].b = attrs["keep_dims"]
        elif op == "MatMul":
            target.attr["transpose_a"].b = target.attr["transpose_b"].b = False
        elif op == "BatchMatMulV2":
            target.attr["adj_x"].b = target.attr["adj_y"].b = False
        index.nodes[target.name] = target
