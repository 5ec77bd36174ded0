"""3-D transposed convolutions, which TF.js's graph executor lacks (no Conv3DBackpropInputV2), as ops it has.

Conv3DBackpropInputV2(input_sizes, filter [kd, kh, kw, I, O], dy [N, D, H, W, O]) is the gradient of a
strided Conv3D; written as a direct convolution:

  1. zeros inserted between dy's elements, s - 1 after each along each spatial axis of stride s: per axis,
     Reshape to [.., D, 1, ..], Pad the new axis to s, Reshape to [.., D·s, ..], Slice to (D - 1)·s + 1;
  2. Pad k - 1 - p before and Do + k - 1 - (D - 1)·s - 1 - (k - 1 - p) after, p being the forward
     convolution's padding before (0 for VALID; SAME's floor(total / 2)), Do the output size;
  3. Conv3D, stride 1, VALID, with the filter reversed on its spatial axes and its I/O channels swapped
     (ReverseV2 + Transpose, folded by Grappler when the filter is a constant).

Exact (the same products, summed in another order). NDHWC, dilations 1 and static spatial sizes of dy and of
the output only; anything else is left as it is (TF.js then names the op it cannot run).
"""

from __future__ import annotations

from edgeport.converters.tfjs.graph_edit import static_shapes
from edgeport.model.graph_rewrites import unique_name

OP = "Conv3DBackpropInputV2"


def lower_transposed_conv3d(graph_def) -> int:
    """Rewrite every Conv3DBackpropInputV2 of the top-level graph it can, in place; returns how many."""
    candidates = [
        node
        for node in graph_def.node
        if node.op == OP
        and node.attr["data_format"].s in (b"", b"NDHWC")
        and all(d == 1 for d in node.attr["dilations"].list.i)
    ]
    if not candidates:
        return 0
    shapes = static_shapes(graph_def, {node.input[2] for node in candidates} | {node.name for node in candidates})
    taken = {node.name for node in graph_def.node}
    lowered = 0
    for node in candidates:
        dy, out = shapes.get(node.input[2]), shapes.get(node.name)
        if not dy or not out or len(dy) != 5 or len(out) != 5 or None in dy[1:] or None in out[1:4]:
            continue
        _lower(graph_def, node, dy, out, taken)
        lowered += 1
    return lowered


def _lower(graph_def, node, dy: list, out: list, taken: set[str]) -> None:
    import numpy as np
    from tensorflow.python.framework import tensor_util

    dtype = node.attr["T"].type
    strides = list(node.attr["strides"].list.i)[1:4]
    same = node.attr["padding"].s == b"SAME"
    control = [name for name in node.input if name.startswith("^")]
    _, weights, source = [name for name in node.input if not name.startswith("^")][:3]

    def add(suffix, op, inputs, **attrs):
        new = graph_def.node.add(name=unique_name(f"{node.name}/{suffix}", taken), op=op, device=node.device)
        new.input.extend([*inputs, *(control if not inputs else [])])
        for key, value in attrs.items():
            if key in ("T", "Tshape", "Tpaddings", "Index", "Tidx", "Tperm", "dtype"):
                new.attr[key].type = value
            elif isinstance(value, list):
                new.attr[key].list.i.extend(value)
            elif isinstance(value, bytes):
                new.attr[key].s = value
            else:
                new.attr[key].tensor.CopyFrom(value)
        return new.name

    def const(suffix, value):
        tensor = tensor_util.make_tensor_proto(np.asarray(value, dtype=np.int32))
        return add(suffix, "Const", [], value=tensor, dtype=tensor.dtype)

    sizes = list(dy[1:4])  # the spatial sizes as zeros are inserted
    channels = dy[4]
    x = source
    for axis, stride in enumerate(strides):
        if stride == 1:
            continue
        expanded = [-1, *sizes, channels]
        expanded.insert(axis + 2, 1)
        x = add(f"spread{axis}", "Reshape", [x, const(f"spread{axis}_shape", expanded)], T=dtype, Tshape=3)
        paddings = np.zeros((6, 2), np.int32)
        paddings[axis + 2, 1] = stride - 1
        x = add(f"zeros{axis}", "Pad", [x, const(f"zeros{axis}_paddings", paddings)], T=dtype, Tpaddings=3)
        merged = [-1, *sizes, channels]
        merged[axis + 1] = sizes[axis] * stride
        x = add(f"merge{axis}", "Reshape", [x, const(f"merge{axis}_shape", merged)], T=dtype, Tshape=3)
        sizes[axis] = (sizes[axis] - 1) * stride + 1
        size = [-1, *sizes, -1]
        x = add(
            f"trim{axis}",
            "Slice",
            [x, const(f"trim{axis}_begin", [0] * 5), const(f"trim{axis}_size", size)],
            T=dtype,
            Index=3,
        )
    kernel = _kernel_sizes(graph_def, weights)
    paddings = np.zeros((5, 2), np.int32)
    for axis in range(3):
        k, stride, length, target = kernel[axis], strides[axis], sizes[axis], out[axis + 1]
        before = 0
        if same:
            forward = (dy[axis + 1] - 1) * stride + k - target
            before = max(forward, 0) // 2
        paddings[axis + 1] = (k - 1 - before, target + k - 1 - length - (k - 1 - before))
    x = add("pad", "Pad", [x, const("pad_paddings", paddings)], T=dtype, Tpaddings=3)
    flipped = add("filter_flipped", "ReverseV2", [weights, const("filter_axes", [0, 1, 2])], T=dtype, Tidx=3)
    swapped = add("filter_swapped", "Transpose", [flipped, const("filter_perm", [0, 1, 2, 4, 3])], T=dtype, Tperm=3)
    node.op = "Conv3D"
    del node.input[:]
    node.input.extend([x, swapped, *control])
    for key in list(node.attr):
        if key not in ("T",):
            del node.attr[key]
    node.attr["strides"].list.i.extend([1, 1, 1, 1, 1])
    node.attr["dilations"].list.i.extend([1, 1, 1, 1, 1])
    node.attr["padding"].s = b"VALID"
    node.attr["data_format"].s = b"NDHWC"


def _kernel_sizes(graph_def, weights: str) -> list[int]:
    shape = static_shapes(graph_def, {weights}).get(weights)
    if not shape or None in shape[:3]:
        raise ValueError(f"{OP}: the filter {weights} has no static spatial size")
    return list(shape[:3])


__all__ = ["lower_transposed_conv3d"]
