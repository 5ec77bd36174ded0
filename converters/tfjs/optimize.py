"""The graph edgeport writes for TF.js: the frozen signature graph, optimized and fused for TF.js.

With `optimize`: Grappler simplifies (constant folding, arithmetic simplification, dependency and debug
stripping), per-channel scale/shift chains are folded into weights, Grappler's remapper fuses
Conv2D/MatMul + BiasAdd + activation, depthwise convolutions are fused the TF.js way, and any fusion TF.js
cannot run is split again. Either way debug ops are stripped and ops TF.js lacks are rewritten (rewrite_ops.py;
lower_einsum.py: the wasm backend has no Einsum kernel; grouped_conv.py: TF.js has no grouped Conv2D), and
loop bodies write TensorList items that outlive the body (rewrite_ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.converters.tfjs.fold_affine import fold_channel_affine
from edgeport.converters.tfjs.fused_ops import (
    FUSED_OPS,
    bias_before_activations,
    fuse_depthwise,
    undo_unsupported_fusions,
)
from edgeport.converters.tfjs.graph_edit import drop_unused_constants, node_name
from edgeport.converters.tfjs.grouped_conv import split_grouped_convolutions
from edgeport.converters.tfjs.hash_tables import TableContents, materialize_tables
from edgeport.converters.tfjs.lower_einsum import lower_einsums
from edgeport.converters.tfjs.rewrite_ops import rewrite_missing_ops, write_loop_outputs_to_lists
from edgeport.converters.tfjs.strip import strip_bookkeeping_attrs, strip_debug_ops
from edgeport.converters.tfjs.transposed_conv3d import lower_transposed_conv3d
from edgeport.formats.tfjs.ops import RuntimeOps
from edgeport.model.grappler import REMAP, SIMPLIFY, run_grappler


@dataclass(frozen=True)
class PreparedGraph:
    graph_def: Any  # GraphDef with its function library
    input_tensors: dict[str, str]  # signature input name -> tensor name
    output_tensors: dict[str, str]
    tables: tuple[TableContents, ...] = ()  # hash tables the model initializer must fill
    folded_chains: int = 0
    undone_fusions: tuple[str, ...] = ()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for nodes in [self.graph_def.node, *(f.node_def for f in self.graph_def.library.function)]:
            for node in nodes:
                counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items()))

    def fused_counts(self) -> dict[str, int]:
        return {op: count for op, count in self.op_counts().items() if op in FUSED_OPS}


def prepare_graph(model, *, optimize: bool, runtime: RuntimeOps) -> PreparedGraph:
    """`model` is the run's LoadedModel: its frozen graph is reused (copied), never recomputed."""
    from tensorflow.core.framework import graph_pb2

    frozen = model.frozen
    graph_def = graph_pb2.GraphDef()
    graph_def.CopyFrom(frozen.graph_def)
    tables = materialize_tables(graph_def, model)
    inputs = {node_name(t) for t in frozen.input_tensors.values()}
    outputs = {node_name(t) for t in frozen.output_tensors.values()}
    protected = inputs | outputs
    strip_debug_ops(graph_def)
    rewrite_missing_ops(graph_def, runtime.ops)
    lower_einsums(graph_def, protected)
    split_grouped_convolutions(graph_def)
    if "Conv3DBackpropInputV2" not in runtime.ops:
        lower_transposed_conv3d(graph_def)
    folded, undone = 0, []
    if optimize:
        weights = [ref.node for ref in frozen.references]  # a large model's, kept by reference
        graph_def = run_grappler(graph_def, fetches=sorted(outputs), optimizers=SIMPLIFY, hidden_shapes=weights)
        _restore_missing(graph_def, frozen.graph_def, inputs)
        folded = fold_channel_affine(graph_def, protected)
        bias_before_activations(graph_def, protected, runtime.fused_activations)
        graph_def = run_grappler(
            graph_def, fetches=sorted(outputs), optimizers=REMAP, on_cpu=True, hidden_shapes=weights
        )
        _restore_missing(graph_def, frozen.graph_def, inputs)
        fuse_depthwise(graph_def, protected, runtime.fused_activations)
        undone = undo_unsupported_fusions(graph_def, protected, runtime.fused_activations)
        drop_unused_constants(graph_def, protected)
    write_loop_outputs_to_lists(graph_def)
    strip_bookkeeping_attrs(graph_def)
    return PreparedGraph(
        graph_def=graph_def,
        input_tensors=dict(frozen.input_tensors),
        output_tensors=dict(frozen.output_tensors),
        tables=tables,
        folded_chains=folded,
        undone_fusions=tuple(undone),
    )


def _restore_missing(graph_def, original, names: set[str]) -> None:
    """Grappler prunes inputs no output depends on; the signature still names them, so keep them."""
    present = {node.name for node in graph_def.node}
    for node in original.node:
        if node.name in names and node.name not in present:
            graph_def.node.add().CopyFrom(node)
