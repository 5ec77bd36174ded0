"""What the check, bench and per-layer stages run inside a fresh runtime process (see isolation.call_isolated)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.contracts import Runtime
from edgeport.data import Feeds, RawTimings, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import EdgeportError, first_line


@dataclass(frozen=True)
class ExtraRun:
    """The artifact on another sample set (another input size): its outputs, or why it could not run them."""

    outputs: list[Feeds] | None
    failure: str = ""


@dataclass(frozen=True)
class CheckRun:
    outputs: list[Feeds]
    measurements: dict[str, Any]
    runtime_version: str
    extra: tuple[ExtraRun, ...] = ()
    output_permutations: dict[str, tuple[int, ...]] | None = None  # the artifact's own layout claim, if asked


def run_check(
    runtime: Runtime,
    artifact: str,
    samples: SampleSet,
    settings: RuntimeSettings,
    known: Mapping[str, Any] | None = None,
    extra: tuple[SampleSet, ...] = (),
    read_layout: bool = False,
) -> CheckRun:
    """Outputs and measurements on `samples`; outputs on each `extra` set too, in the same process. With
    `read_layout` (a check without the converter's Artifact record), also the output layout the file declares."""
    path = Path(artifact)
    outputs = runtime.infer(path, samples, settings)
    measurements = dict(runtime.measure(path, settings, samples, dict(known or {})))
    runs = []
    for more in extra:
        try:
            runs.append(ExtraRun(runtime.infer(path, more, settings)))
        except EdgeportError as exc:
            runs.append(ExtraRun(None, exc.message))
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot take this size fails this size only
            runs.append(ExtraRun(None, f"{runtime.name}: {type(exc).__name__}: {first_line(exc)}"))
    return CheckRun(
        outputs=outputs,
        measurements=measurements,
        runtime_version=runtime.version(),
        extra=tuple(runs),
        output_permutations=runtime.output_permutations(path) if read_layout else None,
    )


def run_bench(
    runtime: Runtime, artifact: str, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
) -> RawTimings:
    return runtime.benchmark(Path(artifact), samples, settings, protocol)


def run_layers(
    runtime: Runtime,
    artifact: str,
    samples: SampleSet,
    settings: RuntimeSettings,
    names: tuple[str, ...],
    aliases: Mapping[str, str],
) -> Any:
    """The per-layer stage's work: the artifact's intermediates (a checks.layers.LayerRun) on `samples`."""
    return runtime.intermediates(Path(artifact), samples, settings, names, dict(aliases))
