from __future__ import annotations

import time

import numpy as np
import pytest

from edgeport.checks.latency import MAX_KEPT_RUNS, summarize
from edgeport.checks.timing import time_session
from edgeport.contracts import RawTimings, SampleSet, Session, TimingProtocol
from edgeport.errors import RuntimeFailure


class CountingSession(Session):
    def __init__(self):
        self.calls = 0
        self.closed = False

    def run(self, feeds):
        self.calls += 1
        return {"y": feeds["x"] * 2}

    def close(self):
        self.closed = True


def test_protocol_meets_min_runs_and_counts_warmup_separately():
    session = CountingSession()
    samples = SampleSet({"x": np.ones((3, 1, 2), np.float32)}, "test", True)
    protocol = TimingProtocol(
        warmup_runs=4, warmup_seconds=0.0, min_runs=25, min_seconds=0.0, max_seconds=5, ci_half_width=0
    )
    raw = time_session(lambda: session, samples, protocol, "test 1.0")
    assert len(raw.run_ms) == 25 and raw.warmup_runs >= 2 * protocol.warmup_window  # two windows to compare
    assert session.calls == 1 + raw.warmup_runs + 25 and session.closed
    assert raw.peak_rss_bytes > 0 and raw.runtime_version == "test 1.0"


def test_max_seconds_caps_the_timed_runs():
    samples = SampleSet({"x": np.ones((1, 1), np.float32)}, "test", True)
    protocol = TimingProtocol(warmup_runs=0, warmup_seconds=0, min_runs=10**9, min_seconds=0, max_seconds=0.05)
    raw = time_session(CountingSession, samples, protocol, "v")
    assert 0 < len(raw.run_ms) < 10**9


def test_statistics_from_raw_times():
    times = tuple(float(t) for t in range(1, 101))
    stats = summarize(
        RawTimings(
            load_ms=5, first_inference_ms=9, warmup_runs=3, run_ms=times, peak_rss_bytes=2**20 * 50, runtime_version="v"
        )
    )
    assert stats.runs == 100 and stats.p50_ms == 50.5 and stats.min_ms == 1 and stats.max_ms == 100
    assert abs(stats.p90_ms - 90.1) < 1e-9 and abs(stats.mean_ms - 50.5) < 1e-9
    assert abs(stats.throughput_per_s - 1000 / 50.5) < 1e-9 and stats.peak_rss_mb == 50
    many = summarize(RawTimings(0, 0, 0, tuple([1.0] * 5000), 1, "v"))
    assert many.runs == 5000 and len(many.run_ms) == MAX_KEPT_RUNS


def test_peak_rss_is_this_process_not_an_inherited_peak():
    import subprocess
    import sys

    ballast = bytearray(400 * 2**20)  # this process now peaks above 400 MB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from edgeport.checks.timing import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 300 * 2**20, child / 2**20
    del ballast


class SleepingSession(Session):
    """Each run sleeps `seconds`; counts what the timing protocol does with it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.prepared = 0
        self.runs: list[object] = []

    def prepare(self, feeds):
        self.prepared += 1
        return ("prepared", feeds)

    def run_prepared(self, prepared):
        self.runs.append(prepared)
        time.sleep(self.seconds)
        return prepared

    def run(self, feeds):
        raise AssertionError("the protocol times run_prepared on prepared feeds, never run")


def test_one_deadline_covers_warm_up_and_timed_runs_and_flags_the_cut():
    session = SleepingSession(0.01)
    samples = SampleSet({"x": np.ones((4, 1), np.float32)}, "test", True)
    protocol = TimingProtocol(warmup_runs=10**6, warmup_seconds=0, min_runs=10**6, min_seconds=0, max_seconds=0.6)
    started = time.perf_counter()
    raw = time_session(lambda: session, samples, protocol, "v")
    took = time.perf_counter() - started
    assert took < 0.6 + 0.2, took  # warm-up asked for a million runs: the deadline ended it and the timed runs
    assert raw.warmup_runs > 0 and 0 < len(raw.run_ms) < 10**6
    assert raw.warmup_runs * 0.01 <= 0.3 + 0.05  # warm-up gets half of max_seconds at the most
    stats = summarize(raw, protocol)
    assert stats.truncated and stats.min_runs == 10**6 and stats.runs == len(raw.run_ms)
    assert "cut at max_seconds" in stats.describe_truncation() and "p99 not gated" in stats.describe_truncation()
    assert not summarize(raw).truncated  # without the protocol nothing says what was asked for


def test_a_run_that_meets_min_runs_is_not_truncated():
    samples = SampleSet({"x": np.ones((2, 1), np.float32)}, "test", True)
    protocol = TimingProtocol(warmup_runs=1, warmup_seconds=0, min_runs=5, min_seconds=0, max_seconds=5)
    raw = time_session(CountingSession, samples, protocol, "v")
    assert not summarize(raw, protocol).truncated


def test_feeds_are_prepared_once_per_sample_before_the_clock():
    session = SleepingSession(0.0)
    samples = SampleSet({"x": np.arange(3, dtype=np.float32).reshape(3, 1)}, "test", True)
    protocol = TimingProtocol(warmup_runs=2, warmup_seconds=0, min_runs=30, min_seconds=0, max_seconds=5)
    raw = time_session(lambda: session, samples, protocol, "v")
    assert session.prepared == 3  # not once per run: quantizing int8 inputs is not part of the latency
    assert len(session.runs) == 1 + raw.warmup_runs + len(raw.run_ms)
    assert all(run[0] == "prepared" for run in session.runs)


def test_no_timed_run_is_an_error_never_the_cold_first_run():
    slow = SleepingSession(0.3)
    samples = SampleSet({"x": np.ones((1, 1), np.float32)}, "test", True)
    protocol = TimingProtocol(warmup_runs=1, warmup_seconds=0, min_runs=5, min_seconds=0, max_seconds=0.2)
    with pytest.raises(RuntimeFailure, match=r"no timed run within max_seconds 0.2.*raise --max-seconds"):
        time_session(lambda: slow, samples, protocol, "v")
    with pytest.raises(RuntimeFailure, match="no timed run"):
        summarize(
            RawTimings(load_ms=1, first_inference_ms=9, warmup_runs=0, run_ms=(), peak_rss_bytes=1, runtime_version="v")
        )


def test_runtime_notes_reach_the_statistics():
    raw = RawTimings(1, 1, 1, (1.0, 2.0), 1, "v", notes=("timing resolution is coarse",))
    assert summarize(raw).notes == ("timing resolution is coarse",)


def test_a_truncated_benchmark_does_not_gate_p99_and_says_so():
    from edgeport.run.bench import latency_notes

    raw = RawTimings(1, 1, 1, tuple(float(t) for t in range(1, 8)), 1, "v")
    protocol = TimingProtocol(min_runs=50)
    stats = summarize(raw, protocol)
    notes = latency_notes(stats, {"max_p99_ms": 0.001, "max_p50_ms": 100})
    assert notes == (stats.describe_truncation() + "; max_p99_ms not applicable",)
    assert "7 of the 50 min_runs" in notes[0]
