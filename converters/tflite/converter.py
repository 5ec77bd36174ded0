"""TFLite converter: `tflite` (fp32), `tflite:fp16`, `tflite:dynamic`, `tflite:int8`, `tflite:int16x8`.

Converts the run's signature function (TF2 ConcreteFunction with the signature's names), so the .tflite
carries a signature with the same input and output names. int8 and int16x8 are calibrated with the run's
calibration samples. SELECT_TF_OPS only with `allow_tf_ops`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgeport.run.capture import capture_output
from edgeport.contracts import Artifact, ConversionJob, Converter, Finding, SampleSet
from edgeport.errors import ConversionError, UsageError
from edgeport.formats.tflite.flatbuffer import custom_ops, flex_ops

BUILTIN_OPS_FILE = Path(__file__).with_name("builtin_ops.txt")
IO_TYPES = ("float", "int8", "int16")
MAIN_FILE = "model.tflite"


@dataclass(frozen=True)
class TFLiteOptions:
    allow_tf_ops: bool = False  # SELECT_TF_OPS: TF kernels for ops with no builtin (needs the Flex delegate)
    io_type: str = "float"  # int8/int16x8 only: type of the model's inputs and outputs


def builtin_tf_ops() -> frozenset[str]:
    words = []
    for line in BUILTIN_OPS_FILE.read_text().splitlines():
        if not line.startswith("#"):
            words.extend(line.split())
    return frozenset(words)


def non_builtin_ops(op_names) -> list[str]:
    builtins = builtin_tf_ops()
    return sorted(op for op in set(op_names) if op not in builtins)


def tflite_precision(variant: str) -> str:
    return variant or "fp32"


def convert_to_tflite(model, variant: str, options: TFLiteOptions, calibration: SampleSet | None) -> tuple[bytes, tuple[str, ...]]:
    """The TFLite conversion itself, reusable by other converters (TFLite Micro)."""
    from edgeport.model.tf_quiet import import_tensorflow  # noqa: PLC0415

    tf = import_tensorflow()
    _validate_io_type(variant, options.io_type)
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
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if variant == "int8" else
               tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if options.io_type != "float":
            io_dtype = {"int8": tf.int8, "int16": tf.int16}[options.io_type]
            converter.inference_input_type = io_dtype
            converter.inference_output_type = io_dtype
    if options.allow_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    with capture_output() as captured:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises several types; all become one line
            raise _conversion_error(variant, exc, captured.lines, options) from None
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


def _validate_io_type(variant: str, io_type: str) -> None:
    if io_type not in IO_TYPES:
        raise UsageError(f"--io-type {io_type!r}: use one of {', '.join(IO_TYPES)}")
    allowed = {"int8": ("float", "int8"), "int16x8": ("float", "int16")}.get(variant)
    if allowed and io_type not in allowed:  # float variants keep float I/O whatever --io-type says
        raise UsageError(f"--io-type {io_type} does not apply to tflite{':' + variant if variant else ''}; "
                         f"it takes {' or '.join(allowed)}")


def _representative_dataset(calibration: SampleSet):
    def generate():
        for feed in calibration.feeds():
            yield {name: value for name, value in feed.items()}

    return generate


_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"\btf\.(\w+)\(.*?\)\s*->"),
    re.compile(r"'tf\.(\w+)' op"),
)


def _conversion_error(variant: str, exc: Exception, log_lines: list[str], options: TFLiteOptions) -> ConversionError:
    text = "\n".join([str(exc), *log_lines])
    ops = sorted({m.group(1) for pattern in _OP_PATTERNS[:2] for m in pattern.finditer(text)})
    target = f"tflite:{variant}" if variant else "tflite"
    if ops and not options.allow_tf_ops:
        return ConversionError(f"{target}: ops with no TFLite builtin: {', '.join(ops)}; pass --allow-tf-ops to "
                               "use TensorFlow kernels (SELECT_TF_OPS, needs the Flex delegate on the device)")
    if ops:
        return ConversionError(f"{target}: conversion failed at ops {', '.join(ops)} even with SELECT_TF_OPS")
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return ConversionError(f"{target}: conversion failed: {first[:400]}")


class TFLiteConverter(Converter):
    name = "tflite"
    variants = ("", "fp16", "dynamic", "int8", "int16x8")
    default_runtime = "litert"
    Options = TFLiteOptions
    description = "TFLite flatbuffer: fp32, fp16 weights, dynamic-range, full int8, int16 activations"

    def precision(self, variant: str) -> str:
        return tflite_precision(variant)

    def needs_calibration(self, variant: str) -> bool:
        return variant in ("int8", "int16x8")

    def validate(self, model, variant: str, options: TFLiteOptions) -> None:
        _validate_io_type(variant, options.io_type)

    def preflight(self, model, options: TFLiteOptions) -> list[Finding]:
        findings = []
        missing = non_builtin_ops(model.frozen.op_histogram())
        if missing:
            severity = "warning" if options.allow_tf_ops else "error"
            findings.append(Finding("tflite", severity, f"ops outside the TFLite builtin set (need --allow-tf-ops / "
                                                        f"SELECT_TF_OPS): {', '.join(missing)}"))
        return findings

    def convert(self, job: ConversionJob) -> Artifact:
        flatbuffer, warnings = convert_to_tflite(job.model, job.target.variant, job.options, job.calibration)
        (job.workdir / MAIN_FILE).write_bytes(flatbuffer)
        flex = flex_ops(flatbuffer)
        custom = custom_ops(flatbuffer)
        notes = []
        if flex:
            notes.append(f"uses Flex ops (TensorFlow kernels): {', '.join(flex)}")
        if custom:
            notes.append(f"uses custom ops: {', '.join(custom)}")
        return Artifact(
            main_file=MAIN_FILE,
            precision=tflite_precision(job.target.variant),
            runtime=self.default_runtime,
            files=(MAIN_FILE,),
            warnings=warnings,
            notes=tuple(notes),
            not_checkable=f"needs Flex ops {', '.join(flex)} (no Flex delegate for LiteRT in Python)" if flex else None,
            details={"flex_ops": flex, "custom_ops": custom, "io_type": job.options.io_type},
        )
