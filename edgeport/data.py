"""The data passed between stages: small frozen records, nothing that runs.

The plug-in contracts that consume and produce them are in edgeport.contracts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


DEFAULT_SYNTHETIC_COUNT = 32  # samples; enough for a 90 % agreement gate to mean something (checks/accuracy.py)
LARGE_MODEL_SYNTHETIC_COUNT = 2  # a large model's default (model/savedmodel.large_model_threshold): each sample
# costs a forward pass of the SavedModel and of every artifact
Feeds = dict[str, "np.ndarray"]  # one inference: input (or output) name -> array shaped as in the signature


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name ("float32", "int32", "string", "resource")
    shape: tuple[int | None, ...] | None  # None dims are dynamic; None shape is unknown rank

    def describe(self) -> str:
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(spec for spec in self.inputs if spec.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(spec for spec in self.outputs if spec.name == name)


@dataclass(frozen=True)
class TargetSpec:
    """`converter[:variant][@runtime]`, e.g. `tflite:int8`, `tfjs@tfjs-browser`."""

    converter: str
    variant: str = ""
    runtime: str | None = None

    @property
    def name(self) -> str:
        base = f"{self.converter}:{self.variant}" if self.variant else self.converter
        return f"{base}@{self.runtime}" if self.runtime else base

    @property
    def slug(self) -> str:  # folder name inside the output folder
        return self.name.replace(":", "-").replace("@", "--")

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        base, _, runtime = text.strip().partition("@")
        converter, _, variant = base.partition(":")
        return cls(
            converter=converter.strip().lower(), variant=variant.strip().lower(), runtime=runtime.strip() or None
        )


@dataclass(frozen=True)
class Finding:
    """One pre-flight observation about a model for one target family."""

    target: str  # "tflite", "onnx", ...
    severity: str  # "error" (will not convert), "warning" (needs a flag / may fail), "info"
    message: str


@dataclass(frozen=True)
class SampleSet:
    """Inputs keyed by signature name; axis 0 of each array indexes samples, the rest is one feed's shape."""

    arrays: Mapping[str, Any]
    source: str  # "synthetic (seed 0)" or the data file path
    synthetic: bool
    notes: tuple[str, ...] = ()  # what was done to the data (a dtype cast), for the report

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def feed(self, index: int) -> Feeds:
        return {name: array[index] for name, array in self.arrays.items()}

    def feeds(self) -> list[Feeds]:
        return [self.feed(i) for i in range(self.count)]


@dataclass(frozen=True)
class Artifact:
    """What a converter produced. Paths are relative to the target's folder."""

    main_file: str  # the file a runtime loads (model.tflite, model.onnx, model.json)
    precision: str  # "fp32", "fp16", "dynamic", "int8", "int16x8", "uint8"...
    runtime: str  # default runtime to check and bench it on
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # converter warnings, captured, never printed
    notes: tuple[str, ...] = ()  # things the report should say ("needs Flex ops: ...")
    not_checkable: str | None = None  # why this artifact cannot run here (e.g. Flex ops in Python)
    input_permutations: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # informative: runtimes still
    # receive signature-shaped feeds and transpose them themselves
    output_permutations: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # applied to references
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-able, format specific
    measurements: Mapping[str, float] = field(default_factory=dict)  # gated by budgets `max_<key>`
    budgets: Mapping[str, float] = field(default_factory=dict)  # budgets the converter's options set (a board's
    # RAM/flash); the user's per-target budgets win over these
    stored_bytes: int | None = None  # the bytes a device stores (TFLM: the model's flash); None: the folder's files


@dataclass(frozen=True)
class RuntimeSettings:
    threads: int = 1
    backend: str | None = None  # runtime specific (tfjs: wasm, cpu, webgl)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # why not, with the one command that installs it


@dataclass(frozen=True)
class TimingProtocol:
    """The timing protocol (the full spec: checks/timing.py). After the first (cold) inference, warm-up until
    the rolling median settles (at least `warmup_runs` and `warmup_seconds`; then until the median of the last
    `warmup_window` runs is within `warmup_tolerance` of the window before; at half of `max_seconds` at the
    latest), then timed runs until the p50's 95 % interval is within ±`ci_half_width` of it, with at least
    `min_runs` runs and `min_seconds` (0: no fixed budget). One deadline, `max_seconds` after the first
    inference, ends warm-up and timed runs together; timed runs cut below `min_runs` by it are flagged
    (`LatencyStats.truncated`), an interval still wider than asked is said (`LatencyStats.ci_met`)."""

    warmup_runs: int = 3
    warmup_seconds: float = 0.1
    warmup_window: int = 5
    warmup_tolerance: float = 0.05
    min_runs: int = 10
    min_seconds: float = 0.0
    max_seconds: float = 20.0
    ci_half_width: float = 0.02  # the p50's 95 % interval, relative, to stop at (0: stop at min_runs and min_seconds)


@dataclass(frozen=True)
class RawTimings:
    """What a runtime hands back from a benchmark; the core turns it into statistics once."""

    load_ms: float
    first_inference_ms: float
    warmup_runs: int
    run_ms: tuple[float, ...]
    peak_rss_bytes: int
    runtime_version: str
    notes: tuple[str, ...] = ()  # what the report should say about these times (e.g. a coarse timer)
    downloaded_bytes: Mapping[str, int] | None = None  # a browser page: what it fetched ("model", "runtime")


STAGES_WITH_LIMITS = ("load", "convert", "check", "bench")


@dataclass(frozen=True)
class StageTimeouts:
    """Seconds a stage may take; past it the stage's worker (and every process it started) is stopped and the
    stage fails, for its own target only. `--stage-timeout`, config `stage_timeout`."""

    load: float = 600.0  # start a model service: import TensorFlow, scan and load the SavedModel
    convert: float = 900.0  # one target's conversion
    check: float = 600.0  # the SavedModel's reference outputs; one target's check (every input size)
    bench: float = 600.0  # the SavedModel baseline; one target's benchmark (load, first run, the protocol)

    def of(self, stage: str) -> float:
        return float(getattr(self, stage))


@dataclass(frozen=True)
class Precision:
    """Accuracy tolerances; a field left None is not gated."""

    min_cosine: float | None = None
    min_snr_db: float | None = None
    max_abs_error: float | None = None
    min_top1_agreement: float | None = None
    min_top5_agreement: float | None = None

    def replace(self, **changes) -> Precision:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NoOptions:
    """For plug-ins that take no options."""


@dataclass(frozen=True)
class Event:
    """A stage of a run started or ended: what the progress display and the API's callback receive."""

    target: str  # target name, or "model"
    stage: str  # load, reference, convert, check, bench, baseline, report
    status: str  # started, passed, failed, error, skipped
    message: str = ""
