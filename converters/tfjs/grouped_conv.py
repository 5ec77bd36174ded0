"""Grouped convolutions, which TensorFlow's Conv2D runs and TF.js's conv2d does not, as ops TF.js has.

A Conv2D whose filter has fewer input channels than its input (filter [kh, kw, C / G, O] on C channels: G
groups, as Keras 3 and XLA-compiled depthwise convolutions emit) fails in TF.js with "depth of input must
match input depth for filter". With one input channel per group it is a depthwise convolution: the filter
reshaped to [kh, kw, C, O / C] (group g's outputs are channels g*O/C .. (g+1)*O/C - 1, the depthwise order).
Otherwise the input is split into G channel groups, each convolved with its slice of the filter, and the
results concatenated. NHWC only (the frozen graph's layout); the input's channel count must be static.
"""

from __future__ import annotations

from edgeport.converters.tfjs.graph_edit import node_name, static_shapes
from edgeport.model.graph_rewrites import unique_name

_COPIED_ATTRS = ("T", "strides", "padding", "dilations", "explicit_paddings", "data_format")


def split_grouped_convolutions(graph_def) -> int:
    """Rewrite every grouped NHWC Conv2D with a constant filter, in place; returns how many."""
    nodes = {node.name: node for node in graph_def.node}
    candidates = [
        node
        for node in graph_def.node
        if node.op == "Conv2D" and node.attr["data_format"].s in (b"", b"NHWC") and _filter(nodes, node) is not None
    ]
    if not candidates:
        return 0
    shapes = static_shapes(graph_def, {node.input[0] for node in candidates})
    taken = set(nodes)
    rewritten = 0
    for node in candidates:
        shape = shapes.get(node.input[0])
        weights = _filter(nodes, node)
        channels = shape[-1] if shape else None
        if weights is None or not channels or weights.shape[2] == channels or channels % weights.shape[2]:
            continue
        groups = channels // weights.shape[2]
        if weights.shape[2] == 1:
            _as_depthwise(graph_def, node, weights, channels, taken)
        else:
            _as_split(graph_def, node, weights, groups, taken)
        rewritten += 1
    return rewritten


def _filter(nodes, conv):
    from tensorflow.python.framework import tensor_util

    source = nodes.get(node_name(conv.input[1])) if len(conv.input) > 1 else None
    while source is not None and source.op == "Identity" and source.input:
        source = nodes.get(node_name(source.input[0]))
    if source is None or source.op != "Const":
        return None
    value = tensor_util.MakeNdarray(source.attr["value"].tensor)
    return value if value.ndim == 4 else None


def _const(graph_def, name: str, value, dtype: int) -> str:
    from tensorflow.python.framework import tensor_util

    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, dtype=dtype))
    return name


def _as_depthwise(graph_def, conv, weights, channels: int, taken: set[str]) -> None:
    kh, kw, _, outputs = weights.shape
    depthwise = weights.reshape(kh, kw, channels, outputs // channels)
    dtype = conv.attr["T"].type
    conv.input[1] = _const(graph_def, unique_name(f"{conv.name}/depthwise_filter", taken), depthwise, dtype)
    conv.op = "DepthwiseConv2dNative"
    for key in list(conv.attr):
        if key not in _COPIED_ATTRS:
            del conv.attr[key]


def _as_split(graph_def, conv, weights, groups: int, taken: set[str]) -> None:
    """conv N becomes N = ConcatV2(Conv2D(split_g, filter_g) for g): readers of N are unchanged."""
    dtype = conv.attr["T"].type
    per_group = weights.shape[3] // groups
    axis = _const(graph_def, unique_name(f"{conv.name}/channel_axis", taken), 3, 3)
    split = graph_def.node.add(name=unique_name(f"{conv.name}/groups", taken), op="Split")
    split.input.extend([axis, conv.input[0]])
    split.attr["T"].type = dtype
    split.attr["num_split"].i = groups
    parts = []
    for group in range(groups):
        part = graph_def.node.add(name=unique_name(f"{conv.name}/group_{group}", taken), op="Conv2D")
        piece = weights[..., group * per_group : (group + 1) * per_group]
        part.input.extend(
            [f"{split.name}:{group}", _const(graph_def, unique_name(f"{part.name}/filter", taken), piece, dtype)]
        )
        for key in _COPIED_ATTRS:
            if key in conv.attr:
                part.attr[key].CopyFrom(conv.attr[key])
        parts.append(part.name)
    control = [name for name in conv.input if name.startswith("^")]
    del conv.input[:]
    conv.input.extend([*parts, axis, *control])
    conv.op = "ConcatV2"
    conv.ClearField("attr")
    conv.attr["T"].type = dtype
    conv.attr["N"].i = groups
    conv.attr["Tidx"].type = 3
