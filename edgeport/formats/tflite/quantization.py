"""Real values to and from a quantized .tflite tensor, with the tensor's own scale and zero point.

Shared by the LiteRT and TFLite Micro runtimes; `detail` is an interpreter's input/output detail dict.
"""

from __future__ import annotations

import numpy as np


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scales = detail["quantization_parameters"]["scales"]
    if not np.issubdtype(dtype, np.integer) or len(scales) == 0 or np.issubdtype(values.dtype, np.integer):
        return values.astype(dtype, copy=False)
    zero_points = detail["quantization_parameters"]["zero_points"]
    info = np.iinfo(dtype)
    quantized = np.round(values / scales[0] + zero_points[0])
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scales = detail["quantization_parameters"]["scales"]
    if not np.issubdtype(values.dtype, np.integer) or len(scales) == 0:
        return values
    zero_points = detail["quantization_parameters"]["zero_points"]
    return ((values.astype(np.float32) - zero_points[0]) * scales[0]).astype(np.float32)
