"""The Python API, mirroring the CLI: `edgeport.convert(model, targets=[...], ...) -> Report`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgeport.data import DEFAULT_SYNTHETIC_COUNT, TimingProtocol
from edgeport.model.samples import Preprocess, SampleRequest
from edgeport.report.files import Report
from edgeport.run.request import build_request


def convert(
    model: str | Path,
    *,
    targets: Iterable[str],
    output: str | Path = "edgeport-out",
    data: str | Path | None = None,
    calibration: str | Path | None = None,
    labels: str | Path | None = None,
    layers: bool = False,
    sequential: bool = False,
    max_memory: str | int | None = None,
    signature: str | None = None,
    options: Mapping[str, Any] | None = None,
    target_settings: Mapping[str, Mapping[str, Any]] | None = None,
    gates: Mapping[str, float | str] | None = None,
    threads: int = 1,
    jobs: int = 1,
    samples: int | None = None,
    seed: int = 0,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    preprocess: Preprocess | None = None,
    protocol: TimingProtocol | None = None,
    check: bool = True,
    bench: bool = True,
    baseline: bool = True,
    strict: bool = False,
    trust_model: bool = False,
    force: bool = False,
    stage_timeout: float | Mapping[str, float] | None = None,
    baseline_report: str | Path | None = None,
    history: str | Path | None = None,
    progress=None,
) -> Report:
    """Convert, check and benchmark; returns the Report (also written to `output`).

    `baseline`: time the SavedModel on TensorFlow as the baseline row (CLI: --no-baseline turns it off).
    `trust_model`: run a model the pre-load scan flags (CLI: --trust-model); otherwise such a model raises
    `edgeport.errors.UntrustedModel` (a UsageError) before any of it runs.
    `force`: write into an `output` folder of the user's that is not empty (CLI: --force); edgeport adds its own
    files beside the user's and still touches nothing it did not make (`edgeport.errors.UsageError` without it).
    `stage_timeout`: seconds every stage may take, or {stage: seconds} for load, convert, check, bench (CLI:
    --stage-timeout); a stage past its limit fails its own target.
    `labels`: class labels of the `data` samples (CLI: --labels): FILE.npy, FILE.npz:KEY or a KEY of the data
    .npz; each target's `accuracy.task`, gated by `max_accuracy_drop` in `target_settings`. `layers`: per-layer
    comparison of every checked target (CLI: --layers). `sequential`: every stage in turn (CLI: --sequential).
    `max_memory`: what any one process tree may hold, e.g. "8GB" or "off" (CLI: --max-memory).
    `gates`: {"[TARGET.]KEY": value} (CLI: --gate [TARGET.]KEY=VALUE), e.g. {"min_cosine": 0.999,
    "tflite:int8.min_top1_agreement": 0.95}: a gate or budget for every target or one, over `target_settings`.
    `baseline_report`: an earlier report.json; regressions against it are written to OUTPUT/comparison.json and make
    the returned report's exit_code 1, as `edgeport convert --baseline` does. `history`: a SQLite file the
    run's summary is appended to (the CLI's default: report/history.DEFAULT_HISTORY, per user).
    """
    from edgeport.checks.task import parse_labels_spec
    from edgeport.run import pipeline
    from edgeport.run.request import parse_stage_timeouts

    sample_request = SampleRequest(
        data=Path(data) if data else None,
        preprocess=preprocess or Preprocess(),
        count=samples or DEFAULT_SYNTHETIC_COUNT,
        count_chosen=samples is not None,
        seed=seed,
        input_ranges=dict(input_ranges or {}),
        input_shapes=dict(input_shapes or {}),
    )
    request = build_request(
        model=Path(model),
        targets=targets,
        target_settings=target_settings,
        shared_options=options,
        gates=gates,
        output=Path(output),
        samples=sample_request,
        calibration=Path(calibration) if calibration else None,
        signature=signature,
        threads=threads,
        jobs=jobs,
        protocol=protocol,
        check=check,
        bench=bench,
        baseline=baseline,
        strict=strict,
        trust_model=trust_model,
        timeouts=parse_stage_timeouts(stage_timeout, "stage_timeout") if stage_timeout is not None else None,
        labels=parse_labels_spec(str(labels), None, Path(data) if data else None) if labels is not None else None,
        layers=layers,
        sequential=sequential,
        max_memory=max_memory,
    )
    if force:
        import dataclasses

        request = dataclasses.replace(request, force=True)
    earlier = _load_baseline(baseline_report)
    report = pipeline.run(request, progress or pipeline.quiet)
    if history is not None:
        from edgeport.report.history import append_run

        append_run(Path(history), report.to_dict(), output=request.out)
    if earlier is None:
        return report
    return _compared(report, earlier, request.out)


def _load_baseline(path: str | Path | None):
    if path is None:
        return None
    from edgeport.report.regression import load_baseline

    return load_baseline(Path(path), {})


def _compared(report: Report, baseline, out: Path) -> Report:
    import dataclasses
    import json

    from edgeport.report.files import atomic_write
    from edgeport.report.regression import compare_reports

    comparison = compare_reports(
        baseline.report,
        report.to_dict(),
        baseline.thresholds,
        old_name=str(baseline.path),
        new_name=str(out / "report.json"),
    )
    atomic_write(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    return dataclasses.replace(report, exit_code=report.exit_code or int(comparison.exit_code))
