"""What the CLI does on SIGINT, SIGTERM and SIGHUP: stop every process of the run, then unwind as Ctrl-C does.

The handler first stops every worker with every process below it (run/isolation.stop_all_workers: Node.js,
Chromium, a conversion in another thread), so nothing writes into OUT while the run removes its artifacts, then
raises KeyboardInterrupt (SIGINT) or `Terminated` (SIGTERM, SIGHUP), a KeyboardInterrupt: report.json says
"interrupted", the CLI prints one line and exits 130, or 128 + the signal's number (143, 129).

Standard library only: the CLI installs it at start-up, before any command's imports.
"""

from __future__ import annotations

import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOPPING = threading.Event()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the CLI: handled as Ctrl-C is; exit 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _stop_workers() -> None:
    isolation = sys.modules.get("edgeport.run.isolation")  # not imported: no worker was ever started
    if isolation is not None:
        isolation.stop_all_workers()


def _on_signal(signum: int, _frame) -> None:
    first = not _STOPPING.is_set()
    _STOPPING.set()
    _stop_workers()
    if not first:  # a second signal while the run unwinds would cut its clean-up short; SIGKILL still ends it
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def stop_on_signals() -> None:
    """Install the handler for SIGINT, SIGTERM and SIGHUP (main thread only). A signal ignored when this process
    started stays ignored, as POSIX shells expect of background jobs: `cmd &` in a script starts it with SIGINT
    ignored, `nohup` with SIGHUP ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
