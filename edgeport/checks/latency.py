"""The one timing protocol for every runtime, and the statistics computed from its raw times.

Load, first inference, warm-up (runs and seconds), then timed runs over the real samples until both a
minimum count and a minimum time are met. One deadline, `max_seconds` after the first inference, caps
warm-up and timed runs together; warm-up ends at half of it at the latest, so the timed runs always get the
other half. Timed runs the deadline cut below `min_runs` are flagged (`LatencyStats.truncated`: its p99 is
not gated); no timed run at all is an error, never the cold first run reported as a latency. Feeds are
prepared (`Session.prepare`: quantized for int8 I/O) before the clock starts, and the timed call is the
runtime's run on prepared feeds (`Session.run_prepared`). Runtimes outside Python (Node.js, a browser)
implement the same protocol in their own language (targets/tfjs/protocol.js) and hand back raw times;
statistics are computed here only.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass

import numpy as np

from edgeport.data import RawTimings, TimingProtocol
from edgeport.errors import RuntimeFailure

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
    truncated: bool = False  # the max_seconds deadline ended the timed runs below min_runs: p99 is not gated
    min_runs: int = 0  # what the protocol asked for (0: not known)
    notes: tuple[str, ...] = ()  # what the runtime or the protocol says about these times

    def describe_truncation(self) -> str:
        return (
            f"timed runs cut at max_seconds: {self.runs} of the {self.min_runs} min_runs asked for; "
            "p99 not gated (raise --max-seconds or lower --min-runs)"
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


def summarize(raw: RawTimings, protocol: TimingProtocol | None = None) -> LatencyStats:
    """Statistics of the timed runs; `protocol` (what the runtime was asked to run) flags a truncated run.

    No timed run is an error (RuntimeFailure): the cold first inference is not a latency."""
    times = np.asarray(raw.run_ms, dtype=np.float64)
    if times.size == 0:
        raise RuntimeFailure(
            f"{raw.runtime_version}: the benchmark returned no timed run (only the first, cold one: "
            f"{raw.first_inference_ms:.1f} ms); raise --max-seconds"
        )
    mean = float(times.mean())
    min_runs = protocol.min_runs if protocol else 0
    truncated = int(times.size) < min_runs
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
        truncated=truncated,
        min_runs=min_runs,
        notes=tuple(raw.notes),
    )


def _evenly(values, limit: int):
    """At most `limit` values spread evenly over the run (for distributions in reports)."""
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]
