"""Reduced precision for an ONNX model: float16 (float32 I/O kept), static QDQ int8, dynamic int8 weights.

int8 is calibrated with the run's calibration samples, fed in the ONNX model's own layout (NCHW inputs are
transposed here). onnxruntime.quantization works through files and temporary folders; both stay inside the
staging folder the converter gives, so a failure leaves nothing outside the job's workdir.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from edgeport.capture import capture_output
from edgeport.contracts import SampleSet
from edgeport.errors import ConversionError

from edgeport.converters.onnx_files import write_model


def to_float16(model, *, target: str):
    from onnxconverter_common import float16  # noqa: PLC0415

    with capture_output() as captured:
        try:
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: float16 conversion failed: {_first_line(exc)}") from None
    return converted, captured.warnings()


def quantize_static_int8(model, *, calibration: SampleSet, input_permutations: Mapping[str, tuple[int, ...]],
                         per_channel: bool, staging: Path, external_data: bool, target: str):
    """Static QDQ: uint8 activations, int8 weights (onnxruntime's advice for x86 and most ARM CPUs)."""
    from onnxruntime import quantization  # noqa: PLC0415

    if calibration is None or calibration.count == 0:
        raise ConversionError(f"{target} needs calibration samples; pass --data or --calibration")
    output = staging / "int8.onnx"
    reader = _CalibrationReader(calibration, input_permutations)
    with _temporary_files_in(staging), capture_output() as captured:
        try:
            prepared = _prepare(model, staging, external_data)
            quantization.quantize_static(
                str(prepared), str(output), reader,
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=per_channel,
                use_external_data_format=external_data,
            )
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: static int8 quantization failed: {_first_line(exc)}") from None
    return _load(output), captured.warnings()


def quantize_dynamic_int8(model, *, per_channel: bool, staging: Path, external_data: bool, target: str):
    """Weights stored as int8; activations quantized on the fly by the runtime (no calibration)."""
    from onnxruntime import quantization  # noqa: PLC0415

    output = staging / "dynamic.onnx"
    with _temporary_files_in(staging), capture_output() as captured:
        try:
            prepared = _prepare(model, staging, external_data)
            quantization.quantize_dynamic(str(prepared), str(output), weight_type=quantization.QuantType.QInt8,
                                          per_channel=per_channel, use_external_data_format=external_data)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: dynamic int8 quantization failed: {_first_line(exc)}") from None
    return _load(output), captured.warnings()


def _prepare(model, staging: Path, external_data: bool) -> Path:
    """onnxruntime's pre-processing for quantization: shape inference and basic graph optimization."""
    from onnxruntime import quantization  # noqa: PLC0415

    source, prepared = staging / "fp32.onnx", staging / "fp32.prepared.onnx"
    write_model(model, source, external_data=external_data)
    quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True,  # needs no sympy
                                   save_as_external_data=external_data, all_tensors_to_one_file=True)
    return prepared


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over a SampleSet: one feed per get_next()."""

    def __init__(self, samples: SampleSet, input_permutations: Mapping[str, tuple[int, ...]]):
        self._feeds = iter(samples.feeds())
        self._permutations = dict(input_permutations)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        if feed is None:
            return None
        return {name: np.ascontiguousarray(np.transpose(value, self._permutations[name]))
                if name in self._permutations else np.asarray(value) for name, value in feed.items()}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """onnxruntime.quantization makes tempfile folders; keep them in `folder` for the duration."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def _load(path: Path):
    import onnx  # noqa: PLC0415

    return onnx.load(str(path))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:400]
