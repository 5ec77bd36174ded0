"""Constants out of the graph, into TF.js weight entries and binary shards.

Every Const node (main graph and function bodies) becomes a manifest entry named like its node: the TF.js
executor looks constants up by node name in one weight map shared by the graph and its functions, so
constants inside function bodies are renamed to names unique across the whole model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from edgeport.converters.tfjs.quantize import quantize
from edgeport.model.graph_rewrites import unique_name

SHARD_PREFIX = "group1-shard"
TO_INT32 = ("int32", "int64", "int16", "int8", "uint8", "uint16", "uint32", "uint64")
TO_FLOAT32 = ("float16", "float64", "bfloat16")


@dataclass(frozen=True)
class Weight:
    name: str
    dtype: str  # the manifest dtype: float32, int32, bool, string, complex64
    shape: tuple[int, ...]
    data: bytes
    quantization: dict | None = None

    def manifest_entry(self) -> dict:
        entry: dict[str, object] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantization:
            entry["quantization"] = self.quantization
        return entry


@dataclass(frozen=True)
class EncodedWeights:
    weights: tuple[Weight, ...]
    warnings: tuple[str, ...]
    quantized: int  # how many float tensors were stored compressed


def take_constants(graph_def) -> list[tuple[str, np.ndarray]]:
    """Remove every Const's value from the graph and return (weight name, value), in graph order."""
    from tensorflow.python.framework import tensor_util

    taken = []
    used = {node.name for node in graph_def.node}
    for node in graph_def.node:
        if node.op == "Const":
            taken.append((node.name, tensor_util.MakeNdarray(node.attr["value"].tensor)))
            del node.attr["value"]
    for function in graph_def.library.function:
        renames = {}
        for node in function.node_def:
            if node.op != "Const":
                continue
            unique = unique_name(f"{function.signature.name}/{node.name}", used)
            renames[node.name] = unique
            taken.append((unique, tensor_util.MakeNdarray(node.attr["value"].tensor)))
            del node.attr["value"]
            node.name = unique
        _rename_references(function, renames)
    return taken


def _rename_references(function, renames: dict[str, str]) -> None:
    """Function bodies name inputs `node:output:index`, `node` or `^node`."""
    if not renames:
        return

    def renamed(reference: str) -> str:
        control = reference.startswith("^")
        head, *rest = reference.lstrip("^").split(":")
        if head not in renames:
            return reference
        return ("^" if control else "") + ":".join([renames[head], *rest])

    for node in function.node_def:
        new_inputs = [renamed(name) for name in node.input]
        del node.input[:]
        node.input.extend(new_inputs)
    for key in list(function.ret):
        function.ret[key] = renamed(function.ret[key])


def encode_weights(constants: list[tuple[str, np.ndarray]], *, compress: str | None) -> EncodedWeights:
    weights, warnings, quantized = [], [], 0
    for name, value in constants:
        weight, warning = _encode(name, value, compress)
        weights.append(weight)
        quantized += weight.quantization is not None
        if warning:
            warnings.append(warning)
    return EncodedWeights(tuple(weights), tuple(warnings), quantized)


def _encode(name: str, value: np.ndarray, compress: str | None) -> tuple[Weight, str | None]:
    shape = tuple(int(d) for d in value.shape)
    kind = value.dtype
    if kind.kind in ("O", "S", "U"):
        return Weight(name, "string", shape, _encode_strings(value)), None
    if kind == np.bool_:
        return Weight(name, "bool", shape, value.astype(np.uint8).tobytes()), None
    if kind.name in TO_INT32:
        as_int32 = value.astype(np.int32)
        warning = None
        if value.size and (value.min() < np.iinfo(np.int32).min or value.max() > np.iinfo(np.int32).max):
            warning = f"constant {name} ({kind.name}) has values outside int32; TF.js stores int32"
        return Weight(name, "int32", shape, as_int32.astype("<i4").tobytes()), warning
    if kind.kind == "c":
        pairs = np.stack([value.real, value.imag], axis=-1).astype("<f4")
        return Weight(name, "complex64", shape, pairs.tobytes()), None
    if kind.name in TO_FLOAT32 or kind == np.float32 or str(kind) == "bfloat16":
        values = value.astype(np.float32)
        if compress:
            packed = quantize(values, compress)
            if packed is not None:
                return Weight(name, "float32", shape, packed.data, packed.quantization), None
            return (
                Weight(name, "float32", shape, values.astype("<f4").tobytes()),
                f"constant {name} kept in float32: its values do not fit {compress}",
            )
        return Weight(name, "float32", shape, values.astype("<f4").tobytes()), None
    raise ValueError(f"constant {name} has dtype {kind.name}, which TF.js weights cannot hold")


def _encode_strings(value: np.ndarray) -> bytes:
    parts = []
    for item in value.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def shard(weights: tuple[Weight, ...], shard_size_bytes: int) -> tuple[list[dict], list[tuple[str, bytes]]]:
    """One weight group split into files of at most `shard_size_bytes`; returns (manifest, [(file, bytes)])."""
    blob = b"".join(weight.data for weight in weights)
    pieces = [blob[i : i + shard_size_bytes] for i in range(0, len(blob), shard_size_bytes)] or [b""]
    files = [(f"{SHARD_PREFIX}{i + 1}of{len(pieces)}.bin", piece) for i, piece in enumerate(pieces)]
    manifest = [{"paths": [name for name, _ in files], "weights": [w.manifest_entry() for w in weights]}]
    return manifest, files
