"""The plan of a run: each target's converter, runtime, options and settings, validated before anything heavy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeport.contracts import Converter, Runtime
from edgeport.data import Event, RuntimeSettings
from edgeport.errors import UsageError
from edgeport.run.options import build_options
from edgeport.run.registry import registry
from edgeport.run.request import RunRequest, TargetConfig

Progress = Callable[[Event], None]


def quiet(_: Event) -> None:
    pass


@dataclass(frozen=True)
class TargetPlan:
    """One target of the run, resolved: what converts it, what runs it, with which options and settings."""

    config: TargetConfig
    converter: Converter
    runtime: Runtime
    options: Any
    settings: RuntimeSettings

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def slug(self) -> str:
        return self.config.spec.slug


def plan_targets(request: RunRequest) -> list[TargetPlan]:
    """Validate targets, options and runtimes before anything heavy starts."""
    if not request.targets:
        raise UsageError(f"no targets; pass -t TARGET (known: {', '.join(registry().known_targets())})")
    plans, seen = [], set()
    for config in request.targets:
        if config.name in seen:
            raise UsageError(f"target {config.name} is listed twice")
        seen.add(config.name)
        converter, runtime = registry().resolve(config.spec)
        options = build_options(converter.Options, config.options, f"target {config.name}")
        converter.validate_options(config.spec.variant, options)  # before the model loads
        settings = RuntimeSettings(threads=request.threads, backend=config.backend)
        runtime.validate_settings(settings)
        plans.append(TargetPlan(config, converter, runtime, options, settings))
    return plans
