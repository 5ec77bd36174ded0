"""How tensors cross into TF.js and back: one binary bundle file (Node) or base64 records (browser).

Bundle file, little-endian:
    8 bytes  magic b"EPTFJS1\\n"
    4 bytes  uint32 header length H
    H bytes  UTF-8 JSON header {"meta": {...}, "samples": [{name: {"dtype", "shape", "offset", "nbytes"}}]}
    padding  to a multiple of 8
    data     each tensor's raw bytes (C order) at its offset from the start of this section, 8-byte aligned

A base64 record is {"dtype", "shape", "data": base64 of the same raw bytes}; the browser page gets and
returns those inside the JSON Playwright passes. Never number lists: exact bytes, no float formatting.

String tensors cross both ways as per element a little-endian uint32 length then the raw bytes (no
decoding): string feeds (str or bytes elements) go to TF.js that way, and string outputs (string constants,
hash table values) come back that way and become object arrays of bytes, as TensorFlow returns them.

TF.js computes in float32, int32 and bool only, so feeds are cast to those here and outputs are cast back
to the dtypes the model.json signature declares (int64 outputs come back as int64).
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.contracts import Feeds
from edgeport.errors import RuntimeFailure

MAGIC = b"EPTFJS1\n"
ALIGN = 8
SIGNATURE_DTYPES = {  # model.json signature (TensorFlow DataType names) -> numpy
    "DT_FLOAT": "float32",
    "DT_HALF": "float16",
    "DT_DOUBLE": "float64",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_BOOL": "bool",
}


def to_tfjs(array: np.ndarray, name: str) -> np.ndarray:
    """The array in the dtype TF.js computes with (float32, int32, bool, string), C-contiguous."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        return _string_array(array, name)
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        return np.ascontiguousarray(array, dtype=np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return np.ascontiguousarray(array, dtype=np.int32)
    raise RuntimeFailure(
        f"input {name!r} has dtype {array.dtype}, which TF.js cannot take; "
        "TF.js graph models take float, int, bool and string inputs"
    )


def _string_array(array: np.ndarray, name: str) -> np.ndarray:
    """A string feed as an object array of bytes (str elements encoded as UTF-8)."""
    flat = np.empty(array.size, dtype=object)
    for index, element in enumerate(array.reshape(-1)):
        if isinstance(element, str):
            element = element.encode("utf-8")
        if not isinstance(element, bytes | np.bytes_):
            raise RuntimeFailure(
                f"input {name!r} mixes strings with {type(element).__name__} elements; a string input holds "
                "str or bytes only"
            )
        flat[index] = bytes(element)
    return flat.reshape(array.shape)


def tfjs_dtype(array: np.ndarray) -> str:
    if array.dtype == object:
        return "string"
    return "bool" if array.dtype == np.bool_ else str(array.dtype)


def tensor_bytes(array: np.ndarray) -> bytes:
    """The bytes that carry one (to_tfjs-converted) array: raw C-order data, or length-prefixed strings."""
    if array.dtype == object:
        return b"".join(struct.pack("<I", len(element)) + element for element in array.reshape(-1))
    return array.tobytes()


def from_tfjs(dtype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    if dtype == "string":
        return decode_strings(raw, shape)
    numpy_dtype = np.bool_ if dtype == "bool" else np.dtype(dtype)
    return np.frombuffer(raw, dtype=np.uint8 if dtype == "bool" else numpy_dtype).astype(numpy_dtype).reshape(shape)


def decode_strings(raw: bytes | memoryview, shape: list[int]) -> np.ndarray:
    """A string output as TensorFlow gives it (an object array of bytes) from its length-prefixed elements."""
    raw = bytes(raw)
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RuntimeFailure(
                "a string output from TF.js is truncated (length prefix cut off); the runner is broken"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise RuntimeFailure("a string output from TF.js is truncated (element cut off); the runner is broken")
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    count = int(np.prod(shape)) if shape else 1
    if len(elements) != count:
        raise RuntimeFailure(
            f"a string output from TF.js has {len(elements)} elements for shape {shape}; the runner is broken"
        )
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array.reshape(shape)


def write_bundle(path: Path, *, meta: dict[str, Any], samples: list[Feeds]) -> None:
    records, chunks, offset = [], [], 0
    for feed in samples:
        record = {}
        for name, value in feed.items():
            array = to_tfjs(value, name)
            raw = tensor_bytes(array)
            record[name] = {
                "dtype": tfjs_dtype(array),
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": len(raw),
            }
            padded = _pad(len(raw))
            chunks.append(raw + b"\0" * (padded - len(raw)))
            offset += padded
        records.append(record)
    header = json.dumps({"meta": meta, "samples": records}).encode("utf-8")
    preamble = MAGIC + struct.pack("<I", len(header)) + header
    with open(path, "wb") as file:
        file.write(preamble + b"\0" * (_pad(len(preamble)) - len(preamble)))
        for chunk in chunks:
            file.write(chunk)


def read_bundle(path: Path) -> tuple[dict[str, Any], list[Feeds]]:
    blob = Path(path).read_bytes()
    if blob[: len(MAGIC)] != MAGIC:
        raise RuntimeFailure(f"{path} is not an edgeport TF.js tensor bundle (bad magic); the runner is broken")
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + length].decode("utf-8"))
    data = memoryview(blob)[_pad(start + length) :]
    samples = [
        {
            name: from_tfjs(t["dtype"], t["shape"], data[t["offset"] : t["offset"] + t["nbytes"]])
            for name, t in record.items()
        }
        for record in header["samples"]
    ]
    return header["meta"], samples


def encode_base64(samples: list[Feeds]) -> list[dict[str, dict[str, Any]]]:
    encoded = []
    for feed in samples:
        record = {}
        for name, value in feed.items():
            array = to_tfjs(value, name)
            record[name] = {
                "dtype": tfjs_dtype(array),
                "shape": list(array.shape),
                "data": base64.b64encode(tensor_bytes(array)).decode("ascii"),
            }
        encoded.append(record)
    return encoded


def decode_base64(records: list[dict[str, dict[str, Any]]]) -> list[Feeds]:
    return [
        {name: from_tfjs(t["dtype"], t["shape"], base64.b64decode(t["data"])) for name, t in record.items()}
        for record in records
    ]


def restore_dtypes(outputs: list[Feeds], model_json: Path) -> list[Feeds]:
    """Cast outputs back to the dtypes the model.json signature declares (TF.js returns int32 for int64)."""
    declared = read_signature(model_json).get("outputs", {})
    wanted = {name: SIGNATURE_DTYPES.get(info.get("dtype", "")) for name, info in declared.items()}
    return [
        {
            name: value.astype(wanted[name]) if wanted.get(name) and value.dtype != wanted[name] else value
            for name, value in feed.items()
        }
        for feed in outputs
    ]


def read_model_json(model_json: Path) -> dict[str, Any]:
    """The parsed model.json (an object), or a RuntimeFailure saying to convert again."""
    try:
        document = json.loads(Path(model_json).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuntimeFailure(f"cannot read TF.js model {model_json}: {exc}; convert the model again") from None
    if not isinstance(document, dict):
        raise RuntimeFailure(f"{model_json} is not a TF.js model (not a JSON object); convert the model again")
    return document


def read_signature(model_json: Path) -> dict[str, Any]:
    signature = read_model_json(model_json).get("signature")
    if not isinstance(signature, dict):
        raise RuntimeFailure(f"{model_json} has no signature section; convert the model with edgeport's tfjs target")
    return signature


def _pad(size: int) -> int:
    return (size + ALIGN - 1) // ALIGN * ALIGN
