"""The report: one record per run (schema versioned), written as report.json, junit.xml and summary.md.

Schema (report.json, `schema_version` 1): see README "Report schema". Non-finite floats are written as
the strings "inf", "-inf", "nan" so the file stays strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from edgeport.checks.accuracy import AccuracyResult
from edgeport.checks.latency import NOISY_CV, LatencyStats
from edgeport.errors import ExitCode
from edgeport.report import wording
from edgeport.report.device_rows import DeviceRow, summary_lines

SCHEMA_VERSION = 1
STAGES = ("convert", "check", "bench")


@dataclass(frozen=True)
class StageResult:
    stage: str  # convert | check | bench
    status: str  # passed | failed | error | skipped
    seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class TargetResult:
    name: str
    converter: str
    variant: str
    runtime: str
    stages: tuple[StageResult, ...]
    precision: str | None = None
    folder: str | None = None  # relative to the output folder
    artifact: str | None = None  # the file checked and benchmarked, relative to the output folder
    size_bytes: int | None = None
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    accuracy: AccuracyResult | None = None
    latency: LatencyStats | None = None
    shape_checks: tuple[Mapping[str, Any], ...] = ()  # each input shape the check ran at, with its verdict
    measurements: Mapping[str, Any] = field(default_factory=dict)
    runtime_version: str | None = None
    threads: int = 1
    backend: str | None = None
    layers: Mapping[str, Any] | None = None  # per-layer comparison (checks/layers.LayerReport.to_dict), or None
    quant_fallback: Mapping[str, Any] | None = None  # -O quant_fallback=auto (run/quant_fallback), when it ran

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def verdict(self) -> str:
        statuses = {s.status for s in self.stages}
        if "error" in statuses and (convert := self.stage("convert")) is not None and convert.status == "error":
            return "error"
        if "failed" in statuses or "error" in statuses:
            return "failed"
        check = self.stage("check")
        if check is None or check.status != "passed":
            return "unchecked"  # converted, but nothing compared it with the SavedModel: never "passed"
        if self.accuracy is not None and self.accuracy.inconclusive:
            return "inconclusive"  # compared, but the SavedModel's outputs did not vary: never "passed"
        return "passed"


@dataclass(frozen=True)
class Report:
    model: Mapping[str, Any]
    samples: Mapping[str, Any]
    calibration: Mapping[str, Any] | None
    targets: tuple[TargetResult, ...]
    exit_code: int
    created: str
    machine: Mapping[str, Any]
    edgeport_version: str
    warnings: tuple[str, ...] = ()
    baseline: LatencyStats | None = None
    schema_version: int = SCHEMA_VERSION
    devices: tuple[DeviceRow, ...] = ()  # one row per (target, device): --device (edgeport/device)

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.OK

    def target(self, name: str) -> TargetResult:
        return next(t for t in self.targets if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        data = jsonable(dataclasses.asdict(self))
        data["verdicts"] = {t.name: t.verdict for t in self.targets}
        data["status"] = "finished"  # a run without a report leaves running/interrupted/failed (run/output_folder)
        return data


def exit_code_for(targets: tuple[TargetResult, ...]) -> ExitCode:
    if any((convert := t.stage("convert")) is not None and convert.status == "error" for t in targets):
        return ExitCode.LOAD_OR_CONVERSION
    if any(s.status in ("failed", "error") for t in targets for s in t.stages):
        return ExitCode.GATE_FAILED
    return ExitCode.OK


def jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return value


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files(out: Path, texts: Mapping[str, str]) -> dict[str, Path]:
    """Write files into `out` as one batch: each to a temp file first, then each renamed into place.

    On any failure (a full disk) nothing of the batch is left: the temp files are removed, and so is every file
    the batch had already renamed into place; then the error is raised.
    """
    out.mkdir(parents=True, exist_ok=True)
    temps: dict[str, str] = {}
    placed: list[Path] = []
    try:
        for name, text in texts.items():
            fd, temps[name] = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temps[name], 0o666 & ~current_umask())
        for name, tmp in temps.items():
            os.replace(tmp, out / name)
            placed.append(out / name)
    except BaseException:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    return {name: out / name for name in texts}


def report_texts(report: Report) -> dict[str, str]:
    """report.json, junit.xml and summary.md of a report, by file name."""
    return {
        "report.json": json.dumps(report.to_dict(), indent=2) + "\n",
        "junit.xml": junit_xml(report),
        "summary.md": summary_markdown(report),
    }


def write_report_files(report: Report, out: Path) -> dict[str, Path]:
    written = write_files(out, report_texts(report))
    return {"json": written["report.json"], "junit": written["junit.xml"], "summary": written["summary.md"]}


def junit_xml(report: Report) -> str:
    cases = []
    failures = errors = skipped = 0
    for target in report.targets:
        for stage in target.stages:
            body = ""
            if stage.status == "failed":
                failures += 1
                body = f"<failure message={quoteattr(stage.reason)}>{escape(stage.reason)}</failure>"
            elif stage.status == "error":
                errors += 1
                body = f"<error message={quoteattr(stage.reason)}>{escape(stage.reason)}</error>"
            elif stage.status == "skipped":
                skipped += 1
                body = f"<skipped message={quoteattr(stage.reason)}/>"
            cases.append(
                f'    <testcase classname={quoteattr("edgeport." + target.name)} name="{stage.stage}" '
                f'time="{stage.seconds:.3f}">{body}</testcase>'
            )
    total = len(cases)
    model = quoteattr(f"edgeport {path_text(report.model.get('path', ''))}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites tests="{total}" failures="{failures}" errors="{errors}" skipped="{skipped}">\n'
        f'  <testsuite name={model} tests="{total}" failures="{failures}" errors="{errors}" '
        f'skipped="{skipped}" timestamp="{report.created}">\n' + "\n".join(cases) + "\n  </testsuite>\n</testsuites>\n"
    )


def path_text(value: Any) -> str:
    """A path (the model's, the data's) as report files show it: one line, every control character written as
    its escape (a newline as \\n, ESC as \\x1b, an undecodable byte as \\udcXX), so a path cannot break a line
    of summary.md, make junit.xml invalid XML or run report.html's text together. The one place paths are
    rendered for the report files; report.json keeps them as they are."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def _code(text: str) -> str:
    """A markdown code span around `text`, whatever backticks it holds."""
    longest = run = 0
    for character in text:
        run = run + 1 if character == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else str(value)
    return f"{value:.{digits}f}"


def _shapes(shapes: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} [{', '.join(map(str, dims))}]" for name, dims in shapes.items())


def stage_cell(stage: StageResult | None) -> str:
    if stage is None:
        return "–"
    mark = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}[stage.status]
    return f"{mark}: {stage.reason}" if stage.reason and stage.status != "passed" else mark


def size_cell(target: TargetResult) -> str:
    """A target's size as a device stores it; for a microcontroller target its flash and arena, and whether
    they fit the board's limits (the converter's budgets `max_flash_bytes`, `max_arena_bytes`)."""
    if target.size_bytes is None:
        return "–"
    arena = target.measurements.get("arena_bytes")
    if arena is None:
        return wording.size(target.size_bytes)
    said = f"flash {wording.size(target.size_bytes)} + arena {wording.size(arena)}"
    board = target.details.get("board")
    budgets = target.details.get("budgets") or {}
    limits = {"flash": budgets.get("max_flash_bytes"), "RAM": budgets.get("max_arena_bytes")}
    used = {"flash": target.size_bytes, "RAM": arena}
    over = [what for what, limit in limits.items() if limit is not None and used[what] > limit]
    if board is None or all(limit is None for limit in limits.values()):
        return said
    return f"{said}; " + (f"over {board}'s {' and '.join(over)}" if over else f"fits {board}")


def accuracy_cell(target: TargetResult) -> str:
    if not target.accuracy or not target.accuracy.outputs:
        return "–"
    worst = min(target.accuracy.outputs, key=lambda o: o.cosine)
    text = f"cos {worst.cosine:.6f}"
    if worst.top1_agreement is not None:
        text += f", top-1 {wording.percent(worst.top1_agreement)}"
    return text


def latency_cell(stats: LatencyStats | None, stat: str = "p50_ms") -> str:
    """A quantile with its 95 % interval ("0.412 ms [0.405, 0.419]", "[n/a]" when the runs cannot bound it)."""
    if stats is None:
        return wording.latency_interval(None, None)
    return wording.latency_interval(getattr(stats, stat), stats.interval(stat))


def noise_line(report: Report) -> str | None:
    """The machine's noise measured before the benchmarks (report.json `machine.noise`), or None."""
    noise = report.machine.get("noise")
    if not noise:
        return None
    load = noise.get("load_avg")
    said = f", load average {wording.load(load[0])} on {noise.get('cpus')} cores" if load else ""
    before, after = noise.get("kernel_ms"), noise.get("kernel_ms_after")
    timed_around = isinstance(before, (int, float)) and isinstance(after, (int, float)) and before > 0
    if timed_around and abs(after / before - 1.0) > NOISY_CV:  # the worst calibration's speed moved during it
        said += f", {wording.ratio(after, before)} just after a benchmark than before it"
    verdict = (
        f"noisy ({noise.get('noisy_benchmarks')} of {noise.get('calibrations')} benchmarks): latency here is less "
        "certain than its intervals say"
        if noise.get("noisy")
        else "quiet"
    )
    return (
        f"machine noise before the benchmarks: a fixed compute kernel varied by {wording.percent(noise.get('cv'))} "
        f"(CV){said}; {verdict}"
    )


def speed_line(report: Report) -> str | None:
    """Each benchmarked target's p50 against the SavedModel's on TensorFlow, worded by wording.ratio."""
    if report.baseline is None:
        return None
    said = [
        f"{t.name} {wording.ratio(t.latency.p50_ms, report.baseline.p50_ms)}"
        for t in report.targets
        if t.latency is not None
    ]
    if not said:
        return None
    return f"p50 against the SavedModel on TensorFlow ({wording.latency_ms(report.baseline.p50_ms)}): " + "; ".join(
        said
    )


def task_line(target: TargetResult) -> str | None:
    """One artifact's task accuracy against --labels: top-1, the drop from the SavedModel's (in percentage
    points, as the accuracies are percentages) and the max_accuracy_drop gate, when set."""
    task = target.accuracy.task if target.accuracy else None
    if task is None:
        return None
    gate = ""
    if task.max_drop is not None:
        gate = (
            f" (max_accuracy_drop {task.max_drop:g} = {wording.points(task.max_drop)}: "
            f"{'passed' if task.passed else 'FAILED'})"
        )
    top5 = f", top-5 {wording.percent(task.artifact_top5, 2)}" if task.artifact_top5 is not None else ""
    return f"top-1 {wording.percent(task.artifact, 2)}{top5}, drop {wording.points(task.drop)}{gate}"


def task_header(report: Report) -> str | None:
    """The SavedModel's task accuracy against --labels, or None without labels."""
    labels = report.samples.get("labels") if report.samples else None
    if not labels:
        return None
    top5 = labels.get("top5")
    return (
        f"task accuracy on {labels['count']} labels ({labels['source']}): SavedModel top-1 "
        f"{wording.percent(labels['top1'], 2)}" + (f", top-5 {wording.percent(top5, 2)}" if top5 is not None else "")
    )


def task_lines(report: Report) -> list[str]:
    """Task accuracy against --labels: the SavedModel's, then each artifact's with its drop."""
    header = task_header(report)
    if header is None:
        return []
    return [header] + [f"{t.name}: {line}" for t in report.targets if (line := task_line(t)) is not None]


def layer_lines(report: Report) -> list[str]:
    """Per-layer comparison: where each target's error starts (the first divergent layer and its op)."""
    lines = []
    for t in report.targets:
        layers = t.layers
        if not layers:
            continue
        if layers.get("error"):
            lines.append(f"{t.name}: per-layer comparison: {layers['error']}")
        elif layers.get("first_divergent"):
            lines.append(
                f"{t.name}: first divergent layer {layers['first_divergent']} ({layers.get('first_divergent_op')}), "
                f"of {len(layers.get('tensors', []))} layers compared"
            )
        else:
            lines.append(f"{t.name}: no divergent layer in {len(layers.get('tensors', []))} layers compared")
    return lines + fallback_lines(report)


def fallback_lines(report: Report) -> list[str]:
    """quant_fallback=auto: what stayed float and what it cost, or why the gate cannot be met."""
    lines = []
    for t in report.targets:
        fallback = t.quant_fallback
        if fallback:
            said = _fallback_cost(fallback.get("cost") or {})
            lines.append(f"{t.name}: quant_fallback {fallback['status']}: {fallback['reason']}{said}")
    return lines


def _fallback_cost(cost: Mapping[str, Any]) -> str:
    """What keeping layers in float cost against the all-quantized artifact: size, and speed when both ran."""
    if cost.get("size_ratio") is None:
        return ""
    parts = [
        f"size {wording.size(cost.get('size_bytes'))}, "
        f"{wording.times(cost.get('size_bytes'), cost.get('all_quantized_size_bytes'))} the all-quantized "
        f"{wording.size(cost.get('all_quantized_size_bytes'))}"
    ]
    if cost.get("p50_ms") is not None and cost.get("all_quantized_p50_ms") is not None:
        parts.append(f"p50 {wording.ratio(cost['p50_ms'], cost['all_quantized_p50_ms'], than='all-quantized')}")
    return f" ({'; '.join(parts)})"


BROWSER_RUNTIMES = ("tfjs-browser", "litertjs-browser", "ort-web")  # runtimes in headless Chromium, by name
BROWSER_BACKENDS = ("wasm", "webgpu", "webgl", "cpu")


def browser_backend(target: TargetResult) -> str:
    """The backend chosen, else the one the benchmark's runtime version names ("LiteRT.js 2.5.3 wasm (...)")."""
    if target.backend:
        return target.backend
    said = str(target.latency.runtime_version if target.latency else target.runtime_version or "")
    words = said.replace("(", " ").replace(",", " ").split()
    return next((word for word in words if word in BROWSER_BACKENDS), "default")


BROWSER_COLUMNS = (
    "runtime",
    "backend",
    "accuracy",
    "p50 (95 % interval)",
    "first inference",
    "load",
    "downloads",
    "ran",
)


def browser_rows(report: Report) -> list[tuple[str, ...]]:
    """The browser runtimes side by side, for a web developer (BROWSER_COLUMNS): runtime, backend, accuracy
    against the SavedModel, p50 with its interval, the first inference, the load, what the page downloaded (the
    model and the runtime's files), whether it ran. Empty unless at least two targets ran in the browser."""
    targets = [t for t in report.targets if t.runtime in BROWSER_RUNTIMES]
    if len(targets) < 2:
        return []
    rows: list[tuple[str, ...]] = []
    for t in targets:
        check = t.stage("check")
        if check is None:
            ran = "not checked"
        elif check.status == "passed":
            ran = "ran, passed"
        elif check.reason and "unavailable" in check.reason:
            ran = f"unavailable: {check.reason}"
        else:
            ran = f"ran, {check.status}: {check.reason}" if check.reason else f"ran, {check.status}"
        latency = t.latency
        p50 = wording.latency_interval(latency.p50_ms, latency.p50_ci_ms) if latency else "–"
        first = wording.latency_ms(latency.first_inference_ms) if latency else "–"
        load = wording.duration(latency.load_ms / 1e3) if latency else "–"
        rows.append((t.runtime, browser_backend(t), accuracy_cell(t), p50, first, load, downloads_cell(latency), ran))
    return rows


def downloads_cell(latency: LatencyStats | None) -> str:
    """What a browser page downloaded for the model: "1.2 MB (model 1.1 MB)"; "–" when not known (no benchmark,
    or a runtime that is no page)."""
    if latency is None or not latency.downloaded_bytes:
        return "–"
    model = latency.downloaded_bytes.get("model", 0)
    total = model + latency.downloaded_bytes.get("runtime", 0)
    return f"{wording.size(total)} (model {wording.size(model)})"


def browser_lines(report: Report) -> list[str]:
    rows = browser_rows(report)
    if not rows:
        return []
    lines = ["", "**Browser runtimes** (headless Chromium)", "", f"| {' | '.join(BROWSER_COLUMNS)} |"]
    lines.append("|" + "---|" * len(BROWSER_COLUMNS))
    lines += [f"| {' | '.join(path_text(cell) for cell in row)} |" for row in rows]
    return lines


def summary_markdown(report: Report) -> str:
    verdict = {0: "passed", 1: "FAILED (a gate)", 2: "usage error", 3: "FAILED (load/conversion)"}.get(
        report.exit_code, str(report.exit_code)
    )
    unchecked = [t.name for t in report.targets if t.verdict == "unchecked"]
    if unchecked and report.exit_code == 0:
        verdict = f"passed where checked; unchecked: {', '.join(unchecked)}"
    inconclusive = [t.name for t in report.targets if t.verdict == "inconclusive"]
    if inconclusive and report.exit_code == 0:
        verdict += f"; inconclusive (the SavedModel's outputs did not vary): {', '.join(inconclusive)}"
    lines = [
        f"# edgeport: {verdict}",
        "",
        f"Model {_code(path_text(report.model.get('path')))} signature "
        f"`{report.model.get('signature', {}).get('key')}` "
        f"({report.model.get('mode')}), {wording.size(report.model.get('size_bytes'))}; samples: "
        f"{path_text(report.samples.get('source'))}.",
        "",
    ]
    lines += [
        "| target | convert | check | bench | size | accuracy (worst output) | p50 [95 % interval] "
        "| p90 [95 % interval] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if report.baseline:
        lines.append(
            f"| savedmodel (tensorflow) | – | – | – | {wording.size(report.model.get('size_bytes'))} | reference "
            f"| {latency_cell(report.baseline)} | {latency_cell(report.baseline, 'p90_ms')} |"
        )
    for t in report.targets:
        lat = t.latency
        lines.append(
            f"| {t.name} | {stage_cell(t.stage('convert'))} | {stage_cell(t.stage('check'))} | "
            f"{stage_cell(t.stage('bench'))} | {size_cell(t)} | {accuracy_cell(t)} | "
            f"{latency_cell(lat)} | {latency_cell(lat, 'p90_ms')} |"
        )
    said = [*filter(None, [speed_line(report), noise_line(report)]), *task_lines(report), *layer_lines(report)]
    if said:
        lines += ["", *(f"- {line}" for line in said)]
    lines += browser_lines(report)
    lines += summary_lines(report.devices)
    if report.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {path_text(w)}" for w in report.warnings]
    notes = [(t.name, n) for t in report.targets for n in t.notes]
    if notes:
        lines += ["", "**Notes**", ""] + [f"- {name}: {note}" for name, note in notes]
    shapes = [(t.name, check) for t in report.targets if len(t.shape_checks) > 1 for check in t.shape_checks]
    if shapes:
        lines += ["", "**Checked at several input shapes** (dynamic dimensions)", ""]
        lines += [
            f"- {name} at {_shapes(check['shapes'])}: {'passed' if check['passed'] else 'FAILED'}, worst "
            f"cosine {_fmt(check['worst_cosine'], 6)}"
            for name, check in shapes
        ]
    cpu = report.machine.get("cpu", "")
    lines += ["", f"Measured on {cpu}, {report.created}."]
    return "\n".join(lines) + "\n"
