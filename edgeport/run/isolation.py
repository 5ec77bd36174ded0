"""Run plug-in code in worker processes, so a crash (segfault, abort, out of memory) fails only its target.

`Worker` is a long-lived spawned process holding one object (e.g. the loaded SavedModel) and answering
method calls over a pipe; `call_isolated` is a one-shot worker for one function call. A worker's stdout and
stderr go to a log file, never to the user's terminal. When the process dies, the caller gets `WorkerDied`
naming the signal.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError, WorkerDied

_CONTEXT = multiprocessing.get_context("spawn")


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


def _serve(conn, factory: Callable, args: tuple, log_path: str | None) -> None:
    _redirect_output(log_path)
    holder: list[Any] = []

    def build():
        holder.append(factory(*args))
        return getattr(holder[0], "describe", lambda: None)()

    _reply(conn, build, (), {})
    if not holder:
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        method, call_args, call_kwargs = message
        _reply(conn, getattr(holder[0], method), call_args, call_kwargs)


class PluginCrash(EdgeportError):
    """Plug-in code raised something other than an EdgeportError (a bug, or an unexpected input)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.message, self.detail))


class Worker:
    """A spawned process holding `factory(*args)`; call its methods with `call(name, ...)`."""

    def __init__(self, factory: Callable, *args, log_path: Path | None = None, what: str = "worker"):
        self.what = what
        self._conn, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(
            target=_serve, args=(child, factory, args, str(log_path) if log_path else None), daemon=True
        )
        self._process.start()
        child.close()
        self.description = self._receive()

    def _receive(self):
        try:
            status, *payload = self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._process.join(timeout=10)
            raise WorkerDied(f"{self.what} {describe_exit(self._process.exitcode)}") from None
        if status == "ok":
            return payload[0]
        if status == "error":
            raise payload[0]
        raise PluginCrash(f"{self.what}: {payload[0]}", payload[1])

    def call(self, method: str, *args, **kwargs):
        if not self._process.is_alive():
            raise WorkerDied(f"{self.what} {describe_exit(self._process.exitcode)}")
        self._conn.send((method, args, kwargs))
        return self._receive()

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
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


def call_isolated(function: Callable, *args, log_path: Path | None = None, what: str = "worker", **kwargs):
    """Call a picklable module-level function in a fresh process; return its result or raise."""
    with Worker(_Call, function, log_path=log_path, what=what) as worker:
        return worker.call("run", *args, **kwargs)
