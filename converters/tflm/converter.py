"""TFLite Micro converter (`tflm`): a full-integer int8 .tflite plus C sources for a firmware project.

The int8 model comes from the TFLite converter (`convert_to_tflite`, variant int8, calibrated with the run's
samples). It is then checked against the installed tflite-micro package: every op must have a TFLM kernel
(probed from its interpreter), no Flex/string/dynamic-shape parts, and TFLM must allocate and run it (the
arena search; a kernel that refuses an op version or type fails here). Written: model.tflite, model_data.cc /
model_data.h (the model as an alignas(16) byte array) and op_resolver.h (a MicroMutableOpResolver<N> with
exactly the model's ops). Device budgets (`board`, `ram_limit`, `flash_limit`) go to Artifact.budgets, gated
by the pipeline.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeport.checks.budgets import budget_failures
from edgeport.contracts import (
    Artifact,
    ConversionJob,
    Converter,
    Finding,
    SampleSet,
    Signature,
    option,
    quant_fallback_option,
)
from edgeport.converters.tflm.boards import board_profile, device_budgets
from edgeport.converters.tflm.csource import c_identifier_problem, model_data_cc, model_data_h, op_resolver_h
from edgeport.errors import ConversionError, EdgeportError, UsageError
from edgeport.formats.tflite.conversion import MAIN_FILE, TFLiteConversion, convert_to_tflite

TARGET = "tflm"
IO_TYPES = ("int8", "float")
C_FILES = ("model_data.cc", "model_data.h", "op_resolver.h")
PREFLIGHT_SAMPLES = 4
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_NO_BUILTIN = re.compile(r"ops with no TFLite builtin: ([\w, ]+)")
INSTALL = "run: edgeport setup --target tflm (or pip install 'edgeport[tflm]')"


@dataclass(frozen=True)
class TFLMOptions:
    io_type: str = option(
        "int8",
        flag="--io-type",
        choices=IO_TYPES,
        help="Type of the model's inputs and outputs: int8, or float (QUANTIZE/DEQUANTIZE inside the model).",
    )
    c_name: str = option(
        "g_model",
        flag="--c-name",
        metavar="NAME",
        help="C identifier of the model array in model_data.cc (and prefix of the other names).",
    )
    board: str | None = option(
        None,
        flag="--board",
        metavar="BOARD",
        help="A board profile (boards.json): its RAM and flash become the budgets.",
    )
    ram_limit: str | int | None = option(
        None, flag="--ram-limit", metavar="SIZE", help="Tensor arena budget, e.g. 256KB (wins over the board's)."
    )
    flash_limit: str | int | None = option(
        None, flag="--flash-limit", metavar="SIZE", help="Model size budget, e.g. 1MB (wins over the board's)."
    )
    quant_fallback: str = quant_fallback_option()

    def __post_init__(self):
        if self.io_type not in IO_TYPES:
            raise UsageError(f"tflm: io_type {self.io_type!r} is not supported; use one of {', '.join(IO_TYPES)}")
        problem = c_identifier_problem(str(self.c_name))
        if problem:
            raise UsageError(
                f"tflm: c_name {self.c_name!r} is not a usable C identifier ({problem}); pass e.g. --c-name g_model"
            )
        self.budgets()  # validates board, ram_limit and flash_limit

    def budgets(self) -> dict[str, int]:
        try:
            return device_budgets(board=self.board, ram_limit=self.ram_limit, flash_limit=self.flash_limit)
        except ValueError as exc:
            raise UsageError(f"tflm: {exc}") from None


def tflm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:
        raise ConversionError(f"tflm: the tflite-micro package is not installed; {INSTALL}") from None


def signature_findings(signature: Signature) -> list[Finding]:
    """What the SavedModel's signature alone says about TFLM: string inputs, dynamic shapes."""
    findings = []
    for spec in signature.inputs:
        if spec.dtype == "string":
            findings.append(
                Finding(
                    TARGET,
                    "error",
                    f"input {spec.name!r} is a string tensor; TFLite Micro has no "
                    "string kernels: feed numbers (tokenize before the model)",
                )
            )
        elif spec.shape is None:
            findings.append(
                Finding(
                    TARGET,
                    "error",
                    f"input {spec.name!r} has an unknown rank; TFLite Micro needs "
                    "static shapes: re-export with a fixed input shape",
                )
            )
        elif any(dim is None for dim in spec.shape[1:]):
            findings.append(
                Finding(
                    TARGET,
                    "error",
                    f"input {spec.describe()} has dynamic dimensions; TFLite Micro "
                    "needs static shapes: re-export with a fixed input shape",
                )
            )
        elif spec.shape and spec.shape[0] is None:
            findings.append(Finding(TARGET, "info", f"input {spec.name!r}: dynamic batch is fixed to 1 on TFLM"))
    return findings


def flatbuffer_findings(flatbuffer: bytes) -> list[Finding]:
    """Ops and op versions against the installed TFLM kernels, float ops left, Flex, strings, dynamic shapes."""
    from edgeport.formats.tflite.flatbuffer import operator_uses
    from edgeport.formats.tflm.kernels import has_custom_op, registered_builtin_ops

    uses = [use for use in operator_uses(flatbuffer) if use.count]
    kernels = registered_builtin_ops()
    flex = [use.name for use in uses if use.custom and use.name.startswith("Flex")]
    missing = [
        f"{use.name} (v{use.version})"
        for use in uses
        if (not use.custom and use.name not in kernels)
        or (use.custom and not use.name.startswith("Flex") and not has_custom_op(use.name))
    ]
    findings = [Finding(TARGET, "info", "ops: " + ", ".join(f"{u.name} v{u.version} x{u.count}" for u in uses))]
    if flex:
        findings.append(
            Finding(TARGET, "error", f"Flex ops (TensorFlow kernels) cannot run on TFLite Micro: {', '.join(flex)}")
        )
    if missing:
        findings.append(
            Finding(
                TARGET,
                "error",
                f"ops with no kernel in tflite-micro {tflm_version()}: "
                f"{', '.join(missing)}; rewrite the model without them or register a "
                "custom kernel on the device",
            )
        )
    findings.extend(_tensor_findings(flatbuffer))
    return findings


def _tensor_findings(flatbuffer: bytes) -> list[Finding]:
    from ai_edge_litert.schema_py_generated import TensorType

    from edgeport.formats.tflite.flatbuffer import builtin_names, read_model

    model, names = read_model(flatbuffer), builtin_names()
    findings = []
    float_ops, strings, dynamic = set(), set(), set()
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            used = [tensors[i] for i in [*op.inputs, *op.outputs] if i >= 0]
            if name not in BOUNDARY_OPS and any(t.type == TensorType.FLOAT32 for t in used):
                float_ops.add(name)
        for tensor in tensors:
            if tensor.type == TensorType.STRING:
                strings.add(tensor.name.decode())
            signature = list(tensor.shapeSignature) if tensor.shapeSignature is not None else []
            if any(dim == -1 for dim in signature[1:]):
                dynamic.add(tensor.name.decode())
    if float_ops:
        findings.append(
            Finding(
                TARGET,
                "warning",
                f"float ops left in the int8 model (slow without an FPU): {', '.join(sorted(float_ops))}",
            )
        )
    if strings:
        findings.append(
            Finding(
                TARGET, "error", f"string tensors, which TFLite Micro cannot hold: {', '.join(sorted(strings)[:5])}"
            )
        )
    if dynamic:
        findings.append(
            Finding(
                TARGET,
                "error",
                f"tensors with dynamic shapes, which TFLite Micro does not resize: "
                f"{', '.join(sorted(dynamic)[:5])}; re-export with fixed shapes",
            )
        )
    return findings


def _raise_errors(findings: list[Finding]) -> None:
    errors = [f.message for f in findings if f.severity == "error"]
    if errors:
        raise ConversionError(f"{TARGET}: " + "; ".join(errors))


def _int8_flatbuffer(model, options: TFLMOptions, calibration: SampleSet) -> TFLiteConversion:
    try:
        return convert_to_tflite(model, "int8", calibration, io_type=options.io_type)
    except ConversionError as exc:
        flex = _NO_BUILTIN.search(exc.message)
        if flex:  # TFLM has no Flex delegate: --allow-tf-ops is no way out here
            raise ConversionError(
                f"{TARGET}: ops with no TFLite builtin, which TFLite Micro cannot run (no Flex on "
                f"microcontrollers): {flex.group(1)}; rewrite the model without them"
            ) from None
        raise ConversionError(exc.message.replace("tflite:int8", TARGET, 1)) from None


def _arena(path: Path):
    from edgeport.formats.tflm.arena import search_in_subprocess

    try:
        search = search_in_subprocess(path)
    except RuntimeError as exc:
        raise ConversionError(f"{TARGET}: {exc}") from None
    if search.arena_bytes is None and search.failed_op:
        raise ConversionError(
            f"{TARGET}: TFLite Micro {tflm_version()} refuses the model at node {search.failed_node} "
            f"({search.failed_op}): {search.failure}; its kernel does not support this op version "
            "or type"
        )
    if search.arena_bytes is None:
        raise ConversionError(
            f"{TARGET}: TFLite Micro {tflm_version()} cannot allocate and run the model: {search.failure}"
        )
    return search


class TFLMConverter(Converter):
    name = TARGET
    variants = ("",)
    default_runtime = "tflm"
    Options = TFLMOptions
    description = "TFLite Micro: int8 .tflite + C array + op resolver, arena measured, device budgets"

    def precision(self, variant: str) -> str:
        return "int8"

    def needs_calibration(self, variant: str) -> bool:
        return True

    def float_fallback(self, variant: str) -> str | None:
        return (
            "TFLite Micro has no float kernels on many boards and the TFLite converter cannot give single layers "
            "int16 activations; for these layers, try tflite:int16x8 (TFLM runs int16x8 kernels for common ops) "
            "or quantization-aware training"
        )

    def requirements(self):
        from edgeport.run.requirements import python_package

        return (python_package("tflite-micro", extra="tflm", why="kernel check and tensor arena search"),)

    def preflight(self, model, options: TFLMOptions) -> list[Finding]:
        """Signature and graph checks; then an int8 conversion with a few synthetic samples, checked op by op
        against the installed TFLM kernels, its arena measured and the budgets compared."""
        from edgeport.model.samples import SampleRequest, synthetic_samples

        findings = signature_findings(model.signature)
        if any(f.severity == "error" for f in findings):
            return findings
        try:
            calibration = synthetic_samples(model.signature, SampleRequest(count=PREFLIGHT_SAMPLES))
            flatbuffer = _int8_flatbuffer(model, options, calibration).flatbuffer
            findings += flatbuffer_findings(flatbuffer)
            if any(f.severity == "error" for f in findings):
                return findings
            with tempfile.TemporaryDirectory(prefix="edgeport-tflm-") as folder:
                path = Path(folder) / MAIN_FILE
                path.write_bytes(flatbuffer)
                search = _arena(path)
        except EdgeportError as exc:
            return [*findings, Finding(TARGET, "error", exc.message.removeprefix(f"{TARGET}: "))]
        sizes = {"arena_bytes": search.arena_bytes, "flash_bytes": len(flatbuffer)}
        findings.append(
            Finding(TARGET, "info", f"tensor arena {sizes['arena_bytes']:,} B (host), flash {sizes['flash_bytes']:,} B")
        )
        findings += [Finding(TARGET, "error", line) for line in budget_failures(sizes, options.budgets())]
        return findings

    def convert(self, job: ConversionJob) -> Artifact:
        options: TFLMOptions = job.options
        _raise_errors(signature_findings(job.model.signature))
        conversion = _int8_flatbuffer(job.model, options, job.calibration)
        flatbuffer, warnings = conversion.flatbuffer, conversion.warnings
        findings = flatbuffer_findings(flatbuffer)
        _raise_errors(findings)
        path = job.workdir / MAIN_FILE
        path.write_bytes(flatbuffer)
        search = _arena(path)
        self._write_c_sources(job.workdir, options, flatbuffer, search.arena_bytes)
        sizes = {"arena_bytes": search.arena_bytes, "flash_bytes": len(flatbuffer)}
        budgets = options.budgets()
        over = budget_failures(sizes, budgets)
        return Artifact(
            main_file=MAIN_FILE,
            precision="int8",
            runtime=self.default_runtime,
            files=(MAIN_FILE, *C_FILES),
            warnings=warnings + tuple(f.message for f in findings if f.severity == "warning"),
            notes=(
                f"tensor arena {sizes['arena_bytes']:,} B (host-measured), flash {sizes['flash_bytes']:,} B",
                *(f"over budget: {line}" for line in over),
                *conversion.notes,
            ),
            details=self._details(job, options, flatbuffer, budgets),
            measurements={**sizes, "arena_search_probes": search.probes},
            budgets=budgets,
        )

    @staticmethod
    def _write_c_sources(folder: Path, options: TFLMOptions, flatbuffer: bytes, arena_bytes: int) -> None:
        from edgeport.formats.tflite.flatbuffer import operator_uses

        ops = [(use.name, use.custom) for use in operator_uses(flatbuffer) if use.count]
        (folder / "model_data.cc").write_text(model_data_cc(c_name=options.c_name, data=flatbuffer))
        (folder / "model_data.h").write_text(
            model_data_h(c_name=options.c_name, size=len(flatbuffer), arena_bytes=arena_bytes, source=MAIN_FILE)
        )
        (folder / "op_resolver.h").write_text(op_resolver_h(c_name=options.c_name, ops=ops))

    @staticmethod
    def _details(job: ConversionJob, options: TFLMOptions, flatbuffer: bytes, budgets: dict[str, int]) -> dict:
        from edgeport.formats.tflite.flatbuffer import operator_uses

        uses = [use for use in operator_uses(flatbuffer) if use.count]
        details = {
            "budgets": budgets,
            "io_type": options.io_type,
            "c_name": options.c_name,
            "ops": [{"op": u.name, "version": u.version, "count": u.count} for u in uses],
            "tflite_micro": tflm_version(),
            "calibration": job.calibration.source,
        }
        if options.board:
            details["board"] = board_profile(options.board)["title"]
        return details
