"""Load: the model service (one TensorFlow process; the pre-load scan, then the SavedModel loaded once) is
started, asked to validate every target's options against the model, and stopped when the conversions are done."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeport.data import Event
from edgeport.errors import ModelLoadError, StageTimedOut
from edgeport.run.isolation import PluginCrash, Worker
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.request import RunRequest
from edgeport.run.service import ModelInfo, ModelService
from edgeport.run.warm import WarmServices


def load_model(request: RunRequest, log: Path, warm: WarmServices | None, progress: Progress) -> Worker:
    """The run's model service, with the SavedModel loaded; a refusal (the scan, a bad model) raises."""
    progress(Event("model", "load", "started", str(request.model)))
    service = start_service(request, log, warm)
    info: ModelInfo = service.description
    progress(Event("model", "load", "passed", f"{info.mode}, signature {info.signature.key}"))
    return service


def validate_targets(service: Worker, request: RunRequest, plans: Sequence[TargetPlan]) -> None:
    """Each converter's `validate` against the loaded model: a UsageError stops the run before any conversion."""
    service.call_within(
        request.timeouts.load, "load", "validate", [(p.converter, p.config.spec.variant, p.options) for p in plans]
    )


def start_service(request: RunRequest, log: Path, warm: WarmServices | None = None) -> Worker:
    """A model service, in a fresh process, or (`warm`: a fleet's) in an idle one that served an earlier
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


def finish_service(request: RunRequest, service: Worker, warm: WarmServices | None) -> None:
    if warm is not None:
        warm.give_back(service, request.threads)
    else:
        service.close(wait=0)  # TensorFlow's teardown (a second or more) would only delay the benchmarks
