"""The plan of a run, top to bottom: load, samples, reference, baseline, convert, check, refit, bench, report.

Each step is a call into the module that owns the stage (run/load, run/reference, run/bench, run/convert,
run/judge with run/check and run/refit, run/result); they take and return frozen records. The orchestrator
(this process) never imports TensorFlow: the SavedModel lives in a model service (run/load), every check and
benchmark in a fresh runtime process (run/isolation). Checks run beside the conversions (run/lanes);
benchmarks run after them, one at a time, alone. A failed stage skips its target's later stages, never other
targets; the report is always written.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeport.device.stage import host_p50, run_on_devices, with_device_rows
from edgeport.errors import UsageError
from edgeport.report.files import Report, report_texts
from edgeport.report.html import render
from edgeport.run.bench import bench_baseline, bench_target
from edgeport.run.convert import convert_all
from edgeport.run.isolation import call_isolated, memory_budget
from edgeport.run.judge import judge
from edgeport.run.lanes import CheckLane, check_workers
from edgeport.run.load import finish_service, load_model, validate_targets
from edgeport.run.output_folder import OutputFolder, refuse_model_overlap, refuse_unsafe_output
from edgeport.run.plan import Progress, TargetPlan, plan_targets, quiet
from edgeport.run.reference import compute_references, load_inputs
from edgeport.run.refit import LayerSource, Refits
from edgeport.run.request import RunRequest
from edgeport.run.result import build_report, target_result
from edgeport.run.warm import warm_services

__all__ = ["Progress", "plan_targets", "prepare_output", "quiet", "run"]


def prepare_output(out: Path) -> None:
    refuse_unsafe_output(out)  # never the file system root or the home folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".edgeport-write-test-", delete=True):
            pass
    except OSError as exc:
        raise UsageError(
            f"output folder {out} is not writable ({exc.strerror}); pass -o with a folder you can write"
        ) from None


def run(request: RunRequest, progress: Progress = quiet, *, bench_call: Callable[..., Any] = call_isolated) -> Report:
    """`bench_call`: how each artifact's benchmark is run, `call_isolated`'s signature (a fleet runs it as a
    Ray task holding the node's exclusive benchmark slot)."""
    from edgeport.model.samples import precheck_data  # numpy only
    from edgeport.model.savedmodel import check_saved_model_dir  # light: no TensorFlow

    check_saved_model_dir(request.model)
    plans = plan_targets(request)
    for flag, sample_request in (("--data", request.samples), ("--calibration", request.calibration)):
        if sample_request is not None and sample_request.data is not None:
            if not Path(sample_request.data).exists():
                raise UsageError(
                    f"{flag} {sample_request.data} does not exist; pass an .npz, .npy or a folder of images"
                )
            precheck_data(Path(sample_request.data), sample_request.exclude)  # before TensorFlow's 5 s
    slugs = [p.config.spec.slug for p in plans]
    refuse_model_overlap(request.out, request.model, slugs)
    created = not request.out.exists()
    prepare_output(request.out)
    # OUT admitted (new, empty, or edgeport's), locked; what killed runs left goes
    folder = OutputFolder.take(request.out, protect=request.model, slugs=slugs, force=request.force)
    refused = False
    try:
        with memory_budget(request.max_memory):
            report = _run(request, plans, folder, progress, bench_call)
    except BaseException as exc:
        folder.abandon(exc)  # stopped after the first conversion: no artifact stays without its report
        refused = created and not folder.begun and isinstance(exc, UsageError)  # refused before any work
        raise
    finally:
        if refused:  # OUT was never there: removed if it holds nothing but edgeport's files (else logs stay)
            folder.remove_if_untouched()
        folder.close()
    return report


def _run(
    request: RunRequest,
    plans: list[TargetPlan],
    folder: OutputFolder,
    progress: Progress,
    bench_call: Callable[..., Any],
) -> Report:
    logs = request.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    limits = request.timeouts
    warm = warm_services()
    service = load_model(request, logs / "model.log", warm, progress)  # a refusal here leaves no OUT behind
    info = service.description
    try:
        validate_targets(service, request, plans)
        inputs = load_inputs(request, info, plans)
        references = compute_references(service, info, inputs, limits.check, progress) if request.check else ()
        baseline, baseline_warnings = (
            bench_baseline(service, inputs.samples, request, progress)
            if request.bench and request.baseline
            else (None, ())
        )
        layer_source = LayerSource(request, inputs.samples, logs)
        if request.layers and request.check:  # while the model service is up; else only when a check fails
            layer_source.compute(service, progress)
        refits = Refits(request, inputs.calibration, folder, layer_source)
        lane = CheckLane(check_workers(request.jobs, len(plans), overlap=request.check and not request.sequential))

        def check_when_converted(plan: TargetPlan, artifact, convert) -> None:
            judged_args = (request, plan, artifact, convert, references, logs, progress, layer_source, refits)
            lane.submit(plan.name, judge, *judged_args)

        folder.begin(request.model, [p.name for p in plans])  # from here on OUT shows this run only
        convert_all(request, plans, service, inputs.calibration, progress, folder, check_when_converted)
    finally:
        finish_service(request, service, warm)
    try:  # every check done, nothing converting: now the benchmarks, one at a time, alone
        judged = lane.join()
        results = []
        for plan in plans:
            benched = bench_target(request, judged[plan.name], inputs.samples, logs, progress, bench_call)
            results.append(target_result(request, judged[plan.name], benched))
        devices = (  # then each artifact on each --device, over ssh (edgeport/device)
            run_on_devices(request, plans, judged, references, inputs.samples, host_p50(results), logs, progress)
            if request.devices
            else ((), ())
        )
    finally:
        refits.close()
    warnings = (*inputs.warnings, *baseline_warnings)
    seconds = time.perf_counter() - started
    report = build_report(request, info, inputs, references, results, baseline, warnings, seconds)
    report = with_device_rows(report, *devices)
    folder.write_reports({**report_texts(report), "report.html": render(report), **layer_source.files})
    folder.finish(t.folder for t in report.targets if t.folder)
    return report
