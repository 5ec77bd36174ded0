"""What a run is asked to do, validated before anything heavy starts: one builder for the CLI and the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport.checks.task import LabelsSpec
from edgeport.data import STAGES_WITH_LIMITS, Precision, StageTimeouts, TargetSpec, TimingProtocol
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
            task_gate = _number(value, f"[target.{name!r}] {key}")
            if not 0 <= task_gate <= 1:
                raise UsageError(f"[target.{name!r}] {key}: {value!r} is not an absolute drop in 0..1 (0.01 = 1 point)")
        elif key in TOLERANCE_KEYS:
            tolerance[key] = _number(value, f"[target.{name!r}] {key}")
        elif key == "runtime":
            spec = TargetSpec(spec.converter, spec.variant, str(value))
        elif key == "backend":
            backend = str(value)
        elif key in option_names:
            options[key] = value
        elif key.startswith("max_") or key.startswith("min_"):
            _refuse_near_miss(name, key)
            budgets[key] = _number(value, f"[target.{name!r}] {key}", sizes=key.endswith("_bytes"))
        else:
            known = ", ".join((*option_names, *TOLERANCE_KEYS, *RUNTIME_KEYS, *LATENCY_BUDGETS, SIZE_BUDGET, TASK_GATE))
            raise UsageError(f'config [target."{name}"]: unknown key {key!r}; keys here: {known}')
    return TargetConfig(
        spec=spec, options=options, tolerance=tolerance, budgets=budgets, backend=backend, max_accuracy_drop=task_gate
    )


def _refuse_near_miss(target: str, key: str) -> None:
    """A budget key one typo away from a tolerance or a known budget is that typo, not a new measurement: it
    would run the whole job and then fail as unmeasured."""
    import difflib

    known = (*TOLERANCE_KEYS, *LATENCY_BUDGETS, SIZE_BUDGET, TASK_GATE)
    if key in known:
        return
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
    if close:
        raise UsageError(f'config [target."{target}"]: unknown key {key!r}; did you mean {close[0]!r}?')


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
) -> RunRequest:
    """The RunRequest of a `convert`, from the CLI (flags merged with edgeport.toml) or from edgeport.convert()."""
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
