"""TFLite converter: `tflite` (fp32), `tflite:fp16`, `tflite:dynamic`, `tflite:int8`, `tflite:int16x8`.

Converts the run's signature function (TF2 ConcreteFunction with the signature's names), so the .tflite
carries a signature with the same input and output names. int8 and int16x8 are calibrated with the run's
calibration samples. SELECT_TF_OPS only with `allow_tf_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeport.contracts import Artifact, ConversionJob, Converter, Finding, option, quant_fallback_option
from edgeport.formats.tflite.conversion import IO_TYPES, MAIN_FILE, convert_to_tflite, validate_io_type
from edgeport.formats.tflite.flatbuffer import custom_ops, flex_ops

BUILTIN_OPS_FILE = Path(__file__).with_name("builtin_ops.txt")


@dataclass(frozen=True)
class TFLiteOptions:
    allow_tf_ops: bool = option(
        False,
        flag="--allow-tf-ops",
        help="Allow SELECT_TF_OPS: TensorFlow kernels for "
        "ops with no builtin (the device then needs the Flex delegate).",
    )
    io_type: str = option(
        "float",
        flag="--io-type",
        choices=IO_TYPES,
        help="tflite:int8 / int16x8: type of the model's inputs and outputs (float keeps QUANTIZE/DEQUANTIZE inside).",
    )
    quant_fallback: str = quant_fallback_option()


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


def tflite_float_fallback(variant: str) -> str | None:
    if variant == "int8":
        return None
    if variant == "int16x8":
        return (
            "the TFLite converter quantizes int16x8 with its legacy quantizer, which takes no list of layers to "
            "keep in float (its MLIR quantizer, which does, writes int16 kernels LiteRT refuses)"
        )
    return f"{_target_name(variant)} is not quantized with calibrated activations: there is nothing to keep in float"


def _lists(mapping) -> dict[str, list[str]]:
    return {key: list(values) for key, values in mapping.items()}


def _target_name(variant: str) -> str:
    return f"tflite:{variant}" if variant else "tflite"


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

    def float_fallback(self, variant: str) -> str | None:
        return tflite_float_fallback(variant)

    def validate_options(self, variant: str, options: TFLiteOptions) -> None:
        validate_io_type(variant, options.io_type)

    def preflight(self, model, options: TFLiteOptions) -> list[Finding]:
        findings = []
        missing = non_builtin_ops(model.frozen.op_histogram())
        if missing:
            severity = "warning" if options.allow_tf_ops else "error"
            findings.append(
                Finding(
                    "tflite",
                    severity,
                    f"ops outside the TFLite builtin set (need --allow-tf-ops / SELECT_TF_OPS): {', '.join(missing)}",
                )
            )
        return findings

    def convert(self, job: ConversionJob) -> Artifact:
        bound, said = self._with_bound_weights(job)
        if bound is not None:
            return bound
        conversion = convert_to_tflite(
            job.model,
            job.target.variant,
            job.calibration,
            allow_tf_ops=job.options.allow_tf_ops,
            io_type=job.options.io_type,
            float_layers=job.float_layers,
            keep_standardization_float=True,
        )
        flatbuffer = conversion.flatbuffer
        (job.workdir / MAIN_FILE).write_bytes(flatbuffer)
        return self._artifact(job, flatbuffer, conversion.warnings, (*said, *conversion.notes), conversion)

    def _with_bound_weights(self, job: ConversionJob) -> tuple[Artifact | None, tuple[str, ...]]:
        """A large model's fp32/fp16 artifact with its weights bound by edgeport (formats/tflite/bound_weights),
        or (None, the notes to carry): none where it does not apply, the reason where it failed (the conversion
        then goes on from the SavedModel directory)."""
        from edgeport.errors import first_line
        from edgeport.formats.tflite.bound_weights import VARIANTS, convert_with_bound_weights

        variant = job.target.variant
        if not job.model.large or variant not in VARIANTS or job.float_layers:
            return None, ()
        path = job.workdir / MAIN_FILE
        try:
            if not job.model.frozen.references:  # a v1-session model, or weights all under 1 MB
                return None, ()
            flatbuffer, warnings, notes = convert_with_bound_weights(
                job.model, variant, path, allow_tf_ops=job.options.allow_tf_ops
            )
        except Exception as exc:  # noqa: BLE001 - any failure: the converter's own path, said
            path.unlink(missing_ok=True)
            reason = f"{type(exc).__name__}: {first_line(exc, 200)}"
            return None, (f"edgeport could not bind the weights itself ({reason}), so the converter's loader ran",)
        return self._artifact(job, flatbuffer, warnings, notes), ()

    def _artifact(self, job: ConversionJob, flatbuffer: bytes, warnings, notes_said, conversion=None) -> Artifact:
        flex = flex_ops(flatbuffer)
        custom = custom_ops(flatbuffer)
        notes = list(notes_said)
        if flex:
            notes.append(f"uses Flex ops (TensorFlow kernels): {', '.join(flex)}")
        if custom:
            notes.append(f"uses custom ops: {', '.join(custom)}")
        return Artifact(
            main_file=MAIN_FILE,
            precision=tflite_precision(job.target.variant),
            runtime=self.default_runtime,
            files=(MAIN_FILE,),
            warnings=tuple(warnings),
            notes=tuple(notes),
            not_checkable=f"needs Flex ops {', '.join(flex)} (no Flex delegate for LiteRT in Python)" if flex else None,
            details={
                "flex_ops": flex,
                "custom_ops": custom,
                "io_type": job.options.io_type,
                "fixed_shapes": {name: list(shape) for name, shape in conversion.fixed_shapes.items()}
                if conversion
                else {},
                "weights_bound_by_edgeport": conversion is None,
                **({"float_nodes": _lists(conversion.float_nodes)} if conversion and job.float_layers else {}),
            },
        )
