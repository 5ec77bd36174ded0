"""Constants out of the graph, into TF.js weight entries and binary shards.

Every Const node (main graph and function bodies) becomes a manifest entry named like its node: the TF.js
executor looks constants up by node name in one weight map shared by the graph and its functions, so
constants inside function bodies are renamed to names unique across the whole model. A large model's weights
kept by reference (model/weight_references.py) become Const nodes too, their values read from the variables.
Weights are encoded and written to the shard files one at a time, as they come (ShardWriter).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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
    data: bytes | memoryview
    quantization: dict | None = None

    def manifest_entry(self) -> dict:
        entry: dict[str, object] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantization:
            entry["quantization"] = self.quantization
        return entry


@dataclass(frozen=True)
class WrittenWeights:
    manifest: list[dict]  # the model.json weightsManifest: one group, its shard files and its entries
    files: tuple[str, ...]  # the shard files, in order
    count: int
    bytes: int
    warnings: tuple[str, ...]
    quantized: int  # how many float tensors were stored compressed


Value = Any  # a constant's value (np.ndarray), or a WeightReference (model/weight_references.py)


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


def take_references(graph_def, references) -> list[tuple[str, Value]]:
    """Placeholders standing for weights kept by reference become value-less Const nodes, like every constant
    once taken; returns (weight name, reference) for those still in the graph."""
    by_node = {ref.node: ref for ref in references}
    taken: list[tuple[str, Value]] = []
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name in by_node:
            dtype = node.attr["dtype"].type
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].type = dtype
            taken.append((node.name, by_node[node.name]))
    return taken


def write_weights(
    constants: Iterable[tuple[str, Value]], folder: Path, *, compress: str | None, shard_size_bytes: int
) -> WrittenWeights:
    """Encode each constant (compressed for the fp16/uint8/uint16 variants) and write it to the shards before
    the next is read: a large model's weights never sit in memory twice."""
    entries, warnings, quantized = [], [], 0
    with ShardWriter(folder, shard_size_bytes) as writer:
        for name, value in constants:
            if isinstance(value, np.ndarray):
                weight, warning = _encode(name, value, compress)
            elif compress is None and value.dtype == "float32":  # a reference, streamed slice by slice
                for chunk in value.chunks():
                    writer.write(_little_endian_bytes(chunk))
                weight, warning = Weight(name, "float32", tuple(value.shape), b""), None
            else:  # compressed: quantize() takes the whole tensor's range
                weight, warning = _encode(name, value.value(), compress)
            writer.write(weight.data)
            entries.append(weight.manifest_entry())
            quantized += weight.quantization is not None
            if warning:
                warnings.append(warning)
            del weight
    manifest = [{"paths": list(writer.files), "weights": entries}]
    return WrittenWeights(manifest, writer.files, len(entries), writer.total, tuple(warnings), quantized)


class ShardWriter:
    """Bytes into files of at most `shard_size_bytes`, named group1-shard{i}of{n}.bin once closed (n is known
    only then); at least one file, empty for a model without weights."""

    def __init__(self, folder: Path, shard_size_bytes: int):
        self._folder, self._size = folder, shard_size_bytes
        self._parts: list[Path] = []
        self._file: BinaryIO | None = None
        self._room = 0
        self.total = 0
        self.files: tuple[str, ...] = ()

    def __enter__(self) -> ShardWriter:
        return self

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view.nbytes:
            if self._room == 0:
                self._next_file()
            piece = view[: self._room]
            assert self._file is not None
            self._file.write(piece)
            self._room -= piece.nbytes
            self.total += piece.nbytes
            view = view[piece.nbytes :]

    def _next_file(self) -> None:
        if self._file:
            self._file.close()
        part = self._folder / f".shard-{len(self._parts) + 1}.partial"
        self._parts.append(part)
        self._file = part.open("wb")
        self._room = self._size

    def __exit__(self, kind, *rest) -> None:
        if not self._parts and kind is None:
            self._next_file()
        if self._file:
            self._file.close()
        if kind is not None:
            for part in self._parts:
                part.unlink(missing_ok=True)
            return
        names = [f"{SHARD_PREFIX}{i + 1}of{len(self._parts)}.bin" for i in range(len(self._parts))]
        for part, name in zip(self._parts, names, strict=True):
            part.replace(self._folder / name)
        self.files = tuple(names)


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
        values = value.astype(np.float32, copy=False)
        if compress:
            packed = quantize(values, compress)
            if packed is not None:
                return Weight(name, "float32", shape, packed.data, packed.quantization), None
            return (
                Weight(name, "float32", shape, _little_endian_bytes(values)),
                f"constant {name} kept in float32: its values do not fit {compress}",
            )
        return Weight(name, "float32", shape, _little_endian_bytes(values)), None
    raise ValueError(f"constant {name} has dtype {kind.name}, which TF.js weights cannot hold")


def _little_endian_bytes(values: np.ndarray) -> memoryview:
    """The array's bytes as float32 little-endian, without a copy when it is one already."""
    return np.ascontiguousarray(values.reshape(-1), dtype="<f4").data.cast("B")


def _encode_strings(value: np.ndarray) -> bytes:
    parts = []
    for item in value.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)
