"""TF.js graph-model converter: `tfjs` (fp32), `tfjs:fp16`, `tfjs:uint8`, `tfjs:uint16`.

edgeport writes the graph model itself from the run's frozen signature graph (TensorFlow only; the
`tensorflowjs` pip package is never used): Grappler optimizes and fuses the graph for TF.js, every op is
checked against the op tables of the installed TF.js runtime before anything is written, constants become
weight shards (float16 or affine uint8/uint16 for the compressed variants), and model.json carries the
graph and a signature keyed by the SavedModel's own input and output names.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeport.contracts import Artifact, Availability, ConversionJob, Converter, Finding, option
from edgeport.errors import ConversionError, UsageError

DEFAULT_SHARD_SIZE_BYTES = 4 * 1024 * 1024
NARROW_DTYPES = {"int64": "int32", "float64": "float32", "uint8": "int32", "int8": "int32", "int16": "int32"}


@dataclass(frozen=True)
class TFJSOptions:
    optimize: bool = option(
        True,
        help="Grappler simplification and the fusions TF.js runs natively; false writes the frozen graph as it is.",
    )
    shard_size_bytes: int = option(
        DEFAULT_SHARD_SIZE_BYTES, flag="--shard-size", metavar="SIZE", help="Largest weight file, e.g. 4MB."
    )


class TFJSConverter(Converter):
    name = "tfjs"
    variants = ("", "fp16", "uint8", "uint16")
    default_runtime = "tfjs-node"
    Options = TFJSOptions
    description = "TensorFlow.js graph model: fp32, fp16 weights, affine uint8/uint16 weights"

    def availability(self) -> Availability:
        from edgeport.formats.tfjs.ops import RuntimeOpsMissing, load_runtime_ops

        try:
            load_runtime_ops()
        except RuntimeOpsMissing as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def preflight(self, model, options: TFJSOptions) -> list[Finding]:
        from edgeport.formats.tfjs.ops import (
            RuntimeOpsMissing,
            unsupported_message,
            unsupported_ops,
        )

        try:
            _validate(options)
            runtime = _runtime()
            from edgeport.converters.tfjs.optimize import prepare_graph

            prepared = prepare_graph(model, optimize=options.optimize, runtime=runtime)
        except (RuntimeOpsMissing, ConversionError, UsageError) as exc:
            return [Finding("tfjs", "error", str(exc))]
        findings = []
        missing = unsupported_ops(prepared.op_counts(), runtime)
        if missing:
            findings.append(Finding("tfjs", "error", unsupported_message(missing, runtime)))
        for spec in (*model.signature.inputs, *model.signature.outputs):
            if spec.dtype in NARROW_DTYPES:
                findings.append(
                    Finding(
                        "tfjs",
                        "warning",
                        f"{spec.name} is {spec.dtype}; TF.js computes it as {NARROW_DTYPES[spec.dtype]}",
                    )
                )
        fused = ", ".join(f"{op} x{count}" for op, count in prepared.fused_counts().items()) or "none"
        findings.append(
            Finding(
                "tfjs",
                "info",
                f"{sum(prepared.op_counts().values())} nodes for TF.js {runtime.version}; fused ops: {fused}",
            )
        )
        return findings

    def convert(self, job: ConversionJob) -> Artifact:
        from edgeport.converters.tfjs.emit import emit_graph_model

        _validate(job.options)
        return emit_graph_model(job, runtime=_runtime(), default_runtime=self.default_runtime)


def _validate(options: TFJSOptions) -> None:
    if not isinstance(options.optimize, bool):
        raise UsageError(f"tfjs option optimize={options.optimize!r}: use true or false")
    if not isinstance(options.shard_size_bytes, int) or options.shard_size_bytes < 1024:
        raise UsageError(
            f"tfjs option shard_size_bytes={options.shard_size_bytes!r}: use a whole number of "
            "bytes, at least 1024 (default 4194304)"
        )


def _runtime():
    from edgeport.formats.tfjs.ops import RuntimeOpsMissing, load_runtime_ops

    try:
        return load_runtime_ops()
    except RuntimeOpsMissing as exc:
        raise ConversionError(f"tfjs: {exc}") from None


__all__ = ["TFJSConverter", "TFJSOptions"]
