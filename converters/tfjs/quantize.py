"""Weight compression as the TF.js weights manifest defines it: float16, or affine uint8 / uint16.

TF.js restores an affine-quantized value as `q * scale + min` (tfjs-core io_utils.decodeWeight). The range
is nudged so that 0.0 maps to an integer code and stays exact (zero padding, ReLU outputs, sparse weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT16_MAX = 65504.0
AFFINE_CODES = {"uint8": np.uint8, "uint16": np.uint16}


@dataclass(frozen=True)
class Quantized:
    data: bytes
    quantization: dict  # the manifest's `quantization` entry


def quantize(values: np.ndarray, dtype: str) -> Quantized | None:
    """`values` (float32) in `dtype` ("float16", "uint8", "uint16"); None when it cannot be stored so."""
    if dtype == "float16":
        return _float16(values)
    return _affine(values, AFFINE_CODES[dtype], dtype)


def _float16(values: np.ndarray) -> Quantized | None:
    finite = values[np.isfinite(values)]
    if finite.size and np.abs(finite).max() > FLOAT16_MAX:
        return None
    return Quantized(values.astype("<f2").tobytes(), {"dtype": "float16"})


def _affine(values: np.ndarray, code_type, dtype: str) -> Quantized | None:
    if values.size and not np.isfinite(values).all():
        return None
    levels = np.iinfo(code_type).max
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if high == low:
        scale = 1.0
        codes = np.zeros(values.shape, code_type)
    else:
        scale = (high - low) / levels
        if low < 0.0 < high:
            low = -round(-low / scale) * scale  # zero becomes the integer code round(-low / scale)
        codes = np.clip(np.round((values.astype(np.float64) - low) / scale), 0, levels).astype(code_type)
    return Quantized(
        codes.astype(np.dtype(code_type).newbyteorder("<")).tobytes(), {"dtype": dtype, "scale": scale, "min": low}
    )


def dequantize(data: bytes, quantization: dict, shape) -> np.ndarray:
    """What TF.js will compute from stored bytes (used by tests and to report the error)."""
    dtype = quantization["dtype"]
    if dtype == "float16":
        return np.frombuffer(data, "<f2").astype(np.float32).reshape(shape)
    codes = np.frombuffer(data, np.dtype(AFFINE_CODES[dtype]).newbyteorder("<"))
    return (codes * quantization["scale"] + quantization["min"]).astype(np.float32).reshape(shape)
