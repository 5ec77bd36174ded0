"""Run plug-in code in worker processes, so a crash (segfault, abort, out of memory) fails only its target.

`Worker` is a long-lived spawned process holding one object (e.g. the loaded SavedModel) and answering
method calls over a pipe; `call_isolated` is a one-shot worker for one function call. A worker's stdout and
stderr go to a log file, never to the user's terminal. When the process dies, the caller gets `WorkerDied`
naming the signal. Every wait for an answer has a deadline: a worker that does not answer in time is stopped
with every process it started (Node.js, Chromium, a subprocess; found through /proc, so a detached process
group too) and the caller gets `StageTimedOut` ("<stage> timed out after N s").

How workers start and end (issues 21, 23, 28):
- A worker is `python -c <bootstrap>` running `edgeport.run.worker_main`, edgeport's own entry point, with this
  process's sys.path: the caller's `__main__` is never re-imported, so a plain script without an
  `if __name__ == "__main__"` guard, `python - < script` and a notebook all work. Messages cross a socketpair
  (`multiprocessing.connection.Connection`, pickled as before).
- Every worker is started by one launcher thread that lives as long as this process, with SIGINT, SIGTERM and
  SIGHUP blocked: the child starts with them blocked (nothing arrives during its start-up), ignores SIGINT
  (Ctrl-C reaches the whole foreground group; only the orchestrator acts on it), and unblocks them.
- A worker dies with this process: `prctl(PR_SET_PDEATHSIG, SIGKILL)` in the child (Linux), which fires on the
  death of the *thread* that started it, hence the long-lived launcher thread; and a lifeline pipe whose EOF
  makes it stop every process below it and exit. What a worker starts gets the same treatment: Node.js through
  `dies_with_parent(command)`, Playwright's driver and Chromium through `dies_with_parent_program` (a worker
  killed with edgeport takes its driver along, and the driver its Chromium).
- `stop_all_workers()` (run/signals: the CLI's SIGINT, SIGTERM and SIGHUP handler; and at exit) stops every
  live worker with every process below it; from then on no worker starts in this process. Every worker (and what
  it starts) carries EDGEPORT_RUN_ID in its environment: the caller's value, or one made per orchestrator.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError, StageTimedOut, WorkerDied, first_line
from edgeport.report import wording
from edgeport.run.memory import MemoryBudget, MemoryBudgetExceeded, resident_bytes

RUN_ID_ENV = "EDGEPORT_RUN_ID"  # in every worker's environment, and so in everything a worker starts
SYS_PATH_ENV = "EDGEPORT_WORKER_SYS_PATH"  # this process's sys.path for the worker (taken out of its environment)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # blocked while a worker starts
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
    _stop_tree(root, include_root=True)


def stop_processes_below(root: int) -> None:
    """`stop_process_tree` of every process below `root`, `root` itself left running (a worker ending its own
    children before it exits: it cannot freeze itself)."""
    _stop_tree(root, include_root=False)


def _stop_tree(root: int, *, include_root: bool) -> None:
    frozen: set[int] = set()
    for _ in range(10):
        found = ({root} if include_root else set()) | set(descendants(root))
        found -= frozen
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        frozen |= found
    for pid in frozen:
        _signal(pid, signal.SIGKILL)


_RUN_ID: list[str] = []


def run_id() -> str:
    """What EDGEPORT_RUN_ID holds in every worker: the caller's own value, else one made for this process."""
    if not _RUN_ID:
        _RUN_ID.append(os.environ.get(RUN_ID_ENV) or f"{os.getpid()}-{time.time_ns()}")
    return _RUN_ID[0]


# Started in a child by `dies_with_parent`, before it execs the real program: it dies (SIGKILL) with the thread
# that started it, and does not start at all when that process is gone already. No imports beyond the standard
# library's ctypes, so it starts in a few ms whatever the program.
_EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def dies_with_parent(command: list[str]) -> list[str]:
    """`command`, started so that it is killed (SIGKILL) when the process (thread) starting it dies: for what a
    worker starts (Node.js), which the worker's own death would otherwise leave running. Linux only; elsewhere
    `command` as it is."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", _EXEC_DYING_WITH_PARENT, str(os.getpid()), *command]


def dies_with_parent_program(program: str, folder: Path) -> str:
    """An executable in `folder` that runs `program` as `dies_with_parent` does: for a program that a library
    starts itself and only lets one name (Playwright: its Node.js driver, Chromium). Linux only; elsewhere
    `program` itself."""
    if not sys.platform.startswith("linux"):
        return program
    path = Path(folder) / f"{Path(program).name}-dies-with-parent"
    command = [sys.executable, "-I", "-S", "-c", _EXEC_DYING_WITH_PARENT]
    path.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$PPID" {shlex.quote(program)} "$@"\n')
    path.chmod(0o755)
    return str(path)


class _Launched:
    """A started worker: its process, its end of the message socket, its lifeline (closing it ends the worker)."""

    def __init__(self, process: subprocess.Popen, conn: Connection, lifeline: int):
        self.process = process
        self.conn = conn
        self._lifeline: int | None = lifeline

    def cut_lifeline(self) -> None:
        fd, self._lifeline = self._lifeline, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:  # dropped without a Worker (interrupted while it started): the worker exits
        self.cut_lifeline()


_LIVE: dict[int, subprocess.Popen] = {}  # pid -> every worker started and not yet reaped
_STOPPING = threading.Event()  # stop_all_workers ran: no worker starts any more


def _bootstrap_command() -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({SYS_PATH_ENV!r})); "
        "from edgeport.run.worker_main import main; main(sys.argv[1:])",
    ]


def _launch() -> _Launched:
    """Start one worker (in the launcher thread): `python -c <bootstrap> CONN_FD LIFELINE_FD PARENT_PID`."""
    ours, theirs = socket.socketpair()
    lifeline_read, lifeline_write = os.pipe()
    try:
        env = {**os.environ, RUN_ID_ENV: run_id(), SYS_PATH_ENV: json.dumps(sys.path)}
        command = [*_bootstrap_command(), str(theirs.fileno()), str(lifeline_read), str(os.getpid())]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, env=env, pass_fds=(theirs.fileno(), lifeline_read), close_fds=True
        )
    except BaseException:
        ours.close()
        os.close(lifeline_write)
        raise
    finally:
        theirs.close()
        os.close(lifeline_read)
    _LIVE[process.pid] = process
    launched = _Launched(process, Connection(ours.detach()), lifeline_write)
    if _STOPPING.is_set():  # stop_all_workers may have looked at _LIVE before this one was in it
        stop_process_tree(process.pid)
    return launched


class _Launcher:
    """The one thread that starts every worker, for as long as this process lives. PR_SET_PDEATHSIG fires when
    the *thread* that started a child ends: a worker started from a short-lived thread (a check lane, a --jobs
    conversion) would be killed with it. Its signal mask blocks SIGINT, SIGTERM and SIGHUP, which the children
    inherit until they have set their own dispositions (worker_main)."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="edgeport-worker-launcher", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while True:
            answer, done = self._requests.get()
            try:
                answer.append(("ok", _launch()))
            except BaseException as exc:  # noqa: BLE001 - handed to the thread that asked
                answer.append(("error", exc))
            done.set()

    def launch(self) -> _Launched:
        answer: list[tuple[str, Any]] = []
        done = threading.Event()
        self._requests.put((answer, done))
        done.wait()
        status, value = answer[0]
        if status == "error":
            raise value
        return value


_LAUNCHER: list[_Launcher] = []
_LAUNCHER_LOCK = threading.Lock()


def _launcher() -> _Launcher:
    with _LAUNCHER_LOCK:
        if not _LAUNCHER:
            _LAUNCHER.append(_Launcher())
        return _LAUNCHER[0]


def stop_all_workers() -> None:
    """Stop every worker of this process with every process below it, and start none from now on: what the CLI
    does on SIGINT, SIGTERM and SIGHUP, before the run unwinds (so no conversion in another thread writes into OUT
    while the run's artifacts are removed). Safe in a signal handler: no lock is taken."""
    _STOPPING.set()
    for process in list(_LIVE.values()):
        if process.returncode is None:  # not reaped: the pid is still this worker's (alive or a zombie)
            stop_process_tree(process.pid)


def _stop_at_exit() -> None:
    """Nothing a worker started outlives this process's orderly exit (its death is PR_SET_PDEATHSIG's job)."""
    stop_all_workers()
    for process in list(_LIVE.values()):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


atexit.register(_stop_at_exit)


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
                f"{type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}",
                traceback.format_exc(),
            )
        )
    else:
        conn.send(("ok", result))


REBUILD = "__rebuild__"  # the message that replaces what a worker holds (Worker.rebuild)


def serve(conn) -> None:
    """A worker's loop (run by edgeport.run.worker_main): the first message builds the object it holds
    (REBUILD), every next one calls a method of it; None or the pipe's end stops it. A build that fails ends it."""
    import gc

    holder: list[Any] = []

    def build(factory: Callable, args: tuple, log_path: str | None):
        _redirect_output(log_path)
        holder.clear()
        gc.collect()  # the previous object's memory goes before the next one takes its own
        holder.append(factory(*args))
        return getattr(holder[0], "describe", lambda: None)()

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        except BaseException as exc:  # noqa: BLE001 - a message that does not unpickle here (a class of __main__)
            _reply(conn, _raise, (exc,), {})
            return
        if message is None:
            return
        method, call_args, call_kwargs = message
        if method == REBUILD:  # what it held is gone either way; a failed build ends the process
            _reply(conn, build, call_args, {})
            if not holder:
                return
        elif holder:
            _reply(conn, getattr(holder[0], method), call_args, call_kwargs)
        else:
            return


def _raise(exc: BaseException):
    raise exc


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
        if _STOPPING.is_set():
            raise WorkerDied(f"{what} not started: edgeport is stopping (a signal)")
        self._launched = _launcher().launch()
        self._process = self._launched.process
        self._conn = self._launched.conn
        try:
            self._conn.send((REBUILD, (factory, args, str(log_path) if log_path else None), {}))
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
                if not self.alive and not self._conn.poll(0):
                    raise EOFError
                if deadline is not None and time.monotonic() >= deadline:
                    self.kill()
                    raise self._timed_out(stage, limit if limit is not None else timeout or 0.0)
                if budget is not None and self._process.pid is not None:
                    self._watch_memory(budget, stage)
            status, *payload = self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._join(10)
            raise WorkerDied(f"{self.what} {describe_exit(self._process.returncode)}") from None
        except BaseException:  # interrupted while the worker works (Ctrl-C): it is in an unknown state
            if self.alive:
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
            f"{stage} stopped: {self.what} held {wording.size(held)}, over the memory budget of {budget.describe()}, "
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
        if not self.alive:
            self._join(0)
            raise WorkerDied(f"{self.what} {describe_exit(self._process.returncode)}")
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
        if self._process.returncode is None:  # not reaped: the pid is still this worker's
            stop_process_tree(self._process.pid)
        self._join(10)

    def _join(self, timeout: float) -> None:
        """Reap the worker if it exits within `timeout` s (its exit code is then known)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=timeout)
        if self._process.returncode is not None:
            _LIVE.pop(self._process.pid, None)
            self._launched.cut_lifeline()

    @property
    def alive(self) -> bool:
        if self._process.poll() is None:
            return True
        _LIVE.pop(self._process.pid, None)
        return False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def close(self, wait: float = 10.0) -> None:
        """Ask the worker to exit; past `wait` seconds stop it (0: at once, for a worker with nothing left to
        write, whose teardown would only take cores from what runs next)."""
        if self.alive:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._join(wait)
        if self.alive:
            self.kill()
        self._conn.close()
        self._launched.cut_lifeline()

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
