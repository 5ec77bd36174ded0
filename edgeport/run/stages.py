"""The check and bench stages' work, run in a fresh process each (see isolation.call_isolated)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.contracts import Runtime
from edgeport.data import Feeds, RawTimings, RuntimeSettings, SampleSet, TimingProtocol


@dataclass(frozen=True)
class CheckRun:
    outputs: list[Feeds]
    measurements: dict[str, Any]
    runtime_version: str


def run_check(
    runtime: Runtime,
    artifact: str,
    samples: SampleSet,
    settings: RuntimeSettings,
    known: Mapping[str, Any] | None = None,
) -> CheckRun:
    path = Path(artifact)
    outputs = runtime.infer(path, samples, settings)
    measurements = dict(runtime.measure(path, settings, samples, dict(known or {})))
    return CheckRun(outputs=outputs, measurements=measurements, runtime_version=runtime.version())


def run_bench(
    runtime: Runtime, artifact: str, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
) -> RawTimings:
    return runtime.benchmark(Path(artifact), samples, settings, protocol)
