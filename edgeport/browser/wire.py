"""Tensors to and from a browser page: base64 of their raw little-endian bytes, {"dtype", "shape", "data"}.

Exact bytes, never number lists. `dtype` is numpy's name (float32, int64, uint8, bool, ...); each page maps it
to its runtime's typed array. TF.js (targets/tfjs/wire.py) casts to its own dtypes first, then encodes alike.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from edgeport.contracts import Feeds


def encode_record(array: np.ndarray, dtype: str | None = None) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    return {
        "dtype": dtype or array.dtype.name,
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def decode_record(record: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype("bool" if record["dtype"] == "bool" else record["dtype"]).newbyteorder("<")
    array = np.frombuffer(base64.b64decode(record["data"]), dtype=dtype)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(record["shape"])


def encode_feeds(samples: list[Feeds]) -> list[dict[str, dict[str, Any]]]:
    return [{name: encode_record(np.asarray(value)) for name, value in feed.items()} for feed in samples]


def decode_outputs(records: list[dict[str, dict[str, Any]]]) -> list[Feeds]:
    return [{name: decode_record(t) for name, t in record.items()} for record in records]
