"""The fleet driver: connects to Ray (or starts it in-process), submits one task per model, collects outcomes.

The driver alone writes the SQLite history (one run per model, as `convert` records it) and the fleet files.
A model task lost with its node or its worker (killed, OOM) is retried by Ray, `retries` times, on whichever
node has room; after that it is an infrastructure failure (exit 4), distinct from a conversion failure (3).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import ExitCode, UsageError, first_line
from edgeport.fleet.manifest import FleetManifest, FleetModel
from edgeport.fleet.resume import fingerprint, reusable_report
from edgeport.fleet.tasks import ATTEMPTS, BENCH_RESOURCE, ModelJob, ModelOutcome, NodeInfo

EMBEDDED = "embedded"


@dataclass(frozen=True)
class ModelRecord:
    """One model's line in fleet.json."""

    name: str
    path: str
    exit_code: int
    seconds: float
    node: NodeInfo | None = None
    reused: bool = False
    attempts: int = 0
    error: str = ""
    infrastructure_failure: bool = False
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class FleetResult:
    manifest: Path
    out: Path
    address: str
    records: tuple[ModelRecord, ...]
    seconds: float
    created: str
    nodes: tuple[NodeInfo, ...] = ()

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.records), default=0)


@dataclass
class Status:
    """What the progress display shows: per node done/running/failed; models not started are queued."""

    total: int
    queued: int = 0
    running: dict[str, str] = field(default_factory=dict)  # model -> node label ("?" until it says)
    done: dict[str, int] = field(default_factory=dict)  # node label -> models finished there
    failed: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    finished: list[ModelRecord] = field(default_factory=list)


Progress = Callable[[Status, ModelRecord | None], None]


def connect(address: str | None, *, bench: bool) -> str:
    """ray.init against `address` (HOST:PORT or auto), or in-process with one benchmark slot when None."""
    import logging

    import ray

    if address and address != "auto":
        _reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local",  # a new in-process instance, never a cluster someone started on this machine
                num_cpus=os.cpu_count() or 1,
                resources={BENCH_RESOURCE: 1},
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot connect to Ray at {address}: {first_line(exc)}") from None
    if bench and not ray.cluster_resources().get(BENCH_RESOURCE):
        ray.shutdown()
        raise UsageError(
            f"the Ray cluster at {address} has no {BENCH_RESOURCE} resource: start every node with "
            f"ray start ... --resources='{{\"{BENCH_RESOURCE}\": 1}}' (one benchmark slot per node), or pass --no-bench"
        )
    return address or EMBEDDED


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT (the head's GCS port, default 6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach Ray at {address} ({exc.strerror or exc}); is `ray start --head` running?"
        ) from None


def run_fleet(
    manifest: FleetManifest,
    out: Path,
    *,
    address: str | None = None,
    resume: bool = False,
    max_parallel: int | None = None,
    retries: int = 2,
    bench: bool = True,
    progress: Progress | None = None,
    record: Callable[[ModelRecord], None] | None = None,
) -> FleetResult:
    """Run every model of the manifest; `record` is called in the driver for each model run (the history)."""
    import ray

    started = time.perf_counter()
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    status = Status(total=len(manifest.models))
    jobs: list[ModelJob] = []
    reused: list[ModelRecord] = []
    for model in manifest.models:
        hash_ = fingerprint(model)
        earlier = reusable_report(model, hash_) if resume else None
        if earlier is not None:
            reused.append(_reused(model, earlier))
        else:
            jobs.append(ModelJob(model.name, model.request, hash_))
    where = connect(address, bench=bench and bool(jobs)) if jobs else EMBEDDED
    try:
        for item in reused:
            status.reused += 1
            status.finished.append(item)
            if progress:
                progress(status, item)
        records = [*reused, *_run_jobs(jobs, manifest, retries, max_parallel, status, progress, record)]
        nodes = _nodes(records)
    finally:
        if jobs:
            ray.shutdown()
    order = {m.name: i for i, m in enumerate(manifest.models)}
    return FleetResult(
        manifest=manifest.path,
        out=out,
        address=where,
        records=tuple(sorted(records, key=lambda r: order[r.name])),
        seconds=time.perf_counter() - started,
        created=created,
        nodes=nodes,
    )


def _run_jobs(jobs, manifest, retries, max_parallel, status, progress, record) -> list[ModelRecord]:
    import ray

    from edgeport.fleet.tasks import run_model

    task = ray.remote(run_model)
    paths = {m.name: m for m in manifest.models}
    queue = list(jobs)
    running: dict[Any, tuple[ModelJob, float]] = {}
    records: list[ModelRecord] = []
    status.queued = len(queue)
    while queue or running:
        limit = max_parallel or _cluster_cpus()
        while queue and len(running) < limit:
            job = queue.pop(0)
            ref = task.options(
                num_cpus=1, max_retries=retries, retry_exceptions=False, name=f"edgeport-fleet:{job.name}"
            ).remote(job)
            running[ref] = (job, time.perf_counter())
            status.running[job.name] = "?"
        status.queued = len(queue)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
        for ref in ready:
            job, since = running.pop(ref)
            item = _collect(ref, job, paths[job.name], since, retries)
            records.append(item)
            status.running.pop(job.name, None)
            label = item.node.short if item.node else "-"
            bucket = status.failed if item.exit_code else status.done
            bucket[label] = bucket.get(label, 0) + 1
            status.finished.append(item)
            if record and item.report is not None:
                record(item)
            if progress:
                progress(status, item)
        _where_running(status, paths)
        if progress and not ready:
            progress(status, None)
    return records


def _cluster_cpus() -> int:
    """Models in flight: one per CPU of the cluster's live nodes. Ray lends a CPU of a task blocked in `ray.get`
    (a model waiting for its benchmark) to whatever is queued; were more models queued, they would take it ahead
    of the benchmark, and every model would convert first and then queue for the benchmark slot."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _collect(ref, job: ModelJob, model: FleetModel, since: float, retries: int) -> ModelRecord:
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        outcome: ModelOutcome = ray.get(ref)
    except RayTaskError as exc:  # an exception outside run_model's own handling: this model's failure
        return ModelRecord(
            job.name,
            str(model.path),
            int(ExitCode.LOAD_OR_CONVERSION),
            time.perf_counter() - since,
            error=first_line(exc),
        )
    except RayError as exc:  # the worker or its node died on every attempt
        return ModelRecord(
            job.name,
            str(model.path),
            int(ExitCode.INFRASTRUCTURE),
            time.perf_counter() - since,
            node=_last_node(model),
            attempts=retries + 1,
            error=f"infrastructure failure after {retries + 1} attempts: {type(exc).__name__}: {first_line(exc)}",
            infrastructure_failure=True,
        )
    return ModelRecord(
        name=job.name,
        path=str(model.path),
        exit_code=outcome.exit_code,
        seconds=outcome.seconds,
        node=outcome.node,
        attempts=outcome.attempts,
        error=outcome.error,
        report=outcome.report,
    )


def _last_node(model: FleetModel) -> NodeInfo | None:
    try:
        lines = (model.request.out / ATTEMPTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if not lines:
        return None
    node_id, ip = lines[-1].split()[:2]
    return NodeInfo(id=node_id, ip=ip, hostname="", cpu="")


def _where_running(status: Status, paths: dict[str, FleetModel]) -> None:
    """Each running model's node, from the attempt line its task writes when it starts (OUT is shared)."""
    for name in list(status.running):
        node = _last_node(paths[name])
        if node is not None:
            status.running[name] = node.short


def _reused(model: FleetModel, report: dict[str, Any]) -> ModelRecord:
    node = report.get("machine", {}).get("node")
    return ModelRecord(
        name=model.name,
        path=str(model.path),
        exit_code=int(report["exit_code"]),
        seconds=0.0,
        node=NodeInfo(**node) if isinstance(node, dict) else None,
        reused=True,
        report=report,
    )


def _nodes(records: list[ModelRecord]) -> tuple[NodeInfo, ...]:
    seen: dict[str, NodeInfo] = {}
    for item in records:
        if item.node is not None and item.node.cpu and not item.reused:
            seen.setdefault(item.node.id, item.node)
    return tuple(seen.values())
