"""Fleet progress on stderr: a live table per node (done / running / failed) on a terminal, plain lines otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgeport.fleet.driver import ModelRecord, Status
from edgeport.report import wording


class FleetProgress:
    def __init__(self, console: Console, enabled: bool = True):
        self._console = console
        self._enabled = enabled
        self._live: Live | None = None

    def __enter__(self) -> FleetProgress:
        if self._enabled and self._console.is_terminal:
            self._live = Live(console=self._console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def __call__(self, status: Status, record: ModelRecord | None) -> None:
        if not self._enabled:
            return
        if self._live is not None:
            self._live.update(_table(status))
        elif record is not None:
            self._console.print(_line(status, record), highlight=False, markup=False)


def _line(status: Status, record: ModelRecord) -> str:
    where = "reused" if record.reused else f"on {record.node.short if record.node else '?'}"
    if record.reused:
        verdict = f"exit {record.exit_code}"
    else:
        tries = f", {record.attempts} attempts" if record.attempts > 1 else ""
        verdict = f"exit {record.exit_code}, {wording.duration(record.seconds)}{tries}"
    error = f": {record.error}" if record.error else ""
    return f"edgeport fleet: [{len(status.finished)}/{status.total}] {record.name} {where} ({verdict}){error}"


def _table(status: Status) -> Table:
    table = Table(
        title=f"edgeport fleet: {len(status.finished)}/{status.total} finished, {len(status.running)} running, "
        f"{status.queued} queued, {status.reused} reused",
        title_justify="left",
    )
    for column in ("node", "done", "running", "failed"):
        table.add_column(column)
    nodes = sorted({*status.done, *status.failed, *status.running.values()} - {"-"})
    for node in nodes:
        running = [name for name, where in status.running.items() if where == node]
        table.add_row(
            node, str(status.done.get(node, 0)), ", ".join(running) or "–", str(status.failed.get(node, 0) or "–")
        )
    return table
