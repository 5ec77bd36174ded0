"""Beside isolation: the threads and the pool of model services a run spreads its stages over.

`CheckLane` checks converted targets on the cores the conversions leave free, while the next target converts;
`ServicePool` lends model services to conversions (`--jobs N`: up to N). Neither knows what a stage does.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from edgeport.run.isolation import Worker


def check_workers(jobs: int, targets: int, *, overlap: bool) -> int:
    """Threads for checks beside `jobs` conversions: the cores those leave free (0: after them, in turn)."""
    if not overlap:
        return 0
    free = (os.cpu_count() or 1) - jobs
    return max(0, min(free, targets))


class CheckLane:
    """Jobs (a target's check, per-layer comparison, quant_fallback) run on `workers` threads while the caller
    goes on converting: conversions and checks of different targets overlap, benchmarks never do (they run
    after `join`, one at a time, with nothing else running). Daemon threads: an interrupted run does not wait
    for them (their worker processes are daemons too). With no worker, each job runs when submitted."""

    def __init__(self, workers: int):
        self._jobs: queue.Queue = queue.Queue()
        self._results: dict[str, Any] = {}
        self._failure: BaseException | None = None
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, function: Callable[..., Any], *args: Any) -> None:
        if self._threads:
            self._jobs.put((key, function, args))
        else:
            self._results[key] = function(*args)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, function, args = job
            try:
                self._results[key] = function(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the orchestrator's thread by join()
                self._failure = self._failure or exc

    def join(self) -> dict[str, Any]:
        """Every job's result by key, once all are done; the first job's exception is raised here."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        if self._failure is not None:
            raise self._failure
        return self._results


class ServicePool:
    """Model services for conversion: the first one is the run's; `start` makes another when all are busy."""

    def __init__(self, first: Worker, start: Callable[[], Worker]):
        self._idle = [first]
        self._start = start
        self._lock = threading.Lock()
        self._extra: list[Worker] = []

    def acquire(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
        worker = self._start()
        with self._lock:
            self._extra.append(worker)
        return worker

    def release(self, worker: Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def close_extra(self) -> None:
        for worker in self._extra:
            worker.close(wait=0)
