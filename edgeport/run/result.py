"""Report: each target's stages, numbers and notes gathered into a TargetResult, and the run into a Report
(report/ writes its files)."""

from __future__ import annotations

import dataclasses
import datetime
import platform
from collections.abc import Sequence
from typing import Any

from edgeport.checks.latency import LatencyStats, noise_summary
from edgeport.checks.task import task_accuracy
from edgeport.report.files import Report, StageResult, TargetResult, exit_code_for
from edgeport.run.bench import Benched, latency_notes, unjudged_latency_budgets
from edgeport.run.check import gate_measurements, shape_check
from edgeport.run.judge import Judged
from edgeport.run.output_folder import artifact_files
from edgeport.run.reference import Reference, RunInputs
from edgeport.run.request import RunRequest
from edgeport.run.service import ModelInfo


def target_result(request: RunRequest, judged: Judged, benched: Benched) -> TargetResult:
    plan, artifact, checked = judged.plan, judged.artifact, judged.checked
    if artifact is None or checked is None:
        skip = "conversion failed"
        return TargetResult(
            name=plan.name,
            converter=plan.converter.name,
            variant=plan.config.spec.variant,
            runtime=plan.runtime.name,
            stages=(judged.convert, StageResult("check", "skipped", 0, skip), StageResult("bench", "skipped", 0, skip)),
            threads=plan.settings.threads,
            backend=plan.settings.backend,
        )
    folder = request.out / plan.slug
    main = folder / artifact.main_file
    files = artifact_files(folder)
    files_bytes = sum(p.stat().st_size for p in files)
    size = artifact.stored_bytes if artifact.stored_bytes is not None else files_bytes
    measurements = dict(artifact.measurements)
    measurements.setdefault("size_bytes", size)
    if size != files_bytes:
        measurements.setdefault("files_bytes", files_bytes)
    measurements.update(checked.measurements)
    accuracy, latency, fallback = checked.accuracy, benched.latency, benched.fallback
    check = gate_measurements(checked.stage, {**artifact.budgets, **plan.config.budgets}, measurements)
    return TargetResult(
        name=plan.name,
        converter=plan.converter.name,
        variant=plan.config.spec.variant,
        runtime=plan.runtime.name,
        stages=(judged.convert, check, benched.stage),
        precision=artifact.precision,
        folder=folder.name,
        artifact=str(main.relative_to(request.out)),
        size_bytes=size,
        files=tuple(str(p.relative_to(folder)) for p in files),
        warnings=artifact.warnings,
        notes=(
            *artifact.notes,
            *(accuracy.notes if accuracy else ()),
            *(latency_notes(latency, plan.config.budgets) if latency else ()),
            *unjudged_latency_budgets(plan, benched.stage),
            *((f"quant_fallback=auto {fallback.status}: {fallback.reason}",) if fallback else ()),
        ),
        details=dict(artifact.details),
        accuracy=accuracy,
        latency=latency,
        shape_checks=tuple(shape_check(*size_checked) for size_checked in checked.sizes),
        measurements=measurements,
        runtime_version=checked.runtime_version or (latency.runtime_version if latency else None),
        threads=plan.settings.threads,
        backend=plan.settings.backend,
        layers=judged.layers,
        quant_fallback=fallback.to_dict() if fallback else None,
    )


def build_report(
    request: RunRequest,
    info: ModelInfo,
    inputs: RunInputs,
    references: tuple[Reference, ...],
    targets: Sequence[TargetResult],
    baseline: LatencyStats | None,
    warnings: Sequence[str],
    seconds: float,
) -> Report:
    samples, calibration = inputs.samples, inputs.calibration
    return Report(
        model={
            "path": str(request.model),
            "tags": list(info.tags),
            "signature": dataclasses.asdict(info.signature),
            "signature_keys": list(info.signature_keys),
            "mode": info.mode,
            "notes": list(info.notes),
            "size_bytes": info.size_bytes,
            "parameters": info.parameters,
            "tensorflow_version": info.tensorflow_version,
            "scan": {**info.scan.to_dict(), "trusted": info.trusted},
        },
        samples={
            "source": samples.source,
            "count": samples.count,
            "synthetic": samples.synthetic,
            **({"labels": labels_summary(references[0])} if references and references[0].labels else {}),
        },
        calibration={
            "source": calibration.source,
            "count": calibration.count,
            "synthetic": calibration.synthetic,
            "same_as_check": calibration is samples or calibration.source == samples.source,
        },
        targets=tuple(targets),
        exit_code=int(exit_code_for(tuple(targets))),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine={**machine(request, seconds), "noise": noise_summary([baseline, *(t.latency for t in targets)])},
        edgeport_version=version(),
        warnings=tuple(warnings),
        baseline=baseline,
    )


def labels_summary(reference: Reference) -> dict[str, Any]:
    """report.json `samples.labels`: where the labels came from and the SavedModel's own task accuracy."""
    assert reference.labels is not None
    own = task_accuracy(reference.outputs, reference.outputs, reference.labels)
    return {
        "source": reference.labels.source,
        "count": reference.labels.count,
        "output": own.output,
        "top1": own.reference,
        "top5": own.reference_top5,
    }


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("edgeport")
    except PackageNotFoundError:
        return "0+unknown"


def machine(request: RunRequest, seconds: float) -> dict[str, Any]:
    from edgeport.checks.latency import cpu_name

    return {
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": request.threads,
        "jobs": request.jobs,
        "wall_seconds": round(seconds, 2),
    }
