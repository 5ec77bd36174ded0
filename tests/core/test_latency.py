from __future__ import annotations

import numpy as np

from edgeport.checks.latency import MAX_KEPT_RUNS, summarize, time_session
from edgeport.contracts import RawTimings, SampleSet, Session, TimingProtocol


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
    protocol = TimingProtocol(warmup_runs=4, warmup_seconds=0.0, min_runs=25, min_seconds=0.0, max_seconds=5)
    raw = time_session(lambda: session, samples, protocol, "test 1.0")
    assert len(raw.run_ms) == 25 and raw.warmup_runs == 4
    assert session.calls == 1 + 4 + 25 and session.closed
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
    code = "from edgeport.checks.latency import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 300 * 2**20, child / 2**20
    del ballast
