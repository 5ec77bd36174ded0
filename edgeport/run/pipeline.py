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
import json
import os
import platform
import queue
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
from edgeport.checks.task import LabelSet, load_labels, scored_output, task_accuracy
from edgeport.contracts import Converter, Runtime
from edgeport.data import LARGE_MODEL_SYNTHETIC_COUNT, Artifact, Event, Feeds, RuntimeSettings, SampleSet
from edgeport.errors import EdgeportError, ModelLoadError, StageTimedOut, UsageError, WorkerDied
from edgeport.model.samples import SampleRequest, chosen_dimensions, load_samples
from edgeport.model.scan import trust_note
from edgeport.report.files import Report, StageResult, TargetResult, exit_code_for, report_texts
from edgeport.report.html import render
from edgeport.run import quant_fallback
from edgeport.run.isolation import PluginCrash, Worker, call_isolated, memory_budget
from edgeport.run.memory import MemoryBudgetExceeded, human
from edgeport.run.options import build_options
from edgeport.run.output_folder import OutputFolder, artifact_files, refuse_model_overlap
from edgeport.run.registry import registry
from edgeport.run.request import LATENCY_BUDGETS, SIZE_BUDGET, RunRequest, TargetConfig
from edgeport.run.service import ModelInfo, ModelService
from edgeport.run.stages import ExtraRun, run_bench, run_check
from edgeport.run.warm import WarmServices, warm_services

Progress = Callable[[Event], None]


@dataclass(frozen=True)
class Reference:
    """Samples and the SavedModel's outputs on them: what a target's outputs are compared with."""

    samples: SampleSet
    outputs: list[Feeds]
    labels: LabelSet | None = None  # --labels: task accuracy is scored on these samples (checks/task)


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


def run(request: RunRequest, progress: Progress = quiet, *, bench_call: Callable[..., Any] = call_isolated) -> Report:
    """`bench_call`: how each artifact's benchmark is run, `call_isolated`'s signature (a fleet runs it as a
    Ray task holding the node's exclusive benchmark slot)."""
    from edgeport.model.savedmodel import check_saved_model_dir  # light: no TensorFlow

    check_saved_model_dir(request.model)
    plans = plan_targets(request)
    for flag, sample_request in (("--data", request.samples), ("--calibration", request.calibration)):
        if sample_request is not None and sample_request.data is not None and not Path(sample_request.data).exists():
            raise UsageError(f"{flag} {sample_request.data} does not exist; pass an .npz, .npy or a folder of images")
    refuse_model_overlap(request.out, request.model, [p.config.spec.slug for p in plans])
    created = not request.out.exists()
    prepare_output(request.out)
    folder = OutputFolder.take(request.out, protect=request.model)  # the lock; what killed runs left goes
    refused = False
    try:
        with memory_budget(request.max_memory):
            report = _run(request, plans, folder, progress, bench_call)
    except BaseException as exc:
        folder.abandon(exc)  # stopped after the first conversion: no artifact stays without its report
        refused = created and not folder.begun  # a usage or load error before any work: OUT was never there
        raise
    finally:
        folder.close()
        if refused:
            shutil.rmtree(request.out, ignore_errors=True)
    return report


def _run(
    request: RunRequest,
    plans: list[_Plan],
    folder: OutputFolder,
    progress: Progress,
    bench_call: Callable[..., Any],
) -> Report:
    logs = request.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()

    progress(Event("model", "load", "started", str(request.model)))
    warm = warm_services()
    service = _start_service(request, logs / "model.log", warm)  # a refusal here leaves no OUT behind (see run)
    info: ModelInfo = service.description
    progress(Event("model", "load", "passed", f"{info.mode}, signature {info.signature.key}"))
    try:
        limits = request.timeouts
        service.call_within(
            limits.load, "load", "validate", [(p.converter, p.config.spec.variant, p.options) for p in plans]
        )
        sample_request, fewer = _large_model_samples(request.samples, info)
        samples = load_samples(info.signature, sample_request, info.vocabulary, info.input_ranges)
        calibration = load_samples(info.signature, request.calibration) if request.calibration else samples
        warnings = [*fewer, *_sample_warnings(request, samples, calibration, plans)]
        if info.trusted and not info.scan.clean:
            warnings.insert(0, trust_note(info.scan))
        references: tuple[Reference, ...] = ()
        labels = load_labels(request.labels, samples.count) if request.labels and request.check else None
        chosen = chosen_dimensions(info.signature, request.samples)
        if chosen:
            warnings.append(
                "dynamic dimensions chosen by edgeport, and each target checked at both sizes: "
                + "; ".join(chosen.values())
                + "; pass --input-shape NAME=D0,D1,... to choose"
            )
        if request.check:
            progress(Event("model", "reference", "started", f"{samples.count} samples"))
            references = (Reference(samples, _reference(service, samples, limits.check), labels),)
            if labels is not None:  # labels that fit no output: exit 2, before anything converts
                scored_output(references[0].outputs, labels)
            if chosen:
                second = load_samples(
                    info.signature,
                    dataclasses.replace(sample_request, second_sizes=True),
                    info.vocabulary,
                    info.input_ranges,
                )
                references += (Reference(second, _reference(service, second, limits.check)),)
            progress(Event("model", "reference", "passed"))
        baseline = (
            _bench_baseline(service, samples, request.protocol, progress, warnings, limits.bench)
            if request.bench and request.baseline
            else None
        )
        layer_source = _LayerSource(request, samples, logs)
        if request.layers and request.check:  # while the model service is up; else only when a check fails
            layer_source.compute(service, progress)
        refits = _Refits(request, calibration, folder, layer_source)
        lane = _CheckLane(_check_workers(request, plans))

        def judge(plan: _Plan, artifact: Artifact | None, stage: StageResult) -> _Judged:
            return _judge(request, plan, artifact, stage, references, logs, progress, layer_source, refits)

        folder.begin(request.model, [p.config.name for p in plans])  # from here on OUT shows this run only
        _convert_all(request, plans, service, calibration, progress, folder, lane.submitter(judge))
    finally:
        _finish_service(request, service, warm)
    try:  # every check done, nothing converting: now the benchmarks, one at a time, alone
        judged = lane.join()
        results = [
            _bench_and_report(request, judged[plan.config.name], samples, logs, progress, bench_call) for plan in plans
        ]
    finally:
        refits.close()
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
        samples={
            "source": samples.source,
            "count": samples.count,
            "synthetic": samples.synthetic,
            **({"labels": _labels_summary(references[0])} if references and references[0].labels else {}),
        },
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
    folder.write_reports({**report_texts(report), "report.html": render(report), **layer_source.files})
    folder.finish(t.folder for t in targets if t.folder)
    return report


def _large_model_samples(samples: SampleRequest, info: ModelInfo) -> tuple[SampleRequest, list[str]]:
    """A large model checks on LARGE_MODEL_SYNTHETIC_COUNT synthetic samples unless the count was chosen (or
    --data given): each sample is a forward pass of the SavedModel and of every artifact. Said in the report."""
    if not info.large or samples.data is not None or samples.count_chosen:
        return samples, []
    said = (
        f"a large model ({human(info.weights_bytes)} of weights): checked on "
        f"{LARGE_MODEL_SYNTHETIC_COUNT} synthetic samples, not {samples.count}; pass --samples N for more"
    )
    return dataclasses.replace(samples, count=LARGE_MODEL_SYNTHETIC_COUNT), [said]


def _labels_summary(reference: Reference) -> dict[str, Any]:
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


def _start_service(request: RunRequest, log: Path, warm: WarmServices | None = None) -> Worker:
    """The model service, in a fresh process, or (`warm`: a fleet's) in an idle one that served an earlier
    model, TensorFlow already imported (run/warm)."""
    args = (str(request.model), request.signature, request.tags, request.force_v1, request.threads)

    def start(build: Callable[..., Any]) -> Any:  # Worker (a fresh process) or a warm worker's rebuild
        return build(
            ModelService,
            *args,
            request.trust_model,
            log_path=log,
            what="model loader",
            timeout=request.timeouts.load,
            stage="load",
        )

    worker = warm.take(request.threads) if warm is not None else None
    try:
        if worker is None:
            worker = start(Worker)
        else:
            try:
                start(worker.rebuild)
            except BaseException:
                worker.close(wait=1)  # a failed build ends the process; what is left of it goes
                raise
    except (PluginCrash, StageTimedOut) as exc:
        raise ModelLoadError(f"cannot load {request.model}: {exc.message}") from None
    if warm is not None:
        warm.started(worker)
    return worker


def _finish_service(request: RunRequest, service: Worker, warm: WarmServices | None) -> None:
    if warm is not None:
        warm.give_back(service, request.threads)
    else:
        service.close(wait=0)  # TensorFlow's teardown (a second or more) would only delay the benchmarks


def _reference(service: Worker, samples: SampleSet, timeout: float) -> list[Feeds]:
    """The SavedModel's outputs on `samples`: without them nothing can be checked, so a timeout ends the run."""
    try:
        return service.call_within(timeout, "check", "reference", samples)
    except StageTimedOut as exc:
        raise ModelLoadError(f"the SavedModel's reference outputs on {samples.count} samples: {exc.message}") from None


def _sample_warnings(request: RunRequest, samples: SampleSet, calibration: SampleSet, plans: list[_Plan]) -> list[str]:
    quantized = [p.config.name for p in plans if p.converter.needs_calibration(p.config.spec.variant)]
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
    if samples.synthetic and request.check:
        warnings.append("accuracy checked on synthetic inputs; pass --data with real samples for a realistic check")
    return warnings


def _convert_all(
    request: RunRequest,
    plans: list[_Plan],
    service: Worker,
    calibration: SampleSet,
    progress: Progress,
    folder: OutputFolder,
    converted: Callable[[_Plan, Artifact | None, StageResult], None],
) -> None:
    """Convert every target (in the run's model service; with --jobs N on up to N), handing each result to
    `converted` as soon as it is there (the check lane starts checking it while the next one converts)."""
    pool = _ServicePool(request, service)

    def work(plan: _Plan) -> None:
        converted(plan, *_convert_one(request, plan, pool, calibration, progress, folder))

    if request.jobs <= 1:
        for plan in plans:
            work(plan)
    else:
        with ThreadPoolExecutor(max_workers=request.jobs) as executor:
            list(executor.map(work, plans))
    pool.close_extra()


def _check_workers(request: RunRequest, plans: list[_Plan]) -> int:
    """Checks beside the conversions: on the cores the conversions leave free (0: after them, in turn)."""
    if request.sequential or not request.check:
        return 0
    free = (os.cpu_count() or 1) - request.jobs
    return max(0, min(free, len(plans)))


class _CheckLane:
    """Checks (and per-layer comparisons, quant_fallback) of converted targets, run on free cores while the
    next target converts: conversions and checks of different targets overlap, benchmarks never do (they run
    after `join`, one at a time, with nothing else running). Daemon threads: an interrupted run does not wait
    for them (their worker processes are daemons too). With no worker, each check runs when submitted."""

    def __init__(self, workers: int):
        self._jobs: queue.Queue = queue.Queue()
        self._results: dict[str, Any] = {}
        self._failure: BaseException | None = None
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def submitter(self, judge: Callable[..., _Judged]) -> Callable[[_Plan, Artifact | None, StageResult], None]:
        def submit(plan: _Plan, artifact: Artifact | None, stage: StageResult) -> None:
            if self._threads:
                self._jobs.put((plan.config.name, judge, (plan, artifact, stage)))
            else:
                self._results[plan.config.name] = judge(plan, artifact, stage)

        return submit

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, function, args = job
            try:
                self._results[key] = function(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the orchestrator's thread by join()
                self._failure = self._failure or exc

    def join(self) -> dict[str, _Judged]:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        if self._failure is not None:
            raise self._failure
        return self._results


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
            worker.close(wait=0)


def _convert_one(
    request: RunRequest,
    plan: _Plan,
    pool: _ServicePool,
    calibration: SampleSet,
    progress: Progress,
    folder: OutputFolder,
) -> tuple[Artifact | None, StageResult]:
    name = plan.config.name
    progress(Event(name, "convert", "started"))
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{plan.config.spec.slug}-", dir=request.out))
    start = time.perf_counter()
    worker: Worker | None = None
    try:
        worker = pool.acquire()  # a fresh service that cannot start fails this target, not the run
        artifact = _convert_in(worker, request, plan, calibration, staging)
        folder.install(staging, plan.config.spec.slug, name)  # the old artifact renamed aside, then deleted
    except EdgeportError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        folder.discard(plan.config.spec.slug)  # no earlier artifact beside a report saying this one failed
        message = exc.message
        if isinstance(exc, WorkerDied):  # native converter code took the process down: say whose bug it is
            message = (
                f"{name}: the {plan.converter.name} converter crashed the TensorFlow process ({message}); "
                "only this target failed: try another variant, or report it to the converter's project"
            )
        if isinstance(exc, MemoryBudgetExceeded):  # stopped like a timed-out one: the next conversion gets a fresh one
            message = f"{name}: {exc.message}; only this target failed"
        if isinstance(exc, StageTimedOut):  # its model service was stopped: the next conversion gets a fresh one
            message = (
                f"{name}: convert timed out after {exc.seconds:g} s: the {plan.converter.name} converter did not "
                "finish and its model service was stopped; only this target failed "
                "(--stage-timeout convert=SECONDS raises the limit)"
            )
        stage = StageResult("convert", "error", time.perf_counter() - start, message)
        progress(Event(name, "convert", "error", message))
        return None, stage
    finally:
        if worker is not None:
            pool.release(worker)
    progress(Event(name, "convert", "passed"))
    return artifact, StageResult("convert", "passed", time.perf_counter() - start)


def _convert_in(
    worker: Worker,
    request: RunRequest,
    plan: _Plan,
    calibration: SampleSet,
    staging: Path,
    float_layers: tuple[str, ...] = (),
) -> Artifact:
    """One conversion in a model service, within the convert limit, its files checked."""
    artifact = worker.call_within(
        request.timeouts.convert,
        "convert",
        "convert",
        plan.converter,
        plan.config.spec,
        plan.options,
        calibration,
        str(staging),
        float_layers,
    )
    _check_files(artifact, staging)
    return artifact


def _check_files(artifact: Artifact, folder: Path) -> None:
    from edgeport.errors import ConversionError

    if not (folder / artifact.main_file).is_file():
        raise ConversionError(f"converter wrote no {artifact.main_file}; the plug-in is broken")


def _bench_baseline(
    service: Worker, samples: SampleSet, protocol, progress: Progress, warnings: list[str], timeout: float
):
    """Time the SavedModel in the model service (its own process, before any conversion). A timeout stops the
    service; the conversions then start a fresh one."""
    from edgeport.checks.latency import summarize

    progress(Event("savedmodel", "baseline", "started"))
    try:
        stats = summarize(service.call_within(timeout, "bench", "benchmark", samples, protocol), protocol)
    except EdgeportError as exc:
        progress(Event("savedmodel", "baseline", "error", exc.message))
        warnings.append(f"the SavedModel baseline was not timed: {exc.message}")
        return None
    progress(Event("savedmodel", "baseline", "passed"))
    if stats.truncated:
        warnings.append(f"the SavedModel baseline: {stats.describe_truncation()}")
    return stats


@dataclass(frozen=True)
class _Judged:
    """A target after its check (and per-layer comparison, and quant_fallback): what its benchmark and its
    TargetResult start from. `all_quantized`: the folder the all-quantized artifact was moved to when
    quant_fallback replaced it, benchmarked for the cost, then removed."""

    plan: _Plan
    convert: StageResult
    artifact: Artifact | None
    check: StageResult | None = None
    checked: tuple = ()
    runtime_version: str | None = None
    extra: Any = None
    layers: Any = None
    fallback: quant_fallback.FallbackOutcome | None = None
    all_quantized: tuple[Path, int] | None = None  # (folder, its size in bytes)


def _judge(
    request: RunRequest,
    plan: _Plan,
    artifact: Artifact | None,
    convert: StageResult,
    references: tuple[Reference, ...],
    logs: Path,
    progress: Progress,
    layer_source: _LayerSource | None = None,
    refits: _Refits | None = None,
) -> _Judged:
    """Check a converted target; when it fails (or with --layers) compare its layers, and with
    quant_fallback=auto try keeping layers in float. No benchmark here: those run when nothing else does."""
    if artifact is None:
        return _Judged(plan, convert, None)
    folder = request.out / plan.config.spec.slug
    main = folder / artifact.main_file
    check, checked, runtime_version, extra = _check(request, plan, artifact, main, references, logs, progress)
    accuracy = checked[0][1] if checked else None  # the first size's: the one the benchmark runs at
    layers = None
    failed = check.status == "failed" and accuracy is not None and not accuracy.passed
    if layer_source is not None and request.check and (request.layers or failed) and checked:
        layers = layer_source.compare(plan, artifact, main, progress)
    judged = _Judged(plan, convert, artifact, check, tuple(checked), runtime_version, extra, layers)
    if not (failed and layers is not None and refits is not None and refits.wanted(plan)):
        return judged
    fallback, chosen = refits.run(plan, artifact, main, layers, references, progress)
    if chosen is None:
        return dataclasses.replace(judged, fallback=fallback)
    size = sum(p.stat().st_size for p in artifact_files(folder))
    kept, artifact, (check, checked, runtime_version, extra) = refits.install(plan, chosen)
    return _Judged(
        plan, convert, artifact, check, tuple(checked), runtime_version, extra, layers, fallback, (kept, size)
    )


def _bench_and_report(
    request: RunRequest,
    judged: _Judged,
    samples: SampleSet,
    logs: Path,
    progress: Progress,
    bench_call: Callable[..., Any] = call_isolated,
) -> TargetResult:
    plan, artifact, convert = judged.plan, judged.artifact, judged.convert
    name = plan.config.name
    if artifact is None or judged.check is None:
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
    files = artifact_files(folder)
    size = sum(p.stat().st_size for p in files)
    measurements = dict(artifact.measurements)
    measurements.setdefault("size_bytes", size)
    measurements.update(judged.extra or {})
    check, checked = judged.check, judged.checked
    accuracy = checked[0][1] if checked else None
    fallback = judged.fallback
    baseline = None
    if judged.all_quantized is not None:  # first: the all-quantized artifact's p50, for the fallback's cost
        kept, kept_size = judged.all_quantized
        p50_all, why = _cost_baseline(request, plan, artifact, kept / artifact.main_file, samples, logs, bench_call)
        shutil.rmtree(kept, ignore_errors=True)
        baseline = (kept_size, p50_all, why)
    bench, latency = _bench(request, plan, artifact, main, samples, check, logs, progress, bench_call)
    if fallback is not None and baseline is not None:
        kept_size, p50_all, why = baseline
        cost = quant_fallback.cost(kept_size, size, p50_all, latency.p50_ms if latency else None, why)
        fallback = dataclasses.replace(fallback, cost=cost)
        progress(Event(name, "fallback", "passed", quant_fallback.cost_text(cost)))
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
        files=tuple(str(p.relative_to(folder)) for p in files),
        warnings=artifact.warnings,
        notes=(
            *artifact.notes,
            *(accuracy.notes if accuracy else ()),
            *(latency_notes(latency) if latency else ()),
            *_unjudged_latency_budgets(plan, bench),
            *((f"quant_fallback=auto {fallback.status}: {fallback.reason}",) if fallback else ()),
        ),
        details=dict(artifact.details),
        accuracy=accuracy,
        latency=latency,
        shape_checks=tuple(_shape_check(*check) for check in checked),
        measurements=measurements,
        runtime_version=judged.runtime_version or (latency.runtime_version if latency else None),
        threads=plan.settings.threads,
        backend=plan.settings.backend,
        layers=judged.layers,
        quant_fallback=fallback.to_dict() if fallback else None,
    )


class _Refits:
    """`-O quant_fallback=auto` (run/quant_fallback): the reconversions of failed quantized targets, in one
    model service started when the first target needs it; each candidate is staged in OUT, checked and compared
    layer by layer on its runtime like any artifact, and only the one that passes is installed."""

    def __init__(self, request: RunRequest, calibration: SampleSet, folder: OutputFolder, layers: _LayerSource):
        self._request = request
        self._calibration = calibration
        self._folder = folder
        self._layers = layers
        self._service: Worker | None = None
        self._staged: list[Path] = []
        self._lock = threading.Lock()

    @staticmethod
    def wanted(plan: _Plan) -> bool:
        return getattr(plan.options, "quant_fallback", "off") == "auto"

    def run(self, plan: _Plan, artifact: Artifact, main: Path, layers, references, progress: Progress):
        """(FallbackOutcome, the passing Trial or None)."""
        name = plan.config.name
        why_not = plan.converter.float_fallback(plan.config.spec.variant)
        if why_not is not None:
            outcome = quant_fallback.unavailable(why_not, layers)
            progress(Event(name, "fallback", "failed", outcome.reason))
            return outcome, None
        reference = self._layers.reference(progress)
        inputs = {layer.name: layer.inputs for layer in reference.layers} if reference is not None else {}
        progress(Event(name, "fallback", "started", "keeping the layers that add the most error in float"))

        def attempt(float_layers: tuple[str, ...]) -> quant_fallback.Trial:
            return self._attempt(plan, float_layers, references, progress)

        outcome = quant_fallback.keep_layers_in_float(layers, inputs, attempt)
        for trial in outcome.trials:  # every candidate but the chosen one goes now
            if trial is not outcome.chosen and trial.payload is not None:
                shutil.rmtree(trial.payload[1], ignore_errors=True)
        if outcome.chosen is None:
            progress(Event(name, "fallback", "failed", outcome.reason))
        return outcome, outcome.chosen

    def _attempt(self, plan: _Plan, float_layers: tuple[str, ...], references, progress: Progress):
        request = self._request
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{plan.config.spec.slug}-", dir=request.out))
        self._staged.append(staging)
        try:
            with self._lock:  # one model service for every target's reconversions: one call at a time
                artifact = _convert_in(self._worker(), request, plan, self._calibration, staging, float_layers)
        except EdgeportError as exc:  # a stopped service is replaced by _worker() for the next attempt
            shutil.rmtree(staging, ignore_errors=True)
            return quant_fallback.Trial(float_layers, passed=False, failure=exc.message, converted=False)
        main = staging / artifact.main_file
        checked = _check(request, plan, artifact, main, references, request.out / "logs", progress)
        passed = checked[0].status == "passed"
        layers = None if passed else self._layers.compare(plan, artifact, main, progress, record=False)
        return quant_fallback.Trial(
            float_layers, passed, checked[0].reason, layers, payload=(artifact, staging, checked)
        )

    def _worker(self) -> Worker:
        if self._service is None or not self._service.alive:
            self._service = _start_service(self._request, self._request.out / "logs" / "model-fallback.log")
        return self._service

    def install(self, plan: _Plan, trial: quant_fallback.Trial):
        """Put the passing candidate in OUT/<slug>; the all-quantized artifact moves to a staging folder of its
        own, kept for its benchmark (the fallback's cost). (that folder, artifact, check results)."""
        artifact, staging, checked = trial.payload
        slug = plan.config.spec.slug
        kept = Path(tempfile.mkdtemp(prefix=f".staging-{slug}-all-quantized-", dir=self._request.out))
        self._staged.append(kept)
        os.rename(self._request.out / slug, kept / "artifact")
        self._folder.install(staging, slug, plan.config.name)
        return kept / "artifact", artifact, checked

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
        for staging in self._staged:
            shutil.rmtree(staging, ignore_errors=True)  # installed ones were renamed away already


def _cost_baseline(request, plan, artifact, main, samples, logs, bench_call) -> tuple[float | None, str]:
    """The all-quantized artifact's p50, for what keeping layers in float costs: (p50 ms or None, why not)."""
    from edgeport.checks.latency import summarize

    if not request.bench:
        return None, "not measured (--no-bench)"
    reason = _unavailable(request, plan, artifact)
    if reason:
        return None, reason
    try:
        log = logs / f"{plan.config.spec.slug}-all-quantized.log"
        raw = _benchmark(
            request, plan, main, samples, bench_call, log, f"{plan.runtime.name} benchmark (all-quantized)"
        )
        return summarize(raw, request.protocol).p50_ms, ""
    except EdgeportError as exc:
        return None, f"the all-quantized artifact's benchmark failed: {exc.message}"


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
        why = "--no-check (--strict: a target that is not checked fails)" if request.strict else "--no-check"
        return StageResult("check", "failed" if request.strict else "skipped", 0, why), [], None, {}
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
            timeout=request.timeouts.check,
            stage="check",
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
        if reference.labels is not None:
            accuracy = _with_task(accuracy, reference, run.outputs, plan.config.max_accuracy_drop)
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


def _with_task(accuracy: AccuracyResult, reference: Reference, outputs: list[Feeds], max_drop) -> AccuracyResult:
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


class _LayerSource:
    """The per-layer comparison (checks/layers) of a run: the reference intermediates, computed once (in the
    run's model service with --layers, else in a fresh one when the first check fails), then per target the
    artifact's in its own runtime process, within the check stage's time limit."""

    def __init__(self, request: RunRequest, samples: SampleSet, logs: Path):
        from edgeport.checks.layers import LAYER_SAMPLES

        self._request = request
        count = min(LAYER_SAMPLES, samples.count)
        self.samples = dataclasses.replace(samples, arrays={k: v[:count] for k, v in samples.arrays.items()})
        self._logs = logs
        self._reference: Any = None
        self._failure = ""
        self._lock = threading.Lock()
        self.files: dict[str, str] = {}  # Model Explorer node data files, by name in OUT

    def compute(self, service: Worker, progress: Progress) -> None:
        progress(Event("model", "layers", "started", f"{self.samples.count} samples"))
        try:
            self._reference = service.call_within(
                self._request.timeouts.check, "check", "intermediates", self.samples, self.samples.count
            )
        except EdgeportError as exc:
            self._failure = f"the SavedModel's intermediates: {exc.message}"
            progress(Event("model", "layers", "failed", self._failure))
            return
        progress(Event("model", "layers", "passed", f"{len(self._reference.layers)} layers"))

    def reference(self, progress: Progress):
        with self._lock:  # checks run on several threads: the reference is computed once
            return self._computed_reference(progress)

    def _computed_reference(self, progress: Progress):
        if self._reference is None and not self._failure:
            try:
                service = _start_service(self._request, self._logs / "model-layers.log")
            except EdgeportError as exc:
                self._failure = f"the SavedModel's intermediates: {exc.message}"
                return None
            try:
                self.compute(service, progress)
            finally:
                service.close()
        return self._reference

    def compare(
        self, plan: _Plan, artifact: Artifact, main: Path, progress: Progress, *, record: bool = True
    ) -> dict[str, Any]:
        """`record`: write its Model Explorer file (False for quant_fallback's candidates)."""
        from edgeport.checks.layers import compare_layers
        from edgeport.run.stages import run_layers

        name = plan.config.name
        reference = self.reference(progress)
        if reference is None:
            return {"error": self._failure, "first_divergent": None, "worst": [], "tensors": []}
        progress(Event(name, "layers", "started"))
        start = time.perf_counter()
        try:
            run = call_isolated(
                run_layers,
                plan.runtime,
                str(main),
                self.samples,
                plan.settings,
                tuple(layer.name for layer in reference.layers),
                reference.aliases,
                log_path=self._logs / f"{plan.config.spec.slug}-layers.log",
                what=f"{plan.runtime.name} runtime (per-layer)",
                timeout=self._request.timeouts.check,
                stage="check",
            )
        except EdgeportError as exc:
            text = exc.message
            if "NotImplementedError" in text or "has no per-layer comparison" in text:
                text = f"per-layer comparison not supported by runtime {plan.runtime.name}"
            progress(Event(name, "layers", "skipped", text))
            return {"error": text, "first_divergent": None, "worst": [], "tensors": []}
        tolerance = default_tolerance(artifact.precision).replace(**plan.config.tolerance)
        report = compare_layers(reference, run, tolerance.min_cosine)
        data = report.to_dict()
        data["seconds"] = round(time.perf_counter() - start, 3)
        file = f"{plan.config.spec.slug}.model-explorer.json"
        if record:
            self.files[file] = json.dumps(report.node_data, indent=1) + "\n"
            data["model_explorer_file"] = file
        said = report.first_divergent or "none"
        progress(Event(name, "layers", "passed", f"first divergent layer: {said}"))
        return data


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


def _bench(request, plan, artifact, main, samples, check: StageResult, logs, progress, bench_call=call_isolated):
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
        log = logs / f"{plan.config.spec.slug}.log"
        raw = _benchmark(request, plan, main, samples, bench_call, log, f"{plan.runtime.name} benchmark")
        latency = summarize(raw, request.protocol)  # no timed run at all is an error
    except EdgeportError as exc:
        progress(Event(name, "bench", "failed", exc.message))
        return StageResult("bench", "failed", time.perf_counter() - start, exc.message), None
    ungated = UNGATED_WHEN_TRUNCATED if latency.truncated else ()
    problems = [
        f"{key[4:]} {getattr(latency, key[4:]):.3f} > {limit:g}"
        for key, limit in plan.config.budgets.items()
        if key in LATENCY_BUDGETS and key not in ungated and getattr(latency, key[4:]) > limit
    ]
    status = "failed" if problems else "passed"
    reason = "; ".join([*problems, *latency_notes(latency, plan.config.budgets)])
    progress(Event(name, "bench", status, reason))
    return StageResult("bench", status, time.perf_counter() - start, reason), latency


def _benchmark(request: RunRequest, plan: _Plan, main: Path, samples: SampleSet, bench_call, log: Path, what: str):
    """One benchmark of an artifact file, in its own process (or `bench_call`'s), within the bench limit."""
    return bench_call(
        run_bench,
        plan.runtime,
        str(main),
        samples,
        plan.settings,
        request.protocol,
        log_path=log,
        what=what,
        timeout=request.timeouts.bench,
        stage="bench",
    )


def _unjudged_latency_budgets(plan: _Plan, bench: StageResult) -> tuple[str, ...]:
    """Latency budgets a target was given but that no benchmark judged: said, never silently passed."""
    budgets = sorted(key for key in plan.config.budgets if key in LATENCY_BUDGETS)
    if not budgets or bench.status != "skipped":
        return ()
    return (f"latency budgets {', '.join(budgets)} not judged: the bench stage was skipped ({bench.reason})",)


UNGATED_WHEN_TRUNCATED = ("max_p99_ms",)  # a tail quantile of fewer runs than asked for is not a measurement


def latency_notes(latency, budgets=None) -> tuple[str, ...]:
    """What the report says of a benchmark besides its numbers: a truncated run (and the budgets it leaves
    ungated), and the runtime's own notes (a coarse timer)."""
    notes = list(latency.notes)
    if latency.truncated:
        ungated = [key for key in UNGATED_WHEN_TRUNCATED if key in (budgets or {})]
        said = f"; {', '.join(ungated)} not applicable" if ungated else ""
        notes.insert(0, latency.describe_truncation() + said)
    return tuple(notes)


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
