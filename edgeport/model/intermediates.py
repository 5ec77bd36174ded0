"""Reference intermediates: every layer output of the shared frozen graph, on a few check samples.

Runs in the model service (TensorFlow). The frozen GraphDef is imported into a tf.Graph and one session
fetches the output of every op of interest (convolutions, matmuls, adds, activations, pools...) whose value is
a float tensor that depends on an input (constants folded by a converter are not layers). For attribution
each layer also lists its nearest layer ancestors (through Identity, Reshape and other non-layer ops).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.data import Feeds

# Ops whose output is a layer's output: what a converter keeps (or fuses) and a runtime computes.
LAYER_OPS = frozenset(
    {
        "Conv2D",
        "Conv3D",
        "DepthwiseConv2dNative",
        "Conv2DBackpropInput",
        "MatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "BiasAdd",
        "Add",
        "AddV2",
        "Sub",
        "Mul",
        "RealDiv",
        "Relu",
        "Relu6",
        "Elu",
        "Selu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
        "Softplus",
        "Gelu",
        "MaxPool",
        "AvgPool",
        "Mean",
        "Sum",
        "Max",
        "FusedBatchNorm",
        "FusedBatchNormV3",
        "ConcatV2",
        "Pad",
        "ResizeBilinear",
        "ResizeNearestNeighbor",
        "Rsqrt",
        "Sqrt",
        "Square",
        "SquaredDifference",
        "Maximum",
        "Minimum",
        "Erf",
    }
)
MAX_LAYERS = 2000  # a cap on fetched tensors (memory: layers x samples x tensor size)


@dataclass(frozen=True)
class LayerInfo:
    name: str  # the TF node name ("model/conv/Conv2D"); its tensor is name + ":0"
    op: str
    depth: int  # topological position among the layers
    inputs: tuple[str, ...]  # nearest layer ancestors ("" = a model input)


@dataclass(frozen=True)
class LayerReference:
    """The SavedModel's intermediate tensors on `values` samples, in topological order."""

    layers: tuple[LayerInfo, ...]
    values: list[dict[str, np.ndarray]]  # per sample: layer name -> its output (the sample's full batch)
    aliases: dict[str, str] = field(default_factory=dict)  # signature output name -> the layer that computes it
    notes: tuple[str, ...] = ()


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def layer_graph(graph_def) -> tuple[list[Any], dict[str, Any]]:
    """(nodes in topological order, name -> node) of the top-level graph."""
    nodes = {node.name: node for node in graph_def.node}
    order: list[Any] = []
    seen: set[str] = set()
    for root in graph_def.node:
        stack = [(root.name, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(nodes[name])
                continue
            if name in seen or name not in nodes:
                continue
            seen.add(name)
            stack.append((name, True))
            for tensor in reversed(nodes[name].input):
                if not tensor.startswith("^") and _node_name(tensor) not in seen:
                    stack.append((_node_name(tensor), False))
    return order, nodes


def select_layers(graph_def, input_tensors: dict[str, str], output_tensors: dict[str, str]):
    """The layers of a frozen graph: (LayerInfo list, aliases {signature output -> layer})."""
    order, nodes = layer_graph(graph_def)
    inputs = {_node_name(t) for t in input_tensors.values()}
    live: set[str] = set(inputs)  # nodes depending on a model input
    nearest: dict[str, tuple[str, ...]] = dict.fromkeys(inputs, ("",))
    layers: list[LayerInfo] = []
    for node in order:
        sources = [_node_name(t) for t in node.input if not t.startswith("^")]
        if node.name not in inputs and any(s in live for s in sources):
            live.add(node.name)
            ancestors = tuple(dict.fromkeys(a for s in sources if s in live for a in nearest.get(s, ())))
            dtype = node.attr["T"].type if "T" in node.attr else 1
            if node.op in LAYER_OPS and dtype in (1, 19, 14):  # DT_FLOAT, DT_HALF, DT_BFLOAT16
                layers.append(LayerInfo(node.name, node.op, len(layers), ancestors))
                nearest[node.name] = (node.name,)
            else:
                nearest[node.name] = ancestors
    aliases = {}
    for output, tensor in output_tensors.items():
        found = nearest.get(_node_name(tensor), ())
        if len(found) == 1 and found[0]:
            aliases[output] = found[0]
    return layers[:MAX_LAYERS], aliases


def reference_intermediates(frozen, feeds: Sequence[Feeds]) -> LayerReference:
    """Every layer's output on `feeds`, from the frozen graph (one session, every layer fetched at once)."""
    from edgeport.model.tf_quiet import import_tensorflow
    from edgeport.model.weight_references import reference_feeds

    tf = import_tensorflow()
    layers, aliases = select_layers(frozen.graph_def, frozen.input_tensors, frozen.output_tensors)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph_def, name="")
    fetchable = [layer for layer in layers if graph.get_operation_by_name(layer.name).outputs]
    fetches = [graph.get_tensor_by_name(layer.name + ":0") for layer in fetchable]
    weights = reference_feeds(frozen.references)  # a large model's weights kept by reference
    values: list[dict[str, np.ndarray]] = []
    with tf.compat.v1.Session(graph=graph) as session:
        for feed in feeds:
            feed_dict = {graph.get_tensor_by_name(frozen.input_tensors[name]): value for name, value in feed.items()}
            feed_dict.update({graph.get_tensor_by_name(tensor): value for tensor, value in weights.items()})
            got = session.run(fetches, feed_dict=feed_dict)
            values.append({layer.name: np.asarray(v) for layer, v in zip(fetchable, got, strict=True)})
    kept = {layer.name for layer in fetchable}
    return LayerReference(
        layers=tuple(layer for layer in layers if layer.name in kept),
        values=values,
        aliases={k: v for k, v in aliases.items() if v in kept},
        notes=(f"layers capped at {MAX_LAYERS}",) if len(layers) >= MAX_LAYERS else (),
    )
