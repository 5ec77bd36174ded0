"""What runs on a Ray worker: one model's whole `convert` pipeline, and its benchmarks in the node's slot.

`run_model` is one Ray task (`num_cpus=1`) per model: it calls the pipeline in-process, as `edgeport convert`
does (the model service loads TensorFlow and the SavedModel once, conversions and checks run in their own
processes, artifacts and reports are written into OUT/<model>/ atomically). A Ray worker runs model after
model, so it keeps its model service warm between them (run/warm): the next model loads into a process that
has TensorFlow imported. Each artifact's benchmark is a
nested Ray task, `run_benchmark`, that needs the node-exclusive resource `edgeport_bench` (one per node) on
top of its CPU: no two benchmarks ever share a node, while conversions and checks (which do not take it) keep
every other core busy. The model task is blocked in `ray.get` meanwhile, so Ray lends its CPU to the bench.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError, ExitCode, first_line
from edgeport.run.request import RunRequest

BENCH_RESOURCE = "edgeport_bench"
ATTEMPTS = "fleet-attempts.txt"  # one line per attempt (node id): a retried model shows where it ran


@dataclass(frozen=True)
class NodeInfo:
    id: str  # Ray's node id
    ip: str
    hostname: str
    cpu: str

    @property
    def short(self) -> str:
        return f"{self.ip}/{self.id[:8]}"


@dataclass(frozen=True)
class ModelJob:
    name: str
    request: RunRequest
    fingerprint: str


@dataclass(frozen=True)
class ModelOutcome:
    """What a model task hands the driver: its report (as report.json has it) or the error that stopped it."""

    name: str
    node: NodeInfo
    exit_code: int
    seconds: float
    report: dict[str, Any] | None = None
    error: str = ""
    attempts: int = 1


def this_node() -> NodeInfo:
    import ray

    from edgeport.checks.latency import cpu_name

    context = ray.get_runtime_context()
    return NodeInfo(
        id=context.get_node_id(), ip=ray.util.get_node_ip_address(), hostname=socket.gethostname(), cpu=cpu_name()
    )


def run_benchmark(function, *args, **kwargs):
    """A benchmark in a fresh process (`call_in_fresh_process`, never a warm one), on a node whose
    `edgeport_bench` slot this task holds."""
    from edgeport.run.isolation import call_in_fresh_process

    return call_in_fresh_process(function, *args, **kwargs), this_node()


def run_model(job: ModelJob) -> ModelOutcome:
    from edgeport.fleet.resume import STAMP, write_stamp
    from edgeport.run import pipeline
    from edgeport.run.warm import keep_services_warm

    keep_services_warm()  # this Ray worker runs model after model: the next one loads into a warm TensorFlow

    node = this_node()
    out = job.request.out
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).unlink(missing_ok=True)  # from here on, the folder's report is not this run's until stamped
    attempts = _note_attempt(out, node)
    benched: dict[str, NodeInfo] = {}
    try:
        # One CPU to Ray per model task: its stages run in turn (no check lane beside its conversions); the fleet
        # overlaps models instead, and benchmarks keep the node's slot.
        request = dataclasses.replace(job.request, sequential=True)
        report = pipeline.run(request, bench_call=_slot_bench(benched))
    except EdgeportError as exc:
        return ModelOutcome(
            job.name, node, int(exc.exit_code), time.perf_counter() - started, None, exc.message, attempts
        )
    except Exception as exc:  # noqa: BLE001 - an edgeport bug on one model fails that model, not the fleet
        message = f"{type(exc).__name__}: {first_line(exc)}"
        return ModelOutcome(
            job.name, node, int(ExitCode.LOAD_OR_CONVERSION), time.perf_counter() - started, None, message, attempts
        )
    report = _annotated(report, node, benched)
    _rewrite(report, out)
    write_stamp(out, job.fingerprint)
    data = report.to_dict()
    return ModelOutcome(job.name, node, report.exit_code, time.perf_counter() - started, data, "", attempts)


def _note_attempt(out: Path, node: NodeInfo) -> int:
    with (out / ATTEMPTS).open("a", encoding="utf-8") as handle:
        handle.write(f"{node.id} {node.ip} pid {os.getpid()}\n")
    return len((out / ATTEMPTS).read_text(encoding="utf-8").splitlines())


def _slot_bench(benched: dict[str, NodeInfo]):
    """`call_isolated` as a nested Ray task holding a benchmark slot, preferably on this model's node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(run_benchmark)
    node_id = ray.get_runtime_context().get_node_id()

    def bench_call(function, *args, log_path: Path | None = None, what: str = "worker", **kwargs):
        ref = remote.options(
            num_cpus=1,
            resources={BENCH_RESOURCE: 1},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True),
            max_retries=0,  # the model task is retried as a whole when its node goes
        ).remote(function, *args, log_path=log_path, what=what, **kwargs)
        raw, node = ray.get(ref)
        if log_path is not None:
            benched[Path(log_path).stem] = node
        return raw

    return bench_call


def _annotated(report, node: NodeInfo, benched: dict[str, NodeInfo]):
    """The report says which node converted and checked the model, and where each benchmark was measured."""
    targets = []
    for target in report.targets:
        where = benched.get(target.folder or "")
        if where is not None:
            note = f"benchmarked on fleet node {where.short} ({where.hostname}, {where.cpu}), exclusive benchmark slot"
            target = dataclasses.replace(target, notes=(*target.notes, note))
        targets.append(target)
    machine = {**report.machine, "node": dataclasses.asdict(node)}
    return dataclasses.replace(report, targets=tuple(targets), machine=machine)


def _rewrite(report, out: Path) -> None:
    from edgeport.report.files import write_report_files
    from edgeport.report.html import write_html

    write_report_files(report, out)
    write_html(report, out)
