"""Regressions against a baseline run: compare two report.json files target by target.

Latency (p50, p90) is compared on the raw timed runs both reports keep (`run_ms`). A change is significant
when a test on those runs says so at ALPHA: for p50 the Mann-Whitney U test (two-sided, normal approximation
with tie correction), for p90 a bootstrap interval of the ratio of the two p90s that excludes 1. A latency
change is a regression ("slower") only when it is significant AND larger than the relative threshold (plus,
with `noise` > 0, that many times the runs' robust spread, IQR / 1.349 of the noisier run), AND the fastest
run (min_ms) got slower by more than the threshold plus its own wander (p5 / min - 1, the noisier run), AND
it is larger than the absolute floor: contention from other processes slows the typical run, not the
fastest one (on a busy 2-core machine reruns of an unchanged 14 us model had p50 up to 1.8x apart while
min_ms stayed within 6-14 %), and below the floor timer and scheduler jitter of sub-0.1 ms models rule.
"faster" is significant and beyond the threshold; a change beyond the threshold that is not significant or not
confirmed is "inconclusive (noise)"; so is one under the threshold plus the machine's noise (the calibration's
CV, `latency.noise`, measured just before) when either benchmark was taken on a noisy machine: on a 2-core
machine at load 7.5, 2 of 80 pairs of an unchanged artifact moved p50 or p90 by 17-24 % with the fastest run
along (drift between runs that no test within a run sees). The machine's own change of speed is discounted
too (`MachineSpeed`: the calibration kernel timed just before and just after each benchmark): on the 2-core
CI VM an unchanged 0.23 ms model's fastest run moved +30 % between two benchmarks in a slow phase of its
vCPU, which the kernel saw (1.9 ms, then 3.6 ms); a slowdown no larger than the machine's is "inconclusive
(noise)" and says "the machine itself ran 1.5x slower", and a machine faster in the new run makes no
"faster". Within the threshold it is "no change". A report measured on a noisy machine is said in the notes.

Accuracy regresses when cosine similarity or top-1/top-5 agreement dropped by more than an absolute
threshold (plus binomial noise when the runs used different samples) or SNR dropped by more than some dB;
size when the artifact grew by more than a relative threshold; a verdict when a target stopped passing.
Targets present in only one report are noted, not failed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import ExitCode, UsageError
from edgeport.report import wording

SNR_CAP_DB = 100.0  # above this the error is numerical noise: inf and 131 dB are the same result
LATENCY_METRICS = ("p50_ms", "p90_ms")
BOOTSTRAP_RESAMPLES = 1000
ALPHA = 0.05  # significance level of the latency tests
MIN_RUNS_TO_TEST = 5  # runs each report needs for a latency test; fewer: never significant


@dataclass(frozen=True)
class Thresholds:
    latency: float = 0.10  # relative growth of p50/p90 allowed (a significant change beyond it is a regression)
    noise: float = 0.0  # multiples of the runs' robust spread added to the latency threshold (0: threshold only)
    latency_floor_ms: float = 0.05  # smaller absolute changes are timer and scheduler jitter, never a regression
    accuracy: float = 0.001  # absolute drop of the worst cosine similarity
    agreement: float = 0.01  # absolute drop of top-1/top-5 agreement
    snr_db: float = 3.0  # drop of SNR in dB
    size: float = 0.05  # relative growth of the artifact

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"threshold {name}={value!r} must be a number >= 0")


@dataclass(frozen=True)
class Change:
    target: str
    metric: str  # p50_ms, p90_ms, cosine[out], top1[out], top5[out], snr_db[out], size_bytes, verdict
    old: float | str
    new: float | str
    change: float  # relative for latency and size, absolute for accuracy (dB for SNR); + is worse
    allowed: float  # in the same unit as change
    regression: bool
    basis: str  # how `allowed` came about, e.g. "10% + noise 37%"
    relative: bool
    unconfirmed: bool = False  # beyond the allowance, but not significant or not confirmed: machine noise
    significant: bool = True  # latency: the test on the raw runs says the change is real (at ALPHA)
    p_value: float | None = None  # latency p50: the Mann-Whitney test's
    ratio_interval: tuple[float, float] | None = None  # latency p90: the bootstrap 95 % interval of new / old
    machine: float = 0.0  # latency: added to `allowed` for the machine's noise and own change of speed
    machine_said: str = ""  # latency: "the machine itself ran 1.9x slower" when its speed moved this way

    @property
    def improved(self) -> bool:
        return not self.regression and self.significant and self.change < -(self.allowed + self.machine)

    @property
    def status(self) -> str:
        if self.regression:
            return "regression"
        return "noise" if self.unconfirmed else ("better" if self.improved else "ok")


@dataclass(frozen=True)
class Comparison:
    old: str
    new: str
    changes: tuple[Change, ...]
    missing: tuple[str, ...]  # targets of the baseline the new run does not have
    added: tuple[str, ...]  # targets only the new run has
    notes: tuple[str, ...]
    thresholds: Thresholds

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.regression)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.GATE_FAILED if self.regressions else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        from edgeport.report.files import jsonable

        return jsonable(
            {
                "old": self.old,
                "new": self.new,
                "regression": bool(self.regressions),
                "exit_code": int(self.exit_code),
                "thresholds": asdict(self.thresholds),
                "missing": list(self.missing),
                "added": list(self.added),
                "notes": list(self.notes),
                "changes": [{**asdict(c), "status": c.status, "said": said(c)} for c in self.changes],
            }
        )


ROLES = {
    "baseline": "the report.json of an earlier run (the baseline)",
    "new": "the report.json of the run to compare with the baseline",
}


def load_report(path: Path, role: str = "baseline") -> dict[str, Any]:
    """A report.json (or a run's output folder holding one) as a dict; UsageError if it is not one.

    `role`: "baseline" (OLD of `compare`, `convert --baseline`) or "new" (NEW of `compare`), named in every
    message so a bad NEW report is never called the baseline.
    """
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    what, wanted = f"{role} report {file}", ROLES[role]
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} does not exist; pass {wanted}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{what} is not a readable report.json ({exc}); pass {wanted}") from None
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list) or "schema_version" not in data:
        raise UsageError(f"{what} is not an edgeport report.json (no schema_version/targets); pass {wanted}")
    if data.get("status", "finished") != "finished":  # a run killed, interrupted or stopped before its report
        raise UsageError(f"{what} is the record of a run that did not finish ({data['status']}): {data.get('message')}")
    if data["schema_version"] != 1:
        raise UsageError(f"{what} has report schema {data['schema_version']}; this edgeport reads schema 1")
    _check_field_types(data, file, role)
    return data


_NUMERIC_FIELDS = frozenset(
    {
        "size_bytes",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "std_ms",
        "min_ms",
        "max_ms",
        "load_ms",
        "first_inference_ms",
        "peak_rss_mb",
        "throughput_per_s",
        "cosine",
        "snr_db",
        "max_abs_error",
        "mean_abs_error",
        "rmse",
        "top1_agreement",
        "top5_agreement",
        "worst_cosine",
        "exit_code",
    }
)
_NON_FINITE = ("inf", "-inf", "nan")


def _check_field_types(data: Mapping[str, Any], file: Path, role: str = "baseline") -> None:
    """Every field a comparison reads has the type a report writes: a usage error naming it, not a traceback."""
    file_said = f"{role} report {file}"
    for index, target in enumerate(data["targets"]):
        if not isinstance(target, dict) or not isinstance(target.get("name"), str):
            raise UsageError(
                f"{file_said}: targets[{index}] is not a target record with a name; pass an edgeport report"
            )
        for where, key, value in _fields(target, f"targets[{index}] ({target['name']})"):
            if key in _NUMERIC_FIELDS and not (
                value is None
                or (isinstance(value, int | float) and not isinstance(value, bool))
                or value in _NON_FINITE
            ):
                raise UsageError(f"{file_said}: {where}.{key} is {value!r}, not a number; pass an unedited report.json")
        for key in ("stages", "files"):
            if key in target and not isinstance(target[key], list):
                raise UsageError(f"{file_said}: targets[{index}].{key} is not a list; pass an unedited report.json")


def _fields(value: Any, where: str):
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _fields(item, f"{where}.{key}")
            else:
                yield where, key, item
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _fields(item, f"{where}[{index}]")


def compare_reports(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    thresholds: Thresholds = Thresholds(),
    *,
    old_name: str = "old",
    new_name: str = "new",
) -> Comparison:
    old_targets = {t["name"]: t for t in old["targets"]}
    new_targets = {t["name"]: t for t in new["targets"]}
    same_samples = _same_samples(old, new)
    changes: list[Change] = []
    for name in [n for n in new_targets if n in old_targets]:
        before, after = old_targets[name], new_targets[name]
        changes += _verdict(name, before, after)
        changes += _size(name, before, after, thresholds)
        changes += _accuracy(name, before, after, thresholds, same_samples)
        changes += _latency(name, before, after, thresholds)
    return Comparison(
        old=old_name,
        new=new_name,
        changes=tuple(changes),
        missing=tuple(n for n in old_targets if n not in new_targets),
        added=tuple(n for n in new_targets if n not in old_targets),
        notes=tuple(_notes(old, new, same_samples)),
        thresholds=thresholds,
    )


def _verdict(name: str, before: Mapping, after: Mapping) -> list[Change]:
    old, new = _verdict_of(before), _verdict_of(after)
    if old == new:
        return []
    return [
        Change(
            name,
            "verdict",
            old,
            new,
            1.0 if old == "passed" else -1.0,
            0.0,
            old == "passed",
            "a passing target must keep passing",
            relative=False,
        )
    ]


def _verdict_of(target: Mapping) -> str:
    statuses = [s["status"] for s in target.get("stages", [])]
    if any(s["stage"] == "convert" and s["status"] == "error" for s in target.get("stages", [])):
        return "error"
    return "failed" if {"failed", "error"} & set(statuses) else "passed"


def _size(name: str, before: Mapping, after: Mapping, thresholds: Thresholds) -> list[Change]:
    old, new = before.get("size_bytes"), after.get("size_bytes")
    if not old or new is None:
        return []
    change = new / old - 1.0
    return [
        Change(
            name,
            "size_bytes",
            old,
            new,
            change,
            thresholds.size,
            change > thresholds.size,
            f"{thresholds.size:.0%}",
            relative=True,
        )
    ]


def _accuracy(name: str, before: Mapping, after: Mapping, thresholds: Thresholds, same_samples: bool) -> list[Change]:
    old_outputs = {o["name"]: o for o in (before.get("accuracy") or {}).get("outputs", [])}
    new_outputs = {o["name"]: o for o in (after.get("accuracy") or {}).get("outputs", [])}
    old_samples = (before.get("accuracy") or {}).get("samples", 0)
    new_samples = (after.get("accuracy") or {}).get("samples", 0)
    changes = []
    for output in [n for n in new_outputs if n in old_outputs]:
        o, n = old_outputs[output], new_outputs[output]
        changes.append(
            _drop(
                name,
                f"cosine[{output}]",
                _float(o["cosine"]),
                _float(n["cosine"]),
                thresholds.accuracy,
                f"{thresholds.accuracy:g}",
            )
        )
        for key in ("top1_agreement", "top5_agreement"):
            if o.get(key) is None or n.get(key) is None:
                continue
            noise = (
                0.0
                if same_samples
                else 2 * math.hypot(_binomial_se(o[key], old_samples), _binomial_se(n[key], new_samples))
            )
            basis = f"{thresholds.agreement:g}" + (f" + sampling {noise:.3f}" if noise else "")
            changes.append(
                _drop(name, f"{key.split('_')[0]}[{output}]", o[key], n[key], thresholds.agreement + noise, basis)
            )
        old_snr, new_snr = (min(_float(v), SNR_CAP_DB) for v in (o["snr_db"], n["snr_db"]))
        if math.isfinite(old_snr) and math.isfinite(new_snr):
            changes.append(
                _drop(name, f"snr_db[{output}]", old_snr, new_snr, thresholds.snr_db, f"{thresholds.snr_db:g} dB")
            )
    return changes


def _drop(target: str, metric: str, old: float, new: float, allowed: float, basis: str) -> Change:
    change = old - new  # a drop is positive: worse
    return Change(target, metric, old, new, change, allowed, change > allowed + 1e-12, basis, relative=False)


def _latency(name: str, before: Mapping, after: Mapping, thresholds: Thresholds) -> list[Change]:
    old, new = before.get("latency"), after.get("latency")
    if not old or not new:
        return []
    old_runs, new_runs = _runs(old), _runs(new)
    noisy = [role for role, stats in (("baseline", old), ("new", new)) if _noisy(stats)]
    machine_cv = max((_noise_cv(stats) for stats in (old, new) if _noisy(stats)), default=0.0)
    speed = MachineSpeed.of(old, new)
    changes = []
    for metric in LATENCY_METRICS:
        old_value, new_value = float(old[metric]), float(new[metric])
        if old_value <= 0 or new_value <= 0:
            continue
        spread = thresholds.noise * max(relative_spread(old), relative_spread(new)) if thresholds.noise else 0.0
        allowed = thresholds.latency + spread
        change = new_value / old_value - 1.0
        p_value, interval = None, None
        testable = min(len(old_runs), len(new_runs)) >= MIN_RUNS_TO_TEST
        if not testable:
            significant = False
            test = f"not tested (fewer than {MIN_RUNS_TO_TEST} runs kept)"
        elif metric == "p50_ms":
            p_value = mann_whitney_p(old_runs, new_runs)
            significant = p_value < ALPHA
            test = f"Mann-Whitney {wording.p_value(p_value)}"
        else:
            interval = quantile_ratio_interval(old_runs, new_runs, float(metric[1:3]))
            significant = interval[0] > 1 or interval[1] < 1
            test = f"ratio {wording.times(interval[0], 1)}-{wording.times(interval[1], 1)} (95 %)"
        machine = machine_cv + (speed.slowdown if change > 0 else speed.speedup)
        fastest = float(new["min_ms"]) / float(old["min_ms"]) - 1.0 if float(old["min_ms"]) > 0 else change
        fastest_allowed = thresholds.latency + max(_low_tail(old), _low_tail(new))
        confirmed = fastest > fastest_allowed and new_value - old_value > thresholds.latency_floor_ms
        beyond = change > allowed
        regression = beyond and significant and confirmed and change > allowed + machine
        improved = significant and change < -(allowed + machine)
        spread_said = f" + spread {spread:.0%}" if spread else ""
        causes = [f"measured on a noisy machine ({' and '.join(noisy)})"] if noisy else []
        machine_said = speed.said() if (speed.slowdown if change > 0 else speed.speedup) > 0 else ""
        if machine_said:
            causes.append(f"{machine_said} ({speed.kernel_said()})")
        if causes:
            test += f"; {'; '.join(causes)}: beyond {'+' if change > 0 else '-'}{allowed + machine:.0%} only"
        changes.append(
            Change(
                name,
                metric,
                old_value,
                new_value,
                change,
                allowed,
                regression,
                f"{thresholds.latency:.0%}{spread_said}; {test}; fastest run {fastest:+.0%} of "
                f"+{fastest_allowed:.0%}; floor {thresholds.latency_floor_ms:g} ms",
                relative=True,
                unconfirmed=(beyond and not regression) or (change < -allowed and not improved),
                significant=significant,
                p_value=p_value,
                ratio_interval=interval,
                machine=machine,
                machine_said=machine_said,
            )
        )
    return changes


@dataclass(frozen=True)
class MachineSpeed:
    """The machine's own change of speed between two benchmarks: the calibration kernel's medians around each
    (checks/latency.MachineNoise: just before and, since, just after). A change of latency no larger than
    the machine's in the same direction is not called a regression, nor an improvement: on a VM whose vCPU
    has slow phases, an unchanged artifact's fastest run moved +30 % between two benchmarks with it."""

    old_ms: tuple[float, float]  # the baseline's fastest and slowest kernel median (0, 0: not measured)
    new_ms: tuple[float, float]

    @classmethod
    def of(cls, old: Mapping, new: Mapping) -> MachineSpeed:
        return cls(_kernel_range(old), _kernel_range(new))

    @property
    def known(self) -> bool:
        return self.old_ms[0] > 0 and self.new_ms[0] > 0

    @property
    def slowdown(self) -> float:
        """How much slower the machine may have been in the new run: the new slowest over the old fastest."""
        return max(0.0, self.new_ms[1] / self.old_ms[0] - 1.0) if self.known else 0.0

    @property
    def speedup(self) -> float:
        """How much faster it may have been: the old slowest over the new fastest."""
        return max(0.0, self.old_ms[1] / self.new_ms[0] - 1.0) if self.known else 0.0

    def said(self) -> str:
        """ "the machine itself ran 1.9x slower": the kernel's mid-range times, new against old."""
        return f"the machine itself ran {wording.ratio(sum(self.new_ms) / 2, sum(self.old_ms) / 2)}"

    def kernel_said(self) -> str:
        old, new = sum(self.old_ms) / 2, sum(self.new_ms) / 2
        return f"a fixed compute kernel: {wording.latency_ms(old)} in the baseline, {wording.latency_ms(new)} now"


def _kernel_range(stats: Mapping) -> tuple[float, float]:
    noise = stats.get("noise")
    if not isinstance(noise, Mapping):
        return (0.0, 0.0)
    times = [float(t) for t in (noise.get("kernel_ms"), noise.get("kernel_ms_after")) if isinstance(t, (int, float))]
    times = [t for t in times if math.isfinite(t) and t > 0]
    return (min(times), max(times)) if times else (0.0, 0.0)


def _noisy(stats: Mapping) -> bool:
    """The benchmark was taken on a noisy machine (its calibration just before: checks/latency.measure_noise)."""
    noise = stats.get("noise")
    return bool(isinstance(noise, Mapping) and noise.get("noisy"))


def _noise_cv(stats: Mapping) -> float:
    try:
        return float(stats["noise"]["cv"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def _runs(stats: Mapping):
    import numpy as np

    runs = np.asarray([float(t) for t in stats.get("run_ms") or []], dtype=np.float64)
    return runs[np.isfinite(runs)]


def mann_whitney_p(a, b) -> float:
    """Two-sided p-value of the Mann-Whitney U test of two samples: the normal approximation with tie
    correction and continuity correction (scipy.stats.mannwhitneyu(method="asymptotic") gives the same)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    sorted_values = values[order]
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):  # tied values share their mean rank
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    tie_term = float((counts**3 - counts).sum())
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every time equal: nothing moved
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def quantile_ratio_interval(old, new, quantile: float) -> tuple[float, float]:
    """Bootstrap 95 % percentile interval of new's quantile / old's (each run resampled on its own; seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    old_q = np.percentile(old[rng.integers(0, old.size, size=(BOOTSTRAP_RESAMPLES, old.size))], quantile, axis=1)
    new_q = np.percentile(new[rng.integers(0, new.size, size=(BOOTSTRAP_RESAMPLES, new.size))], quantile, axis=1)
    ratios = new_q / np.where(old_q > 0, old_q, np.nan)
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return 0.0, math.inf
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def relative_spread(stats: Mapping) -> float:
    """The robust spread of single inferences relative to the run's median (IQR / 1.349 / p50): each run
    against its own median, so a slower run does not excuse itself by being slower."""
    p50 = float(stats["p50_ms"])
    return _robust_sigma(stats) / p50 if p50 > 0 else 0.0


def _robust_sigma(stats: Mapping) -> float:
    import numpy as np

    runs = np.asarray(stats.get("run_ms") or [], dtype=np.float64)
    if runs.size >= 4:
        q1, q3 = np.percentile(runs, [25, 75])
        return float(q3 - q1) / 1.349
    return max(0.0, float(stats["p90_ms"]) - float(stats["p50_ms"])) / 1.2816  # normal approximation


def _low_tail(stats: Mapping) -> float:
    """Relative gap between the fastest run and p5: how much the fastest run itself can wander."""
    import numpy as np

    runs = np.asarray(stats.get("run_ms") or [], dtype=np.float64)
    fastest = float(stats["min_ms"])
    if runs.size < 20 or fastest <= 0:
        return 0.0
    return max(0.0, float(np.percentile(runs, 5)) / fastest - 1.0)


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.25 / max(n, 1)) / n) if n else 0.0


def _same_samples(old: Mapping, new: Mapping) -> bool:
    a, b = old.get("samples", {}), new.get("samples", {})
    return a.get("count") == b.get("count") and _same_path(a.get("source"), b.get("source"))


def _same_path(a: str | None, b: str | None) -> bool:
    """Equal, or one is the other written relative to some folder (runs may start in different folders)."""
    if a is None or b is None:
        return a == b
    short, long = sorted((Path(a).parts, Path(b).parts), key=len)
    return bool(short) and long[len(long) - len(short) :] == short


def _notes(old: Mapping, new: Mapping, same_samples: bool) -> list[str]:
    notes = []
    if not same_samples:
        notes.append(
            f"accuracy measured on different samples ({old.get('samples', {}).get('source')} vs "
            f"{new.get('samples', {}).get('source')}): agreement gets a sampling allowance"
        )
    old_cpu, new_cpu = old.get("machine", {}).get("cpu"), new.get("machine", {}).get("cpu")
    if old_cpu != new_cpu:
        notes.append(f"measured on different machines ({old_cpu} vs {new_cpu}): latency is not like for like")
    for role, report in (("the baseline", old), ("the new run", new)):
        noise = (report.get("machine") or {}).get("noise") or {}
        if noise.get("noisy"):
            notes.append(
                f"{role} was measured on a noisy machine (a compute kernel varied by {wording.percent(noise.get('cv'))}"
                f", load average {wording.load((noise.get('load_avg') or [None])[0])}): its latency is less certain"
            )
    if not _same_path(old.get("model", {}).get("path"), new.get("model", {}).get("path")):
        notes.append(f"different model paths: {old.get('model', {}).get('path')} vs {new.get('model', {}).get('path')}")
    return notes


def _float(value: Any) -> float:
    return float(value)  # report.json writes non-finite floats as "inf"/"nan" strings; float() reads both


# ---- output -----------------------------------------------------------------------------------------------


def format_value(change: Change, value: float | str) -> str:
    if isinstance(value, str):
        return value
    if change.metric == "size_bytes":
        return wording.size(value)
    if change.metric in LATENCY_METRICS:
        return wording.latency_ms(value)
    if change.metric.startswith(("top1", "top5")):
        return wording.percent(value)
    if change.metric.startswith("cosine"):
        return f"{value:.6f}"
    return f"{value:.4g}"


def format_change(change: Change) -> str:
    """How the NEW value moved from the baseline's: latency also as speed (wording.ratio: "2.7x slower")."""
    if change.metric == "verdict":
        return "stopped passing" if change.regression else "now passes"
    if change.metric in LATENCY_METRICS and isinstance(change.old, float) and isinstance(change.new, float):
        return f"{change.change:+.1%} ({wording.ratio(change.new, change.old)})"
    if change.relative:
        return f"{change.change:+.1%}"
    if change.metric.startswith("snr"):
        return f"{-change.change:+.1f} dB"
    if change.metric.startswith(("top1", "top5")):
        return _signed(wording.points(-change.change))
    return f"{-change.change:+.2g}"


def _signed(text: str) -> str:
    return text if text.startswith(("-", "0.00 ")) else f"+{text}"


def format_allowed(change: Change) -> str:
    if change.metric == "verdict":
        return change.basis
    if change.relative:
        return (
            f"+{change.allowed:.0%} ({change.basis})" if change.metric in LATENCY_METRICS else f"+{change.allowed:.0%}"
        )
    if change.metric.startswith(("top1", "top5")):
        return f"-{wording.points(change.allowed)}"
    unit = " dB" if change.metric.startswith("snr") else ""
    return f"-{change.allowed:.3g}{unit}"


def said(change: Change) -> str:
    """The verdict on one change in words: for latency "slower" (a regression), "faster", "no change" or
    "inconclusive (noise)"; for the others "regression", "better", "ok"."""
    if change.metric not in LATENCY_METRICS:
        return change.status
    return {"regression": "slower", "better": "faster", "noise": "inconclusive (noise)"}.get(change.status, "no change")


def status_text(change: Change, thresholds: Thresholds) -> str:
    """The last column of `compare`: the verdict on one change and, for noise, why it was not a regression.

    A latency change past its allowance is noise when the test on the raw runs does not find it significant,
    when the fastest run did not confirm it (it moved no more than its own allowance, whatever it moved: the
    threshold column says by how much) or when it is under the absolute floor; the words say which, never that
    the fastest run was "unchanged".
    """
    words = said(change)
    if change.status == "regression":
        return "[red]REGRESSION[/]" if words == "regression" else "[red]slower: REGRESSION[/]"
    if change.status == "better":
        return f"[green]{words}[/]"
    if change.status != "noise":
        return words
    if not change.significant:
        test = wording.p_value(change.p_value) if change.p_value is not None else "its interval includes no change"
        return f"[yellow]{words}[/] (not significant: {test})"
    if change.machine_said:
        return f"[yellow]{words}[/] ({change.machine_said})"
    grew_ms = float(change.new) - float(change.old)
    if grew_ms <= thresholds.latency_floor_ms:
        return f"[yellow]{words}[/] (under the {thresholds.latency_floor_ms:g} ms floor)"
    if "noisy machine" in change.basis:
        return f"[yellow]{words}[/] (measured on a noisy machine)"
    return f"[yellow]{words}[/] (fastest run within its own allowance)"


def print_comparison(comparison: Comparison, console, show_all: bool = False) -> None:
    """The table of what moved (every compared metric with show_all), the notes and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    rows: Sequence[Change] = comparison.changes if show_all else [c for c in comparison.changes if c.status != "ok"]
    table = Table(title=f"compared with the baseline {escape(comparison.old)}", title_justify="left")
    for column in ("target", "metric", "old", "new", "change", "threshold", ""):
        table.add_column(column, overflow="fold")
    for c in rows:
        status = status_text(c, comparison.thresholds)
        table.add_row(
            escape(c.target),
            escape(c.metric),
            escape(format_value(c, c.old)),
            escape(format_value(c, c.new)),
            format_change(c),
            escape(format_allowed(c)),
            status,
        )
    if rows:
        console.print(table)
    quiet = len(comparison.changes) - len(rows)
    if quiet:
        console.print(f"{quiet} compared metric(s) within their thresholds", highlight=False)
    for name in comparison.missing:
        console.print(
            f"[yellow]missing:[/] {escape(name)} is in the baseline but not in the new report", highlight=False
        )
    for name in comparison.added:
        console.print(
            f"[yellow]new:[/] {escape(name)} is only in the new report: no baseline to compare with", highlight=False
        )
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    regressions = comparison.regressions
    if regressions:
        moved = escape(", ".join(f"{c.target} {c.metric}" for c in regressions))
        console.print(f"[red]regression against the baseline[/]: {moved} (exit 1)", highlight=False)
    else:
        console.print("[green]no regression against the baseline[/]", highlight=False)


# ---- commands ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """`convert --baseline`: the earlier report, loaded before the run so a bad path fails fast."""

    path: Path
    report: Mapping[str, Any]
    thresholds: Thresholds


def load_baseline(path: Path | None, thresholds: Mapping[str, float]) -> Baseline | None:
    if path is None:
        if thresholds:
            flags = ", ".join(sorted(thresholds))
            raise UsageError(f"thresholds ({flags}) need a baseline; pass --baseline OLD/report.json")
        return None
    return Baseline(Path(path), load_report(path), Thresholds(**thresholds))


def check_against(baseline: Baseline, report: Mapping[str, Any], *, out: Path, console) -> Comparison:
    """Compare a finished run with its baseline, write OUT/comparison.json, print what moved."""
    from edgeport.report.files import atomic_write

    comparison = compare_reports(
        baseline.report,
        report,
        baseline.thresholds,
        old_name=str(baseline.path),
        new_name=str(Path(out) / "report.json"),
    )
    atomic_write(Path(out) / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    print_comparison(comparison, console)
    return comparison


def compare_command(old: Path, new: Path, *, thresholds: Mapping[str, float], show_all: bool, as_json: bool) -> int:
    from rich.console import Console

    comparison = compare_reports(
        load_report(old, "baseline"),
        load_report(new, "new"),
        Thresholds(**thresholds),
        old_name=str(old),
        new_name=str(new),
    )
    if as_json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        console = Console() if Console().is_terminal else Console(width=150)
        print_comparison(comparison, console, show_all=show_all)
    return int(comparison.exit_code)
