"""The two plug-in contracts, Converter and Runtime (and a runtime's Session), and `option` for their options.

A converter turns the loaded model into an artifact folder; a runtime loads an artifact and runs it.
Everything else (samples, reference outputs, the accuracy check, the timing protocol, reports) lives once
in the core. Plug-ins import their heavy libraries inside their methods, never at module level. The records
they exchange are defined in edgeport.data and re-exported here, so a plug-in imports from one place.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeport.checks.timing import Session, time_session
from edgeport.data import (
    Artifact,
    Availability,
    Event,
    Feeds,
    Finding,
    NoOptions,
    Precision,
    RawTimings,
    RuntimeSettings,
    SampleSet,
    Signature,
    TargetSpec,
    TensorSpec,
    TimingProtocol,
)
from edgeport.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.checks.layers import LayerRun
    from edgeport.model.savedmodel import LoadedModel
    from edgeport.run.requirements import Requirement

__all__ = [
    "Artifact",
    "Availability",
    "ConversionJob",
    "Converter",
    "Event",
    "Feeds",
    "Finding",
    "NoOptions",
    "Precision",
    "RawTimings",
    "Runtime",
    "RuntimeSettings",
    "SampleSet",
    "Session",
    "Signature",
    "TargetSpec",
    "TensorSpec",
    "TimingProtocol",
    "availability_of",
    "option",
]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,  # noqa: A002 - click's word for it
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    metavar: str | None = None,
) -> Any:
    """A field of a plug-in's Options dataclass: its help, and the `edgeport convert` flag that sets it.

    Without `flag` the option is still settable with `-O KEY=VALUE` (and listed under the converter in --help).
    """
    meta = {"help": help, "flag": flag, "choices": tuple(choices), "metavar": metavar}
    return dataclasses.field(default=default, metadata={"edgeport": meta})


QUANT_FALLBACK_CHOICES = ("off", "auto")


def quant_fallback_option() -> Any:
    """The `quant_fallback` option every converter with quantized variants declares (the same key, so one
    `-O quant_fallback=auto` reaches all of them; run/quant_fallback reads it)."""
    return option(
        "off",
        choices=QUANT_FALLBACK_CHOICES,
        help="auto: when a quantized variant fails its gates, keep the layers adding the most error in float "
        "until the gates pass (reported with the size and latency cost against the all-quantized artifact).",
    )


def availability_of(name: str, requirements: tuple[Requirement, ...]) -> Availability:
    """Available when every requirement is installed; else what is missing and the command that installs it."""
    missing = [r.name for r in requirements if not r.present]
    if not missing:
        return Availability(True)
    return Availability(False, f"{', '.join(missing)} not installed; run: edgeport setup --target {name}")


@dataclasses.dataclass(frozen=True)
class ConversionJob:
    """What a converter is given. `workdir` is a private staging folder: write the artifact there."""

    model: LoadedModel
    target: TargetSpec
    options: Any  # the converter's own frozen Options dataclass
    calibration: SampleSet
    workdir: Path
    float_layers: tuple[str, ...] = ()  # TF layer names to keep in float (-O quant_fallback=auto; see
    # Converter.float_fallback): the converter maps them to its own nodes and says which it kept


class Converter(ABC):
    """Turns the loaded SavedModel into one artifact folder, for one variant."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]] = ("",)
    default_runtime: ClassVar[str]
    Options: ClassVar[type] = NoOptions  # a frozen dataclass; its field names are the option keys
    description: ClassVar[str] = ""

    def precision(self, variant: str) -> str:
        return variant or "fp32"

    def needs_calibration(self, variant: str) -> bool:
        return False

    def float_fallback(self, variant: str) -> str | None:
        """None when `convert` keeps `job.float_layers` in float for this variant, so `-O quant_fallback=auto`
        (run/quant_fallback) can keep the layers adding the most error in float until the gates pass; else why
        it cannot, which the report says."""
        return f"the {self.name} converter cannot keep chosen layers in float"

    def requirements(self) -> tuple[Requirement, ...]:
        """What must be installed beyond edgeport's own dependencies (`edgeport setup` installs it)."""
        return ()

    def variant_requirements(self, variant: str) -> tuple[Requirement, ...]:
        """What one variant needs ("" the plain target); default: the converter's `requirements()`. Override when
        some variants need more than the others (`tflm:ethos-u*`: Vela): `edgeport doctor` gives those a row."""
        return self.requirements()

    def availability(self) -> Availability:
        return availability_of(self.name, self.requirements())

    def variant_availability(self, variant: str) -> Availability:
        """Whether one variant converts here; default: the converter's. Override when a variant needs more."""
        return self.availability()

    def validate_options(self, variant: str, options: Any) -> None:
        """Checks of the options alone, for this variant (no model needed): run before the model service
        starts, so a bad flag costs no load. Raise UsageError (exit 2)."""

    def validate(self, model: LoadedModel, variant: str, options: Any) -> None:
        """Checks of the options against the model and the installed tools, before any target converts.

        Raise UsageError: the run stops with exit 2 before anything is written.
        """

    def preflight(self, model: LoadedModel, options: Any) -> list[Finding]:
        """Cheap checks that need no conversion (shown by `edgeport inspect`)."""
        return []

    @abstractmethod
    def convert(self, job: ConversionJob) -> Artifact: ...


class Runtime(ABC):
    """Loads an artifact and runs it.

    The pipeline calls `infer` and `benchmark` inside a fresh worker process, so a crash fails only its own
    target and every benchmark starts clean. Runtimes backed by another process (Node.js, a browser)
    override both; others implement `open` and inherit the rest.
    """

    name: ClassVar[str]
    artifact_suffixes: ClassVar[tuple[str, ...]] = ()  # for `edgeport check FILE`: which files it loads
    backends: ClassVar[tuple[str, ...]] = ()  # choices for RuntimeSettings.backend (first = default)
    description: ClassVar[str] = ""

    def requirements(self) -> tuple[Requirement, ...]:
        """What must be installed beyond edgeport's own dependencies (`edgeport setup` installs it)."""
        return ()

    def availability(self) -> Availability:
        return availability_of(self.name, self.requirements())

    @abstractmethod
    def version(self) -> str: ...

    def validate_settings(self, settings: RuntimeSettings) -> None:
        """Cheap checks of the settings before any work; raise UsageError."""
        if settings.backend is not None and settings.backend not in self.backends:
            choices = f"use one of {', '.join(self.backends)}" if self.backends else "it has none"
            raise UsageError(f"runtime {self.name} has no backend {settings.backend!r}; {choices}")

    def cannot_run(self, artifact: Path) -> str | None:
        """Why this runtime cannot run this artifact, read from the file before running it (a tensor type the
        runtime does not take): its check and benchmark are then unavailable with that reason, never failed as
        if the artifact were wrong. Default: None (the runtime says so itself when it runs it)."""
        return None

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        raise NotImplementedError(f"runtime {self.name} does not open sessions in Python")

    def output_permutations(self, artifact: Path) -> dict[str, tuple[int, ...]]:
        """Outputs the artifact file says it lays out differently from the signature (signature -> artifact
        axes), for a check that has no converter's Artifact record (`edgeport check`). Default: none."""
        return {}

    def infer(self, artifact: Path, samples: SampleSet, settings: RuntimeSettings) -> list[Feeds]:
        session = self.open(artifact, settings)
        try:
            return [session.run(feed) for feed in samples.feeds()]
        finally:
            session.close()

    def intermediates(
        self,
        artifact: Path,
        samples: SampleSet,
        settings: RuntimeSettings,
        names: Sequence[str],
        aliases: Mapping[str, str],
    ) -> LayerRun:
        """Every layer output the artifact keeps, for the per-layer comparison (checks/layers): per sample of
        `samples`, the TF layer name (of `names`, the frozen graph's layers in depth order; `aliases` maps the
        signature's outputs to layers) -> its value, dequantized, in the artifact's layout. Match artifact
        tensor names with `checks.layers.match_names`. Default: not supported (the report says so)."""
        raise NotImplementedError(f"runtime {self.name} has no per-layer comparison")

    def measure(
        self, artifact: Path, settings: RuntimeSettings, samples: SampleSet, known: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        """Runtime-specific measurements taken during the check (e.g. TFLM's minimum arena, in bytes).

        `known`: what the converter already measured on this very artifact (`Artifact.measurements`; empty for
        `edgeport check`); a runtime need not measure it again. Numeric values are gated by budgets named
        `max_<key>` (e.g. `max_arena_bytes`); all are reported.
        """
        return {}

    def benchmark(
        self, artifact: Path, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
    ) -> RawTimings:
        return time_session(lambda: self.open(artifact, settings), samples, protocol, self.version())
