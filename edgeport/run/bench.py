"""Bench: the SavedModel's baseline (in the model service, before any conversion), then each artifact that
runs, one at a time with nothing else running, in a fresh process of its own (or `bench_call`'s: a fleet's
Ray task holding the node's benchmark slot). Statistics are computed once, by checks/latency.summarize.
Latency budgets (`max_p50_ms`, ...) are judged here; a budget no benchmark judged is said. A budget on a quantile
(p50, p90, p99) is judged by its 95 % interval, as the agreement gates are by theirs: failed when the interval
lies above the budget, passed when at or below it, inconclusive when it straddles it or the runs are too few to
bound that quantile (a failure with --strict, a note otherwise). Just before each benchmark the machine's noise
is measured (checks/latency.with_machine_noise: the kernel just before and just after); a noisy machine is
said in the target's notes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeport.checks.latency import LatencyStats, summarize, with_machine_noise
from edgeport.checks.timing import quantile_ranks
from edgeport.data import Artifact, Event, RawTimings, SampleSet
from edgeport.errors import EdgeportError
from edgeport.report import wording
from edgeport.report.files import StageResult
from edgeport.run import quant_fallback
from edgeport.run.check import Checked, unavailable
from edgeport.run.isolation import Worker
from edgeport.run.judge import Judged
from edgeport.run.output_folder import artifact_files
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.request import LATENCY_BUDGETS, RunRequest
from edgeport.run.runtime_calls import run_bench

UNGATED_WHEN_TRUNCATED = ("max_p99_ms",)  # a tail quantile of fewer runs than asked for is not a measurement
QUANTILE_BUDGETS = {"max_p50_ms": 0.5, "max_p90_ms": 0.9, "max_p99_ms": 0.99}  # judged by their 95 % interval


@dataclass(frozen=True)
class Benched:
    """A target's benchmark: the stage, its statistics, and quant_fallback's outcome with its cost."""

    stage: StageResult
    latency: LatencyStats | None = None
    fallback: quant_fallback.FallbackOutcome | None = None


def bench_baseline(
    service: Worker, samples: SampleSet, request: RunRequest, progress: Progress
) -> tuple[LatencyStats | None, tuple[str, ...]]:
    """Time the SavedModel in the model service: (its statistics or None, the warnings to say). A timeout
    stops the service; the conversions then start a fresh one."""
    progress(Event("savedmodel", "baseline", "started"))
    try:
        raw, noise = with_machine_noise(
            lambda: service.call_within(request.timeouts.bench, "bench", "benchmark", samples, request.protocol)
        )
        stats = summarize(raw, request.protocol, noise)
    except EdgeportError as exc:
        progress(Event("savedmodel", "baseline", "error", exc.message))
        return None, (f"the SavedModel baseline was not timed: {exc.message}",)
    progress(Event("savedmodel", "baseline", "passed"))
    return stats, tuple(f"the SavedModel baseline: {note}" for note in latency_notes(stats) if note not in raw.notes)


def bench_target(
    request: RunRequest,
    judged: Judged,
    samples: SampleSet,
    logs: Path,
    progress: Progress,
    bench_call: Callable[..., Any],
) -> Benched:
    """Benchmark a judged target; when quant_fallback replaced its artifact, first the all-quantized one it
    replaced, for the fallback's cost."""
    plan, artifact = judged.plan, judged.artifact
    if artifact is None or judged.checked is None:
        return Benched(StageResult("bench", "skipped", 0, "conversion failed"))
    cost_of_all_quantized = None
    if judged.all_quantized is not None:
        kept, kept_size = judged.all_quantized
        p50_all, why = cost_baseline(request, plan, artifact, kept / artifact.main_file, samples, logs, bench_call)
        shutil.rmtree(kept, ignore_errors=True)
        cost_of_all_quantized = (kept_size, p50_all, why)
    main = request.out / plan.slug / artifact.main_file
    stage, latency = bench_artifact(request, plan, artifact, main, samples, judged.checked, logs, progress, bench_call)
    fallback = judged.fallback
    if fallback is not None and cost_of_all_quantized is not None:
        kept_size, p50_all, why = cost_of_all_quantized
        size = sum(p.stat().st_size for p in artifact_files(main.parent))
        cost = quant_fallback.cost(kept_size, size, p50_all, latency.p50_ms if latency else None, why)
        fallback = replace(fallback, cost=cost)
        progress(Event(plan.name, "fallback", "passed", quant_fallback.cost_text(cost)))
    return Benched(stage, latency, fallback)


def bench_artifact(
    request: RunRequest,
    plan: TargetPlan,
    artifact: Artifact,
    main: Path,
    samples: SampleSet,
    checked: Checked,
    logs: Path,
    progress: Progress,
    bench_call: Callable[..., Any],
) -> tuple[StageResult, LatencyStats | None]:
    """Every artifact that runs is benchmarked, a failed accuracy gate or not (the artifact is valid, its latency
    still worth knowing); one its check could not run at all (the runtime crashed, timed out, refused it) is
    skipped, saying why."""
    name = plan.name
    if not request.bench:
        return StageResult("bench", "skipped", 0, "--no-bench"), None
    reason = unavailable(plan, artifact, main)
    if reason:
        return StageResult("bench", "skipped", 0, reason), None
    if request.check and checked.stage.status in ("failed", "error") and checked.accuracy is None:
        reason = "the check could not run the artifact"
        progress(Event(name, "bench", "skipped", reason))
        return StageResult("bench", "skipped", 0, reason), None
    progress(Event(name, "bench", "started"))
    start = time.perf_counter()
    try:
        log = logs / f"{plan.slug}.log"
        raw, noise = with_machine_noise(  # nothing else of this run is running: what the machine itself does
            lambda: benchmark(request, plan, main, samples, bench_call, log, f"{plan.runtime.name} benchmark")
        )
        latency = summarize(raw, request.protocol, noise)  # no timed run at all is an error
    except EdgeportError as exc:
        progress(Event(name, "bench", "failed", exc.message))
        return StageResult("bench", "failed", time.perf_counter() - start, exc.message), None
    problems, inconclusive = judge_latency_budgets(latency, plan.config.budgets)
    if request.strict:  # an inconclusive budget fails; said once, as a failure
        problems += [f"{said} (--strict)" for said in inconclusive]
    status = "failed" if problems else "passed"
    notes = [n for n in latency_notes(latency, plan.config.budgets) if not (request.strict and n in inconclusive)]
    reason = "; ".join([*problems, *notes])
    progress(Event(name, "bench", status, reason))
    return StageResult("bench", status, time.perf_counter() - start, reason), latency


def cost_baseline(request, plan, artifact, main, samples, logs, bench_call) -> tuple[float | None, str]:
    """The all-quantized artifact's p50, for what keeping layers in float costs: (p50 ms or None, why not)."""
    if not request.bench:
        return None, "not measured (--no-bench)"
    reason = unavailable(plan, artifact, main)
    if reason:
        return None, reason
    try:
        log = logs / f"{plan.slug}-all-quantized.log"
        raw = benchmark(request, plan, main, samples, bench_call, log, f"{plan.runtime.name} benchmark (all-quantized)")
        return summarize(raw, request.protocol).p50_ms, ""
    except EdgeportError as exc:
        return None, f"the all-quantized artifact's benchmark failed: {exc.message}"


def benchmark(
    request: RunRequest, plan: TargetPlan, main: Path, samples: SampleSet, bench_call, log: Path, what: str
) -> RawTimings:
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


def unjudged_latency_budgets(plan: TargetPlan, bench: StageResult) -> tuple[str, ...]:
    """Latency budgets a target was given but that no benchmark judged: said, never silently passed."""
    budgets = sorted(key for key in plan.config.budgets if key in LATENCY_BUDGETS)
    if not budgets or bench.status != "skipped":
        return ()
    return (f"latency budgets {', '.join(budgets)} not judged: the bench stage was skipped ({bench.reason})",)


def judge_latency_budgets(latency: LatencyStats, budgets: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """(failed budgets, inconclusive ones), each said in one line. A quantile's budget is judged by its 95 %
    interval (see the module doc); the others (mean, load, peak RSS) by the value."""
    ungated = UNGATED_WHEN_TRUNCATED if latency.truncated else ()
    failed, inconclusive = [], []
    for key, limit in budgets.items():
        if key not in LATENCY_BUDGETS or key in ungated:
            continue
        stat = key[4:]
        value = getattr(latency, stat)
        if key not in QUANTILE_BUDGETS:
            if value > limit:
                failed.append(f"{stat} {value:.3f} > {limit:g}")
            continue
        interval = latency.interval(stat)
        said = f"{stat[:-3]} {wording.latency_interval(value, interval)}"
        if interval is None:
            needed = next(n for n in range(1, 100_000) if quantile_ranks(n, QUANTILE_BUDGETS[key]) is not None)
            inconclusive.append(
                f"{key} {limit:g} inconclusive: {latency.runs} timed runs bound no 95 % interval of "
                f"{stat[:-3]} (it needs {needed}); {said}"
            )
        elif interval[0] > limit:
            failed.append(f"{key} {limit:g} exceeded: {said} (the whole 95 % interval above it)")
        elif interval[1] > limit:
            inconclusive.append(
                f"{key} {limit:g} inconclusive: its 95 % interval straddles it, {said}; raise --max-seconds or "
                "lower --ci-half-width for a tighter one"
            )
    return failed, inconclusive


def latency_notes(latency: LatencyStats, budgets: Mapping[str, float] | None = None) -> tuple[str, ...]:
    """What the report says of a benchmark besides its numbers: a truncated run (and the budgets it leaves
    ungated), a latency budget its interval left inconclusive, a p50 interval wider than asked, a noisy machine,
    and the runtime's own notes (a coarse timer)."""
    notes = [*judge_latency_budgets(latency, budgets or {})[1], *latency.notes]
    if latency.noise is not None and latency.noise.noisy:
        notes.insert(0, latency.noise.describe())
    if not latency.ci_met and not latency.truncated:
        notes.insert(0, latency.describe_interval())
    if latency.truncated:
        ungated = [key for key in UNGATED_WHEN_TRUNCATED if key in (budgets or {})]
        said = f"; {', '.join(ungated)} not applicable" if ungated else ""
        notes.insert(0, latency.describe_truncation() + said)
    return tuple(notes)
