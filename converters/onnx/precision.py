"""Reduced precision for an ONNX model: float16 (float32 I/O kept), static QDQ int8, dynamic int8 weights.

int8 is calibrated with the run's calibration samples, fed in the ONNX model's own layout (NCHW inputs are
transposed here). onnxruntime.quantization works through files and temporary folders; both stay inside the
staging folder the converter gives, so a failure leaves nothing outside the job's workdir.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Container, Iterator, Mapping
from pathlib import Path

import numpy as np

from edgeport.contracts import SampleSet
from edgeport.converters.onnx.files import write_model
from edgeport.errors import ConversionError, first_line
from edgeport.run.capture import capture_output

ORT_WARNING, ORT_ERROR = 2, 3  # onnxruntime logger severities


# onnxconverter_common warns once per constant it clamps into float16's range ("the float32 number 1e-09 will
# be truncated to 1e-07"): dozens of lines on a real network, summarized as one.
_FLOAT16_CLAMP = re.compile(r"the float32 number (\S+) will be truncated to (\S+)")


def to_float16(model, *, target: str):
    from onnxconverter_common import float16

    with capture_output() as captured:
        try:
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: float16 conversion failed: {first_line(exc)}") from None
    return converted, summarize_float16_clamps(captured.warnings(limit=10_000))


def summarize_float16_clamps(warnings: tuple[str, ...]) -> tuple[str, ...]:
    """One line for all "float32 number X will be truncated to Y" warnings; other warnings kept as they are."""
    clamps = [match for line in warnings if (match := _FLOAT16_CLAMP.search(line))]
    others = tuple(line for line in warnings if not _FLOAT16_CLAMP.search(line))[:50]
    if not clamps:
        return others
    bounds = sorted({float(match.group(2)) for match in clamps})
    example = f"{clamps[0].group(1)} -> {clamps[0].group(2)}"
    return (
        f"float16: float32 constants outside float16's range were clamped to {', '.join(f'{b:g}' for b in bounds)}"
        f" ({len(clamps)} onnxconverter_common warnings, one per constant and sign, e.g. {example}); the check "
        "measures the effect",
        *others,
    )


def quantize_static_int8(
    model,
    *,
    calibration: SampleSet,
    input_permutations: Mapping[str, tuple[int, ...]],
    per_channel: bool,
    staging: Path,
    external_data: bool,
    target: str,
    float_layers: tuple[str, ...] = (),
    known: Container[str] = frozenset(),
):
    """Static QDQ: uint8 activations, int8 weights (onnxruntime's advice for x86 and most ARM CPUs).
    `float_layers`: TF layers whose nodes onnxruntime leaves unquantized (`nodes_to_exclude`); `known`: every
    node name of the TF graph (see nodes_of_layers).
    Returns (model, warnings, {layer: its nodes kept in float})."""
    from onnxruntime import quantization

    if calibration is None or calibration.count == 0:
        raise ConversionError(f"{target} needs calibration samples; pass --data or --calibration")
    output = staging / "int8.onnx"
    reader = _CalibrationReader(calibration, input_permutations)
    with _temporary_files_in(staging), _onnxruntime_errors_only(), capture_output() as captured:
        try:
            prepared = _prepare(model, staging, external_data)
            float_nodes = nodes_of_layers(prepared, float_layers, known)
            quantization.quantize_static(
                str(prepared),
                str(output),
                reader,
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=per_channel,
                use_external_data_format=external_data,
                nodes_to_exclude=sorted({node for nodes in float_nodes.values() for node in nodes}),
            )
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: static int8 quantization failed: {first_line(exc)}") from None
    return _load(output), captured.warnings(), float_nodes


def quantize_dynamic_int8(
    model,
    *,
    per_channel: bool,
    staging: Path,
    external_data: bool,
    target: str,
    float_layers: tuple[str, ...] = (),
    known: Container[str] = frozenset(),
):
    """Weights stored as int8; activations quantized on the fly by the runtime (no calibration)."""
    from onnxruntime import quantization

    output = staging / "dynamic.onnx"
    with _temporary_files_in(staging), _onnxruntime_errors_only(), capture_output() as captured:
        try:
            prepared = _prepare(model, staging, external_data)
            float_nodes = nodes_of_layers(prepared, float_layers, known)
            quantization.quantize_dynamic(
                str(prepared),
                str(output),
                weight_type=quantization.QuantType.QInt8,
                per_channel=per_channel,
                use_external_data_format=external_data,
                nodes_to_exclude=sorted({node for nodes in float_nodes.values() for node in nodes}),
            )
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"{target}: dynamic int8 quantization failed: {first_line(exc)}") from None
    return _load(output), captured.warnings(), float_nodes


def nodes_of_layers(path: Path, layers: tuple[str, ...], known: Container[str]) -> dict[str, list[str]]:
    """{TF layer: names of the ONNX nodes standing for it}: a node stands for a layer when one of its outputs
    is named after it (tf2onnx keeps TF names: `layer:0`, or `layer` with a suffix; checks.layers.stands_for
    against `known`, the TF graph's node names, tells a suffix from another layer's name)."""
    import onnx

    from edgeport.checks.layers import stands_for

    if not layers:
        return {}
    graph = onnx.load(str(path), load_external_data=False).graph
    wanted = set(layers)
    found: dict[str, list[str]] = {layer: [] for layer in layers}
    for node in graph.node:
        for layer in sorted(wanted.intersection(c for output in node.output for c in stands_for(output, known))):
            found[layer].append(node.name)
    return found


def _prepare(model, staging: Path, external_data: bool) -> Path:
    """onnxruntime's pre-processing for quantization: shape inference and basic graph optimization."""
    from onnxruntime import quantization

    source, prepared = staging / "fp32.onnx", staging / "fp32.prepared.onnx"
    write_model(model, source, external_data=external_data)
    quantization.quant_pre_process(
        str(source),
        str(prepared),
        skip_symbolic_shape=True,  # needs no sympy
        save_as_external_data=external_data,
        all_tensors_to_one_file=True,
    )
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
        return {
            name: np.ascontiguousarray(np.transpose(value, self._permutations[name]))
            if name in self._permutations
            else np.asarray(value)
            for name, value in feed.items()
        }

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


@contextlib.contextmanager
def _onnxruntime_errors_only() -> Iterator[None]:
    """onnxruntime.quantization opens sessions with default options, which log C++ warnings such as "Removing
    initializer ... It is not used by any node" (one per initializer, ANSI-coloured) into the report; keep
    errors only while it runs, then return to onnxruntime's default level (warning)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(ORT_ERROR)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(ORT_WARNING)


def _load(path: Path):
    import onnx

    return onnx.load(str(path))
