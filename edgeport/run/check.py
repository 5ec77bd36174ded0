"""Check: an artifact run on its runtime, in a fresh process, on every reference's samples, and compared.

One runtime process runs every size. The comparison is checks/accuracy's (plus the task accuracy against
labels), and the budgets on measurements (size, arena, flash) are part of the same verdict. What follows a
failed check (the per-layer comparison, quant_fallback) is run/judge's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.checks.accuracy import AccuracyResult, compare, default_tolerance
from edgeport.checks.budgets import budget_failures, unmeasured
from edgeport.checks.task import task_accuracy
from edgeport.data import Artifact, Event, Feeds, SampleSet
from edgeport.errors import EdgeportError
from edgeport.report.files import StageResult
from edgeport.run.isolation import call_isolated
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.reference import Reference
from edgeport.run.request import LATENCY_BUDGETS, SIZE_BUDGET, RunRequest
from edgeport.run.runtime_calls import ExtraRun, run_check


@dataclass(frozen=True)
class Checked:
    """A check's outcome: the stage, each size's (reference, accuracy or None, why it could not run), the
    runtime's version and the measurements it added."""

    stage: StageResult
    sizes: tuple[tuple[Reference, AccuracyResult | None, str], ...] = ()
    runtime_version: str | None = None
    measurements: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def accuracy(self) -> AccuracyResult | None:
        """The first size's: the one the benchmark runs at."""
        return self.sizes[0][1] if self.sizes else None

    @property
    def accuracy_failed(self) -> bool:
        """The artifact ran and its outputs missed a gate (not: it could not run)."""
        return self.stage.status == "failed" and self.accuracy is not None and not self.accuracy.passed


def unavailable(plan: TargetPlan, artifact: Artifact, main: Path) -> str | None:
    """Why this artifact cannot run here (not checkable, its runtime missing, or a runtime that cannot take
    what the file holds: `Runtime.cannot_run`), or None."""
    if artifact.not_checkable:
        return f"converted, not checked: {artifact.not_checkable}"
    availability = plan.runtime.availability()
    if not availability.available:
        return f"runtime {plan.runtime.name} unavailable: {availability.reason}"
    refused = plan.runtime.cannot_run(main)
    return f"runtime {plan.runtime.name} cannot run it: {refused}" if refused else None


def check_artifact(
    request: RunRequest,
    plan: TargetPlan,
    artifact: Artifact,
    main: Path,
    references: tuple[Reference, ...],
    logs: Path,
    progress: Progress,
) -> Checked:
    """Check the artifact on each reference's samples (one, or two when edgeport chose dynamic sizes)."""
    name = plan.name
    if not request.check:
        why = "--no-check (--strict: a target that is not checked fails)" if request.strict else "--no-check"
        return Checked(StageResult("check", "failed" if request.strict else "skipped", 0, why))
    reason = unavailable(plan, artifact, main)
    if reason:
        progress(Event(name, "check", "skipped", reason))
        return Checked(StageResult("check", "failed" if request.strict else "skipped", 0, reason))
    progress(Event(name, "check", "started"))
    start = time.perf_counter()
    tolerance = default_tolerance(artifact.precision).replace(**plan.config.tolerance)
    try:
        result = call_isolated(
            run_check,
            plan.runtime,
            str(main),
            references[0].samples,
            plan.settings,
            artifact.measurements,
            tuple(reference.samples for reference in references[1:]),
            log_path=logs / f"{plan.slug}.log",
            what=f"{plan.runtime.name} runtime",
            timeout=request.timeouts.check,
            stage="check",
        )
    except EdgeportError as exc:
        progress(Event(name, "check", "failed", exc.message))
        return Checked(StageResult("check", "failed", time.perf_counter() - start, exc.message))
    sizes: list[tuple[Reference, AccuracyResult | None, str]] = []
    failures: list[str] = []
    runs = [ExtraRun(result.outputs), *result.extra]
    for reference, run in zip(references, runs, strict=True):
        where = "" if len(references) == 1 else f"at {shapes_text(reference.samples)}: "
        if run.outputs is None:
            sizes.append((reference, None, run.failure))
            failures.append(where + run.failure)
            continue
        accuracy = compare(reference.outputs, run.outputs, tolerance, artifact.output_permutations)
        if reference.labels is not None:
            accuracy = with_task(accuracy, reference, run.outputs, plan.config.max_accuracy_drop)
        sizes.append((reference, accuracy, ""))
        failures += [where + failure for failure in accuracy.failures]
        if accuracy.inconclusive and request.strict:  # as an unchecked target: a failure with --strict only
            failures.append(f"{where}{accuracy.inconclusive} (--strict: an inconclusive check fails)")
    status = "failed" if failures else "passed"
    reason = "; ".join(failures)
    progress(Event(name, "check", status, reason))
    stage = StageResult("check", status, time.perf_counter() - start, reason)
    return Checked(stage, tuple(sizes), result.runtime_version, result.measurements)


def with_task(accuracy: AccuracyResult, reference: Reference, outputs: list[Feeds], max_drop) -> AccuracyResult:
    """The accuracy result with the task accuracy against the labels, and its gate max_accuracy_drop."""
    assert reference.labels is not None
    try:
        task = task_accuracy(reference.outputs, outputs, reference.labels, max_drop)
    except (EdgeportError, ValueError, KeyError) as exc:  # the scored output is missing or misshapen: said
        text = exc.message if isinstance(exc, EdgeportError) else str(exc)
        return dataclasses.replace(accuracy, notes=(*accuracy.notes, f"task accuracy not measured: {text}"))
    if task.passed:
        return dataclasses.replace(accuracy, task=task)
    return dataclasses.replace(accuracy, task=task, passed=False, failures=(*accuracy.failures, task.failure))


def gate_measurements(check: StageResult, budgets: Mapping[str, float], measurements) -> StageResult:
    """Budgets on measurements (`max_size_bytes`, `max_arena_bytes`, ...) are part of the check's verdict."""
    problems = [
        f"budget {key}: no measurement {key.partition('_')[2]!r} for this target"
        for key in unmeasured(measurements, budgets, skip=LATENCY_BUDGETS)
        if check.status == "passed" or key == SIZE_BUDGET
    ]
    problems += budget_failures(measurements, budgets, skip=LATENCY_BUDGETS)
    if not problems:
        return check
    reason = "; ".join(filter(None, [check.reason, *problems]))
    return dataclasses.replace(check, status="failed", reason=reason) if check.status != "error" else check


def shapes_text(samples: SampleSet) -> str:
    return ", ".join(f"{name} [{', '.join(map(str, array.shape[1:]))}]" for name, array in samples.arrays.items())


def shape_check(reference: Reference, accuracy: AccuracyResult | None, failure: str) -> dict[str, Any]:
    """What report.json says of one size a target was checked at (`failure`: the runtime could not run it)."""
    return {
        "shapes": {name: list(array.shape[1:]) for name, array in reference.samples.arrays.items()},
        "samples": reference.samples.count,
        "passed": accuracy is not None and accuracy.passed,
        "worst_cosine": min((o.cosine for o in accuracy.outputs), default=None) if accuracy else None,
        "failures": list(accuracy.failures) if accuracy else [failure],
    }
