"""A worker process's entry point (run/isolation.Worker): `python -c <bootstrap> CONN_FD LIFELINE_FD PARENT_PID`.

edgeport's own entry point, so the caller's `__main__` (a script, stdin, a notebook) is never imported again.
Before anything else the worker ties its life to the orchestrator's: PR_SET_PDEATHSIG (SIGKILL when the thread
that started it ends; it exits at once if that process is gone already), and a thread that waits for the
lifeline pipe's end (the orchestrator gone, or the Worker dropped) and then stops every process below the
worker and exits without writing anything more. SIGINT is ignored: Ctrl-C reaches the whole foreground group
and only the orchestrator acts on it. SIGINT, SIGTERM and SIGHUP arrive blocked (the launcher thread's mask)
and are unblocked once that is set.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the thread that started it ends (Linux); exit now if `parent` is gone already."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(70)


def _watch_lifeline(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    from edgeport.run.isolation import stop_processes_below

    stop_processes_below(os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up that could still write: the orchestrator is gone


def main(argv: list[str]) -> None:
    conn_fd, lifeline_fd, parent = (int(value) for value in argv[:3])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    threading.Thread(target=_watch_lifeline, args=(lifeline_fd,), name="edgeport-lifeline", daemon=True).start()

    from multiprocessing.connection import Connection

    from edgeport.run.isolation import serve

    serve(Connection(conn_fd))
