"""Regressions against a baseline run: compare two report.json files target by target.

Latency (p50, p90) regresses when it grew by more than a relative threshold plus a noise allowance measured
from the runs themselves, relative to each run's median: twice the bootstrap standard error of the
quantile (sampling noise of the estimate) plus the robust spread of single inferences (IQR / 1.349, the
noisier run), since run-to-run drift of a busy machine is of the order of that jitter and invisible to
resampling one run. It must also be confirmed by the fastest run (min_ms) getting slower by more than the
threshold plus its own wander (p5 / min - 1, the noisier run): contention from other processes slows the
typical run, not the fastest one. On a busy 2-core machine reruns of an unchanged 14 us model had p50 up
to 1.8x apart while min_ms stayed within 6-14%; a genuinely slower artifact moves both.

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

SNR_CAP_DB = 100.0  # above this the error is numerical noise: inf and 131 dB are the same result
LATENCY_METRICS = ("p50_ms", "p90_ms")
BOOTSTRAP_RESAMPLES = 300


@dataclass(frozen=True)
class Thresholds:
    latency: float = 0.10  # relative growth of p50/p90 allowed on top of the noise allowance
    noise: float = 1.0  # multiples of the measured spread added to the latency threshold (0: threshold only)
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
    unconfirmed: bool = False  # beyond the allowance, but the fastest run did not move: machine noise

    @property
    def improved(self) -> bool:
        return not self.regression and self.change < -self.allowed

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
                "changes": [{**asdict(c), "status": c.status} for c in self.changes],
            }
        )


def load_report(path: Path) -> dict[str, Any]:
    """A report.json (or a run's output folder holding one) as a dict; UsageError if it is not one."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline report {file} does not exist; pass the report.json of an earlier run") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{file} is not a readable report.json ({exc}); pass the report.json of an edgeport run"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list) or "schema_version" not in data:
        raise UsageError(f"{file} is not an edgeport report.json (no schema_version/targets)")
    if data.get("status", "finished") != "finished":  # a run killed, interrupted or stopped before its report
        raise UsageError(f"{file} is the record of a run that did not finish ({data['status']}): {data.get('message')}")
    if data["schema_version"] != 1:
        raise UsageError(f"{file} has report schema {data['schema_version']}; this edgeport reads schema 1")
    _check_field_types(data, file)
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


def _check_field_types(data: Mapping[str, Any], file: Path) -> None:
    """Every field a comparison reads has the type a report writes: a usage error naming it, not a traceback."""
    for index, target in enumerate(data["targets"]):
        if not isinstance(target, dict) or not isinstance(target.get("name"), str):
            raise UsageError(f"{file}: targets[{index}] is not a target record with a name; pass an edgeport report")
        for where, key, value in _fields(target, f"targets[{index}] ({target['name']})"):
            if key in _NUMERIC_FIELDS and not (
                value is None
                or (isinstance(value, int | float) and not isinstance(value, bool))
                or value in _NON_FINITE
            ):
                raise UsageError(f"{file}: {where}.{key} is {value!r}, not a number; pass an unedited report.json")
        for key in ("stages", "files"):
            if key in target and not isinstance(target[key], list):
                raise UsageError(f"{file}: targets[{index}].{key} is not a list; pass an unedited report.json")


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
    changes = []
    for metric in LATENCY_METRICS:
        old_value, new_value = float(old[metric]), float(new[metric])
        if old_value <= 0 or new_value <= 0:
            continue
        noise = thresholds.noise * relative_latency_noise(old, new, float(metric[1:3]))
        allowed = thresholds.latency + noise
        change = new_value / old_value - 1.0
        fastest = float(new["min_ms"]) / float(old["min_ms"]) - 1.0 if float(old["min_ms"]) > 0 else change
        fastest_allowed = thresholds.latency + thresholds.noise * max(_low_tail(old), _low_tail(new))
        confirmed = fastest > fastest_allowed and new_value - old_value > thresholds.latency_floor_ms
        changes.append(
            Change(
                name,
                metric,
                old_value,
                new_value,
                change,
                allowed,
                change > allowed and confirmed,
                f"{thresholds.latency:.0%} + noise {noise:.0%}; fastest run {fastest:+.0%} of "
                f"+{fastest_allowed:.0%}; floor {thresholds.latency_floor_ms:g} ms",
                relative=True,
                unconfirmed=change > allowed and not confirmed,
            )
        )
    return changes


def relative_latency_noise(old: Mapping, new: Mapping, quantile: float) -> float:
    """How far a quantile of two unchanged runs may drift apart by chance, relative (see the module doc).

    Each run's spread is taken relative to its own median, so a slower run does not excuse itself by being
    slower; the noisier of the two runs sets the allowance.
    """
    sampling = 2 * math.hypot(
        _bootstrap_se(old, quantile) / float(old["p50_ms"]), _bootstrap_se(new, quantile) / float(new["p50_ms"])
    )
    spread = max(_robust_sigma(old) / float(old["p50_ms"]), _robust_sigma(new) / float(new["p50_ms"]))
    return sampling + spread


def _bootstrap_se(stats: Mapping, quantile: float) -> float:
    import numpy as np

    runs = np.asarray(stats.get("run_ms") or [], dtype=np.float64)
    if runs.size < 2:
        return 0.0
    rng = np.random.default_rng(0)
    resampled = runs[rng.integers(0, runs.size, size=(BOOTSTRAP_RESAMPLES, runs.size))]
    return float(np.percentile(resampled, quantile, axis=1).std())


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
        from edgeport.report.files import human_bytes

        return human_bytes(value)
    if change.metric.startswith(("top1", "top5")):
        return f"{value:.1%}"
    if change.metric.startswith("cosine"):
        return f"{value:.6f}"
    return f"{value:.4g}"


def format_change(change: Change) -> str:
    if change.metric == "verdict":
        return "stopped passing" if change.regression else "now passes"
    if change.relative:
        return f"{change.change:+.1%}"
    if change.metric.startswith("snr"):
        return f"{-change.change:+.1f} dB"
    if change.metric.startswith(("top1", "top5")):
        return f"{-change.change * 100:+.1f} pt"
    return f"{-change.change:+.2g}"


def format_allowed(change: Change) -> str:
    if change.metric == "verdict":
        return change.basis
    if change.relative:
        return f"+{change.allowed:.0%} ({change.basis})" if "noise" in change.basis else f"+{change.allowed:.0%}"
    if change.metric.startswith(("top1", "top5")):
        return f"-{change.allowed * 100:.1f} pt"
    unit = " dB" if change.metric.startswith("snr") else ""
    return f"-{change.allowed:.3g}{unit}"


def print_comparison(comparison: Comparison, console, show_all: bool = False) -> None:
    """The table of what moved (every compared metric with show_all), the notes and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    rows: Sequence[Change] = comparison.changes if show_all else [c for c in comparison.changes if c.status != "ok"]
    table = Table(title=f"compared with {escape(comparison.old)}", title_justify="left")
    for column in ("target", "metric", "old", "new", "change", "threshold", ""):
        table.add_column(column, overflow="fold")
    for c in rows:
        status = {
            "regression": "[red]REGRESSION[/]",
            "better": "[green]better[/]",
            "noise": "[yellow]noise[/] (fastest run unchanged)",
        }.get(c.status, "ok")
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
        console.print(f"[yellow]missing:[/] {escape(name)} is in the baseline but not in this run", highlight=False)
    for name in comparison.added:
        console.print(f"[yellow]new:[/] {escape(name)} has no baseline to compare with", highlight=False)
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
        load_report(old), load_report(new), Thresholds(**thresholds), old_name=str(old), new_name=str(new)
    )
    if as_json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        console = Console() if Console().is_terminal else Console(width=150)
        print_comparison(comparison, console, show_all=show_all)
    return int(comparison.exit_code)
