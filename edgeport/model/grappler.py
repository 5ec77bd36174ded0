"""TensorFlow's own graph optimizer (Grappler's meta-optimizer) run over a frozen GraphDef.

Shared: the TF.js emitter simplifies and fuses with it; the v1-session freeze inlines function calls with it
(`INLINE`, aggressive function inlining, as convert_variables_to_constants_v2 does, without re-registering the
graph's functions with TensorFlow).
"""

from __future__ import annotations

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


def run_grappler(
    graph_def, *, fetches: list[str], optimizers: tuple[str, ...], on_cpu: bool = False, aggressive: bool = False
):
    """One meta-optimizer run with exactly `optimizers`; fetch nodes and their names are preserved.

    `on_cpu` places every main-graph node on the CPU first: the remapper only fuses ops placed on a device
    it has kernels for. Placement is cleared again afterwards.
    """
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
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
    return optimized
