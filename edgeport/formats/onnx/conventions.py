"""What an edgeport .onnx file says beyond the graph, and what loading it needs.

`INPUT_PERMUTATIONS_KEY`: model metadata (JSON, input name -> permutation) naming inputs the converter made
NCHW; a runtime transposes signature-shaped (NHWC) feeds by it. `OUTPUT_PERMUTATIONS_KEY`: the same for outputs,
read by a standalone check to lay the reference out as the artifact does. `register_custom_ops`: onnxruntime-extensions'
ops (domain ai.onnx.contrib), which `allow_custom_ops` conversions may use, for the converter's offline
optimizer and the runtime's sessions alike.
"""

from __future__ import annotations

import importlib.util

INPUT_PERMUTATIONS_KEY = "edgeport.input_permutations"
OUTPUT_PERMUTATIONS_KEY = "edgeport.output_permutations"  # outputs the converter made NCHW: (signature -> artifact)


def register_custom_ops(options) -> bool:
    """Register onnxruntime-extensions' ops (domain ai.onnx.contrib) when that package is installed."""
    if importlib.util.find_spec("onnxruntime_extensions") is None:
        return False
    from onnxruntime_extensions import get_library_path

    options.register_custom_ops_library(get_library_path())
    return True
