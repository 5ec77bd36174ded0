"""TensorFlow's own graph optimizer (Grappler's meta-optimizer) run over a frozen GraphDef.

Shared: the TF.js emitter simplifies and fuses with it; the v1-session freeze inlines function calls with it
(`INLINE`, aggressive function inlining, as convert_variables_to_constants_v2 does, without re-registering the
graph's functions with TensorFlow).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

CPU_DEVICE = "/device:CPU:0"
SIMPLIFY = (
    "pruning",
    "debug_stripper",
    "constfold",
    "arithmetic",
    "dependency",
    "constfold",
    "arithmetic",
    "dependency",
    "pruning",
)
REMAP = ("remap",)  # alone: constant folding would drop zero biases the fusions need
INLINE = ("function",)
SHAPE_ATTRS = ("shape", "_output_shapes")


def run_grappler(
    graph_def,
    *,
    fetches: list[str],
    optimizers: tuple[str, ...],
    on_cpu: bool = False,
    aggressive: bool = False,
    hidden_shapes: Collection[str] = (),
):
    """One meta-optimizer run with exactly `optimizers`; fetch nodes and their names are preserved.

    `on_cpu` places every main-graph node on the CPU first: the remapper only fuses ops placed on a device
    it has kernels for. Placement is cleared again afterwards. `hidden_shapes`: placeholders run with their
    shapes hidden (hide_placeholder_shapes).
    """
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
    shapes = hide_placeholder_shapes(meta.graph_def, hidden_shapes)
    if on_cpu:
        for node in meta.graph_def.node:
            node.device = CPU_DEVICE
    fetch = meta.collection_def["train_op"].node_list.value
    fetch.extend(fetches)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers[:] = list(optimizers)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    rewrite.min_graph_nodes = -1  # optimize small graphs too
    if aggressive:  # inline calls of stateful functions too (a frozen graph's calls are all of them)
        rewrite.function_optimization = rewriter_config_pb2.RewriterConfig.AGGRESSIVE
    optimized = tf_optimizer.OptimizeGraph(config, meta)
    for node in optimized.node:
        node.device = ""
    restore_placeholder_shapes(optimized, shapes)
    return optimized


def hide_placeholder_shapes(graph_def, names: Collection[str]) -> dict[str, Any]:
    """Give the placeholders `names` an unknown shape; returns their shape attrs, for restore_placeholder_shapes.

    Grappler's item builder feeds every Placeholder of a known shape a tensor of that shape: a large model's
    weights kept by reference (model/weight_references.py) would each be allocated once more (1.15 GB for a
    1.1 GB model's 491 KB graph), for optimizers that never read them.
    """
    saved: dict[str, Any] = {}
    if not names:
        return saved
    wanted = set(names)
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name in wanted:
            saved[node.name] = {}
            for key in SHAPE_ATTRS:
                if key in node.attr:
                    saved[node.name][key] = type(node.attr[key])()
                    saved[node.name][key].CopyFrom(node.attr[key])
                    del node.attr[key]
            node.attr["shape"].shape.unknown_rank = True
    return saved


def restore_placeholder_shapes(graph_def, saved: dict[str, Any]) -> None:
    for node in graph_def.node:
        if node.name in saved:
            for key in SHAPE_ATTRS:
                if key in node.attr:
                    del node.attr[key]
            for key, value in saved[node.name].items():
                node.attr[key].CopyFrom(value)
