"""What a run is asked to do, validated before anything heavy starts."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport.contracts import Precision, TargetSpec, TimingProtocol
from edgeport.errors import UsageError
from edgeport.model.samples import SampleRequest

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
            raise UsageError(f"config [target.\"{name}\"]: unknown key {key!r}; keys here: {known}")
    return TargetConfig(spec=spec, options=options, tolerance=tolerance, budgets=budgets, backend=backend)


def _number(value: Any, where: str, sizes: bool = False) -> float:
    if sizes:
        from edgeport.run.options import parse_size  # noqa: PLC0415

        return float(parse_size(value, where))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: {value!r} is not a number")
    return float(value)
