"""Arm Ethos-U NPUs through Vela: the accelerator configurations, the supported-ops pre-check and the compile.

Vela (`ethos-u-vela`, the `[npu]` extra) is always called in a subprocess with a time limit: `vela` the CLI
for the compile, a short Python child for the supported-ops list (Vela's own table of the operator types its
compiler maps, `ethosu.regor.tflite_operator_constraints`, the one `vela --supported-ops-report` prints).
Every figure the compile gives is Vela's performance model: an estimate, never a measurement. Independent of
edgeport but for the error type: errors are ValueError/RuntimeError with one line.
"""

from __future__ import annotations

import configparser
import csv
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# Vela's --accelerator-config choices: an Ethos-U generation and its MACs per cycle.
ACCELERATORS = (
    "ethos-u55-32",
    "ethos-u55-64",
    "ethos-u55-128",
    "ethos-u55-256",
    "ethos-u65-256",
    "ethos-u65-512",
    "ethos-u85-128",
    "ethos-u85-256",
    "ethos-u85-512",
    "ethos-u85-1024",
    "ethos-u85-2048",
)
# Vela's own defaults per generation (architecture_features._set_default_sys_config/_mem_mode), named here so
# the report says which were used and Vela prints no "no system configuration specified" warning.
FAMILY_DEFAULTS = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB"),
    "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB"),
}
CONFIG_FILE = "Arm/vela.ini"  # shipped in the ethos-u-vela wheel (ethosu/config_files/)
CUSTOM_OP = "ethos-u"  # the custom operator Vela's .tflite holds for each NPU subgraph
COMPILE_TIMEOUT_S = 300
CHECK_TIMEOUT_S = 60
ESTIMATED = "estimated by Vela's performance model, not measured"
INSTALL = "pip install 'edgeport[npu]' (ethos-u-vela)"
# Vela's (Regor's) line for an operator it leaves to the CPU, then its reason line(s).
_UNSUPPORTED = re.compile(r"^Warning \(supported operators\) operator: (?P<op>[\w]+), ofm: '(?P<name>.*)'$")
_LEGACY_UNSUPPORTED = re.compile(r"^Warning: (?P<op>\w+) '(?P<name>.*)' is not supported on the NPU")
_CPU_ONLY = re.compile(r"^Info: (?P<op>\w+) '(?P<name>.*)' is a CPU only op$")


def family(accelerator: str) -> str:
    return accelerator.rsplit("-", 1)[0]


def macs_per_cycle(accelerator: str) -> int:
    return int(accelerator.rsplit("-", 1)[1])


def vela_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        return None


def _vela_program() -> list[str]:
    return [sys.executable, "-m", "ethosu.vela"]


@cache
def _config() -> configparser.ConfigParser:
    """Vela's shipped vela.ini (ethosu is a namespace package: found through ethosu.vela)."""
    from importlib.util import find_spec

    spec = find_spec("ethosu.vela")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"Vela is not installed; {INSTALL}")
    parser = configparser.ConfigParser()
    parser.read(Path(spec.origin).parent.parent / "config_files" / CONFIG_FILE)
    return parser


def config_sections() -> tuple[frozenset[str], frozenset[str]]:
    """The system configurations and memory modes of Vela's shipped vela.ini."""
    parser = _config()
    systems = {s.split(".", 1)[1] for s in parser.sections() if s.startswith("System_Config.")}
    modes = {s.split(".", 1)[1] for s in parser.sections() if s.startswith("Memory_Mode.")}
    return frozenset(systems), frozenset(modes)


def config_clock_hz(system_config: str) -> float | None:
    value = _config().get(f"System_Config.{system_config}", "core_clock", fallback=None)
    return float(value) if value else None


def config_problem(system_config: str, memory_mode: str) -> str | None:
    """Why Vela would refuse this pair, in one line; None when both are in its vela.ini."""
    systems, modes = config_sections()
    if system_config not in systems:
        return f"unknown Vela system configuration {system_config!r}; Vela's vela.ini has: {', '.join(sorted(systems))}"
    if memory_mode not in modes:
        return f"unknown Vela memory mode {memory_mode!r}; Vela's vela.ini has: {', '.join(sorted(modes))}"
    return None


_SUPPORTED_OPS_CHILD = """
import json, sys
from ethosu import regor
print(json.dumps(sorted(regor.tflite_operator_constraints(sys.argv[1]))))
"""


@cache
def supported_op_types(accelerator: str) -> frozenset[str]:
    """The TFLite builtin operator types Vela maps onto this NPU generation (its supported-ops table)."""
    generation = "EthosU85" if family(accelerator) == "ethos-u85" else "EthosU55"  # U65 shares U55's table
    done = subprocess.run(
        [sys.executable, "-c", _SUPPORTED_OPS_CHILD, generation],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Vela's supported-ops table could not be read: {_last_line(done.stderr)}")
    return frozenset(op.replace("ARGMAX", "ARG_MAX") for op in json.loads(done.stdout))


@dataclass(frozen=True)
class CpuFallback:
    op: str  # TFLite builtin name, e.g. SPACE_TO_DEPTH
    tensor: str  # Vela's name for the operator: its output tensor
    reason: str  # Vela's own words


@dataclass(frozen=True)
class VelaEstimate:
    accelerator: str
    system_config: str
    memory_mode: str
    vela_clock_hz: float  # the NPU clock of Vela's system configuration
    cycles_npu: int
    cycles_total: int
    inference_seconds: float  # at vela_clock_hz
    sram_bytes: int
    off_chip_flash_bytes: int
    on_chip_flash_bytes: int
    dram_bytes: int
    off_chip_bytes_per_inference: int  # DRAM + off-chip flash traffic
    npu_ops: int
    cpu_fallbacks: tuple[CpuFallback, ...] = ()
    vela: str = ""
    log: tuple[str, ...] = field(default=(), repr=False)

    def seconds_at(self, clock_hz: float) -> float:
        return self.cycles_total / clock_hz


def compile_model(
    model: Path, out_dir: Path, *, accelerator: str, system_config: str, memory_mode: str
) -> tuple[Path, VelaEstimate]:
    """Vela on `model` in a subprocess (time limit COMPILE_TIMEOUT_S): its optimized .tflite and its estimate."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        *_vela_program(),
        str(model),
        f"--accelerator-config={accelerator}",
        f"--config={CONFIG_FILE}",
        f"--system-config={system_config}",
        f"--memory-mode={memory_mode}",
        f"--output-dir={out_dir}",
        "--show-cpu-operations",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Vela did not finish within {COMPILE_TIMEOUT_S} s") from None
    log = (done.stdout + "\n" + done.stderr).splitlines()
    optimized = out_dir / f"{model.stem}_vela.tflite"
    summaries = sorted(out_dir.glob(f"{model.stem}_summary_*.csv"))
    if done.returncode != 0 or not optimized.exists() or not summaries:
        raise RuntimeError(f"Vela failed (exit {done.returncode}): {_last_line(done.stderr or done.stdout)}")
    with summaries[0].open(newline="") as handle:
        row = next(csv.DictReader(handle))
    kib = 1024

    def number(key: str) -> float:
        return float(row.get(key) or 0)

    cpu_ops = _cpu_fallbacks(log)
    return optimized, VelaEstimate(
        accelerator=accelerator,
        system_config=system_config,
        memory_mode=memory_mode,
        vela_clock_hz=number("core_clock"),
        cycles_npu=int(number("cycles_npu")),
        cycles_total=int(number("cycles_total")),
        inference_seconds=number("inference_time"),
        sram_bytes=round(number("sram_memory_used") * kib),
        off_chip_flash_bytes=round(number("off_chip_flash_memory_used") * kib),
        on_chip_flash_bytes=round(number("on_chip_flash_memory_used") * kib),
        dram_bytes=round(number("dram_memory_used") * kib),
        off_chip_bytes_per_inference=int(number("dram_total_bytes") + number("off_chip_flash_total_bytes")),
        npu_ops=_npu_op_count(log),
        cpu_fallbacks=cpu_ops,
        vela=vela_version() or "",
        log=tuple(log),
    )


def _cpu_fallbacks(log: list[str]) -> tuple[CpuFallback, ...]:
    """Each operator Vela left to the CPU, with the reason Vela printed for it."""
    found: dict[tuple[str, str], str] = {}
    for index, line in enumerate(log):
        line = line.rstrip()
        match = _UNSUPPORTED.match(line) or _LEGACY_UNSUPPORTED.match(line)
        if match:
            reasons = []
            for follow in log[index + 1 :]:
                follow = follow.strip()
                if not follow or _UNSUPPORTED.match(follow) or _LEGACY_UNSUPPORTED.match(follow):
                    break
                reasons.append(follow.removeprefix("Reason:").removeprefix("- ").strip())
            found[(match["op"], match["name"])] = "; ".join(r for r in reasons if r) or "no reason given"
            continue
        match = _CPU_ONLY.match(line)
        if match:
            found.setdefault((match["op"], match["name"]), "a CPU-only operator for Vela")
    return tuple(CpuFallback(op, name, reason) for (op, name), reason in found.items())


def _npu_op_count(log: list[str]) -> int:
    for line in log:
        match = re.match(r"^NPU operators = (\d+)", line.strip())
        if match:
            return int(match.group(1))
    return 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
