"""TFLite Micro converter (`tflm`): a full-integer int8 .tflite plus C sources for a firmware project.

The int8 model comes from the TFLite converter (`convert_to_tflite`, variant int8, calibrated with the run's
samples). It is then checked against the installed tflite-micro package: every op must have a TFLM kernel
(probed from its interpreter), no Flex/string/dynamic-shape parts, and TFLM must allocate and run it (the
arena search; a kernel that refuses an op version or type fails here). Written: model.tflite, model_data.cc /
model_data.h (the model as an alignas(16) byte array) and op_resolver.h (a MicroMutableOpResolver<N> with
exactly the model's ops). Device budgets (`board`, `ram_limit`, `flash_limit`) go to Artifact.budgets, gated
by the pipeline. The model's flash is measured: model_data.cc compiled with arm-none-eabi-gcc for the board's
core, text+data (firmware.py); without the compiler it is the flatbuffer's size, and the report says so.

The variants `tflm:ethos-u55-128` ... `tflm:ethos-u85-2048` (vela.ACCELERATORS) add an Arm Ethos-U NPU: the
checked int8 model goes through Vela (its system configuration and memory mode from the options, else the
board's, else Vela's default for that generation); the C sources then hold Vela's optimized .tflite
(model_vela.tflite, with the `ethos-u` custom op) and the report gives Vela's estimate and the operators left
to the CPU with Vela's reasons. The NPU cannot run here: the check runs model.tflite, the int8 model that went
into Vela, on TFLM's reference kernels, and every Vela figure is labelled estimated, not measured.
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
from edgeport.converters.tflm import firmware, vela
from edgeport.converters.tflm.boards import board_npu, board_profile, device_budgets
from edgeport.converters.tflm.csource import c_identifier_problem, model_data_cc, model_data_h, op_resolver_h
from edgeport.errors import ConversionError, EdgeportError, UsageError
from edgeport.formats.tflite.conversion import MAIN_FILE, TFLiteConversion, convert_to_tflite
from edgeport.report import wording

TARGET = "tflm"
IO_TYPES = ("int8", "float")
C_FILES = ("model_data.cc", "model_data.h", "op_resolver.h")
VELA_FILE = "model_vela.tflite"
NPU_NOT_RUN = (
    "the NPU's numerics were not run: the check ran model.tflite, the int8 model that went into Vela, on "
    "TFLite Micro's reference kernels; Vela's figures are estimated, not measured"
)
PREFLIGHT_SAMPLES = 4
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_NO_BUILTIN = re.compile(r"ops with no TFLite builtin: ([\w, ]+)")
INSTALL = "run: edgeport setup --target tflm (or pip install 'edgeport[tflm]')"
NPU_VARIANTS = "tflm:ethos-u*"  # how doctor and the requirements name the Ethos-U variants together
# Vela's supported-ops table depends on the NPU generation only: the pre-flight names any configuration of it.
_SMALLEST_MACS = {"ethos-u55": 32, "ethos-u65": 256, "ethos-u85": 128}


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
    vela_system_config: str | None = option(
        None,
        flag="--vela-system-config",
        metavar="NAME",
        help="tflm:ethos-u*: Vela's system configuration (vela.ini), e.g. Ethos_U55_High_End_Embedded "
        "(default: the board's, else Vela's default for the NPU generation).",
    )
    vela_memory_mode: str | None = option(
        None,
        flag="--vela-memory-mode",
        metavar="NAME",
        help="tflm:ethos-u*: Vela's memory mode (vela.ini), e.g. Shared_Sram (default: the board's, else "
        "Vela's default for the NPU generation).",
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

    def vela_config(self, accelerator: str) -> tuple[str, str]:
        """The Vela system configuration and memory mode for `accelerator`: the option, else the board's (when
        it carries that NPU generation), else Vela's default for the generation."""
        system, memory = vela.FAMILY_DEFAULTS[vela.family(accelerator)]
        if self.board and board_npu(self.board) == vela.family(accelerator):
            profile = board_profile(self.board)
            system, memory = profile.get("vela_system_config") or system, profile.get("vela_memory_mode") or memory
        return self.vela_system_config or system, self.vela_memory_mode or memory


def _vela_requirement():
    from edgeport.run.requirements import python_package

    return python_package(
        "ethos-u-vela", extra="npu", why=f"the {NPU_VARIANTS} variants: Vela compiles the model for the Ethos-U NPU"
    )


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


def _sizes_said(sizes: dict[str, int], where: str) -> str:
    """The arena and flash as a person reads them, each with its exact bytes (what budgets compare)."""
    arena, flash = wording.size(sizes["arena_bytes"]), wording.size(sizes["flash_bytes"])
    return f"tensor arena {arena} ({sizes['arena_bytes']:,} B, {where}), flash {flash} ({sizes['flash_bytes']:,} B)"


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
        return convert_to_tflite(model, "int8", calibration, io_type=options.io_type, batch_one=True)
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


def npu_findings(flatbuffer: bytes, accelerator: str) -> list[Finding]:
    """Vela's supported-ops table against the int8 model's operators, without compiling: each operator type
    Vela cannot map onto this NPU generation is a CPU fallback (a warning; the compile names every one, with
    Vela's reason, including those its per-operator constraints refuse)."""
    from edgeport.formats.tflite.flatbuffer import operator_uses

    try:
        supported = vela.supported_op_types(accelerator)
    except (RuntimeError, OSError, ValueError) as exc:
        return [Finding(TARGET, "warning", f"{accelerator}: {exc}; {vela.INSTALL}")]
    uses = [use for use in operator_uses(flatbuffer) if use.count]
    cpu = [f"{u.name} x{u.count}" for u in uses if u.custom or u.name not in supported]
    generation = vela.family(accelerator).replace("ethos-u", "Ethos-U")
    if not cpu:
        return [Finding(TARGET, "info", f"{generation}: Vela's supported-ops table maps every operator type")]
    return [
        Finding(
            TARGET,
            "warning",
            f"{generation}: CPU fallback for {', '.join(cpu)}: not in Vela {vela.vela_version()}'s supported-ops "
            f"table for the {generation} (these run on the Cortex-M through TFLite Micro)",
        )
    ]


def _flash(folder: Path, board: str | None, flatbuffer: bytes) -> tuple[int, dict, str]:
    """The model's flash: model_data.cc compiled for the board's core (text+data), else the flatbuffer's size.

    Returns (bytes, details, the note that says how it was found)."""
    cpu, cpu_said = firmware.DEFAULT_CPU, f"{firmware.DEFAULT_CPU} (no board given)"
    if board:
        profile = board_profile(board)
        cpu = profile.get("cpu")
        cpu_said = cpu or ""
        if cpu is None:
            said = f"estimated from the flatbuffer size ({profile['title']} is not an Arm core)"
            return len(flatbuffer), {"bytes": len(flatbuffer), "method": said}, f"model flash {said}"
    try:
        compiled = firmware.compile_sources(folder, ("model_data.cc",), cpu=cpu)
    except RuntimeError as exc:
        said = f"estimated from the flatbuffer size ({exc})"
        return len(flatbuffer), {"bytes": len(flatbuffer), "method": said}, f"model flash {said}"
    method = f"compiled with {compiled.compiler} for {cpu_said} (-Os), text+data of model_data.o"
    details = {
        "bytes": compiled.flash_bytes,
        "text": compiled.text,
        "data": compiled.data,
        "bss": compiled.bss,
        "method": method,
        "not_included": firmware.NOT_INCLUDED,
        "flatbuffer_bytes": len(flatbuffer),
    }
    note = (
        f"model flash {wording.size(compiled.flash_bytes)} ({compiled.flash_bytes:,} B) {method}; "
        f"{firmware.NOT_INCLUDED}"
    )
    return compiled.flash_bytes, details, note


def _estimate_details(estimate: vela.VelaEstimate, board: str | None) -> tuple[dict, list[str]]:
    """Vela's figures for report.json (every key says estimated) and the notes a person reads."""
    clock = estimate.vela_clock_hz
    clock_said = f"Vela's {estimate.system_config} clock"
    board_clock = board_profile(board).get("npu_clock_hz") if board and board_npu(board) else None
    if board_clock:
        clock, clock_said = float(board_clock), f"the board's NPU clock ({board_profile(board)['title']})"
    seconds = estimate.seconds_at(clock) if clock else estimate.inference_seconds
    details = {
        "basis": "estimated by Vela's performance model, not measured",
        "accelerator": estimate.accelerator,
        "system_config": estimate.system_config,
        "memory_mode": estimate.memory_mode,
        "vela": estimate.vela,
        "clock_hz": clock,
        "clock_source": clock_said,
        "npu_cycles_estimated": estimate.cycles_npu,
        "total_cycles_estimated": estimate.cycles_total,
        "inference_ms_estimated": seconds * 1000,
        "sram_bytes_estimated": estimate.sram_bytes,
        "off_chip_flash_bytes_estimated": estimate.off_chip_flash_bytes,
        "on_chip_flash_bytes_estimated": estimate.on_chip_flash_bytes,
        "dram_bytes_estimated": estimate.dram_bytes,
        "off_chip_bytes_per_inference_estimated": estimate.off_chip_bytes_per_inference,
        "npu_operators": estimate.npu_ops,
        "cpu_fallbacks": [{"op": f.op, "tensor": f.tensor, "reason": f.reason} for f in estimate.cpu_fallbacks],
    }
    name = estimate.accelerator.replace("ethos-u", "Ethos-U")
    notes = [
        f"{name} (Vela {estimate.vela}, {estimate.system_config}, {estimate.memory_mode}): "
        f"{estimate.cycles_total:,} cycles ({estimate.cycles_npu:,} NPU), {wording.latency_ms(seconds * 1000)} per "
        f"inference at {clock / 1e6:,.0f} MHz ({clock_said}) - estimated, not measured",
        f"{name} memory: SRAM {wording.size(estimate.sram_bytes)}, off-chip flash "
        f"{wording.size(estimate.off_chip_flash_bytes)}, DRAM {wording.size(estimate.dram_bytes)}, off-chip traffic "
        f"{wording.size(estimate.off_chip_bytes_per_inference)} per inference - estimated, not measured",
    ]
    if estimate.cpu_fallbacks:
        notes.append(
            f"{name}: CPU fallback (Vela's reasons): "
            + "; ".join(f"{f.op} '{f.tensor}': {f.reason}" for f in estimate.cpu_fallbacks)
        )
    else:
        notes.append(f"{name}: every operator mapped to the NPU ({estimate.npu_ops} NPU operators)")
    notes.append(NPU_NOT_RUN)
    return details, notes


class TFLMConverter(Converter):
    name = TARGET
    variants = ("", *vela.ACCELERATORS)
    default_runtime = "tflm"
    Options = TFLMOptions
    description = (
        "TFLite Micro: int8 .tflite + C array + op resolver, arena and flash measured, device budgets; "
        "tflm:ethos-u55-128 etc.: Vela for an Arm Ethos-U NPU (estimated)"
    )

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
        """Everything the converter's variants need, so `edgeport setup --target tflm` installs the NPU
        variants' Vela (the [npu] extra, with pip) beside TFLite Micro and the Arm compiler (apt)."""
        return (*self.variant_requirements(""), _vela_requirement())

    def variant_requirements(self, variant: str):
        """What one variant needs: plain `tflm` TFLite Micro and the Arm compiler; `tflm:ethos-u*` Vela too.
        `edgeport doctor` gives the NPU variants a row of their own from it (edgeport/cli/setup.py)."""
        from edgeport.run.requirements import python_package, system_program

        base = (
            python_package("tflite-micro", extra="tflm", why="kernel check and tensor arena search"),
            system_program(
                firmware.COMPILER,
                apt_packages=(firmware.APT_PACKAGE,),
                why="the model's flash, compiled for the board's core",
            ),
        )
        return (*base, _vela_requirement()) if variant else base

    def availability(self):
        from edgeport.contracts import availability_of

        return availability_of(self.name, self.variant_requirements(""))  # plain tflm needs no Vela

    def variant_availability(self, variant: str):
        from edgeport.contracts import Availability

        base = self.availability()
        if not variant or not base.available:
            return base
        if all(r.present for r in self.variant_requirements(variant)):
            return base
        return Availability(False, f"ethos-u-vela not installed; run: {vela.INSTALL} or edgeport setup --target tflm")

    def validate_options(self, variant: str, options: TFLMOptions) -> None:
        if not variant:
            if options.vela_system_config or options.vela_memory_mode:
                raise UsageError(
                    "tflm: vela_system_config and vela_memory_mode apply to an NPU variant only; "
                    "use e.g. -t tflm:ethos-u55-128"
                )
            return
        if options.board and board_npu(options.board) and board_npu(options.board) != vela.family(variant):
            raise UsageError(
                f"tflm:{variant}: board {options.board!r} carries an {board_npu(options.board)}, not an "
                f"{vela.family(variant)}; pick a matching variant or board"
            )
        if vela.vela_version() is None:
            return  # variant_availability says what to install
        problem = vela.config_problem(*options.vela_config(variant))
        if problem:
            raise UsageError(f"tflm:{variant}: {problem}; pass --vela-system-config / --vela-memory-mode")

    def preflight(self, model, options: TFLMOptions) -> list[Finding]:
        """Signature and graph checks; then an int8 conversion with a few synthetic samples, checked op by op
        against the installed TFLM kernels, its arena measured and the budgets compared. A board with an
        Ethos-U NPU adds Vela's supported-ops check (no compile): the operators that would fall back to the CPU."""
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
            npu = board_npu(options.board) if options.board else None
            if npu:
                findings += npu_findings(flatbuffer, f"{npu}-{_SMALLEST_MACS[npu]}")
            with tempfile.TemporaryDirectory(prefix="edgeport-tflm-") as folder:
                path = Path(folder) / MAIN_FILE
                path.write_bytes(flatbuffer)
                search = _arena(path)
        except EdgeportError as exc:
            return [*findings, Finding(TARGET, "error", exc.message.removeprefix(f"{TARGET}: "))]
        sizes = {"arena_bytes": search.arena_bytes, "flash_bytes": len(flatbuffer)}
        findings.append(Finding(TARGET, "info", _sizes_said(sizes, "host")))
        findings += [Finding(TARGET, "error", line) for line in budget_failures(sizes, options.budgets())]
        return findings

    def convert(self, job: ConversionJob) -> Artifact:
        options: TFLMOptions = job.options
        accelerator = job.target.variant
        _raise_errors(signature_findings(job.model.signature))
        conversion = _int8_flatbuffer(job.model, options, job.calibration)
        flatbuffer, warnings = conversion.flatbuffer, conversion.warnings
        findings = flatbuffer_findings(flatbuffer)
        _raise_errors(findings)
        path = job.workdir / MAIN_FILE
        path.write_bytes(flatbuffer)
        search = _arena(path)
        files: tuple[str, ...] = (MAIN_FILE, *C_FILES)
        firmware_model = flatbuffer
        npu_notes: list[str] = []
        npu_details: dict = {}
        if accelerator:
            findings += npu_findings(flatbuffer, accelerator)
            firmware_model, npu_details, npu_notes = self._vela(job, options, path)
            files = (MAIN_FILE, VELA_FILE, *C_FILES)
        vela_sram = npu_details.get("sram_bytes_estimated") if npu_details else None
        self._write_c_sources(job.workdir, options, firmware_model, search.arena_bytes, vela_sram)
        flash_bytes, flash_details, flash_note = _flash(job.workdir, options.board, firmware_model)
        sizes = {"arena_bytes": search.arena_bytes, "flash_bytes": flash_bytes}
        budgets = options.budgets()
        over = budget_failures(sizes, budgets)
        details = {**self._details(job, options, flatbuffer, budgets), "flash": flash_details}
        if npu_details:
            details["ethos_u"] = npu_details
        return Artifact(
            main_file=MAIN_FILE,
            precision="int8",
            runtime=self.default_runtime,
            files=files,
            warnings=warnings + tuple(f.message for f in findings if f.severity == "warning"),
            notes=(
                _sizes_said(sizes, "host-measured"),
                flash_note,
                *npu_notes,
                *(f"over budget: {line}" for line in over),
                *conversion.notes,
            ),
            details=details,
            measurements={**sizes, "arena_search_probes": search.probes},
            budgets=budgets,
            stored_bytes=flash_bytes,  # what the device stores is the model's flash, not the C sources beside it
        )

    @staticmethod
    def _vela(job: ConversionJob, options: TFLMOptions, model: Path) -> tuple[bytes, dict, list[str]]:
        """Vela on the checked int8 model: its optimized .tflite (written as model_vela.tflite), the estimate
        for report.json and the notes."""
        accelerator = job.target.variant
        system_config, memory_mode = options.vela_config(accelerator)
        problem = vela.config_problem(system_config, memory_mode)
        if problem:
            raise UsageError(f"{TARGET}:{accelerator}: {problem}")
        with tempfile.TemporaryDirectory(prefix="edgeport-vela-") as scratch:
            try:
                optimized, estimate = vela.compile_model(
                    model, Path(scratch), accelerator=accelerator, system_config=system_config, memory_mode=memory_mode
                )
            except (RuntimeError, OSError) as exc:
                raise ConversionError(f"{TARGET}:{accelerator}: {exc}") from None
            data = optimized.read_bytes()
        (job.workdir / VELA_FILE).write_bytes(data)
        details, notes = _estimate_details(estimate, options.board)
        details["file"] = VELA_FILE
        return data, details, notes

    @staticmethod
    def _write_c_sources(
        folder: Path, options: TFLMOptions, flatbuffer: bytes, arena_bytes: int, vela_sram: int | None = None
    ) -> None:
        """`vela_sram`: the flatbuffer is Vela's model (model_vela.tflite), with Vela's SRAM estimate."""
        from edgeport.formats.tflite.flatbuffer import operator_uses

        ops = [(use.name, use.custom) for use in operator_uses(flatbuffer) if use.count]
        (folder / "model_data.cc").write_text(model_data_cc(c_name=options.c_name, data=flatbuffer))
        source = VELA_FILE if vela_sram is not None else MAIN_FILE
        (folder / "model_data.h").write_text(
            model_data_h(
                c_name=options.c_name,
                size=len(flatbuffer),
                arena_bytes=arena_bytes,
                source=source,
                vela_sram_bytes=vela_sram,
            )
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
