"""The pipeline: per target convert -> check -> bench, each a recorded stage; the report is always written.

Data flow: the orchestrator (this process, no TensorFlow) validates the request, starts the model service
in a TensorFlow worker (the pre-load scan first, then the SavedModel loaded once), loads the samples, asks
for reference outputs, converts every target in that worker (`--jobs N`: N workers), moves each finished
artifact folder into place atomically, checks each artifact in a fresh runtime process, benchmarks each in
another fresh process, and writes the report. A failed stage skips its target's later stages, never other
targets.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.checks.accuracy import AccuracyResult, compare, default_tolerance
from edgeport.checks.budgets import budget_failures, unmeasured
from edgeport.contracts import Converter, Runtime
from edgeport.data import Artifact, Event, Feeds, RuntimeSettings, SampleSet
from edgeport.errors import EdgeportError, ModelLoadError, UntrustedModel, UsageError, WorkerDied
from edgeport.model.samples import chosen_dimensions, load_samples
from edgeport.model.scan import trust_note
from edgeport.report.files import Report, StageResult, TargetResult, current_umask, exit_code_for, write_report_files
from edgeport.report.html import write_html
from edgeport.run.isolation import PluginCrash, Worker, call_isolated
from edgeport.run.options import build_options
from edgeport.run.registry import registry
from edgeport.run.request import LATENCY_BUDGETS, SIZE_BUDGET, RunRequest, TargetConfig
from edgeport.run.service import ModelInfo, ModelService
from edgeport.run.stages import ExtraRun, run_bench, run_check

Progress = Callable[[Event], None]


@dataclass(frozen=True)
class Reference:
    """Samples and the SavedModel's outputs on them: what a target's outputs are compared with."""

    samples: SampleSet
    outputs: list[Feeds]


@dataclass(frozen=True)
class _Plan:
    config: TargetConfig
    converter: Converter
    runtime: Runtime
    options: Any
    settings: RuntimeSettings


def quiet(_: Event) -> None:
    pass


def plan_targets(request: RunRequest) -> list[_Plan]:
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
        settings = RuntimeSettings(threads=request.threads, backend=config.backend)
        runtime.validate_settings(settings)
        plans.append(_Plan(config, converter, runtime, options, settings))
    return plans


def prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".edgeport-write-test-", delete=True):
            pass
    except OSError as exc:
        raise UsageError(
            f"output folder {out} is not writable ({exc.strerror}); pass -o with a folder you can write"
        ) from None


def run(request: RunRequest, progress: Progress = quiet) -> Report:
    from edgeport.model.savedmodel import check_saved_model_dir  # light: no TensorFlow

    check_saved_model_dir(request.model)
    plans = plan_targets(request)
    for flag, sample_request in (("--data", request.samples), ("--calibration", request.calibration)):
        if sample_request is not None and sample_request.data is not None and not Path(sample_request.data).exists():
            raise UsageError(f"{flag} {sample_request.data} does not exist; pass an .npz, .npy or a folder of images")
    created = not request.out.exists()
    prepare_output(request.out)
    logs = request.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()

    progress(Event("model", "load", "started", str(request.model)))
    try:
        service = _start_service(request, logs / "model.log")
    except UntrustedModel:
        if created:  # a refused model leaves nothing behind (the folder held only the loader's empty log)
            shutil.rmtree(request.out, ignore_errors=True)
        raise
    info: ModelInfo = service.description
    progress(Event("model", "load", "passed", f"{info.mode}, signature {info.signature.key}"))
    try:
        service.call("validate", [(p.converter, p.config.spec.variant, p.options) for p in plans])
        samples = load_samples(info.signature, request.samples, info.vocabulary)
        calibration = load_samples(info.signature, request.calibration) if request.calibration else samples
        warnings = _sample_warnings(request, samples, calibration, plans)
        if info.trusted and not info.scan.clean:
            warnings.insert(0, trust_note(info.scan))
        references: tuple[Reference, ...] = ()
        chosen = chosen_dimensions(info.signature, request.samples)
        if chosen:
            warnings.append(
                "dynamic dimensions chosen by edgeport, and each target checked at both sizes: "
                + "; ".join(chosen.values())
                + "; pass --input-shape NAME=D0,D1,... to choose"
            )
        if request.check:
            progress(Event("model", "reference", "started", f"{samples.count} samples"))
            references = (Reference(samples, service.call("reference", samples)),)
            if chosen:
                second = load_samples(
                    info.signature, dataclasses.replace(request.samples, second_sizes=True), info.vocabulary
                )
                references += (Reference(second, service.call("reference", second)),)
            progress(Event("model", "reference", "passed"))
        baseline = (
            _bench_baseline(service, samples, request.protocol, progress, warnings)
            if request.bench and request.baseline
            else None
        )
        converted = _convert_all(request, plans, service, calibration, progress)
    finally:
        service.close()

    results = []
    for plan in plans:
        artifact, convert_stage = converted[plan.config.name]
        results.append(_check_and_bench(request, plan, artifact, convert_stage, samples, references, logs, progress))
    targets = tuple(results)
    report = Report(
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
        samples={"source": samples.source, "count": samples.count, "synthetic": samples.synthetic},
        calibration={
            "source": calibration.source,
            "count": calibration.count,
            "synthetic": calibration.synthetic,
            "same_as_check": calibration is samples or calibration.source == samples.source,
        },
        targets=targets,
        exit_code=int(exit_code_for(targets)),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=_machine(request, time.perf_counter() - started),
        edgeport_version=_version(),
        warnings=tuple(warnings),
        baseline=baseline,
    )
    write_report_files(report, request.out)
    write_html(report, request.out)
    return report


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeport")
    except PackageNotFoundError:
        return "0+unknown"


def _machine(request: RunRequest, seconds: float) -> dict[str, Any]:
    from edgeport.checks.latency import cpu_name

    return {
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": request.threads,
        "jobs": request.jobs,
        "wall_seconds": round(seconds, 2),
    }


def _start_service(request: RunRequest, log: Path) -> Worker:
    try:
        return Worker(
            ModelService,
            str(request.model),
            request.signature,
            request.tags,
            request.force_v1,
            request.threads,
            request.trust_model,
            log_path=log,
            what="model loader",
        )
    except PluginCrash as exc:
        raise ModelLoadError(f"cannot load {request.model}: {exc.message}") from None


def _sample_warnings(request: RunRequest, samples: SampleSet, calibration: SampleSet, plans: list[_Plan]) -> list[str]:
    quantized = [p.config.name for p in plans if p.converter.needs_calibration(p.config.spec.variant)]
    warnings = []
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
    if samples.synthetic and request.check:
        warnings.append("accuracy checked on synthetic inputs; pass --data with real samples for a realistic check")
    return warnings


def _convert_all(
    request: RunRequest, plans: list[_Plan], service: Worker, calibration: SampleSet, progress: Progress
) -> dict[str, tuple[Artifact | None, StageResult]]:
    pool = _ServicePool(request, service)
    results: dict[str, tuple[Artifact | None, StageResult]] = {}

    def work(plan: _Plan) -> None:
        results[plan.config.name] = _convert_one(request, plan, pool, calibration, progress)

    if request.jobs <= 1:
        for plan in plans:
            work(plan)
    else:
        with ThreadPoolExecutor(max_workers=request.jobs) as executor:
            list(executor.map(work, plans))
    pool.close_extra()
    return results


class _ServicePool:
    """Model services for conversion: the first one is the run's; with --jobs N, up to N."""

    def __init__(self, request: RunRequest, first: Worker):
        self._request = request
        self._idle = [first]
        self._first = first
        self._lock = threading.Lock()
        self._extra: list[Worker] = []

    def acquire(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
        worker = _start_service(self._request, self._request.out / "logs" / f"model-{threading.get_ident()}.log")
        with self._lock:
            self._extra.append(worker)
        return worker

    def release(self, worker: Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def close_extra(self) -> None:
        for worker in self._extra:
            worker.close()


def _convert_one(
    request: RunRequest, plan: _Plan, pool: _ServicePool, calibration: SampleSet, progress: Progress
) -> tuple[Artifact | None, StageResult]:
    name = plan.config.name
    progress(Event(name, "convert", "started"))
    final = request.out / plan.config.spec.slug
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{plan.config.spec.slug}-", dir=request.out))
    start = time.perf_counter()
    worker = pool.acquire()
    try:
        artifact = worker.call("convert", plan.converter, plan.config.spec, plan.options, calibration, str(staging))
        _check_files(artifact, staging)
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it private; the artifact folder is not
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except EdgeportError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        message = exc.message
        if isinstance(exc, WorkerDied):  # native converter code took the process down: say whose bug it is
            message = (
                f"{name}: the {plan.converter.name} converter crashed the TensorFlow process ({message}); "
                "only this target failed: try another variant, or report it to the converter's project"
            )
        stage = StageResult("convert", "error", time.perf_counter() - start, message)
        progress(Event(name, "convert", "error", message))
        return None, stage
    finally:
        pool.release(worker)
    progress(Event(name, "convert", "passed"))
    return artifact, StageResult("convert", "passed", time.perf_counter() - start)


def _check_files(artifact: Artifact, folder: Path) -> None:
    from edgeport.errors import ConversionError

    if not (folder / artifact.main_file).is_file():
        raise ConversionError(f"converter wrote no {artifact.main_file}; the plug-in is broken")


def _bench_baseline(service: Worker, samples: SampleSet, protocol, progress: Progress, warnings: list[str]):
    """Time the SavedModel in the model service (its own process, before any conversion)."""
    from edgeport.checks.latency import summarize

    progress(Event("savedmodel", "baseline", "started"))
    try:
        raw = service.call("benchmark", samples, protocol)
    except EdgeportError as exc:
        progress(Event("savedmodel", "baseline", "error", exc.message))
        warnings.append(f"the SavedModel baseline was not timed: {exc.message}")
        return None
    progress(Event("savedmodel", "baseline", "passed"))
    return summarize(raw)


def _check_and_bench(
    request: RunRequest,
    plan: _Plan,
    artifact: Artifact | None,
    convert: StageResult,
    samples: SampleSet,
    references: tuple[Reference, ...],
    logs: Path,
    progress: Progress,
) -> TargetResult:
    name = plan.config.name
    if artifact is None:
        skip = "conversion failed"
        return TargetResult(
            name=name,
            converter=plan.converter.name,
            variant=plan.config.spec.variant,
            runtime=plan.runtime.name,
            stages=(convert, StageResult("check", "skipped", 0, skip), StageResult("bench", "skipped", 0, skip)),
            threads=plan.settings.threads,
            backend=plan.settings.backend,
        )
    folder = request.out / plan.config.spec.slug
    main = folder / artifact.main_file
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    measurements = dict(artifact.measurements)
    measurements.setdefault("size_bytes", size)
    check, checked, runtime_version, extra = _check(request, plan, artifact, main, references, logs, progress)
    accuracy = checked[0][1] if checked else None  # the first size's: the one the benchmark runs at
    measurements.update(extra)
    bench, latency = _bench(request, plan, artifact, main, samples, check, logs, progress)
    check = _gate_measurements(check, {**artifact.budgets, **plan.config.budgets}, measurements)
    return TargetResult(
        name=name,
        converter=plan.converter.name,
        variant=plan.config.spec.variant,
        runtime=plan.runtime.name,
        stages=(convert, check, bench),
        precision=artifact.precision,
        folder=folder.name,
        artifact=str(main.relative_to(request.out)),
        size_bytes=size,
        files=tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())),
        warnings=artifact.warnings,
        notes=artifact.notes,
        details=dict(artifact.details),
        accuracy=accuracy,
        latency=latency,
        shape_checks=tuple(_shape_check(*check) for check in checked),
        measurements=measurements,
        runtime_version=runtime_version or (latency.runtime_version if latency else None),
        threads=plan.settings.threads,
        backend=plan.settings.backend,
    )


def _unavailable(request: RunRequest, plan: _Plan, artifact: Artifact) -> str | None:
    if artifact.not_checkable:
        return f"converted, not checked: {artifact.not_checkable}"
    availability = plan.runtime.availability()
    if not availability.available:
        return f"runtime {plan.runtime.name} unavailable: {availability.reason}"
    return None


def _check(request, plan, artifact, main, references: tuple[Reference, ...], logs, progress):
    """Check the artifact on each reference's samples (one, or two when edgeport chose dynamic sizes).

    One runtime process runs every size. Returns (stage, [(reference, AccuracyResult or None, failure)],
    runtime version, measurements)."""
    name = plan.config.name
    if not request.check:
        return StageResult("check", "skipped", 0, "--no-check"), [], None, {}
    reason = _unavailable(request, plan, artifact)
    if reason:
        progress(Event(name, "check", "skipped", reason))
        return StageResult("check", "failed" if request.strict else "skipped", 0, reason), [], None, {}
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
            log_path=logs / f"{plan.config.spec.slug}.log",
            what=f"{plan.runtime.name} runtime",
        )
    except EdgeportError as exc:
        progress(Event(name, "check", "failed", exc.message))
        return StageResult("check", "failed", time.perf_counter() - start, exc.message), [], None, {}
    checked: list[tuple[Reference, AccuracyResult | None, str]] = []
    failures: list[str] = []
    runs = [ExtraRun(result.outputs), *result.extra]
    for reference, run in zip(references, runs, strict=True):
        where = "" if len(references) == 1 else f"at {_shapes_text(reference.samples)}: "
        if run.outputs is None:
            checked.append((reference, None, run.failure))
            failures.append(where + run.failure)
            continue
        accuracy = compare(reference.outputs, run.outputs, tolerance, artifact.output_permutations)
        checked.append((reference, accuracy, ""))
        failures += [where + failure for failure in accuracy.failures]
    status = "failed" if failures else "passed"
    reason = "; ".join(failures)
    progress(Event(name, "check", status, reason))
    return (
        StageResult("check", status, time.perf_counter() - start, reason),
        checked,
        result.runtime_version,
        result.measurements,
    )


def _shapes_text(samples: SampleSet) -> str:
    return ", ".join(f"{name} [{', '.join(map(str, array.shape[1:]))}]" for name, array in samples.arrays.items())


def _shape_check(reference: Reference, accuracy, failure: str) -> dict[str, Any]:
    """What report.json says of one size a target was checked at (`failure`: the runtime could not run it)."""
    return {
        "shapes": {name: list(array.shape[1:]) for name, array in reference.samples.arrays.items()},
        "samples": reference.samples.count,
        "passed": accuracy is not None and accuracy.passed,
        "worst_cosine": min((o.cosine for o in accuracy.outputs), default=None) if accuracy else None,
        "failures": list(accuracy.failures) if accuracy else [failure],
    }


def _bench(request, plan, artifact, main, samples, check: StageResult, logs, progress):
    from edgeport.checks.latency import summarize

    name = plan.config.name
    if not request.bench:
        return StageResult("bench", "skipped", 0, "--no-bench"), None
    if check.status in ("failed", "error"):
        return StageResult("bench", "skipped", 0, "check failed"), None
    reason = _unavailable(request, plan, artifact)
    if reason:
        return StageResult("bench", "skipped", 0, reason), None
    progress(Event(name, "bench", "started"))
    start = time.perf_counter()
    try:
        raw = call_isolated(
            run_bench,
            plan.runtime,
            str(main),
            samples,
            plan.settings,
            request.protocol,
            log_path=logs / f"{plan.config.spec.slug}.log",
            what=f"{plan.runtime.name} benchmark",
        )
    except EdgeportError as exc:
        progress(Event(name, "bench", "failed", exc.message))
        return StageResult("bench", "failed", time.perf_counter() - start, exc.message), None
    latency = summarize(raw)
    problems = [
        f"{key[4:]} {getattr(latency, key[4:]):.3f} > {limit:g}"
        for key, limit in plan.config.budgets.items()
        if key in LATENCY_BUDGETS and getattr(latency, key[4:]) > limit
    ]
    status = "failed" if problems else "passed"
    progress(Event(name, "bench", status, "; ".join(problems)))
    return StageResult("bench", status, time.perf_counter() - start, "; ".join(problems)), latency


def _gate_measurements(check: StageResult, budgets, measurements) -> StageResult:
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
