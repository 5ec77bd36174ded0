"""What a run is asked to do, validated before anything heavy starts: one builder for the CLI and the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport.data import Precision, TargetSpec, TimingProtocol
from edgeport.errors import UsageError
from edgeport.model.samples import SampleRequest
from edgeport.run.options import option_names
from edgeport.run.registry import registry

TOLERANCE_KEYS = tuple(f.name for f in fields(Precision))
LATENCY_BUDGETS = ("max_p50_ms", "max_p90_ms", "max_p99_ms", "max_mean_ms", "max_load_ms", "max_peak_rss_mb")
SIZE_BUDGET = "max_size_bytes"
RUNTIME_KEYS = ("runtime", "backend")


@dataclass(frozen=True)
class TargetConfig:
    spec: TargetSpec
    options: Mapping[str, Any] = field(default_factory=dict)  # converter options (validated per converter)
    tolerance: Mapping[str, float] = field(default_factory=dict)  # overrides of the precision's defaults
    budgets: Mapping[str, float] = field(default_factory=dict)  # max_p50_ms, max_size_bytes, max_<measurement>
    backend: str | None = None

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


def split_target_settings(name: str, settings: Mapping[str, Any], option_names: tuple[str, ...]) -> TargetConfig:
    """Sort a config table's keys into converter options, tolerances, budgets and runtime settings."""
    spec = TargetSpec.parse(name)
    options, tolerance, budgets = {}, {}, {}
    backend = None
    for key, value in settings.items():
        if key in TOLERANCE_KEYS:
            tolerance[key] = _number(value, f"[target.{name!r}] {key}")
        elif key == "runtime":
            spec = TargetSpec(spec.converter, spec.variant, str(value))
        elif key == "backend":
            backend = str(value)
        elif key in option_names:
            options[key] = value
        elif key.startswith("max_") or key.startswith("min_"):
            budgets[key] = _number(value, f"[target.{name!r}] {key}", sizes=key.endswith("_bytes"))
        else:
            known = ", ".join((*option_names, *TOLERANCE_KEYS, *RUNTIME_KEYS, *LATENCY_BUDGETS, SIZE_BUDGET))
            raise UsageError(f'config [target."{name}"]: unknown key {key!r}; keys here: {known}')
    return TargetConfig(spec=spec, options=options, tolerance=tolerance, budgets=budgets, backend=backend)


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
) -> RunRequest:
    """The RunRequest of a `convert`, from the CLI (flags merged with edgeport.toml) or from edgeport.convert()."""
    configs = target_configs(targets, target_settings, shared_options)
    if backend:
        configs = with_backend(configs, backend)
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
        protocol=protocol or TimingProtocol(),
        check=check,
        bench=bench,
        baseline=baseline,
        strict=strict,
        force_v1=force_v1,
        trust_model=trust_model,
    )
