"""Samples and reference: the inputs every target is checked on, and the SavedModel's outputs on them.

The samples (--data, images or synthetic, conformed to the signature), the calibration set, the labels, the
warnings about them; then, in the model service, the SavedModel's outputs: at one size, or at two when edgeport
chose a dynamic dimension's size itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from edgeport.checks.task import LabelSet, load_labels, scored_output
from edgeport.data import LARGE_MODEL_SYNTHETIC_COUNT, Event, Feeds, SampleSet
from edgeport.errors import ModelLoadError, StageTimedOut
from edgeport.model.samples import SampleRequest, chosen_dimensions, load_samples
from edgeport.model.scan import trust_note
from edgeport.report import wording
from edgeport.run.isolation import Worker
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.request import RunRequest
from edgeport.run.service import ModelInfo


@dataclass(frozen=True)
class Reference:
    """Samples and the SavedModel's outputs on them: what a target's outputs are compared with."""

    samples: SampleSet
    outputs: list[Feeds]
    labels: LabelSet | None = None  # --labels: task accuracy is scored on these samples (checks/task)


@dataclass(frozen=True)
class RunInputs:
    """What the run checks and calibrates on, and what it says about them."""

    samples: SampleSet
    calibration: SampleSet
    sample_request: SampleRequest  # as used: a large model's count already lowered
    labels: LabelSet | None
    chosen: dict[str, str]  # dynamic dimensions edgeport chose: input name -> what it chose
    warnings: tuple[str, ...]


def load_inputs(request: RunRequest, info: ModelInfo, plans: Sequence[TargetPlan]) -> RunInputs:
    sample_request, fewer = large_model_samples(request.samples, info)
    samples = load_samples(info.signature, sample_request, info.vocabulary, info.input_ranges)
    calibration = load_samples(info.signature, request.calibration) if request.calibration else samples
    warnings = [*fewer, *sample_warnings(request, samples, calibration, plans)]
    if info.trusted and not info.scan.clean:
        warnings.insert(0, trust_note(info.scan))
    labels = load_labels(request.labels, samples.count) if request.labels and request.check else None
    chosen = chosen_dimensions(info.signature, request.samples)
    if chosen:
        warnings.append(
            "dynamic dimensions chosen by edgeport, and each target checked at both sizes: "
            + "; ".join(chosen.values())
            + "; pass --input-shape NAME=D0,D1,... to choose"
        )
    return RunInputs(samples, calibration, sample_request, labels, chosen, tuple(warnings))


def compute_references(
    service: Worker, info: ModelInfo, inputs: RunInputs, timeout: float, progress: Progress
) -> tuple[Reference, ...]:
    """The SavedModel's outputs on the samples (and on the second sizes, when edgeport chose sizes)."""
    progress(Event("model", "reference", "started", f"{inputs.samples.count} samples"))
    references: tuple[Reference, ...] = (
        Reference(inputs.samples, reference_outputs(service, inputs.samples, timeout), inputs.labels),
    )
    if inputs.labels is not None:  # labels that fit no output: exit 2, before anything converts
        scored_output(references[0].outputs, inputs.labels)
    if inputs.chosen:
        second = load_samples(
            info.signature,
            dataclasses.replace(inputs.sample_request, second_sizes=True),
            info.vocabulary,
            info.input_ranges,
        )
        references += (Reference(second, reference_outputs(service, second, timeout)),)
    progress(Event("model", "reference", "passed"))
    return references


def reference_outputs(service: Worker, samples: SampleSet, timeout: float) -> list[Feeds]:
    """The SavedModel's outputs on `samples`: without them nothing can be checked, so a timeout ends the run."""
    try:
        return service.call_within(timeout, "check", "reference", samples)
    except StageTimedOut as exc:
        raise ModelLoadError(f"the SavedModel's reference outputs on {samples.count} samples: {exc.message}") from None


def large_model_samples(samples: SampleRequest, info: ModelInfo) -> tuple[SampleRequest, list[str]]:
    """A large model checks on LARGE_MODEL_SYNTHETIC_COUNT synthetic samples unless the count was chosen (or
    --data given): each sample is a forward pass of the SavedModel and of every artifact. Said in the report."""
    if not info.large or samples.data is not None or samples.count_chosen:
        return samples, []
    said = (
        f"a large model ({wording.size(info.weights_bytes)} of weights): checked on "
        f"{LARGE_MODEL_SYNTHETIC_COUNT} synthetic samples, not {samples.count}; pass --samples N for more"
    )
    return dataclasses.replace(samples, count=LARGE_MODEL_SYNTHETIC_COUNT), [said]


def sample_warnings(
    request: RunRequest, samples: SampleSet, calibration: SampleSet, plans: Sequence[TargetPlan]
) -> list[str]:
    quantized = [p.name for p in plans if p.converter.needs_calibration(p.config.spec.variant)]
    warnings = [*samples.notes, *(note for note in calibration.notes if calibration is not samples)]
    if quantized and calibration.synthetic:
        warnings.append(
            f"{', '.join(quantized)} calibrated on synthetic data: pass --data or --calibration with "
            "real samples for a meaningful int8 model"
        )
    if quantized and not calibration.synthetic and request.calibration is None:
        warnings.append(
            f"{', '.join(quantized)} calibrated and checked on the same samples ({samples.source}); "
            "pass --calibration with other samples for an unbiased check"
        )
    checkable = [p.name for p in plans if p.runtime.availability().available] if request.check else []
    if samples.synthetic and checkable:  # said of the targets that get checked, never of a run that checks none
        which = "" if len(checkable) == len(plans) else f" of {', '.join(checkable)}"
        warnings.append(
            f"accuracy{which} checked on synthetic inputs; pass --data with real samples for a realistic check"
        )
    return warnings
