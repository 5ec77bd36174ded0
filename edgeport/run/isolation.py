"""Run plug-in code in worker processes, so a crash (segfault, abort, out of memory) fails only its target.

`Worker` is a long-lived spawned process holding one object (e.g. the loaded SavedModel) and answering
method calls over a pipe; `call_isolated` is a one-shot worker for one function call. A worker's stdout and
stderr go to a log file, never to the user's terminal. When the process dies, the caller gets `WorkerDied`
naming the signal. Every wait for an answer has a deadline: a worker that does not answer in time is stopped
with every process it started (Node.js, Chromium, a subprocess; found through /proc, so a detached process
group too) and the caller gets `StageTimedOut` ("<stage> timed out after N s").
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError, StageTimedOut, WorkerDied
from edgeport.run.memory import MemoryBudget, MemoryBudgetExceeded, human, resident_bytes

_CONTEXT = multiprocessing.get_context("spawn")
DEFAULT_TIMEOUT_S = 900.0  # for a caller that names no limit: nothing waits forever
_POLL_S = 1.0  # how often a wait looks at whether the worker is still alive
_MEMORY_POLL_S = 0.25  # how often a wait reads the worker's memory, under a budget
_BUDGET: list[MemoryBudget | None] = [None]  # the run's --max-memory (memory_budget); None: not watched


@contextlib.contextmanager
def memory_budget(budget: MemoryBudget | None):
    """Watch every worker waited on inside the block against `budget` (run/memory)."""
    saved, _BUDGET[0] = _BUDGET[0], budget
    try:
        yield
    finally:
        _BUDGET[0] = saved


def tree_resident_bytes(root: int) -> int:
    """Resident memory of `root` and every process below it (Node.js, Chromium, subprocesses)."""
    return sum(resident_bytes(pid) for pid in (root, *descendants(root)))


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with status {exitcode}"


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children, ...), from /proc; [] where there is no /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:  # gone already, or not ours
        pass


def stop_process_tree(root: int) -> None:
    """SIGKILL `root` and every process below it. The tree is frozen first (SIGSTOP, repeated until no new
    process appears) so that nothing forks or is re-parented away between finding and killing."""
    frozen: set[int] = set()
    for _ in range(10):
        found = {root, *descendants(root)} - frozen
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        frozen |= found
    for pid in frozen:
        _signal(pid, signal.SIGKILL)


@contextlib.contextmanager
def _sigint_ignored_by_children():
    """Start a worker with SIGINT ignored, which the spawned Python keeps (it installs no handler for an ignored
    SIGINT): Ctrl-C reaches only the orchestrator, which stops its workers, and no worker prints a traceback.
    SIGINT is blocked meanwhile, so a Ctrl-C in that moment stays pending (Linux keeps a blocked signal even
    while it is ignored) and reaches the orchestrator once its handler is back. Main thread only (signal
    handlers can change only there); a worker started from another thread starts as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _redirect_output(log_path: str | None) -> None:
    if not log_path:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _reply(conn, function: Callable, args: tuple, kwargs: dict) -> None:
    try:
        result = function(*args, **kwargs)
    except EdgeportError as exc:
        conn.send(("error", exc))
    except BaseException as exc:  # noqa: BLE001 - report every failure of plug-in code as data
        conn.send(
            (
                "crash",
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                traceback.format_exc(),
            )
        )
    else:
        conn.send(("ok", result))


REBUILD = "__rebuild__"  # the message that replaces what a worker holds (Worker.rebuild)


def _serve(conn, factory: Callable, args: tuple, log_path: str | None) -> None:
    import gc

    holder: list[Any] = []

    def build(factory: Callable, args: tuple, log_path: str | None):
        _redirect_output(log_path)
        holder.clear()
        gc.collect()  # the previous object's memory goes before the next one takes its own
        holder.append(factory(*args))
        return getattr(holder[0], "describe", lambda: None)()

    _reply(conn, build, (factory, args, log_path), {})
    while holder:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        method, call_args, call_kwargs = message
        if method == REBUILD:  # what it held is gone either way; a failed build ends the process
            _reply(conn, build, call_args, {})
        else:
            _reply(conn, getattr(holder[0], method), call_args, call_kwargs)


class PluginCrash(EdgeportError):
    """Plug-in code raised something other than an EdgeportError (a bug, or an unexpected input)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.message, self.detail))


class Worker:
    """A spawned process holding `factory(*args)`; call its methods with `call(name, ...)`.

    `timeout` bounds building the object (stage `stage`, "load" by default); `call` waits `DEFAULT_TIMEOUT_S`
    at most, `call_within(seconds, stage, name, ...)` as long as its stage may take.
    """

    def __init__(
        self,
        factory: Callable,
        *args,
        log_path: Path | None = None,
        what: str = "worker",
        timeout: float | None = DEFAULT_TIMEOUT_S,
        stage: str = "load",
    ):
        self.what = what
        self._conn, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(
            target=_serve, args=(child, factory, args, str(log_path) if log_path else None), daemon=True
        )
        with _sigint_ignored_by_children():
            self._process.start()
        child.close()
        try:
            self.description = self._receive(timeout, stage)
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout: float | None, stage: str, limit: float | None = None):
        """The answer, waiting `timeout` s at most; the message of a timeout names `limit` (the stage's whole
        limit, of which `timeout` may be what is left)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        budget = _BUDGET[0]
        step = _POLL_S if budget is None else _MEMORY_POLL_S
        try:
            while not self._conn.poll(step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))):
                if not self._process.is_alive() and not self._conn.poll(0):
                    raise EOFError
                if deadline is not None and time.monotonic() >= deadline:
                    self.kill()
                    raise self._timed_out(stage, limit if limit is not None else timeout or 0.0)
                if budget is not None and self._process.pid is not None:
                    self._watch_memory(budget, stage)
            status, *payload = self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._process.join(timeout=10)
            raise WorkerDied(f"{self.what} {describe_exit(self._process.exitcode)}") from None
        except BaseException:  # interrupted while the worker works (Ctrl-C): it is in an unknown state
            if self._process.is_alive():
                self.kill()
            raise
        if status == "ok":
            return payload[0]
        if status == "error":
            raise payload[0]
        raise PluginCrash(f"{self.what}: {payload[0]}", payload[1])

    def _watch_memory(self, budget: MemoryBudget, stage: str) -> None:
        assert self._process.pid is not None
        held = tree_resident_bytes(self._process.pid)
        if held <= budget.limit_bytes:
            return
        self.kill()
        raise MemoryBudgetExceeded(
            f"{stage} stopped: {self.what} held {human(held)}, over the memory budget of {budget.describe()}, "
            "and was stopped with every process it started (--max-memory SIZE sets the budget)"
        )

    def _timed_out(self, stage: str, seconds: float) -> StageTimedOut:
        return StageTimedOut(
            f"{stage} timed out after {seconds:g} s: {self.what} did not answer and was stopped with every "
            f"process it started (--stage-timeout {stage}=SECONDS raises the limit)",
            stage,
            float(seconds),
        )

    def call(self, method: str, *args, **kwargs):
        return self.call_within(DEFAULT_TIMEOUT_S, "stage", method, *args, **kwargs)

    def call_within(self, timeout: float | None, stage: str, method: str, *args, **kwargs):
        """`call`, failing with StageTimedOut (and the worker stopped) when no answer comes within `timeout` s."""
        return self.ask(timeout, stage, None, method, args, kwargs)

    def ask(self, timeout: float | None, stage: str, limit: float | None, method: str, args: tuple, kwargs: dict):
        """`call_within` with the arguments as they are, and `limit`: the stage's whole limit, named when it times
        out (`timeout` may be what is left of it)."""
        if not self._process.is_alive():
            raise WorkerDied(f"{self.what} {describe_exit(self._process.exitcode)}")
        self._conn.send((method, args, kwargs))
        return self._receive(timeout, stage, limit)

    def rebuild(
        self,
        factory: Callable,
        *args,
        log_path: Path | None = None,
        what: str = "worker",
        timeout: float | None = DEFAULT_TIMEOUT_S,
        stage: str = "load",
    ) -> None:
        """Hold `factory(*args)` in the same process instead of what it holds, its imports kept (a warm
        TensorFlow); its output goes to `log_path` from now on. A build that fails ends the process, as a
        first build does."""
        self.what = what
        self.description = self.ask(
            timeout, stage, None, REBUILD, (factory, args, str(log_path) if log_path else None), {}
        )

    def kill(self) -> None:
        """Stop the worker now, with every process below it."""
        if self._process.pid is not None:
            stop_process_tree(self._process.pid)
        self._process.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def close(self, wait: float = 10.0) -> None:
        """Ask the worker to exit; past `wait` seconds stop it (0: at once, for a worker with nothing left to
        write, whose teardown would only take cores from what runs next)."""
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=wait)
        if self._process.is_alive():
            self.kill()
        self._conn.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Call:
    def __init__(self, function: Callable):
        self.function = function

    def run(self, *args, **kwargs):
        return self.function(*args, **kwargs)


class _AnyCall:
    """What a warm call worker holds: it runs any function, its output going to that call's log."""

    def run(self, function: Callable, log_path: str | None, args: tuple, kwargs: dict):
        _redirect_output(log_path)
        return function(*args, **kwargs)


WARM_CALL_USES = 64  # calls one warm worker answers before it is replaced


class _WarmCalls:
    """Idle call workers kept between calls (`keep_calls_warm`): the next call skips a process start and the
    imports (about 0.1-0.3 s each: a check's own overhead, several per model in a fleet). A
    worker that died, timed out or ran over its budget is never kept; each call still runs alone in its worker."""

    def __init__(self) -> None:
        self._idle: list[tuple[Worker, int]] = []
        self._lock = threading.Lock()

    def call(self, function: Callable, args: tuple, kwargs: dict, log_path, what: str, timeout, stage: str):
        started = time.monotonic()
        with self._lock:
            taken = next(((w, n) for w, n in self._idle if w.alive), None)
            self._idle = [(w, n) for w, n in self._idle if w.alive and (w, n) != taken]
        worker, uses = taken if taken else (Worker(_AnyCall, what=what, timeout=timeout, stage=stage), 0)
        worker.what = what
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        try:
            return worker.ask(
                left, stage, timeout, "run", (function, str(log_path) if log_path else None, args, kwargs), {}
            )
        finally:
            if worker.alive and uses + 1 < WARM_CALL_USES:
                with self._lock:
                    self._idle.append((worker, uses + 1))
            else:
                worker.close(wait=0)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker, _ in idle:
            worker.close(wait=0)


_WARM_CALLS: list[_WarmCalls | None] = [None]


def keep_calls_warm() -> None:
    """From now on, in this process, `call_isolated` reuses idle call workers (idempotent)."""
    if _WARM_CALLS[0] is None:
        _WARM_CALLS[0] = _WarmCalls()


def call_isolated(
    function: Callable,
    *args,
    log_path: Path | None = None,
    what: str = "worker",
    timeout: float | None = DEFAULT_TIMEOUT_S,
    stage: str = "stage",
    **kwargs,
):
    """Call a picklable module-level function in a fresh process; return its result or raise.

    `timeout` covers the whole call, the process's start included: past it StageTimedOut names `stage`. Under
    `keep_calls_warm` (a fleet's Ray worker) the process is an idle one that answered an earlier call; a
    benchmark takes `call_in_fresh_process`."""
    warm = _WARM_CALLS[0]
    if warm is not None:
        return warm.call(function, args, kwargs, log_path, what, timeout, stage)
    return call_in_fresh_process(function, *args, log_path=log_path, what=what, timeout=timeout, stage=stage, **kwargs)


def call_in_fresh_process(
    function: Callable,
    *args,
    log_path: Path | None = None,
    what: str = "worker",
    timeout: float | None = DEFAULT_TIMEOUT_S,
    stage: str = "stage",
    **kwargs,
):
    """`call_isolated` in a process started for this call alone, warm workers or not: what a benchmark runs
    in, so that nothing an earlier call left in its process (an ONNX Runtime or LiteRT state, freed memory)
    is timed with it. In a fleet run whose benchmarks reused warm workers, ONNX Runtime p50s came out 1.47-1.55x
    their solo values (benchmarks/README.md, Fleets)."""
    started = time.monotonic()
    with Worker(_Call, function, log_path=log_path, what=what, timeout=timeout, stage=stage) as worker:
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return worker.ask(left, stage, timeout, "run", args, kwargs)
