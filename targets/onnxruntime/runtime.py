"""ONNX Runtime: an .onnx or .ort file on the CPU execution provider.

Sessions run sequentially with `settings.threads` intra-op threads. Feeds and outputs are keyed by the
signature's names. Feeds always come in the signature's layout: when the converter made an input NCHW
(`inputs_as_nchw`), the model says so in its metadata (`edgeport.input_permutations`, JSON name ->
permutation) and the session transposes the feed before running. Outputs are returned as the model
produces them (an NCHW output stays NCHW; the Artifact's output_permutations tell the check).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from edgeport.contracts import Feeds, Runtime, RuntimeSettings, Session
from edgeport.errors import RuntimeFailure, first_line
from edgeport.formats.onnx.conventions import INPUT_PERMUTATIONS_KEY, register_custom_ops

PROVIDER = "CPUExecutionProvider"
EXTENSIONS_INSTALL_COMMAND = "pip install onnxruntime-extensions"
_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    register_custom_ops(options)
    return options


class ONNXRuntimeSession(Session):
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        try:
            self._session = ort.InferenceSession(str(path), session_options(threads), providers=[PROVIDER])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail, InvalidGraph, NoSuchFile...
            raise RuntimeFailure(_load_failure(path, exc)) from None
        metadata = self._session.get_modelmeta().custom_metadata_map
        self._permutations = {
            name: tuple(perm) for name, perm in json.loads(metadata.get(INPUT_PERMUTATIONS_KEY, "{}")).items()
        }
        self._input_types = {value.name: _ONNX_TYPES.get(value.type) for value in self._session.get_inputs()}
        self._output_names = [value.name for value in self._session.get_outputs()]

    def run(self, feeds: Feeds) -> Feeds:
        missing = sorted(set(self._input_types) - set(feeds))
        if missing:
            raise RuntimeFailure(
                f"onnxruntime: feed lacks model inputs {', '.join(missing)} (got {', '.join(sorted(feeds))})"
            )
        arguments = {
            name: self._prepare(name, np.asarray(feeds[name]), dtype) for name, dtype in self._input_types.items()
        }
        try:
            values = self._session.run(self._output_names, arguments)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeFailure(f"onnxruntime failed to run: {first_line(exc)}") from None
        return {name: _as_bytes(value) for name, value in zip(self._output_names, values, strict=True)}

    def _prepare(self, name: str, value: np.ndarray, dtype) -> np.ndarray:
        permutation = self._permutations.get(name)
        if permutation:
            value = np.ascontiguousarray(np.transpose(value, permutation))
        if dtype is np.object_:
            return _as_text(name, value)
        if dtype is not None and value.dtype != dtype:
            value = value.astype(dtype)
        return value

    def close(self) -> None:
        self._session = None


def _as_text(name: str, value: np.ndarray) -> np.ndarray:
    """A string feed as onnxruntime takes it: str elements (it reads bytes elements as something else)."""
    flat = np.empty(value.size, dtype=object)
    for index, element in enumerate(value.reshape(-1)):
        if isinstance(element, bytes | np.bytes_):
            try:
                element = bytes(element).decode("utf-8")
            except UnicodeDecodeError:
                raise RuntimeFailure(
                    f"onnxruntime: string input {name!r} holds bytes that are not UTF-8 (element {index}); "
                    "ONNX strings are UTF-8 text"
                ) from None
        flat[index] = str(element)
    return flat.reshape(value.shape)


def _as_bytes(value):
    """String outputs as TensorFlow returns them (bytes elements), so they compare with the reference."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        flat = np.empty(value.size, dtype=object)
        flat[:] = [element.encode("utf-8") if isinstance(element, str) else element for element in value.reshape(-1)]
        return flat.reshape(value.shape)
    return value


class ONNXRuntime(Runtime):
    name = "onnxruntime"
    artifact_suffixes = (".onnx", ".ort")
    description = "ONNX Runtime, CPU execution provider, on this CPU"

    def requirements(self):
        from edgeport.run.requirements import python_package

        return (python_package("onnxruntime", extra="onnx", why="runs .onnx and .ort files"),)

    def version(self) -> str:
        from importlib.metadata import version

        return f"onnxruntime {version('onnxruntime')} ({PROVIDER})"

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        return ONNXRuntimeSession(artifact, settings.threads)


def _load_failure(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if "ai.onnx.contrib" in text and importlib.util.find_spec("onnxruntime_extensions") is None:
        return f"onnxruntime cannot load {path}: it uses ai.onnx.contrib custom ops; run: {EXTENSIONS_INSTALL_COMMAND}"
    return f"onnxruntime cannot load {path}: {first_line(exc)}"
