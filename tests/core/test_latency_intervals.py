"""Issue 24: the p50's interval, the protocol that stops once it is known, budgets judged by it, the machine's
noise. The protocol runs on a simulated clock here (each run advances it by a known time), so every count is
exact and no assertion depends on this machine's speed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeport.checks.latency import NOISY_CV, LatencyStats, MachineNoise, is_noisy, measure_noise, summarize
from edgeport.checks.timing import (
    StoppingRule,
    quantile_interval,
    quantile_ranks,
    relative_half_width,
    settled,
    time_session,
)
from edgeport.contracts import RawTimings, SampleSet, Session, TimingProtocol
from edgeport.report import wording
from edgeport.run.bench import judge_latency_budgets, latency_notes

PROTOCOL_JS = Path(__file__).parents[2] / "targets" / "tfjs" / "protocol.js"


# ---- the ranks and the interval -----------------------------------------------------------------------------


def binomial_cdf(n: int, q: float) -> list[float]:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, q), from the pmf's definition."""
    return list(itertools.accumulate(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(n + 1)))


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_ranks_are_the_binomial_definition(q):
    """l: the largest rank with P(B <= l-1) <= 2.5 %, u: the smallest with P(B <= u-1) >= 97.5 %."""
    for n in [*range(1, 60), 100, 250, 400, 600]:
        ranks, cdf = quantile_ranks(n, q), binomial_cdf(n, q)
        lows = [k for k in range(1, n + 1) if cdf[k - 1] <= 0.025]
        highs = [k for k in range(1, n + 1) if cdf[k - 1] >= 0.975]
        expected = (max(lows), min(highs)) if lows and highs else None
        assert ranks == expected, (n, q)
        if ranks:  # the coverage the ranks promise, from the binomial itself
            assert cdf[ranks[1] - 1] - cdf[ranks[0] - 1] >= 0.95


@pytest.mark.parametrize("q, fewest", [(0.5, 6), (0.9, 36), (0.99, 368)])
def test_too_few_runs_bound_no_quantile_on_either_side_of_the_edge(q, fewest):
    assert quantile_ranks(fewest - 1, q) is None
    assert quantile_ranks(fewest, q) is not None
    assert quantile_interval(list(range(fewest - 1)), q) is None


def test_the_normal_approximation_takes_over_smoothly():
    """Exact up to 1000 runs, the normal approximation above: the ranks move by one at most at the seam."""
    exact, approximate = quantile_ranks(1000, 0.5), quantile_ranks(1001, 0.5)
    assert exact is not None and approximate is not None
    assert abs(exact[0] - approximate[0]) <= 1 and abs(exact[1] - approximate[1]) <= 2
    big = quantile_ranks(100_000, 0.5)
    assert big is not None and big[0] < 50_000 < big[1] and big[1] - big[0] < 1300


@pytest.mark.parametrize(
    "draw, true_median",
    [
        (lambda rng, n: rng.exponential(1.0, n), math.log(2)),
        (lambda rng, n: rng.lognormal(0.0, 0.5, n), 1.0),
        (lambda rng, n: rng.uniform(2.0, 4.0, n), 3.0),
    ],
    ids=["exponential", "lognormal", "uniform"],
)
@pytest.mark.parametrize("n", [10, 50, 400])
def test_the_median_interval_covers_the_true_median_at_least_95_percent(draw, true_median, n):
    rng = np.random.default_rng(24)
    trials = 2000
    covered = 0
    for _ in range(trials):
        interval = quantile_interval(np.sort(draw(rng, n)), 0.5)
        assert interval is not None
        covered += interval[0] <= true_median <= interval[1]
    assert covered / trials >= 0.94  # >= 95 % by construction; 2000 trials: a 1-point sampling margin
    assert covered / trials <= 0.995  # and not an interval so wide it says nothing (n=10: 97.9 % exact)


def test_p90_interval_covers_the_true_p90():
    rng = np.random.default_rng(7)
    true_p90 = -math.log(0.1)  # exponential(1)
    covered = sum(
        (iv := quantile_interval(np.sort(rng.exponential(1.0, 200)), 0.9)) is not None and iv[0] <= true_p90 <= iv[1]
        for _ in range(1000)
    )
    assert covered / 1000 >= 0.94


def test_all_equal_times_have_a_zero_width_interval():
    times = [0.1] * 12
    assert relative_half_width(times) == 0.0
    stats = summarize(RawTimings(1, 1, 1, tuple(times), 1, "v"), TimingProtocol())
    assert stats.p50_ci_ms == (0.1, 0.1) and stats.ci_met and stats.p50_reach() == 0.0
    zeros = summarize(RawTimings(1, 1, 1, (0.0,) * 12, 1, "v"), TimingProtocol())  # a coarse timer's zeros
    assert zeros.p50_ci_ms == (0.0, 0.0) and zeros.ci_met


def test_a_huge_outlier_does_not_move_the_median_interval():
    rng = np.random.default_rng(1)
    times = list(1.0 + 0.01 * rng.standard_normal(200))
    calm = summarize(RawTimings(1, 1, 1, tuple(times), 1, "v"))
    spiked = summarize(RawTimings(1, 1, 1, (*times[:-1], 1e6), 1, "v"))
    assert calm.p50_ci_ms is not None and spiked.p50_ci_ms is not None
    assert spiked.p50_ci_ms[1] - spiked.p50_ci_ms[0] == pytest.approx(calm.p50_ci_ms[1] - calm.p50_ci_ms[0], rel=0.2)
    assert spiked.p50_reach() < 0.01 and spiked.mean_ms > 1000  # the mean moves, the median does not


def test_fewer_runs_than_an_interval_needs_say_n_a():
    stats = summarize(RawTimings(1, 1, 1, (1.0, 1.1, 0.9, 1.2, 1.0), 1, "v"), TimingProtocol(min_runs=5))
    assert stats.p50_ci_ms is None and stats.p90_ci_ms is None and stats.p99_ci_ms is None
    assert not stats.ci_met and math.isinf(stats.p50_reach())
    assert "without a 95 % interval" in stats.describe_interval()
    assert wording.latency_interval(stats.p50_ms, stats.p50_ci_ms) == "1.000 ms [n/a]"
    # p90 and p99 each appear as soon as the runs can bound them
    many = summarize(RawTimings(1, 1, 1, tuple(float(t) for t in range(1, 401)), 1, "v"))
    assert many.p90_ci_ms is not None and many.p99_ci_ms is not None
    assert many.p90_ci_ms[0] <= many.p90_ms <= many.p90_ci_ms[1]


def test_the_interval_is_computed_on_every_run_not_only_the_kept_ones():
    times = tuple(float(t % 97) + 1 for t in range(5000))
    stats = summarize(RawTimings(1, 1, 1, times, 1, "v"))
    assert len(stats.run_ms) == 1000
    assert stats.p50_ci_ms == quantile_interval(sorted(times), 0.5)


# ---- the protocol on a simulated clock ----------------------------------------------------------------------


class SimulatedRuntime(Session):
    """Each run advances a simulated clock by the next time of `times_ms` (then the last one, forever)."""

    def __init__(self, times_ms):
        self.times = list(times_ms)
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def run(self, feeds):
        step = self.times[min(self.calls, len(self.times) - 1)]
        self.calls += 1
        self.now += step / 1e3
        return feeds


SAMPLES = SampleSet({"x": np.ones((2, 1), np.float32)}, "test", True)


def simulate(times_ms, protocol: TimingProtocol) -> tuple[RawTimings, SimulatedRuntime]:
    runtime = SimulatedRuntime(times_ms)
    return time_session(lambda: runtime, SAMPLES, protocol, "sim", clock=runtime.clock), runtime


def test_warm_up_lasts_until_the_rolling_median_settles():
    """A runtime 3x slow at first, getting faster run by run for 40 runs: warm-up ends once two windows of 5
    runs agree within 5 %, not after warmup_runs=3."""
    cold = [3.0 - 2.0 * i / 40 for i in range(40)]
    raw, _ = simulate([99.0, *cold, *([1.0] * 1000)], TimingProtocol(warmup_runs=3, warmup_seconds=0))
    # a window of 5 runs agrees with the one before once the slope over 5 runs is under 5 %: about run 28
    assert 20 < raw.warmup_runs < 50
    warm = [*cold, *([1.0] * 1000)]
    assert raw.warmup_runs == next(n for n in range(3, 1000) if settled(warm[:n], 5, 0.05))
    steady, _ = simulate([99.0, *([1.0] * 1000)], TimingProtocol(warmup_runs=3, warmup_seconds=0))
    assert steady.warmup_runs == 10  # two windows, no more


def test_warm_up_is_capped_at_half_of_max_seconds():
    alternating = [99.0] + [1.0 if i % 10 < 5 else 2.0 for i in range(10_000)]  # never settles
    raw, _ = simulate(alternating, TimingProtocol(max_seconds=1.0, warmup_seconds=0))
    warm_ms = sum(alternating[1 : 1 + raw.warmup_runs])
    assert 500 <= warm_ms < 502 and len(raw.run_ms) > 0


def lognormal_times(sigma: float, n: int = 20_000, seed: int = 3) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(0.0, sigma, n))


def test_timed_runs_stop_once_the_p50_is_known_to_two_percent():
    times = lognormal_times(0.05)
    protocol = TimingProtocol(warmup_runs=0, warmup_seconds=0, warmup_window=1, warmup_tolerance=10)
    raw, _ = simulate([1.0, 1.0, 1.0, *times], protocol)  # first run, two warm-up runs (one window each)
    runs = list(raw.run_ms)
    assert runs == pytest.approx(times[: len(runs)])
    assert relative_half_width(sorted(runs)) <= 0.02  # it stopped with the interval within ±2 %
    rule = StoppingRule(protocol)  # and at the first look where it was
    assert next(n for n in range(1, len(times)) if rule.done(times[:n], 1.0)) == len(runs)
    assert summarize(raw, protocol).ci_met


def test_noisier_runs_take_more_runs_and_a_tighter_ask_more_still():
    protocol = TimingProtocol(warmup_runs=0, warmup_seconds=0, max_seconds=1000)
    quiet, _ = simulate([1.0, *lognormal_times(0.05)], protocol)
    noisy, _ = simulate([1.0, *lognormal_times(0.3)], protocol)
    tighter, _ = simulate([1.0, *lognormal_times(0.05)], dataclasses.replace(protocol, ci_half_width=0.005))
    assert protocol.min_runs <= len(quiet.run_ms) < min(len(noisy.run_ms), len(tighter.run_ms))


def test_the_deadline_ends_runs_whose_interval_is_still_wide_and_says_so():
    protocol = TimingProtocol(warmup_runs=0, warmup_seconds=0, max_seconds=0.5, min_runs=10)
    raw, _ = simulate([1.0, *lognormal_times(1.0)], protocol)
    stats = summarize(raw, protocol)
    assert not stats.truncated and not stats.ci_met and stats.p50_reach() > 0.02
    said = stats.describe_interval()
    assert f"±{wording.percent(stats.p50_reach())}" in said and "not the ±2.0% asked for" in said
    assert any("max_seconds came first" in note for note in latency_notes(stats))


def test_min_runs_and_min_seconds_are_honoured_and_zero_half_width_is_the_fixed_budget():
    constant = [1.0] * 10_000
    raw, _ = simulate(constant, TimingProtocol(warmup_seconds=0, min_runs=10))
    assert len(raw.run_ms) == 10  # known at once (all equal), yet never fewer than min_runs
    raw, _ = simulate(constant, TimingProtocol(warmup_seconds=0, min_runs=10, min_seconds=0.5))
    assert 500 <= len(raw.run_ms) <= 501  # 0.5 s of 1 ms runs (a simulated clock still rounds)
    raw, _ = simulate(lognormal_times(1.0), TimingProtocol(warmup_seconds=0, min_runs=37, ci_half_width=0))
    assert len(raw.run_ms) == 37  # nothing asked of the interval: the old protocol


def test_protocol_defaults_are_the_documented_ones():
    protocol = TimingProtocol()
    assert (protocol.min_runs, protocol.min_seconds, protocol.max_seconds, protocol.ci_half_width) == (
        10,
        0.0,
        20.0,
        0.02,
    )
    assert (protocol.warmup_runs, protocol.warmup_window, protocol.warmup_tolerance) == (3, 5, 0.05)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for flag in ("--ci-half-width", "--min-runs", "--max-seconds"):
        assert flag in readme


# ---- the JavaScript twin ------------------------------------------------------------------------------------

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@needs_node
def test_protocol_js_takes_the_same_steps_on_the_same_times():
    """protocol.js's ranks, warm-up and stopping, on the same simulated times: the same counts as Python."""
    cases = {
        "settling": [99.0, *(3.0 - 2.0 * i / 40 for i in range(40)), *lognormal_times(0.05, 3000)],
        "noisy": [1.0, *lognormal_times(0.3, 5000, seed=9)],
        "fixed": [1.0, *lognormal_times(1.0, 200)],
    }
    protocols = {
        "settling": TimingProtocol(warmup_seconds=0),
        "noisy": TimingProtocol(warmup_seconds=0, max_seconds=1000),
        "fixed": TimingProtocol(warmup_seconds=0, min_runs=37, ci_half_width=0),
    }
    script = f"""
const p = require({json.dumps(str(PROTOCOL_JS))});
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {{
  const out = {{ranks: {{}}}};
  for (const n of [1, 5, 6, 35, 36, 367, 368, 999, 1000, 1001, 5000, 20000]) {{
    for (const q of [0.5, 0.9, 0.99]) out.ranks[`${{n}} ${{q}}`] = p.quantileRanks(n, q);
  }}
  for (const [name, c] of Object.entries(cases)) {{
    let now = 0, calls = 0;
    const run = async () => {{ now += c.times[Math.min(calls, c.times.length - 1)]; calls += 1; }};
    const t = await p.timeRuns(run, [{{}}], c.protocol, () => now);
    out[name] = {{warmup_runs: t.warmup_runs, runs: t.run_ms.length}};
  }}
  console.log(JSON.stringify(out));
}})();
"""
    payload = {name: {"times": times, "protocol": dataclasses.asdict(protocols[name])} for name, times in cases.items()}
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(payload), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    js = json.loads(done.stdout)
    for key, ranks in js["ranks"].items():
        n, q = key.split()
        assert (tuple(ranks) if ranks else None) == quantile_ranks(int(n), float(q)), key
    for name, times in cases.items():
        raw, _ = simulate(times, protocols[name])  # a clock in seconds here, in ms in JS: the same steps
        assert js[name] == {"warmup_runs": raw.warmup_runs, "runs": len(raw.run_ms)}, name


# ---- budgets judged by the interval -------------------------------------------------------------------------


def stats_around(p50: float, spread: float, runs: int = 400) -> LatencyStats:
    rng = np.random.default_rng(11)
    return summarize(RawTimings(1, 1, 1, tuple(p50 * rng.lognormal(0.0, spread, runs)), 1, "v"), TimingProtocol())


def test_a_p50_budget_fails_only_when_the_whole_interval_is_above_it():
    stats = stats_around(10.0, 0.1)
    low, high = stats.p50_ci_ms
    assert low < stats.p50_ms < high
    failed, inconclusive = judge_latency_budgets(stats, {"max_p50_ms": low * 0.999})
    assert len(failed) == 1 and "the whole 95 % interval" in failed[0] and not inconclusive
    assert judge_latency_budgets(stats, {"max_p50_ms": high}) == ([], [])  # at the interval's top: passes
    failed, inconclusive = judge_latency_budgets(stats, {"max_p50_ms": stats.p50_ms})  # straddled
    assert failed == [] and len(inconclusive) == 1 and "straddles" in inconclusive[0]
    assert wording.latency_interval(stats.p50_ms, stats.p50_ci_ms) in inconclusive[0]
    assert inconclusive[0] in latency_notes(stats, {"max_p50_ms": stats.p50_ms})  # a note, not a failure


def test_a_tail_budget_the_runs_cannot_bound_is_inconclusive_not_passed():
    stats = stats_around(10.0, 0.1, runs=100)
    assert stats.p99_ci_ms is None
    failed, inconclusive = judge_latency_budgets(stats, {"max_p99_ms": 1e9})
    assert failed == [] and "it needs 368" in inconclusive[0] and "100 timed runs" in inconclusive[0]


def test_budgets_without_an_interval_are_judged_by_their_value():
    stats = stats_around(10.0, 0.1)
    failed, inconclusive = judge_latency_budgets(stats, {"max_mean_ms": 1.0, "max_load_ms": 1e9})
    assert len(failed) == 1 and failed[0].startswith("mean_ms ") and inconclusive == []


# ---- the machine's noise ------------------------------------------------------------------------------------


def test_noise_is_measured_and_a_noisy_machine_is_said():
    noise = measure_noise(repeats=5)
    assert noise.kernel_ms > 0 and noise.cv >= 0 and noise.repeats == 5 and noise.cpus >= 1
    assert noise.noisy == is_noisy(noise.cv, noise.load_avg, noise.cpus)
    assert is_noisy(NOISY_CV + 1e-4, None, 2) and not is_noisy(NOISY_CV, None, 2)
    assert is_noisy(0.0, (2.01, 0.0, 0.0), 2) and not is_noisy(0.0, (2.0, 0.0, 0.0), 2)
    loud = MachineNoise(kernel_ms=2.0, cv=0.31, load_avg=(5.0, 4.0, 3.0), cpus=2, noisy=True)
    said = loud.describe()
    assert "varied by 31.0%" in said and "load average 5.00 on 2 cores" in said
    stats = summarize(RawTimings(1, 1, 1, (1.0,) * 20, 1, "v"), TimingProtocol(), loud)
    assert said in latency_notes(stats)
    quiet = MachineNoise(kernel_ms=2.0, cv=0.01, load_avg=(0.1, 0.1, 0.1), cpus=2)
    assert not latency_notes(summarize(RawTimings(1, 1, 1, (1.0,) * 20, 1, "v"), TimingProtocol(), quiet))


# ---- wording --------------------------------------------------------------------------------------------------


def test_latency_interval_wording_on_both_sides_of_its_edges():
    assert wording.latency_interval(0.412, (0.405, 0.419)) == "0.412 ms [0.405, 0.419]"
    assert wording.latency_interval(0.0456, (0.0449, 0.0461)) == "45.6 µs [44.9, 46.1]"  # under 0.1 ms: µs
    assert wording.latency_interval(0.1, (0.099, 0.101)) == "0.100 ms [0.099, 0.101]"  # at 0.1 ms: ms
    assert wording.latency_interval(1234.5, (1230.0, 1240.1)) == "1,234.500 ms [1,230.000, 1,240.100]"
    assert wording.latency_interval(12.3, None) == "12.300 ms [n/a]"
    assert wording.latency_interval(None, None) == "–"
    assert wording.latency_interval(float("nan"), None) == "nan"


def test_load_and_p_value_wording_on_both_sides_of_their_edges():
    assert wording.load(1.519) == "1.52" and wording.load(0) == "0.00" and wording.load(None) == "–"
    assert wording.p_value(0.5) == "p = 0.50" and wording.p_value(0.1) == "p = 0.10"
    assert wording.p_value(0.0949) == "p = 0.095" and wording.p_value(0.0321) == "p = 0.032"
    assert wording.p_value(0.001) == "p = 0.001" and wording.p_value(0.00099) == "p < 0.001"
    assert wording.p_value(None) == "–"
