"""The timing protocol for a runtime that runs in Python: the `Session` it times and `time_session`.

The protocol (one spec; targets/tfjs/protocol.js implements the same steps in JavaScript, in step with this):

1. Load the artifact (timed: `load_ms`), prepare every feed before the clock (`Session.prepare`).
2. One cold first inference (`first_inference_ms`, never a latency).
3. Warm-up: at least `warmup_runs` runs and `warmup_seconds`, then on until the rolling median settles: the
   median of the last `warmup_window` runs within `warmup_tolerance` (relative, plus WARMUP_SLACK_MS for the
   timer's own steps) of the median of the window before it. Warm-up ends at half of `max_seconds` at the
   latest, settled or not.
4. Timed runs over the samples, in turn, until the p50 is known: its distribution-free 95 % interval (order
   statistics at the binomial ranks around the median, `quantile_ranks`) lies within ±`ci_half_width` of the
   median, with at least `min_runs` runs and `min_seconds` of timed runs. The interval is looked at after
   every run up to 20 runs, then each time the count grew by 5 % (so its cost stays a small share of the
   runs). `ci_half_width` 0 stops as soon as `min_runs` and `min_seconds` are met (the fixed-budget protocol).
5. One deadline, `max_seconds` after the first inference, ends warm-up and timed runs together. No timed run
   within it is an error.

Raw times are handed back (RawTimings); checks/latency computes the statistics, intervals included, once.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from edgeport.data import Feeds, RawTimings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure

CONFIDENCE = 0.95
EXACT_RANKS_UP_TO = 1000  # runs; above, the binomial's normal approximation (with continuity correction)
NORMAL_FROM = 100  # n·q·(1 - q) from which the normal approximation is used (with n > EXACT_RANKS_UP_TO)
CHECK_EVERY_RUN_UP_TO = 20  # runs; then the interval is looked at each time the count grew by CHECK_GROWTH
CHECK_GROWTH = 1.05
WARMUP_SLACK_MS = 0.005  # medians this close are settled whatever their ratio (a browser timer steps by 5 µs)


class Session(ABC):
    """One loaded artifact on a runtime.

    The timing protocol prepares every feed once, before the clock starts (`prepare`), and times
    `run_prepared` only: a session whose `run` converts feeds (quantizes int8 inputs, dequantizes outputs)
    overrides both, so that the conversion is not timed. `run` must equal `run_prepared(prepare(feeds))` in
    real values.
    """

    @abstractmethod
    def run(self, feeds: Feeds) -> Feeds: ...

    def prepare(self, feeds: Feeds) -> Any:
        """Feeds as the timed call takes them (default: as they are)."""
        return feeds

    def run_prepared(self, prepared: Any) -> Any:
        """The timed call: one inference on prepared feeds; its outputs may stay in the model's own dtypes."""
        return self.run(prepared)

    def close(self) -> None:
        pass


# ---- the interval of a quantile, from order statistics ------------------------------------------------------


@lru_cache(maxsize=4096)
def quantile_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the sorted times whose [x(l), x(u)] covers the q-quantile with at least
    `confidence` (distribution-free: the number of runs below the quantile is Binomial(n, q)); None when n runs
    are too few for such an interval (the median needs 6, p90 36, p99 368).

    l is the largest rank with P(B <= l - 1) <= alpha/2, u the smallest with P(B <= u - 1) >= 1 - alpha/2.
    Exact up to EXACT_RANKS_UP_TO runs and while n·q·(1 - q) < NORMAL_FROM (a tail quantile's binomial is skewed),
    the normal approximation with continuity correction above.
    """
    if n < 1 or not 0 < q < 1:
        return None
    tail = (1 - confidence) / 2
    if n <= EXACT_RANKS_UP_TO or n * q * (1 - q) < NORMAL_FROM:
        cdf, total = [], 0.0
        log_q, log_p = math.log(q), math.log1p(-q)
        for k in range(n + 1):
            log_pmf = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_p
            total += math.exp(log_pmf)
            cdf.append(total)
        low = max((k for k in range(1, n + 1) if cdf[k - 1] <= tail), default=None)
        high = min((k for k in range(1, n + 1) if cdf[k - 1] >= 1 - tail), default=None)
    else:
        z = statistics.NormalDist().inv_cdf(1 - tail)
        mean, sd = n * q, math.sqrt(n * q * (1 - q))
        low = math.floor(mean + 0.5 - z * sd)
        high = math.ceil(mean + 0.5 + z * sd)
        low = low if low >= 1 else None
        high = high if high <= n else None
    if low is None or high is None:
        return None
    return low, high


def quantile_interval(ordered: Sequence[float], q: float, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The `confidence` interval of the q-quantile of sorted times, or None when they are too few."""
    ranks = quantile_ranks(len(ordered), q, confidence)
    if ranks is None:
        return None
    return float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])


def median_of_sorted(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return float(ordered[n // 2]) if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def relative_half_width(ordered: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """How far the p50's interval reaches from the median, relative to it (the larger side); inf when the runs
    are too few for an interval. All times equal (a coarse timer) is 0."""
    interval = quantile_interval(ordered, 0.5, confidence)
    if interval is None:
        return math.inf
    median = median_of_sorted(ordered)
    reach = max(median - interval[0], interval[1] - median)
    if reach <= 0:
        return 0.0
    return reach / median if median > 0 else math.inf


def settled(times: Sequence[float], window: int, tolerance: float) -> bool:
    """Warm-up is over: the median of the last `window` runs is within `tolerance` of the window's before."""
    window = max(1, window)
    if len(times) < 2 * window:
        return False
    last = statistics.median(times[-window:])
    before = statistics.median(times[-2 * window : -window])
    return abs(last - before) <= tolerance * before + WARMUP_SLACK_MS


class StoppingRule:
    """When the timed runs may stop (step 4 of the protocol); `done(times, elapsed)` after every run."""

    def __init__(self, protocol: TimingProtocol):
        self.protocol = protocol
        self.next_look = 0

    def done(self, times: Sequence[float], elapsed_s: float) -> bool:
        n, protocol = len(times), self.protocol
        if n < protocol.min_runs or elapsed_s < protocol.min_seconds:
            return False
        if protocol.ci_half_width <= 0:
            return True
        if n < self.next_look:
            return False
        self.next_look = n + 1 if n < CHECK_EVERY_RUN_UP_TO else math.ceil(n * CHECK_GROWTH)
        return relative_half_width(sorted(times)) <= protocol.ci_half_width


# ---- the protocol -------------------------------------------------------------------------------------------


def time_session(
    open_session: Callable[[], Session],
    samples: SampleSet,
    protocol: TimingProtocol,
    version: str,
    clock: Callable[[], float] = time.perf_counter,
) -> RawTimings:
    """Run the protocol on a Python session. Call it in a fresh process (the pipeline does). `clock`: seconds
    (tests pass a simulated one)."""
    start = clock()
    session = open_session()
    load_ms = (clock() - start) * 1e3
    try:
        feeds = [session.prepare(feed) for feed in samples.feeds()]  # int8 I/O: quantized here, not timed
        start = clock()
        session.run_prepared(feeds[0])
        first_ms = (clock() - start) * 1e3
        began = clock()
        deadline, warm_until = began + protocol.max_seconds, began + protocol.max_seconds / 2
        warm_ms: list[float] = []
        while clock() < warm_until and not (
            len(warm_ms) >= protocol.warmup_runs
            and clock() - began >= protocol.warmup_seconds
            and settled(warm_ms, protocol.warmup_window, protocol.warmup_tolerance)
        ):
            t0 = clock()
            session.run_prepared(feeds[len(warm_ms) % len(feeds)])
            warm_ms.append((clock() - t0) * 1e3)
        times: list[float] = []
        rule = StoppingRule(protocol)
        timed_from = clock()
        while clock() < deadline:
            feed = feeds[len(times) % len(feeds)]
            t0 = clock()
            session.run_prepared(feed)
            t1 = clock()
            times.append((t1 - t0) * 1e3)
            if rule.done(times, t1 - timed_from):
                break
    finally:
        session.close()
    if not times:
        raise RuntimeFailure(
            f"no timed run within max_seconds {protocol.max_seconds:g}: the first run took {first_ms:.0f} ms and "
            f"{len(warm_ms)} warm-up run(s) {(timed_from - began) * 1e3:.0f} ms; raise --max-seconds"
        )
    return RawTimings(
        load_ms=load_ms,
        first_inference_ms=first_ms,
        warmup_runs=len(warm_ms),
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
