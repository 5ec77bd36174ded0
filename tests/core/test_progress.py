"""Progress: live bars with elapsed time and ETA on a terminal, quiet plain lines otherwise (CI logs)."""

from __future__ import annotations

import re
import time
from io import StringIO

from rich.console import Console

from edgeport.cli.progress import ProgressPrinter, RunShape
from edgeport.contracts import TimingProtocol
from edgeport.data import Event

SHAPE = RunShape(
    targets=("tflite", "tflite:int8", "onnx"),
    check=True,
    bench=True,
    protocol=TimingProtocol(warmup_seconds=0.1, min_seconds=0.3, max_seconds=5.0),
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIME = r"(\d+(\.\d)? s|\d+ ms|[\d.]+ µs|0\.\d{3} ms)"  # report/wording.duration

RUN = [
    Event("model", "load", "started", "saved_model"),
    Event("model", "load", "passed", "tf2"),
    Event("tflite", "convert", "started"),
    Event("tflite", "convert", "passed"),
    Event("tflite:int8", "convert", "started"),
    Event("tflite:int8", "convert", "passed"),
    Event("onnx", "convert", "started"),
    Event("onnx", "convert", "error", "unsupported op [Bessel]"),
    Event("savedmodel", "baseline", "started"),
    Event("savedmodel", "baseline", "passed"),
    Event("tflite", "check", "started"),
    Event("tflite", "check", "passed"),
    Event("tflite", "bench", "started"),
    Event("tflite", "bench", "passed"),
    Event("tflite:int8", "check", "started"),
    Event("tflite:int8", "check", "failed", "output_0: cosine 0.9 < 0.95"),
    Event("tflite:int8", "bench", "started"),  # a failed accuracy check is still benchmarked
    Event("tflite:int8", "bench", "passed"),
]


def play(console: Console, pause: float = 0.0, shape: RunShape = SHAPE, enabled: bool = True) -> ProgressPrinter:
    with ProgressPrinter(console, enabled=enabled, shape=shape) as printer:
        for event in RUN:
            printer.event(event)
            time.sleep(pause if event.status == "started" else 0)
    return printer


def test_plain_lines_when_not_a_terminal():
    buffer = StringIO()
    play(Console(file=buffer, width=200), pause=0.05)
    text = buffer.getvalue()
    assert not ANSI.search(text), "no control codes in CI logs"
    lines = text.splitlines()
    assert len(lines) == len(RUN), "one line when a stage starts, one when it ends"
    assert lines[0] == "model: load (saved_model) ..."
    assert re.fullmatch(rf"model: load ok \({TIME}\) tf2", lines[1])
    bench_start = next(line for line in lines if line.startswith("tflite: bench ..."))
    assert re.search(r"about 2\.4 s, at most 7\.0 s", bench_start), "the benchmark knows its duration from the protocol"
    assert "onnx: convert ERROR" in text and "unsupported op [Bessel]" in text and "[1/3 targets done]" in text
    assert re.search(rf"tflite: bench ok \({TIME}\) \[2/3 targets done, about {TIME} left\]", text)
    assert re.search(r"tflite:int8: check FAIL \(.*\) output_0: cosine 0.9 < 0.95\n", text)  # not done yet
    assert re.search(rf"tflite:int8: bench ok \({TIME}\) \[3/3 targets done\]", text)


def test_live_bars_on_a_terminal():
    buffer = StringIO()
    printer = play(Console(file=buffer, force_terminal=True, width=120), pause=0.3)
    raw = buffer.getvalue()
    assert ANSI.search(raw), "a terminal gets a live display"
    text = ANSI.sub("", raw)
    assert "targets" in text and re.search(r"\d/3", text), "the overall bar counts targets"
    assert re.search(r"0:00:0\d", text), "elapsed time is shown"
    assert re.search(rf"~{TIME} left", text), "ETA from the protocol (bench) or the pace of finished targets"
    for line in ("model: load ok", "tflite: bench ok", "onnx: convert ERROR", "tflite:int8: check FAIL"):
        assert line in text, "finished stages stay on screen as lines"
    assert printer.remaining_targets_s() is None, "no ETA once every target is done"


def test_eta_of_the_remaining_targets_follows_the_pace():
    printer = ProgressPrinter(Console(file=StringIO()), shape=SHAPE)
    for event in RUN[:12]:  # conversions, baseline and tflite's check; bench still to come
        printer.event(event)
    # onnx failed while converting: 1 of 3 done, but nothing finished since the pace started, so no guess
    assert printer.remaining_targets_s() is None
    printer.event(RUN[12])
    time.sleep(0.2)
    printer.event(RUN[13])
    remaining = printer.remaining_targets_s()
    assert remaining is not None and remaining >= 0.2 * 0.5


def test_disabled_prints_nothing():
    buffer = StringIO()
    play(Console(file=buffer, force_terminal=True), enabled=False)
    assert buffer.getvalue() == ""


def test_without_a_run_shape_it_still_reports_stages():
    buffer = StringIO()
    play(Console(file=buffer, width=200), shape=RunShape())
    assert "tflite: bench ok" in buffer.getvalue() and "targets done" not in buffer.getvalue()


class Clock:
    """time.perf_counter for the printer, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_never_grows_without_a_finished_target(monkeypatch):
    """The reported run: 3 s left, then 36 s, then 66 s while nothing finished. An estimate is made when a
    target finishes and only counts down until the next one does; once run out it is not shown."""
    clock = Clock()
    monkeypatch.setattr("edgeport.cli.progress.time.perf_counter", clock)
    printer = ProgressPrinter(Console(file=StringIO()), shape=SHAPE)
    for event in RUN[:10]:  # conversions (onnx failed) and the baseline
        printer.event(event)
    printer.event(RUN[10])  # tflite: check started, the pace starts
    clock.now += 1.0
    printer.event(RUN[11])
    printer.event(RUN[12])
    clock.now += 2.0
    printer.event(RUN[13])  # tflite done: 2 of 3 targets
    first = printer.remaining_targets_s()
    assert first is not None and first > 0
    seen = [first]
    for _ in range(60):  # a long benchmark of the last target: no new information for a minute
        clock.now += 1.0
        seen.append(printer.remaining_targets_s() or 0.0)
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:], strict=False)), seen
    assert printer.remaining_targets_s() is None, "an estimate that ran out is not shown, nor replaced by a guess"


def test_a_stage_past_its_expected_time_shows_its_deadline_counting_down(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("edgeport.cli.progress.time.perf_counter", clock)
    printer = ProgressPrinter(Console(file=StringIO()), shape=SHAPE)

    class Task:
        id, fields = 99, {"expected": 2.4, "stage": "bench"}
        elapsed = 1.0

    assert printer.eta_text(Task) == "~1.4 s left"
    said = []
    for elapsed in (3.0, 4.0, 6.5):
        Task.elapsed = elapsed
        said.append(printer.eta_text(Task))
    assert said == [
        "≤4.0 s left (past the ~2.4 s expected)",
        "≤3.0 s left (past the ~2.4 s expected)",
        "≤500 ms left (past the ~2.4 s expected)",
    ]
