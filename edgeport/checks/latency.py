"""The statistics of the timing protocol's raw times (the protocol itself: checks/timing.py), and the
machine's noise measured before a benchmark.

Every quantile comes with its distribution-free 95 % interval (order statistics at the binomial ranks,
timing.quantile_ranks), computed on every timed run (not only the kept ones); a quantile the runs are too few
to bound has none (p90 needs 36 runs, p99 368). Timed runs the deadline cut below `min_runs` are flagged
(`truncated`), a p50 interval wider than the protocol asked for is said (`ci_met`); no timed run at all is an
error, never the cold first run reported as a latency. Runtimes outside Python (Node.js, a browser) hand back
raw times; statistics are computed here only.

The machine's noise (`measure_noise`): a fixed pure-Python kernel timed NOISE_REPEATS times, its coefficient of
variation, and the load average. A CV above NOISY_CV or a 1-minute load above the cores is a noisy machine.
`with_machine_noise` times the kernel again just after the benchmark (`after`): a VM's vCPU has phases in which
everything runs slower (on the 2-core build machine, 30 benchmarks in a row: the kernel 1.9 ms or 3.6 ms, a
0.22 ms ONNX model 0.21 ms or 0.30 ms at its fastest run, correlation 0.84), so a comparison of two reports
discounts the machine's own change of speed (report/regression), and a kernel that moved by more than
NOISY_CV from before to after makes the benchmark noisy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeport.checks.timing import quantile_interval
from edgeport.data import RawTimings, TimingProtocol
from edgeport.errors import RuntimeFailure
from edgeport.report import wording

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
    p50_ci_ms: tuple[float, float] | None = None  # 95 % intervals (order statistics, every timed run);
    p90_ci_ms: tuple[float, float] | None = None  # None: too few runs to bound that quantile
    p99_ci_ms: tuple[float, float] | None = None
    ci_half_width: float = 0.0  # what the protocol asked of the p50's interval (relative; 0: nothing asked)
    ci_met: bool = True  # the p50's interval is within ±ci_half_width (False: max_seconds came first)
    noise: MachineNoise | None = None  # the machine's noise, measured just before this benchmark
    downloaded_bytes: dict[str, int] | None = None  # a browser page: the bytes it fetched, by kind (model, runtime)

    def interval(self, stat: str) -> tuple[float, float] | None:
        """The 95 % interval of `p50_ms`, `p90_ms` or `p99_ms` (None: too few runs, or not a quantile)."""
        value = getattr(self, f"{stat[:-3]}_ci_ms", None) if stat.endswith("_ms") else None
        return tuple(value) if value is not None else None

    def p50_reach(self) -> float:
        """How far the p50's interval reaches from it, relative (inf: no interval)."""
        if self.p50_ci_ms is None or self.p50_ms <= 0:
            return math.inf if self.p50_ci_ms is None or self.p50_ci_ms[1] > 0 else 0.0
        low, high = self.p50_ci_ms
        return max(self.p50_ms - low, high - self.p50_ms, 0.0) / self.p50_ms

    def describe_interval(self) -> str:
        """Why the p50 is less precise than asked for."""
        known = (
            f"p50 known to ±{wording.percent(self.p50_reach())}"
            if math.isfinite(self.p50_reach())
            else "p50 without a 95 % interval (fewer than 6 runs)"
        )
        return (
            f"{known} (95 % interval), not the ±{wording.percent(self.ci_half_width)} asked for: max_seconds came "
            f"first after {self.runs} timed runs (raise --max-seconds)"
        )

    def describe_truncation(self) -> str:
        return (
            f"timed runs cut at max_seconds: {self.runs} of the {self.min_runs} min_runs asked for; "
            "p99 not gated (raise --max-seconds or lower --min-runs)"
        )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def summarize(
    raw: RawTimings, protocol: TimingProtocol | None = None, noise: MachineNoise | None = None
) -> LatencyStats:
    """Statistics of the timed runs; `protocol` (what the runtime was asked to run) flags a truncated run and
    an interval wider than asked; `noise` is the machine's, measured before the benchmark.

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
    ordered = np.sort(times)
    p50_ci, p90_ci, p99_ci = (quantile_interval(ordered.tolist(), q) for q in (0.5, 0.9, 0.99))
    asked = protocol.ci_half_width if protocol else 0.0
    stats = LatencyStats(
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
        p50_ci_ms=p50_ci,
        p90_ci_ms=p90_ci,
        p99_ci_ms=p99_ci,
        ci_half_width=asked,
        noise=noise,
        downloaded_bytes=dict(raw.downloaded_bytes) if raw.downloaded_bytes else None,
    )
    return dataclasses.replace(stats, ci_met=asked <= 0 or stats.p50_reach() <= asked)


def _evenly(values, limit: int):
    """At most `limit` values spread evenly over the run (for distributions in reports)."""
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


# ---- the machine's noise ------------------------------------------------------------------------------------

NOISE_REPEATS = 9
NOISY_CV = 0.10  # the calibration kernel's coefficient of variation above which timings are not like for like


@dataclass(frozen=True)
class MachineNoise:
    """A fixed compute kernel timed `repeats` times just before a benchmark, and the load average then."""

    kernel_ms: float  # the kernel's median time
    cv: float  # its coefficient of variation (std / mean) over the repeats
    load_avg: tuple[float, float, float] | None  # 1, 5, 15 minutes (None: not known on this system)
    cpus: int
    repeats: int = NOISE_REPEATS
    noisy: bool = False  # cv above NOISY_CV, or a 1-minute load above the cores (is_noisy), or a speed drift
    kernel_ms_after: float | None = None  # the kernel's median time just after the benchmark (None: not timed)

    @property
    def kernel_range_ms(self) -> tuple[float, float]:
        """The kernel's fastest and slowest median around the benchmark: the machine's speed then."""
        times = [t for t in (self.kernel_ms, self.kernel_ms_after) if t is not None and t > 0]
        return (min(times), max(times)) if times else (0.0, 0.0)

    @property
    def drifted(self) -> bool:
        """The kernel's median moved by more than NOISY_CV from just before the benchmark to just after it."""
        after = self.kernel_ms_after
        return bool(after and self.kernel_ms > 0 and abs(after / self.kernel_ms - 1.0) > NOISY_CV)

    def after(self, kernel_ms_after: float) -> MachineNoise:
        """This calibration with the kernel timed again after the benchmark; noisy too when it drifted."""
        timed = dataclasses.replace(self, kernel_ms_after=kernel_ms_after)
        return dataclasses.replace(timed, noisy=self.noisy or timed.drifted)

    def describe(self) -> str:
        """The note a result measured on a noisy machine gets."""
        load = (
            f", load average {wording.load(self.load_avg[0])} on {self.cpus} cores" if self.load_avg is not None else ""
        )
        return (
            f"measured on a noisy machine: a fixed compute kernel varied by {wording.percent(self.cv)} (CV over "
            f"{self.repeats} runs; quiet is under {wording.percent(NOISY_CV, 0)}){load}{self.describe_drift()}; "
            "latency here is less certain than its interval says"
        )

    def describe_drift(self) -> str:
        """ ", and it ran 1.9x slower just after the benchmark (1.983 ms, then 3.720 ms)": the machine's own
        speed changed during it; "" when it did not."""
        if not self.drifted or self.kernel_ms_after is None:
            return ""
        return (
            f", and it ran {wording.ratio(self.kernel_ms_after, self.kernel_ms)} just after the benchmark "
            f"({wording.latency_ms(self.kernel_ms)}, then {wording.latency_ms(self.kernel_ms_after)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_noisy(cv: float, load_avg: tuple[float, float, float] | None, cpus: int) -> bool:
    return cv > NOISY_CV or (load_avg is not None and load_avg[0] > cpus)


def _kernel() -> int:
    """A fixed pure-Python compute load (about 1-2 ms): integer arithmetic, a dict and a sort, one thread."""
    total, table = 0, {}
    for i in range(20000):
        total += (i * i) % 7
        table[i % 97] = total
    return total + len(sorted(table.values(), reverse=True))


def _kernel_times(repeats: int) -> list[float]:
    _kernel()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _kernel()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure_noise(repeats: int = NOISE_REPEATS) -> MachineNoise:
    """Time the kernel `repeats` times (after one untimed run); the CV of those times and the load average."""
    times = _kernel_times(repeats)
    mean = statistics.fmean(times)
    try:
        load: tuple[float, float, float] | None = tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[assignment]
    except (AttributeError, OSError):
        load = None
    cv, cpus = (round(statistics.pstdev(times) / mean, 4) if mean > 0 else 0.0), os.cpu_count() or 1
    return MachineNoise(
        kernel_ms=round(statistics.median(times), 4),
        cv=cv,
        load_avg=load,
        cpus=cpus,
        repeats=repeats,
        noisy=is_noisy(cv, load, cpus),
    )


def with_machine_noise(benchmark: Callable[[], RawTimings]) -> tuple[RawTimings, MachineNoise]:
    """Run `benchmark` between two timings of the kernel: its raw times and the machine's noise around it."""
    noise = measure_noise()
    raw = benchmark()
    return raw, noise.after(round(statistics.median(_kernel_times(noise.repeats)), 4))


def noise_summary(benchmarks: Iterable[LatencyStats | None]) -> dict[str, Any] | None:
    """report.json `machine.noise`: the noisiest of the calibrations a run made (one before each benchmark)."""
    measured = [stats.noise for stats in benchmarks if stats is not None and stats.noise is not None]
    if not measured:
        return None
    worst = max(measured, key=lambda m: (m.noisy, m.cv))
    return {**worst.to_dict(), "calibrations": len(measured), "noisy_benchmarks": sum(m.noisy for m in measured)}
