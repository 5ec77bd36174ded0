"""Graph rewrites for onnxruntime that tf2onnx does not make and onnxruntime's own optimizer cannot.

Spatial means as GlobalAveragePool: Keras' GlobalAveragePooling2D (squeeze-and-excitation blocks, heads)
reaches ONNX as ReduceMean over H,W, often followed by a Reshape to [N, C, 1, 1]. onnxruntime's CPU layout
optimizer (NCHWc, applied at load) keeps GlobalAveragePool in its blocked layout but not ReduceMean or
Reshape, so every such block pays two layout reorders. The rewrite is exact (same arithmetic).
"""

from __future__ import annotations

SPATIAL_AXES = [2, 3]


def spatial_means_to_global_pool(model) -> int:
    """Rewrite in place; return how many ReduceMean nodes became GlobalAveragePool."""
    from onnx import helper, numpy_helper, shape_inference

    graph = model.graph
    try:
        ranks = _ranks(shape_inference.infer_shapes(model, data_prop=False).graph)
    except ValueError:  # a model past protobuf's 2 GB cannot be shape-inferred in memory: leave it as it is
        return 0
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {value.name for value in graph.output}
    replaced, dropped = {}, set()
    for node in graph.node:
        if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
            continue
        if _axes(node, constants) != SPATIAL_AXES:
            continue
        keepdims = _attribute(node, "keepdims", 1)
        output = node.output[0]
        if keepdims:
            replaced[id(node)] = helper.make_node("GlobalAveragePool", [node.input[0]], [output], name=node.name)
            continue
        users = consumers.get(output, [])
        if output in graph_outputs or len(users) != 1 or users[0].op_type != "Reshape":
            continue
        reshape = users[0]
        shape = constants.get(reshape.input[1])
        if shape is None or len(shape) != 4 or shape[0] not in (-1, 1) or list(shape[2:]) != [1, 1]:
            continue
        replaced[id(node)] = helper.make_node("GlobalAveragePool", [node.input[0]], [reshape.output[0]], name=node.name)
        dropped.add(id(reshape))
    if not replaced:
        return 0
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def _ranks(graph) -> dict[str, int]:
    ranks = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _attribute(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _axes(node, constants) -> list[int] | None:
    """The reduced axes of a rank-4 ReduceMean, made non-negative."""
    if len(node.input) > 1 and node.input[1]:  # opset 18+: axes is an input
        axes = constants.get(node.input[1])
        return None if axes is None else sorted(int(a) % 4 for a in axes.ravel())
    axes = _attribute(node, "axes", None)
    return None if axes is None else sorted(int(a) % 4 for a in axes)
