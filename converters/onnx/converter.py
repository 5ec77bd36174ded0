"""ONNX converter: `onnx` (fp32), `onnx:fp16`, `onnx:int8` (static QDQ, or weight-only with `dynamic`).

From the frozen graph the run already holds (never the SavedModel again), through tf2onnx's Python API, at
the highest opset both tf2onnx and the installed onnxruntime support unless `opset` says otherwise. Inputs
and outputs carry the signature's names. The artifact's main file is standard ONNX (default domain and
ai.onnx.ml only, checked with onnx.checker's full check, else the conversion fails), simplified offline by
onnxruntime's basic level (constant folding, standard fusions), spatial means rewritten as GlobalAveragePool
(rewrite.py), so TensorRT, OpenVINO, ONNX Runtime Web and the rest load it. `ort_optimized` writes
onnxruntime's extended level instead: com.microsoft fused ops that only ONNX Runtime loads, said in the
report (ONNX Runtime fuses the standard file the same way when a session starts). `ort_format` adds the
.ort file ORT Mobile loads (same graph; model.onnx is the one checked and benchmarked). The stages live in
opsets, export, precision, rewrite and files (this package).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeport.contracts import Artifact, ConversionJob, Converter, Finding, Signature, option, quant_fallback_option
from edgeport.converters.onnx.files import OPTIMIZATION_LEVELS, ORT_OPTIMIZED_LEVEL
from edgeport.errors import ConversionError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.model.savedmodel import FrozenGraph

REQUIRED_DISTRIBUTIONS = ("tf2onnx", "onnx", "onnxruntime", "onnxconverter-common")
FP16_ONLY = "onnxconverter-common"  # its float16 pass; no other variant imports it
NHWC_TO_NCHW = (0, 3, 1, 2)
STAGING_FOLDER = ".onnx-staging"
DEFAULT_EXTERNAL_DATA_THRESHOLD = 2 * 1024**3


@dataclass(frozen=True)
class ONNXOptions:
    opset: int | None = option(
        None,
        flag="--opset",
        metavar="N",
        help="ONNX opset (default: the highest both tf2onnx and the installed onnxruntime support).",
    )
    inputs_as_nchw: tuple[str, ...] = option(
        (),
        flag="--inputs-as-nchw",
        metavar="NAMES",
        help="Signature inputs (rank 4, NHWC) the model takes as NCHW (comma separated).",
    )
    outputs_as_nchw: tuple[str, ...] = option(
        (),
        flag="--outputs-as-nchw",
        metavar="NAMES",
        help="Signature outputs (rank 4, NHWC) the model returns as NCHW.",
    )
    allow_custom_ops: bool = option(
        False,
        flag="--allow-custom-ops",
        help="Keep ops with no standard handler as com.microsoft / ai.onnx.contrib custom ops.",
    )
    optimization_level: str = option(
        "basic",
        choices=OPTIMIZATION_LEVELS,
        help="onnxruntime's offline simplification of the standard ONNX graph (none or basic).",
    )
    ort_optimized: bool = option(
        False,
        flag="--ort-optimized",
        help="Write onnxruntime's extended-level graph instead: com.microsoft fused ops (FusedConv, FusedGemm, "
        "QLinear*) that only ONNX Runtime loads.",
    )
    ort_format: bool = option(False, flag="--ort-format", help="Also write model.ort for ORT Mobile.")
    external_data_threshold_bytes: int = option(
        DEFAULT_EXTERNAL_DATA_THRESHOLD, metavar="BYTES", help="Weights past this size go to model.onnx.data."
    )
    dynamic: bool = option(
        False,
        flag="--dynamic",
        help="onnx:int8: weight-only dynamic quantization instead of static QDQ (other variants ignore it).",
    )
    per_channel: bool = option(True, help="onnx:int8: per-channel weight scales.")
    quant_fallback: str = quant_fallback_option()


def target_name(variant: str) -> str:
    return f"onnx:{variant}" if variant else "onnx"


def validate_options(options: ONNXOptions, signature: Signature, variant: str) -> None:
    """Cheap checks before any heavy import; each failure is one UsageError line."""
    target = target_name(variant)
    if options.optimization_level == ORT_OPTIMIZED_LEVEL:
        raise UsageError(
            f"{target}: optimization_level={ORT_OPTIMIZED_LEVEL!r} writes com.microsoft ops only ONNX Runtime "
            "loads; pass ort_optimized=true (--ort-optimized) for that file"
        )
    if options.optimization_level not in OPTIMIZATION_LEVELS:
        raise UsageError(
            f"{target}: optimization_level={options.optimization_level!r}; use one of "
            f"{', '.join(OPTIMIZATION_LEVELS)} (the 'all' level is machine specific, applied at load)"
        )
    if options.ort_optimized and options.optimization_level == "none":
        raise UsageError(f"{target}: ort_optimized=true and optimization_level='none' contradict each other; drop one")
    if (
        isinstance(options.external_data_threshold_bytes, bool)
        or not isinstance(options.external_data_threshold_bytes, int)
        or options.external_data_threshold_bytes < 0
    ):
        raise UsageError(
            f"{target}: external_data_threshold_bytes={options.external_data_threshold_bytes!r}; give a byte count >= 0"
        )
    for option_name, names, specs in (
        ("inputs_as_nchw", options.inputs_as_nchw, signature.inputs),
        ("outputs_as_nchw", options.outputs_as_nchw, signature.outputs),
    ):
        by_name = {spec.name: spec for spec in specs}
        for name in names:
            if name not in by_name:
                raise UsageError(
                    f"{target}: {option_name} names {name!r}, which is not a signature "
                    f"{option_name.split('_')[0][:-1]}; use one of {', '.join(sorted(by_name))}"
                )
            spec = by_name[name]
            if spec.shape is None or len(spec.shape) != 4:
                raise UsageError(
                    f"{target}: {option_name} names {spec.describe()}, which is not rank 4 "
                    "(NHWC); only 4-D tensors change layout"
                )


class ONNXConverter(Converter):
    name = "onnx"
    variants = ("", "fp16", "int8")
    default_runtime = "onnxruntime"
    Options = ONNXOptions
    description = "standard ONNX via tf2onnx: fp32, fp16, int8 (static QDQ or dynamic); ORT fusions on request"

    def precision(self, variant: str) -> str:
        return variant or "fp32"

    def float_fallback(self, variant: str) -> str | None:
        if variant == "int8":
            return None  # static QDQ: onnxruntime.quantization's nodes_to_exclude (with --dynamic too)
        return f"{target_name(variant)} is not quantized: there is nothing to keep in float"

    def needs_calibration(self, variant: str) -> bool:
        return variant == "int8"

    def requirements(self):
        from edgeport.run.requirements import python_package

        return tuple(
            python_package(name, extra="onnx", why="tf2onnx export and onnxruntime's offline optimizer")
            for name in REQUIRED_DISTRIBUTIONS
        )

    def variant_availability(self, variant: str):
        from edgeport.contracts import availability_of

        needed = tuple(r for r in self.requirements() if variant == "fp16" or r.name != FP16_ONLY)
        return availability_of("onnx", needed)

    def preflight(self, model, options: ONNXOptions) -> list[Finding]:
        from edgeport.converters.onnx.opsets import resolve_opset, tf2onnx_max_opset, unmapped_ops

        opset = resolve_opset(options.opset)
        histogram = dict(model.frozen.op_histogram())
        if histogram.pop("Erfc", 0):  # rewritten as 1 - Erf before tf2onnx runs
            histogram["Erf"] = histogram.get("Erf", 0) + 1
        missing = unmapped_ops(histogram, opset, options.allow_custom_ops)
        max_opset = tf2onnx_max_opset()
        return [
            Finding("onnx", "error", f"no tf2onnx handler at opset {opset}: {support.advice(opset, max_opset)}")
            for support in missing
        ]

    def validate(self, model, variant: str, options: ONNXOptions) -> None:
        from edgeport.converters.onnx.opsets import resolve_opset

        validate_options(options, model.signature, variant)
        resolve_opset(options.opset)  # an opset above what tf2onnx or onnxruntime supports is a usage error

    def convert(self, job: ConversionJob) -> Artifact:
        variant, options = job.target.variant, job.options
        target = target_name(variant)
        validate_options(options, job.model.signature, variant)
        staging = job.workdir / STAGING_FOLDER
        try:
            staging.mkdir(parents=True, exist_ok=True)
            return self._convert(job, target, staging)
        except OSError as exc:
            raise ConversionError(
                f"{target}: cannot write the artifact in {job.workdir}: "
                f"{exc.strerror or exc}; check the output folder is writable"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _convert(self, job: ConversionJob, target: str, staging) -> Artifact:
        from edgeport.converters.onnx import files as onnx_files
        from edgeport.converters.onnx.export import export_onnx
        from edgeport.converters.onnx.opsets import CUSTOM_DOMAINS, onnxruntime_version, resolve_opset
        from edgeport.formats.onnx.conventions import INPUT_PERMUTATIONS_KEY, OUTPUT_PERMUTATIONS_KEY
        from edgeport.model.graph_rewrites import with_real_spectra
        from edgeport.model.savedmodel import large_model_threshold

        options = job.options
        opset = resolve_opset(options.opset)
        frozen, erfc_rewrites = without_erfc(job.model.frozen)
        frozen, spectra_notes = with_real_spectra(frozen)  # ComplexAbs/RFFT: edgeport.model.graph_rewrites
        frozen, tables = with_tables(frozen, job.model)
        optimize = not job.model.large or (
            bool(frozen.references) and frozen.graph_def.ByteSize() < large_model_threshold()
        )
        model, warnings = export_onnx(
            frozen,
            tables=tables,
            opset=opset,
            inputs_as_nchw=options.inputs_as_nchw,
            outputs_as_nchw=options.outputs_as_nchw,
            allow_custom_ops=options.allow_custom_ops,
            target=target,
            optimize=optimize,
        )
        input_permutations = dict.fromkeys(options.inputs_as_nchw, NHWC_TO_NCHW)
        output_permutations = dict.fromkeys(options.outputs_as_nchw, NHWC_TO_NCHW)
        if input_permutations:
            model.metadata_props.add(key=INPUT_PERMUTATIONS_KEY, value=json.dumps(input_permutations))
        if output_permutations:
            model.metadata_props.add(key=OUTPUT_PERMUTATIONS_KEY, value=json.dumps(output_permutations))
        streamed = bool(frozen.references) and not job.target.variant  # fp32: weights straight to external data
        level = "none" if streamed else ORT_OPTIMIZED_LEVEL if options.ort_optimized else options.optimization_level
        rewrites = 0
        if streamed:
            written = onnx_files.write_by_reference(
                model, frozen.references, workdir=job.workdir, ort_format=options.ort_format, target=target
            )
            precision, more, float_nodes = "fp32", (), {}
        else:
            if frozen.references:  # fp16 and int8 rewrite the weights in memory
                from edgeport.converters.onnx.weight_binding import bind_weights

                bind_weights(model, frozen.references, data_file=None)
            external = onnx_files.weights_bytes(model) > options.external_data_threshold_bytes
            if level != "none":
                model, rewrites, simplified = onnx_files.simplify_for_runtime(
                    model, staging=staging, external_data=external, target=target
                )
                warnings = (*warnings, *simplified)
            model, precision, more, float_nodes = _reduce_precision(
                model, job, input_permutations, staging, external, target
            )
            written = onnx_files.write_for_runtime(
                model,
                workdir=job.workdir,
                staging=staging,
                level=level,
                external_data=external,
                ort_format=options.ort_format,
                target=target,
            )
        main_path = job.workdir / written.main_file
        if level == ORT_OPTIMIZED_LEVEL:
            ort_ops = onnx_files.ort_only_ops(main_path)
        else:
            custom = CUSTOM_DOMAINS if options.allow_custom_ops else ()
            ort_ops = onnx_files.finish_standard(main_path, allowed_domains=custom, target=target)
        notes = [f"opset {opset}; {_said_level(level, ort_ops)}"]
        if options.ort_optimized and level != ORT_OPTIMIZED_LEVEL:
            notes.append("ort_optimized not applied: a large model's weights are streamed, not optimized offline")
        if written.external_data_file:
            notes.append(f"weights in {written.external_data_file} (keep it beside {written.main_file})")
        if written.ort_file:
            notes.append(
                f"{written.ort_file} for ORT Mobile holds the same graph; {written.main_file} is the one "
                "checked and benchmarked"
            )
        if job.model.large:
            notes.append(
                "a large model (weights past the large-model threshold): "
                + (
                    "tf2onnx's graph optimizers ran on the graph without its weights; "
                    if optimize
                    else "written without tf2onnx's graph optimizers, which copy the whole graph with its weights "
                    "for each pass; "
                )
                + (
                    f"{len(frozen.references)} weight(s) written from the SavedModel's variables straight to "
                    f"{written.external_data_file}, one at a time; not optimized offline by onnxruntime (that "
                    "loads every weight), which optimizes each session as it starts"
                    if streamed
                    else f"onnxruntime's offline optimization ({level}) ran on it"
                )
            )
        notes.extend(spectra_notes)
        if erfc_rewrites:
            notes.append(f"{erfc_rewrites} Erfc op(s) written as 1 - Erf (tf2onnx has no Erfc; ONNX has Erf)")
        if input_permutations:
            notes.append(
                f"inputs {', '.join(input_permutations)} are NCHW in the model; onnxruntime sessions "
                "transpose NHWC feeds"
            )
        return Artifact(
            main_file=written.main_file,
            precision=precision,
            runtime=self.default_runtime,
            files=written.files,
            warnings=tuple(dict.fromkeys((*warnings, *more, *written.warnings))),
            notes=tuple(notes),
            input_permutations=input_permutations,
            output_permutations=output_permutations,
            details={
                "opset": opset,
                "optimization_level": level,
                "standard_onnx": not ort_ops and level != ORT_OPTIMIZED_LEVEL,
                "ort_only_ops": dict(sorted(ort_ops.items())),
                "weights_by_reference": len(frozen.references),
                "checked_file": written.main_file,
                "ort_file": written.ort_file,
                "external_data_file": written.external_data_file,
                "input_layout": dict.fromkeys(input_permutations, "NCHW"),
                "output_layout": dict.fromkeys(output_permutations, "NCHW"),
                "inputs_transposed_by_runtime": bool(input_permutations),
                "global_pool_rewrites": rewrites,
                "erfc_rewrites": erfc_rewrites,
                "onnxruntime": onnxruntime_version(),
                **({"float_nodes": float_nodes} if job.float_layers else {}),
            },
        )


def _said_level(level: str, ops) -> str:
    """The artifact's kind, as the report says it."""
    listed = ", ".join(f"{op.rsplit('.', 1)[1]} x{n}" for op, n in sorted(ops.items()))
    if level == ORT_OPTIMIZED_LEVEL:
        if any(op.startswith("com.microsoft.") for op in ops):
            return (
                f"ONNX Runtime-only: com.microsoft ops ({listed}) from onnxruntime's extended level "
                "(ort_optimized); other runtimes cannot load it"
            )
        return (
            "ONNX Runtime-only: onnxruntime's extended level (ort_optimized) found nothing to fuse here, but the "
            "file imports ONNX Runtime's own domains (com.microsoft...)"
        )
    kind = "standard ONNX (default domain and ai.onnx.ml, onnx.checker full check passed)"
    if ops:
        kind = f"ONNX with custom ops ({listed}, allow_custom_ops): not standard"
    simplified = "simplified offline by onnxruntime's basic level" if level != "none" else "not optimized offline"
    return f"{kind}; {simplified}"


def with_tables(frozen: FrozenGraph, model) -> tuple[FrozenGraph, tuple]:
    """The frozen graph with its lookup tables as HashTableV2 nodes, and their contents (for CategoryMapper)."""
    from edgeport.model.lookup_tables import placeholders_to_tables, table_placeholders

    if not table_placeholders(frozen.graph_def):
        return frozen, ()
    tables = tuple(model.tables.values())
    graph_def = type(frozen.graph_def)()
    graph_def.CopyFrom(frozen.graph_def)
    placeholders_to_tables(graph_def, tables)
    return dataclasses.replace(frozen, graph_def=graph_def), tables


def without_erfc(frozen: FrozenGraph) -> tuple[FrozenGraph, int]:
    """The frozen graph with Erfc as 1 - Erf (tf2onnx has no Erfc handler; ONNX has Erf), and how many."""
    from edgeport.model.graph_rewrites import count_ops, rewrite_erfc

    if not count_ops(frozen.graph_def, "Erfc"):
        return frozen, 0
    graph_def = type(frozen.graph_def)()
    graph_def.CopyFrom(frozen.graph_def)
    return dataclasses.replace(frozen, graph_def=graph_def), rewrite_erfc(graph_def)


def _reduce_precision(model, job: ConversionJob, input_permutations, staging, external: bool, target: str):
    """fp16 / static int8 / dynamic int8 per the variant; returns (model, precision, warnings, float nodes:
    {TF layer: the ONNX nodes kept in float for it}, for job.float_layers)."""
    from edgeport.converters.onnx import precision as onnx_precision

    variant, options = job.target.variant, job.options
    if variant == "fp16":
        halved, warnings = onnx_precision.to_float16(model, target=target)
        return halved, "fp16", warnings, {}
    shared = {
        "per_channel": options.per_channel,
        "staging": staging,
        "external_data": external,
        "target": target,
        "float_layers": job.float_layers,
        "known": graph_node_names(job),
    }
    if variant == "int8" and options.dynamic:
        return _with_precision(onnx_precision.quantize_dynamic_int8(model, **shared), "dynamic")
    if variant == "int8":
        quantized = onnx_precision.quantize_static_int8(
            model, calibration=job.calibration, input_permutations=input_permutations, **shared
        )
        return _with_precision(quantized, "int8")
    return model, "fp32", (), {}


def graph_node_names(job: ConversionJob) -> frozenset[str]:
    return frozenset(node.name for node in job.model.frozen.graph_def.node) if job.float_layers else frozenset()


def _with_precision(converted, precision: str):
    model, warnings, float_nodes = converted
    return model, precision, warnings, float_nodes
