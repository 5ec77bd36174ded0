"""Model services kept warm between runs in one long-lived process: a fleet's Ray worker runs model after model.

Every `edgeport convert` starts its model service in a fresh process, which imports TensorFlow before it
loads anything (about 3 s of CPU on the development machine, more than converting a small model). A fleet
runs many models in the same few Ray worker processes, so there the service of a finished model is kept,
idle, and the next model is loaded into it (`Worker.rebuild`): TensorFlow stays imported. A service is kept
only alive, under MAX_USES models and MAX_RESIDENT_BYTES of memory, and for the same thread count (TensorFlow
fixes its thread pools once); anything else is closed as before. The workers of checks are kept the same way
(isolation.keep_calls_warm); a benchmark still gets a process of its own (isolation.call_in_fresh_process).
Off unless `keep_services_warm()` was called.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edgeport.run.isolation import Worker, keep_calls_warm, tree_resident_bytes

MAX_USES = 16  # models one service process loads before it is replaced (TensorFlow's caches only grow)
MAX_RESIDENT_BYTES = 3 << 30  # a service holding more than this after a model is not kept


@dataclass
class _Idle:
    worker: Worker
    threads: int
    uses: int


class WarmServices:
    def __init__(self) -> None:
        self._idle: list[_Idle] = []
        self._uses: dict[int, int] = {}  # id(worker) -> models it has loaded
        self._lock = threading.Lock()

    def take(self, threads: int) -> Worker | None:
        """An idle live service started with `threads`, or None."""
        with self._lock:
            for index, idle in enumerate(self._idle):
                if idle.threads == threads and idle.worker.alive:
                    del self._idle[index]
                    self._uses[id(idle.worker)] = idle.uses
                    return idle.worker
        return None

    def started(self, worker: Worker) -> None:
        with self._lock:
            self._uses[id(worker)] = self._uses.get(id(worker), 0) + 1

    def give_back(self, worker: Worker, threads: int) -> None:
        """Keep `worker` for the next model, or close it (dead, used up, or holding too much)."""
        with self._lock:
            uses = self._uses.pop(id(worker), MAX_USES)
        pid = worker.pid
        keep = worker.alive and uses < MAX_USES and pid is not None and tree_resident_bytes(pid) < MAX_RESIDENT_BYTES
        if not keep:
            worker.close(wait=0)
            return
        with self._lock:
            self._idle.append(_Idle(worker, threads, uses))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for entry in idle:
            entry.worker.close(wait=0)


_WARM: list[WarmServices | None] = [None]


def keep_services_warm() -> WarmServices:
    """From now on, in this process, model services are kept between runs, and so are the workers of
    `call_isolated` (checks; isolation.keep_calls_warm) (idempotent)."""
    keep_calls_warm()
    services = _WARM[0]
    if services is None:
        services = _WARM[0] = WarmServices()
    return services


def warm_services() -> WarmServices | None:
    return _WARM[0]
