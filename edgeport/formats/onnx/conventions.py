"""What an edgeport .onnx file says beyond the graph, and what loading it needs.

`INPUT_PERMUTATIONS_KEY`: model metadata (JSON, input name -> permutation) naming inputs the converter made
NCHW; a runtime transposes signature-shaped (NHWC) feeds by it. `OUTPUT_PERMUTATIONS_KEY`: the same for outputs,
read by a standalone check to lay the reference out as the artifact does. `register_custom_ops`: onnxruntime-extensions'
ops (domain ai.onnx.contrib), which `allow_custom_ops` conversions may use, for the converter's offline
optimizer and the runtime's sessions alike.

Standard ONNX: nodes and opset imports of the default domain and `ai.onnx.ml` only (`STANDARD_DOMAINS`), what
TensorRT, OpenVINO, ONNX Runtime Web and every other ONNX runtime load. `domain_ops` counts the ops outside it
(`com.microsoft` FusedConv, QLinearSoftmax, DynamicQuantizeMatMul: ONNX Runtime's own contrib ops), subgraphs
included.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterator

INPUT_PERMUTATIONS_KEY = "edgeport.input_permutations"
OUTPUT_PERMUTATIONS_KEY = "edgeport.output_permutations"  # outputs the converter made NCHW: (signature -> artifact)
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ORT_DOMAIN = "com.microsoft"


def register_custom_ops(options) -> bool:
    """Register onnxruntime-extensions' ops (domain ai.onnx.contrib) when that package is installed."""
    if importlib.util.find_spec("onnxruntime_extensions") is None:
        return False
    from onnxruntime_extensions import get_library_path

    options.register_custom_ops_library(get_library_path())
    return True


def all_nodes(graph) -> Iterator:
    """Every node of `graph` and of its subgraphs (If, Loop, Scan bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from all_nodes(subgraph)


def domain_ops(model) -> Counter[str]:
    """{"<domain>.<op>": count} of the nodes outside the standard domains (empty for standard ONNX)."""
    return Counter(
        f"{node.domain}.{node.op_type}" for node in all_nodes(model.graph) if node.domain not in STANDARD_DOMAINS
    )


def used_domains(model) -> set[str]:
    return {"" if node.domain == "ai.onnx" else node.domain for node in all_nodes(model.graph)}


def nonstandard_imports(model) -> list[str]:
    """Opset imports outside the standard domains, sorted."""
    return sorted({o.domain for o in model.opset_import} - STANDARD_DOMAINS)
