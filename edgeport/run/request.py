"""What a run is asked to do, validated before anything heavy starts: one builder for the CLI and the API."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport.checks.task import LabelsSpec
from edgeport.data import STAGES_WITH_LIMITS, Precision, StageTimeouts, TargetSpec, TimingProtocol
from edgeport.device.config import Device
from edgeport.errors import UsageError
from edgeport.model.samples import SampleRequest
from edgeport.run.memory import MemoryBudget, default_budget
from edgeport.run.options import option_names, parse_size
from edgeport.run.registry import registry

TOLERANCE_KEYS = tuple(f.name for f in fields(Precision))
LATENCY_BUDGETS = ("max_p50_ms", "max_p90_ms", "max_p99_ms", "max_mean_ms", "max_load_ms", "max_peak_rss_mb")
SIZE_BUDGET = "max_size_bytes"
TASK_GATE = "max_accuracy_drop"  # task accuracy against --labels: allowed absolute top-1 drop (checks/task)
RUNTIME_KEYS = ("runtime", "backend")
MAX_THREADS = 4096  # runtime threads: more is a typo (a thread pool that size cannot be created)
MAX_JOBS = 256  # model services converting at once: each is a TensorFlow process holding the model
NAME_MAX = 255  # bytes in one file name (every Linux file system), and in a whole path (PATH_MAX)
PATH_MAX = 4096

# What each gate may be: (low, low included, high, high included, what it is); NaN and +-inf never. A gate
# outside its domain would run the whole job and then pass everything (min_cosine = -1) or nothing.
GATE_DOMAINS: dict[str, tuple[float, bool, float, bool, str]] = {
    "min_cosine": (-1.0, False, 1.0, True, "a cosine similarity in (-1, 1]"),
    "min_snr_db": (-math.inf, False, math.inf, False, "a finite SNR in dB"),
    "max_abs_error": (0.0, True, math.inf, False, "an absolute error of 0 or more"),
    "min_top1_agreement": (0.0, True, 1.0, True, "a share of samples in 0..1 (0.9 = 90%)"),
    "min_top5_agreement": (0.0, True, 1.0, True, "a share of samples in 0..1 (0.9 = 90%)"),
    TASK_GATE: (0.0, True, 1.0, True, "an absolute drop in 0..1 (0.01 = 1 point)"),
}
BUDGET_DOMAIN = (0.0, False, math.inf, False, "a budget above 0")  # max_p50_ms, max_size_bytes, min_<measurement>


@dataclass(frozen=True)
class TargetConfig:
    spec: TargetSpec
    options: Mapping[str, Any] = field(default_factory=dict)  # converter options (validated per converter)
    tolerance: Mapping[str, float] = field(default_factory=dict)  # overrides of the precision's defaults
    budgets: Mapping[str, float] = field(default_factory=dict)  # max_p50_ms, max_size_bytes, max_<measurement>
    backend: str | None = None
    max_accuracy_drop: float | None = None  # TASK_GATE: needs --labels

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class RunRequest:
    model: Path
    targets: tuple[TargetConfig, ...]
    out: Path
    signature: str | None = None
    tags: tuple[str, ...] | None = None
    samples: SampleRequest = field(default_factory=SampleRequest)
    calibration: SampleRequest | None = None  # None: calibrate on the check samples
    threads: int = 1
    jobs: int = 1
    protocol: TimingProtocol = field(default_factory=TimingProtocol)
    check: bool = True
    bench: bool = True
    baseline: bool = True  # time the SavedModel on TensorFlow as the baseline row
    strict: bool = False  # a target that could not be checked (runtime unavailable, Flex ops) fails the run
    force_v1: bool = False
    trust_model: bool = False  # run a model the pre-load scan flags (edgeport.model.scan)
    timeouts: StageTimeouts = field(default_factory=StageTimeouts)  # --stage-timeout, config stage_timeout
    labels: LabelsSpec | None = None  # --labels: task accuracy of the SavedModel and every artifact (checks/task)
    layers: bool = False  # --layers: per-layer comparison of every checked target (checks/layers)
    sequential: bool = False  # --sequential: no check beside a conversion (run/pipeline._CheckLane)
    max_memory: MemoryBudget | None = None  # --max-memory: what any one process tree may hold (run/memory)
    force: bool = False  # --force: edgeport's own files beside the user's in a non-empty OUT (run/output_folder)
    devices: tuple[Device, ...] = ()  # --device: also checked and benchmarked there, over ssh (edgeport/device)


def parse_max_memory(value: Any, where: str = "--max-memory") -> MemoryBudget | None:
    """--max-memory SIZE (8GB, 512MB, bytes), "off", or None for the default (the machine's memory less a
    margin, run/memory.default_budget)."""
    if value is None:
        return default_budget()
    if str(value).strip().lower() == "off":
        return None
    size = parse_size(value, where)
    if size <= 0:
        raise UsageError(f"{where}: {value!r} is not a memory size; use e.g. 8GB, 512MB, or off")
    return MemoryBudget(size, f"{where} {value}")


def split_target_settings(name: str, settings: Mapping[str, Any], option_names: tuple[str, ...]) -> TargetConfig:
    """Sort a config table's keys into converter options, tolerances, budgets and runtime settings."""
    spec = TargetSpec.parse(name)
    options, tolerance, budgets = {}, {}, {}
    backend = None
    task_gate = None
    for key, value in settings.items():
        if key == TASK_GATE:
            task_gate = gate_value(key, value, name)
        elif key in TOLERANCE_KEYS:
            tolerance[key] = gate_value(key, value, name)
        elif key == "runtime":
            spec = TargetSpec(spec.converter, spec.variant, str(value))
        elif key == "backend":
            backend = str(value)
        elif key in option_names:
            options[key] = value
        elif key.startswith("max_") or key.startswith("min_"):
            _refuse_near_miss(name, key)
            budgets[key] = gate_value(key, value, name)
        else:
            known = ", ".join((*option_names, *TOLERANCE_KEYS, *RUNTIME_KEYS, *LATENCY_BUDGETS, SIZE_BUDGET, TASK_GATE))
            raise UsageError(f'config [target."{name}"]: unknown key {key!r}; keys here: {known}')
    return TargetConfig(
        spec=spec, options=options, tolerance=tolerance, budgets=budgets, backend=backend, max_accuracy_drop=task_gate
    )


def _refuse_near_miss(target: str, key: str) -> None:
    """A budget key one typo away from a tolerance or a known budget is that typo, not a new measurement: it
    would run the whole job and then fail as unmeasured."""
    close = _near_miss(key)
    if close:
        raise UsageError(f'config [target."{target}"]: unknown key {key!r}; did you mean {close!r}?')


GATE_KEYS = (*TOLERANCE_KEYS, TASK_GATE, *LATENCY_BUDGETS, SIZE_BUDGET)  # and max_/min_<measurement> budgets


def _near_miss(key: str, cutoff: float = 0.85) -> str | None:
    import difflib

    if key in GATE_KEYS:
        return None
    close = difflib.get_close_matches(key, GATE_KEYS, n=1, cutoff=cutoff)
    return close[0] if close else None


def parse_gates(gates: Iterable[str] | Mapping[str, Any] | None) -> dict[str | None, dict[str, float]]:
    """`--gate [TARGET.]KEY=VALUE` (repeatable), or the API's `gates={"[TARGET.]KEY": value}`: tolerances,
    budgets and the task gate, for one target or (no TARGET) every selected target; keyed by target (None:
    every one). Each key and value is checked as a config key is (gate_value: its domain; a typo: "did you
    mean"), before any work."""
    pairs = list(gates.items()) if isinstance(gates, Mapping) else [_gate_pair(item) for item in gates or ()]
    parsed: dict[str | None, dict[str, float]] = {}
    for given, value in pairs:
        target, _, key = str(given).strip().rpartition(".")
        key = key.strip().replace("-", "_")
        where = f"--gate {given}={value}"
        if key not in GATE_KEYS:
            close = _near_miss(key)
            if close:
                raise UsageError(f"{where}: unknown gate {key!r}; did you mean {close!r}?")
            if key in _all_option_names():
                raise UsageError(f"{where}: {key} is a converter option, not a gate; pass {_flag_of(key)}=...")
            if not key.startswith(("max_", "min_")):
                raise UsageError(
                    f"{where}: unknown gate {key!r}; gates: {', '.join(GATE_KEYS)}, max_<measurement> "
                    "(max_arena_bytes...)"
                )
        if isinstance(value, str) and not (key.endswith("_bytes") and key not in GATE_DOMAINS):
            try:
                value = float(value)
            except ValueError:
                raise UsageError(f"{where}: {value!r} is not a number") from None
        parsed.setdefault(target.strip() or None, {})[key] = gate_value(
            key, value, target or "every target", f"--gate {given}"
        )
    return parsed


def _gate_pair(item: str) -> tuple[str, str]:
    key, eq, value = str(item).partition("=")
    if not eq or not key.strip() or not value.strip():
        raise UsageError(
            f"--gate {item!r}: expected [TARGET.]KEY=VALUE, e.g. --gate min_cosine=0.99 or "
            "--gate tflite:int8.min_top1_agreement=0.95"
        )
    return key.strip(), value.strip()


def _all_option_names() -> set[str]:
    return {name for converter in registry().converters().values() for name in option_names(converter.Options)}


def with_gates(
    targets: Iterable[str], settings: Mapping[str, Mapping[str, Any]] | None, gates: dict[str | None, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """The per-target tables with the --gate values over them: a gate for every target first, then one
    target's (both over the config's). A gate naming a target not selected is refused."""
    settings = dict(settings or {})
    names = list(dict.fromkeys([*targets, *settings]))
    tables = {name: dict(settings.get(name, {})) for name in names}
    for target, values in sorted(gates.items(), key=lambda item: item[0] is not None):
        if target is None:
            for table in tables.values():
                table.update(values)
            continue
        if target not in tables:
            import difflib

            close = difflib.get_close_matches(target, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"--gate {target}.{next(iter(values))}: {target} is not a selected target ({', '.join(names)}); "
                f"{hint}pass -t {target}, or the gate without a target for every one"
            )
        tables[target].update(values)
    return tables


def gate_value(key: str, value: Any, target: str, where: str | None = None) -> float:
    """A tolerance, budget or task gate of one target, checked against its domain (GATE_DOMAINS; budgets
    above 0), before any work: the one place every gate of the config, a fleet manifest, --gate or the API
    passes (`where`: how the user gave it)."""
    where = where or f'[target."{target}"] {key}'
    number = _number(value, where, sizes=key.endswith("_bytes") and key not in GATE_DOMAINS)
    low, low_in, high, high_in, what = GATE_DOMAINS.get(key, BUDGET_DOMAIN)
    above = number >= low if low_in else number > low
    below = number <= high if high_in else number < high
    if not (math.isfinite(number) and above and below):
        raise UsageError(f"{where} = {value!r}: not {what}; set a value in its range, or remove the key")
    return number


def check_threads(threads: Any, where: str = "threads") -> int:
    """Runtime threads: a whole number 1..MAX_THREADS (a larger one is a typo no runtime can honour)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"{where} {threads}: runtime threads must be a whole number from 1 to {MAX_THREADS}")
    return threads


def check_jobs(jobs: Any, where: str = "jobs") -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"{where} {jobs}: targets converted in parallel must be a whole number from 1 to {MAX_JOBS}")
    return jobs


def check_path(path: Any, what: str) -> Path:
    """A path the file system can take at all: no name over NAME_MAX bytes, no path over PATH_MAX (else every
    use of it fails with ENAMETOOLONG, deep in the run)."""
    text = os.fsencode(str(path))
    if len(text) >= PATH_MAX:
        raise UsageError(f"{what}: a path of {len(text)} bytes, longer than the {PATH_MAX} allowed; pass a shorter one")
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise UsageError(
                f"{what}: the name {part[:24]!r}... is {size} bytes, longer than the {NAME_MAX} a file name may "
                "have; pass a shorter path"
            )
    return Path(path)


def _number(value: Any, where: str, sizes: bool = False) -> float:
    if sizes:
        from edgeport.run.options import parse_size

        return float(parse_size(value, where))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: {value!r} is not a number")
    return float(value)


def target_configs(
    targets: Iterable[str],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    shared_options: Mapping[str, Any] | None = None,
) -> tuple[TargetConfig, ...]:
    """Targets with their per-target settings (config tables) and options shared by all (CLI flags).

    A shared option goes to every target whose converter declares it; an option no target takes is an error.
    """
    settings = dict(settings or {})
    names = list(dict.fromkeys([*targets, *settings]))
    configs: list[TargetConfig] = []
    used: set[str] = set()
    for name in names:
        spec = TargetSpec.parse(name)
        converter = registry().resolve(spec)[0]
        known = option_names(converter.Options)
        config = split_target_settings(name, settings.get(name, {}), known)
        shared = {k: v for k, v in (shared_options or {}).items() if k in known and k not in config.options}
        used.update(k for k in (shared_options or {}) if k in known)
        configs.append(
            TargetConfig(
                spec=config.spec,
                options={**shared, **config.options},
                tolerance=config.tolerance,
                budgets=config.budgets,
                backend=config.backend,
                max_accuracy_drop=config.max_accuracy_drop,
            )
        )
    unused = sorted(set(shared_options or {}) - used)
    options = _all_option_names() if unused else set()
    gates = [key for key in unused if key.startswith(("max_", "min_")) and key not in options]
    if gates and configs:
        key, value = gates[0], (shared_options or {})[gates[0]]
        raise UsageError(
            f"-O {key}={value}: {key} is a gate, not a converter option; pass --gate {key}={value} for every "
            f"target, or --gate TARGET.{key}={value} for one (API: gates=)"
        )
    if unused and configs:
        raise UsageError(f"{_flag_of(unused[0])} does not apply to any selected target ({', '.join(names)})")
    return tuple(configs)


def _flag_of(key: str) -> str:
    """How the user gave an option: the flag a converter declares for it, else `-O key=...`."""
    for converter in registry().converters().values():
        for option in dataclasses.fields(converter.Options):
            flag = option.metadata.get("edgeport", {}).get("flag")
            if option.name == key and flag:
                return str(flag)
    return f"-O {key}"


def with_backend(configs: tuple[TargetConfig, ...], backend: str) -> tuple[TargetConfig, ...]:
    """A run-wide backend goes to every target whose runtime has backends (tfjs-node, tfjs-browser)."""
    takers = {c.name for c in configs if registry().resolve(c.spec)[1].backends}
    if not takers:
        raise UsageError(f"--backend {backend}: none of the selected targets runs on a runtime with backends")
    return tuple(dataclasses.replace(c, backend=c.backend or backend) if c.name in takers else c for c in configs)


def parse_stage_timeouts(
    value: Any, where: str = "--stage-timeout", base: StageTimeouts | None = None
) -> StageTimeouts:
    """Stage time limits from `SECONDS` (every stage), `STAGE=SECONDS`, a list of those (repeated
    --stage-timeout) or a mapping {stage: seconds} (the config's [stage_timeout] table); a limit for every
    stage applies first, per-stage ones over it. Stages: load, convert, check, bench."""
    if isinstance(value, Mapping):
        pairs: list[tuple[str | None, Any]] = [(str(stage), seconds) for stage, seconds in value.items()]
    else:
        pairs = [_stage_pair(item, where) for item in (value if isinstance(value, (list, tuple)) else [value])]
    every = [_seconds(seconds, where) for stage, seconds in pairs if stage is None]
    changes = dict.fromkeys(STAGES_WITH_LIMITS, every[-1]) if every else {}
    for stage, seconds in pairs:
        if stage is None:
            continue
        if stage not in STAGES_WITH_LIMITS:
            raise UsageError(
                f"{where}: unknown stage {stage!r}; stages with a time limit: {', '.join(STAGES_WITH_LIMITS)}"
            )
        changes[stage] = _seconds(seconds, f"{where} {stage}")
    return dataclasses.replace(base or StageTimeouts(), **changes)


def _stage_pair(item: Any, where: str) -> tuple[str | None, Any]:
    if isinstance(item, str) and "=" in item:
        stage, _, seconds = item.partition("=")
        return stage.strip().lower(), seconds.strip()
    return None, item


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{where}: {value!r} is not a number of seconds above 0 (SECONDS or STAGE=SECONDS)")
    return seconds


def check_limits(protocol: TimingProtocol, timeouts: StageTimeouts, bench: bool = True) -> None:
    """The timing protocol's cap must fit in the bench stage's time limit (and be a time at all)."""
    if not protocol.max_seconds > 0:
        raise UsageError(f"--max-seconds {protocol.max_seconds:g}: the timing protocol needs a cap above 0 s")
    if protocol.min_seconds > protocol.max_seconds:
        raise UsageError(
            f"--min-seconds {protocol.min_seconds:g} is above --max-seconds {protocol.max_seconds:g}: the cap would "
            "always cut the timed loop short; lower --min-seconds or raise --max-seconds"
        )
    if bench and timeouts.bench <= protocol.max_seconds:
        raise UsageError(
            f"the bench stage's time limit ({timeouts.bench:g} s) must be longer than --max-seconds "
            f"{protocol.max_seconds:g}, which the timing protocol may take on top of loading the artifact; "
            "raise --stage-timeout bench=SECONDS or lower --max-seconds"
        )


def build_request(
    *,
    model: Path,
    targets: Iterable[str],
    output: Path,
    samples: SampleRequest,
    target_settings: Mapping[str, Mapping[str, Any]] | None = None,
    shared_options: Mapping[str, Any] | None = None,
    calibration: Path | None = None,
    signature: str | None = None,
    tags: tuple[str, ...] | None = None,
    threads: int = 1,
    jobs: int = 1,
    protocol: TimingProtocol | None = None,
    backend: str | None = None,
    check: bool = True,
    bench: bool = True,
    baseline: bool = True,
    strict: bool = False,
    force_v1: bool = False,
    trust_model: bool = False,
    timeouts: StageTimeouts | None = None,
    labels: LabelsSpec | None = None,
    layers: bool = False,
    sequential: bool = False,
    max_memory: Any = None,
    gates: Iterable[str] | Mapping[str, Any] | None = None,
) -> RunRequest:
    """The RunRequest of a `convert`, from the CLI (flags merged with edgeport.toml) or from edgeport.convert().
    `gates`: --gate [TARGET.]KEY=VALUE items (or a mapping of them), over the config's tables."""
    from edgeport.model.samples import check_input_shape, require_pillow

    check_threads(threads)
    check_jobs(jobs)
    for what, path in (
        ("the model", model),
        ("the output folder (-o)", output),
        ("--data", samples.data),
        ("--calibration", calibration),
        ("--labels", labels.path if labels else None),
    ):
        if path is not None:
            check_path(path, what)
    for name, shape in samples.input_shapes.items():
        check_input_shape(name, shape)
    for flag, data in (("--data", samples.data), ("--calibration", calibration)):
        if data is not None and Path(data).is_dir():
            require_pillow(f"{flag} {data}")
    if gates:
        targets = list(targets)
        target_settings = with_gates(targets, target_settings, parse_gates(gates))
    configs = target_configs(targets, target_settings, shared_options)
    if backend:
        configs = with_backend(configs, backend)
    protocol = protocol or TimingProtocol()
    timeouts = timeouts or StageTimeouts()
    check_limits(protocol, timeouts, bench)
    gated = [c.name for c in configs if c.max_accuracy_drop is not None]
    if gated and labels is None:
        raise UsageError(f"{TASK_GATE} ({', '.join(gated)}) gates task accuracy: pass --labels (config labels = ...)")
    if labels is not None and samples.data is not None and Path(labels.path) == Path(samples.data) and labels.key:
        samples = dataclasses.replace(samples, exclude=(*samples.exclude, labels.key))  # not an input
    return RunRequest(
        model=Path(model),
        targets=configs,
        out=Path(output),
        signature=signature,
        tags=tags,
        samples=samples,
        calibration=dataclasses.replace(samples, data=Path(calibration)) if calibration else None,
        threads=threads,
        jobs=jobs,
        protocol=protocol,
        check=check,
        bench=bench,
        baseline=baseline,
        strict=strict,
        force_v1=force_v1,
        trust_model=trust_model,
        timeouts=timeouts,
        labels=labels,
        layers=layers,
        sequential=sequential,
        max_memory=parse_max_memory(max_memory),
    )
