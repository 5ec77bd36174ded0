"""The TFLite conversion call, shared by the TFLite and TFLite Micro converters (a TFLM model is an int8 .tflite).

Converts the run's frozen graph wrapped as a signature function (or, where the graph does not survive a
GraphDef round trip, the signature function itself), so the .tflite carries a signature with the SavedModel's
input and output names. int8 and int16x8 are calibrated with the run's calibration samples; SELECT_TF_OPS only
with `allow_tf_ops`. An op with no builtin becomes one ConversionError naming every such op.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edgeport.data import SampleSet
from edgeport.errors import ConversionError, UsageError, first_line
from edgeport.run.capture import capture_output

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.model.savedmodel import LoadedModel

MAIN_FILE = "model.tflite"
IO_TYPES = ("float", "int8", "int16")


def convert_to_tflite(
    model: LoadedModel,
    variant: str,
    calibration: SampleSet | None,
    *,
    allow_tf_ops: bool = False,
    io_type: str = "float",
) -> tuple[bytes, tuple[str, ...]]:
    """Convert the run's model to a .tflite flatbuffer; returns (flatbuffer, the converter's warnings)."""
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    validate_io_type(variant, io_type)
    converter = _from_frozen_graph(tf, model)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant in ("dynamic", "fp16", "int8", "int16x8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant in ("int8", "int16x8"):
        if calibration is None or calibration.count == 0:
            raise ConversionError(f"tflite:{variant} needs calibration samples; pass --data or --calibration")
        converter.representative_dataset = _representative_dataset(calibration)
        ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if variant == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if io_type != "float":
            io_dtype = {"int8": tf.int8, "int16": tf.int16}[io_type]
            converter.inference_input_type = io_dtype
            converter.inference_output_type = io_dtype
    if allow_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    with capture_output() as captured:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises several types; all become one line
            raise _conversion_error(variant, exc, captured.lines, allow_tf_ops=allow_tf_ops) from None
    return flatbuffer, captured.warnings()


def _from_frozen_graph(tf, model):
    """Start from the run's frozen graph (variables already constants: 3-4x faster than from the variables).

    Graphs that do not survive the round trip through a GraphDef (resources such as hash tables) use the
    signature function itself.
    """
    try:
        frozen = model.frozen_function
    except Exception:  # noqa: BLE001 - any failure to wrap the frozen graph: convert from the variables instead
        return tf.lite.TFLiteConverter.from_concrete_functions([model.concrete_function], model.trackable)
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen.function], frozen.owner)


def validate_io_type(variant: str, io_type: str) -> None:
    if io_type not in IO_TYPES:
        raise UsageError(f"--io-type {io_type!r}: use one of {', '.join(IO_TYPES)}")
    allowed = {"int8": ("float", "int8"), "int16x8": ("float", "int16")}.get(variant)
    if allowed and io_type not in allowed:  # float variants keep float I/O whatever --io-type says
        raise UsageError(
            f"--io-type {io_type} does not apply to tflite{':' + variant if variant else ''}; "
            f"it takes {' or '.join(allowed)}"
        )


def _representative_dataset(calibration: SampleSet):
    def generate():
        for feed in calibration.feeds():
            yield dict(feed)

    return generate


_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"\btf\.(\w+)\(.*?\)\s*->"),
    re.compile(r"'tf\.(\w+)' op"),
)


def _conversion_error(variant: str, exc: Exception, log_lines: list[str], *, allow_tf_ops: bool) -> ConversionError:
    text = "\n".join([str(exc), *log_lines])
    ops = sorted({m.group(1) for pattern in _OP_PATTERNS[:2] for m in pattern.finditer(text)})
    target = f"tflite:{variant}" if variant else "tflite"
    if ops and not allow_tf_ops:
        return ConversionError(
            f"{target}: ops with no TFLite builtin: {', '.join(ops)}; pass --allow-tf-ops to "
            "use TensorFlow kernels (SELECT_TF_OPS, needs the Flex delegate on the device)"
        )
    if ops:
        return ConversionError(f"{target}: conversion failed at ops {', '.join(ops)} even with SELECT_TF_OPS")
    return ConversionError(f"{target}: conversion failed: {first_line(exc)}")
