"""Progress of a run on stderr: live bars on a terminal, plain lines otherwise (CI logs).

On a terminal every running stage shows its elapsed time; the benchmark (and the SavedModel baseline) also a
bar and an ETA from the timing protocol (warm-up plus minimum timed seconds, plus the start-up the previous
benchmark needed); an overall bar counts finished targets with an ETA from the pace of the finished ones.
Off a terminal nothing is redrawn: one line when a stage starts, one when it ends (with its time), and the
count of finished targets.

An ETA is made only from what is known: the overall one when a target finishes (the pace of the targets
finished since conversions ended), a stage's from the timing protocol when it starts. Between those it only
counts down; past zero the overall ETA is not shown (the estimate was wrong, and nothing new is known yet)
and a stage shows its deadline instead. Times are worded by report/wording.duration.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

from edgeport.data import Event, TimingProtocol
from edgeport.report import wording

ICONS = {"passed": "[green]ok[/]", "failed": "[red]FAIL[/]", "error": "[red]ERROR[/]", "skipped": "[yellow]skip[/]"}
TIMED_STAGES = ("bench", "baseline")
DEFAULT_STARTUP_S = 2.0  # a fresh runtime process before its first timed run, until one was measured


@dataclass(frozen=True)
class RunShape:
    """What the printer knows in advance about a run: its targets, which stages run, the timing protocol."""

    targets: tuple[str, ...] = ()
    check: bool = True
    bench: bool = True
    protocol: TimingProtocol | None = None


class ProgressPrinter:
    def __init__(self, console: Console, enabled: bool = True, *, shape: RunShape | None = None):
        self._console = console
        self._enabled = enabled
        self._shape = shape or RunShape()
        self._live = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._done: list[str] = []
        self._pace_start: float | None = None
        self._done_before_pace = 0  # targets that failed while converting: they say nothing of the pace
        self._estimate: tuple[float, float] | None = None  # (when it was made, seconds left then)
        self._startup_s = dict.fromkeys(TIMED_STAGES, DEFAULT_STARTUP_S)  # learned per kind of stage
        self._lock = threading.Lock()  # with --jobs N, conversions report from several threads

    def __enter__(self) -> ProgressPrinter:
        if self._live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                _StageBar(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                _EtaColumn(self),
                console=self._console,
                transient=True,
                refresh_per_second=8,
            )
            self._progress.start()
            if self._shape.targets:
                total = len(self._shape.targets)
                self._overall = self._progress.add_task(
                    "targets", total=total, expected=None, stage="", count=f"0/{total}"
                )
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:  # nothing after the run: a check thread still answering an interrupted run (its worker
            self._enabled = False  # stopped) must not print below the one line that says it was interrupted
        if self._progress:
            self._progress.stop()

    # ---- events --------------------------------------------------------------------------------------------

    def event(self, event: Event) -> None:
        if not self._enabled:
            return
        key = (event.target, event.stage)
        with self._lock:
            if event.status == "started":
                self._start(key, event)
            else:
                self._finish(key, event)

    def _start(self, key: tuple[str, str], event: Event) -> None:
        now = time.perf_counter()
        self._started[key] = now
        if event.stage in ("check", "bench") and self._pace_start is None:
            self._pace_start = now  # conversions are over: targets now finish one after the other
            self._done_before_pace = len(self._done)
        expected = self._expected_seconds(event.stage)
        text = escape(f"{event.target}: {event.stage}" + (f" ({event.message})" if event.message else ""))
        if self._progress:
            self._tasks[key] = self._progress.add_task(text, total=None, expected=expected, count="", stage=event.stage)
            return
        hint = ""
        if expected and self._shape.protocol:
            hint = f" (about {wording.duration(expected)}, at most {wording.duration(self._max_seconds(event.stage))})"
        self._print(f"{text} ...{hint}")

    def _finish(self, key: tuple[str, str], event: Event) -> None:
        started = self._started.pop(key, None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        if event.stage in TIMED_STAGES and started is not None and event.status == "passed":
            self._learn_startup(event.stage, seconds)
        if self._progress and key in self._tasks:
            self._progress.remove_task(self._tasks.pop(key))
        message = escape(f" {event.message}") if event.message else ""
        line = (
            f"{escape(event.target)}: {event.stage} {ICONS.get(event.status, event.status)} "
            f"({wording.duration(seconds)}){message}"
        )
        if self._target_finished(event):
            self._done.append(event.target)
            self._estimate_remaining()
            line += escape(f" [{len(self._done)}/{len(self._shape.targets)} targets done{self._eta_suffix()}]")
            if self._progress and self._overall is not None:
                self._progress.update(
                    self._overall, completed=len(self._done), count=f"{len(self._done)}/{len(self._shape.targets)}"
                )
        self._print(line)

    def _print(self, text: str) -> None:
        (self._progress.console if self._progress else self._console).print(text, highlight=False)

    # ---- bookkeeping ---------------------------------------------------------------------------------------

    def _target_finished(self, event: Event) -> bool:
        if event.target not in self._shape.targets or event.target in self._done:
            return False
        shape, status = self._shape, event.status
        if event.stage == "convert":
            return status in ("error", "failed") or not (shape.check or shape.bench)
        if event.stage == "check":  # a failed check is still benchmarked, unless it could not run (bench skipped)
            return status == "skipped" or not shape.bench
        return event.stage == "bench"

    def _expected_seconds(self, stage: str) -> float | None:
        protocol = self._shape.protocol
        if stage not in TIMED_STAGES or protocol is None:
            return None
        return self._startup_s[stage] + protocol.warmup_seconds + protocol.min_seconds

    def _max_seconds(self, stage: str) -> float:
        protocol = self._shape.protocol or TimingProtocol()
        return self._startup_s[stage] + protocol.max_seconds  # one deadline caps warm-up and timed runs together

    def _learn_startup(self, stage: str, seconds: float) -> None:
        protocol = self._shape.protocol
        if protocol is not None:
            self._startup_s[stage] = max(0.0, seconds - protocol.warmup_seconds - protocol.min_seconds)

    def _estimate_remaining(self) -> None:
        """When a target finishes (the only new information): the pace of the targets finished since
        conversions ended, times the targets left. Nothing else changes the estimate."""
        total, done = len(self._shape.targets), len(self._done)
        paced = done - self._done_before_pace
        self._estimate = None
        if paced > 0 and done < total and self._pace_start is not None:
            now = time.perf_counter()
            self._estimate = (now, (now - self._pace_start) / paced * (total - done))

    def remaining_targets_s(self) -> float | None:
        """ETA of the whole run: the last estimate counted down, never growing between finished targets;
        None before the first estimate, once every target is done, and once the estimate has run out."""
        if self._estimate is None or len(self._done) >= len(self._shape.targets):
            return None
        made, seconds = self._estimate
        left = seconds - (time.perf_counter() - made)
        return left if left > 0 else None

    def _eta_suffix(self) -> str:
        eta = self.remaining_targets_s()
        return f", about {wording.duration(eta)} left" if eta is not None else ""

    def eta_text(self, task) -> str:
        if task.id == self._overall:
            eta = self.remaining_targets_s()
            return f"~{wording.duration(eta)} left" if eta is not None else ""
        expected = task.fields.get("expected")
        if not expected or task.elapsed is None:
            return ""
        left = expected - task.elapsed
        if left > 0:
            return f"~{wording.duration(left)} left"
        deadline = max(0.0, self._max_seconds(task.fields["stage"]) - task.elapsed)
        return f"≤{wording.duration(deadline)} left (past the ~{wording.duration(expected)} expected)"


class _StageBar(ProgressColumn):
    """A bar filled by elapsed time against a stage's expected duration; a pulse when none is known."""

    def render(self, task) -> ProgressBar:
        expected = task.fields.get("expected")
        if task.total is not None:
            return ProgressBar(total=task.total, completed=task.completed, width=24)
        if expected:
            return ProgressBar(total=expected, completed=min(task.elapsed or 0.0, expected), width=24)
        return ProgressBar(total=None, width=24, pulse=True, animation_time=task.get_time())


class _EtaColumn(ProgressColumn):
    def __init__(self, printer: ProgressPrinter):
        super().__init__()
        self._printer = printer

    def render(self, task) -> Text:
        return Text(self._printer.eta_text(task), style="progress.remaining")
