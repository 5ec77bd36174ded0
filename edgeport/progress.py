"""Progress on the terminal: a live line with the stage in progress on a TTY, plain lines otherwise (CI logs)."""
from __future__ import annotations

import time

from rich.console import Console

from edgeport.pipeline import Event

ICONS = {"passed": "[green]ok[/]", "failed": "[red]FAIL[/]", "error": "[red]ERROR[/]", "skipped": "[yellow]skip[/]"}


class ProgressPrinter:
    def __init__(self, console: Console, enabled: bool = True):
        self._console = console
        self._enabled = enabled
        self._status = None
        self._started: dict[tuple[str, str], float] = {}

    def __enter__(self) -> ProgressPrinter:
        if self._enabled and self._console.is_terminal:
            self._status = self._console.status("starting")
            self._status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._status:
            self._status.stop()

    def event(self, event: Event) -> None:
        if not self._enabled:
            return
        key = (event.target, event.stage)
        if event.status == "started":
            self._started[key] = time.perf_counter()
            text = f"{event.target}: {event.stage}" + (f" ({event.message})" if event.message else "")
            if self._status:
                self._status.update(text + " ...")
            else:
                self._console.print(f"{text} ...", highlight=False)
            return
        seconds = time.perf_counter() - self._started.pop(key, time.perf_counter())
        message = f" {event.message}" if event.message else ""
        self._console.print(f"{event.target}: {event.stage} {ICONS.get(event.status, event.status)} "
                            f"({seconds:.1f}s){message}", highlight=False)
