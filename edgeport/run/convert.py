"""Convert: every target in a model service (`--jobs N`: up to N), staged and moved into OUT/<slug> whole.

A conversion that fails (an error, a crash of the converter's native code, a timeout, the memory budget)
fails its own target only and leaves no artifact of it in OUT; each result is handed on as soon as it is
there, so the next target converts while this one is checked.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgeport.data import Artifact, Event, SampleSet
from edgeport.errors import ConversionError, EdgeportError, StageTimedOut, WorkerDied
from edgeport.report.files import StageResult
from edgeport.run.isolation import Worker
from edgeport.run.lanes import ServicePool
from edgeport.run.load import start_service
from edgeport.run.memory import MemoryBudgetExceeded
from edgeport.run.output_folder import OutputFolder
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.request import RunRequest

Converted = Callable[[TargetPlan, Artifact | None, StageResult], None]


def convert_all(
    request: RunRequest,
    plans: Sequence[TargetPlan],
    service: Worker,
    calibration: SampleSet,
    progress: Progress,
    folder: OutputFolder,
    converted: Converted,
) -> None:
    """Convert every target, handing each result to `converted` as soon as it is there."""

    def start() -> Worker:
        return start_service(request, request.out / "logs" / f"model-{threading.get_ident()}.log")

    pool = ServicePool(service, start)

    def work(plan: TargetPlan) -> None:
        converted(plan, *convert_one(request, plan, pool, calibration, progress, folder))

    if request.jobs <= 1:
        for plan in plans:
            work(plan)
    else:
        with ThreadPoolExecutor(max_workers=request.jobs) as executor:
            list(executor.map(work, plans))
    pool.close_extra()


def convert_one(
    request: RunRequest,
    plan: TargetPlan,
    pool: ServicePool,
    calibration: SampleSet,
    progress: Progress,
    folder: OutputFolder,
) -> tuple[Artifact | None, StageResult]:
    name = plan.name
    progress(Event(name, "convert", "started"))
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{plan.slug}-", dir=request.out))
    start = time.perf_counter()
    worker: Worker | None = None
    try:
        worker = pool.acquire()  # a fresh service that cannot start fails this target, not the run
        artifact = convert_in(worker, request, plan, calibration, staging)
        folder.install(staging, plan.slug, name)  # the old artifact renamed aside, then deleted
    except EdgeportError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        folder.discard(plan.slug)  # no earlier artifact beside a report saying this one failed
        message = failure_message(plan, exc)
        progress(Event(name, "convert", "error", message))
        return None, StageResult("convert", "error", time.perf_counter() - start, message)
    finally:
        if worker is not None:
            pool.release(worker)
    progress(Event(name, "convert", "passed"))
    return artifact, StageResult("convert", "passed", time.perf_counter() - start)


def failure_message(plan: TargetPlan, exc: EdgeportError) -> str:
    """What the report says of a failed conversion: whose failure it was, and that only this target failed."""
    name = plan.name
    if isinstance(exc, WorkerDied):  # native converter code took the process down: say whose bug it is
        return (
            f"{name}: the {plan.converter.name} converter crashed the TensorFlow process ({exc.message}); "
            "only this target failed: try another variant, or report it to the converter's project"
        )
    if isinstance(exc, MemoryBudgetExceeded):  # stopped like a timed-out one: the next conversion gets a fresh one
        return f"{name}: {exc.message}; only this target failed"
    if isinstance(exc, StageTimedOut):  # its model service was stopped: the next conversion gets a fresh one
        return (
            f"{name}: convert timed out after {exc.seconds:g} s: the {plan.converter.name} converter did not "
            "finish and its model service was stopped; only this target failed "
            "(--stage-timeout convert=SECONDS raises the limit)"
        )
    return exc.message


def convert_in(
    worker: Worker,
    request: RunRequest,
    plan: TargetPlan,
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
    if not (staging / artifact.main_file).is_file():
        raise ConversionError(f"converter wrote no {artifact.main_file}; the plug-in is broken")
    return artifact
