"""The one timing protocol for every runtime, and the statistics computed from its raw times.

Load, first inference, warm-up (runs and seconds), then timed runs over the real samples until both a
minimum count and a minimum time are met, capped by a maximum time. Runtimes outside Python (Node.js, a
browser) implement the same protocol in their own language and hand back raw times; statistics are
computed here only.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeport.data import RawTimings, SampleSet, TimingProtocol

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.contracts import Session


MAX_KEPT_RUNS = 1000


@dataclass(frozen=True)
class LatencyStats:
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_per_s: float
    load_ms: float
    first_inference_ms: float
    warmup_runs: int
    peak_rss_mb: float
    runtime_version: str
    cpu: str
    run_ms: tuple[float, ...]  # raw times (at most MAX_KEPT_RUNS, evenly kept), for distributions and noise


def time_session(
    open_session: Callable[[], Session], samples: SampleSet, protocol: TimingProtocol, version: str
) -> RawTimings:
    """Run the protocol on a Python session. Call it in a fresh process (the pipeline does)."""
    feeds = samples.feeds()
    clock = time.perf_counter
    start = clock()
    session = open_session()
    load_ms = (clock() - start) * 1e3
    try:
        start = clock()
        session.run(feeds[0])
        first_ms = (clock() - start) * 1e3
        warm_start, warm = clock(), 0
        while warm < protocol.warmup_runs or clock() - warm_start < protocol.warmup_seconds:
            session.run(feeds[warm % len(feeds)])
            warm += 1
            if clock() - warm_start > protocol.max_seconds:
                break
        times: list[float] = []
        began = clock()
        while True:
            feed = feeds[len(times) % len(feeds)]
            t0 = clock()
            session.run(feed)
            times.append((clock() - t0) * 1e3)
            elapsed = clock() - began
            if len(times) >= protocol.min_runs and elapsed >= protocol.min_seconds:
                break
            if elapsed >= protocol.max_seconds:
                break
    finally:
        session.close()
    return RawTimings(
        load_ms=load_ms,
        first_inference_ms=first_ms,
        warmup_runs=warm,
        run_ms=tuple(times),
        peak_rss_bytes=peak_rss_bytes(),
        runtime_version=version,
    )


def vm_hwm_bytes(pid: int | str = "self") -> int | None:
    """A process's peak resident memory from /proc/PID/status (VmHWM); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process. On Linux from VmHWM: getrusage's ru_maxrss keeps the parent's
    peak across fork+exec, so a worker spawned by a large process would report the parent's memory."""
    peak = vm_hwm_bytes()
    if peak is not None:
        return peak
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def summarize(raw: RawTimings) -> LatencyStats:
    times = np.asarray(raw.run_ms, dtype=np.float64)
    if times.size == 0:
        times = np.asarray([raw.first_inference_ms])
    mean = float(times.mean())
    return LatencyStats(
        runs=int(times.size),
        p50_ms=float(np.percentile(times, 50)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=mean,
        std_ms=float(times.std()),
        min_ms=float(times.min()),
        max_ms=float(times.max()),
        throughput_per_s=1e3 / mean if mean > 0 else 0.0,
        load_ms=raw.load_ms,
        first_inference_ms=raw.first_inference_ms,
        warmup_runs=raw.warmup_runs,
        peak_rss_mb=raw.peak_rss_bytes / 2**20,
        runtime_version=raw.runtime_version,
        cpu=cpu_name(),
        run_ms=tuple(round(float(t), 4) for t in _evenly(raw.run_ms, MAX_KEPT_RUNS)),
    )


def _evenly(values, limit: int):
    """At most `limit` values spread evenly over the run (for distributions in reports)."""
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]
