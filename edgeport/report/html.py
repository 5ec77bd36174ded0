"""report.html: one self-contained page (no scripts, no network) a person reads after a run.

It opens with the verdict table (target x convert/check/bench) and, with --labels, the task accuracy of the
SavedModel and of each artifact; then one section per target: artifact size against the SavedModel's,
accuracy per output with the distribution of absolute errors, task accuracy and its max_accuracy_drop gate,
top-1/top-5 agreement for quantized targets, and latency distributions side by side with the SavedModel
baseline. Every number is worded by report/wording, as in summary.md and the CLI.
Plots are drawn offline by matplotlib (Agg) as inline SVG; without matplotlib the page says so and keeps
every table.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

from edgeport.checks.accuracy import OutputMetrics
from edgeport.checks.latency import LatencyStats
from edgeport.report import wording
from edgeport.report.device_rows import html_section as device_section
from edgeport.report.files import (
    BROWSER_COLUMNS,
    Report,
    TargetResult,
    accuracy_cell,
    atomic_write,
    browser_rows,
    latency_cell,
    noise_line,
    path_text,
    size_cell,
    task_header,
    task_line,
)

QUANTIZED = ("dynamic", "int8", "uint8", "int16x8", "uint16")
STATUS_CLASS = {
    "passed": "pass",
    "failed": "fail",
    "error": "fail",
    "skipped": "skip",
    "unchecked": "skip",
    "inconclusive": "skip",
}
NO_PLOTS = "matplotlib is not installed, so this page has no plots; install it with: pip install 'edgeport[report]'"

# Layout: the page never scrolls sideways (tests/core/test_report_layout.py, 1400 and 800 px): long names (a
# node's, a path) wrap anywhere in cells, code and lists; numbers wrap only at spaces; a table still wider than
# the page scrolls inside its own box.
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#1d2330;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2.2em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #d8dde6;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#11703a;font-weight:600}.fail{color:#b3261e;font-weight:600}.skip{color:#8a6100;font-weight:600}
.reason{font-weight:normal;color:#444}.muted{color:#667}.note{background:#fff7e0;border:1px solid #f0d48a;
padding:.5em .8em;border-radius:4px}.bar{background:#e6ebf3;height:12px;width:320px;display:inline-block;
vertical-align:middle}.bar span{background:#3d6fb6;height:12px;display:block}.plot svg{max-width:100%;height:auto}
code{background:#f3f5f9;padding:0 .2em}
td,th,code,li{overflow-wrap:anywhere}td.num{overflow-wrap:normal}
table{display:block;max-width:100%;overflow-x:auto}.plot{max-width:100%;overflow-x:auto}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def write_html(report: Report, out: Path) -> Path:
    """Write OUT/report.html atomically and return its path."""
    path = Path(out) / "report.html"
    atomic_write(path, render(report))
    return path


def render(report: Report) -> str:
    plots = _Plotter.create()
    body = [_header(report), _verdict_table(report)]
    if plots.missing:
        body.append(f'<p class="note" id="no-plots">{_e(plots.missing)}</p>')
    body.append(_warnings(report))
    body.append(_task_overview(report))
    body.append(_latency_overview(report, plots))
    body.append(_layers_overview(report, plots))
    body.append(_browser_overview(report))
    body.append(device_section(report.devices))
    body += [_target_section(report, target, plots) for target in report.targets]
    body.append(_footer(report))
    title = f"edgeport: {path_text(Path(str(report.model.get('path', ''))).name)} - {_run_verdict(report)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(filter(None, body))
        + "\n</body></html>\n"
    )


# ---- page parts -------------------------------------------------------------------------------------------


def _run_verdict(report: Report) -> str:
    return {0: "passed", 1: "FAILED (a gate)", 2: "usage error", 3: "FAILED (load/conversion)"}.get(
        report.exit_code, f"exit {report.exit_code}"
    )


def _header(report: Report) -> str:
    model = report.model
    signature = model.get("signature", {}) or {}
    css = "pass" if report.exit_code == 0 else "fail"
    return (
        f'<h1>edgeport: <span class="{css}" id="run-verdict">{_e(_run_verdict(report))}</span></h1>\n'
        f'<p class="muted">Model <code>{_e(path_text(model.get("path")))}</code>, signature '
        f"<code>{_e(signature.get('key'))}</code> ({_e(model.get('mode'))}), {wording.size(model.get('size_bytes'))}; "
        f"{report.samples.get('count')} samples from {_e(report.samples.get('source'))}"
        f"{' (synthetic)' if report.samples.get('synthetic') else ''}; exit code {report.exit_code}.</p>"
    )


def _stage_td(target: TargetResult, stage_name: str) -> str:
    stage = target.stage(stage_name)
    if stage is None:
        return f'<td data-stage="{stage_name}" data-status="none">–</td>'
    label = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}[stage.status]
    reason = f' <span class="reason">{_e(stage.reason)}</span>' if stage.reason and stage.status != "passed" else ""
    return (
        f'<td data-stage="{stage_name}" data-status="{stage.status}"><span class="{STATUS_CLASS[stage.status]}">'
        f"{label}</span>{reason}</td>"
    )


def _verdict_table(report: Report) -> str:
    rows = []
    if report.baseline:
        b = report.baseline
        rows.append(
            '<tr data-target="savedmodel" class="baseline"><td>savedmodel (tensorflow)</td>'
            f'<td>–</td><td>–</td><td>–</td><td class="num">{wording.size(report.model.get("size_bytes"))}</td>'
            "<td>reference</td>"
            f'<td class="num">{_e(latency_cell(b))}</td>'
            f'<td class="num">{_e(latency_cell(b, "p90_ms"))}</td></tr>'
        )
    for t in report.targets:
        lat = t.latency
        rows.append(
            f'<tr data-target="{_e(t.name)}" data-verdict="{t.verdict}">'
            f'<td><a href="#{_anchor(t.name)}">{_e(t.name)}</a>'
            f"</td>{_stage_td(t, 'convert')}{_stage_td(t, 'check')}{_stage_td(t, 'bench')}"
            f'<td class="num">{_e(size_cell(t))}</td><td>{_e(accuracy_cell(t))}</td>'
            f'<td class="num">{_e(latency_cell(lat))}</td>'
            f'<td class="num">{_e(latency_cell(lat, "p90_ms"))}'
            "</td></tr>"
        )
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "target",
            "convert",
            "check",
            "bench",
            "size",
            "accuracy (worst output)",
            "p50 [95 % interval]",
            "p90 [95 % interval]",
        )
    )
    return f'<table id="verdicts"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def _warnings(report: Report) -> str:
    if not report.warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
    return f'<div class="note" id="warnings"><strong>Warnings</strong><ul>{items}</ul></div>'


def _browser_overview(report: Report) -> str:
    """The browser runtimes side by side (files.browser_rows, files.BROWSER_COLUMNS)."""
    rows = browser_rows(report)
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in BROWSER_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        '<h2 id="browser">Browser runtimes</h2><p class="muted">Each in headless Chromium, against the '
        "SavedModel; latency on a software WebGPU adapter (SwiftShader) is not a GPU latency.</p>"
        f'<table class="browser"><tr>{head}</tr>{body}</table>'
    )


def _task_overview(report: Report) -> str:
    """Task accuracy against --labels: the SavedModel's, then each artifact's with its drop and gate."""
    header = task_header(report)
    if header is None:
        return ""
    items = "".join(
        f'<li data-target="{_e(t.name)}"><a href="#{_anchor(t.name)}">{_e(t.name)}</a>: {_e(line)}</li>'
        for t in report.targets
        if (line := task_line(t)) is not None
    )
    return f'<h2 id="task">Task accuracy</h2><p>{_e(header)}</p><ul class="task">{items}</ul>'


def _latency_overview(report: Report, plots: _Plotter) -> str:
    series = _latency_series(report, report.targets)
    if not series:
        return ""
    return (
        '<h2 id="latency">Latency</h2><p class="muted">Distribution of the timed runs (one inference each), '
        "log scale; the box spans p25 to p75, the white line is p50.</p>"
        + plots.figure(lambda plt: _latency_figure(plt, series))
    )


def _layers_overview(report: Report, plots: _Plotter) -> str:
    """Per-layer comparison (--layers, or a failed check): error along depth for every target on one chart,
    then per target its first divergent layer and its worst layers by added error."""
    compared = [t for t in report.targets if t.layers and t.layers.get("tensors")]
    said = [t for t in report.targets if t.layers]
    if not said:
        return ""
    rows = []
    for target in said:
        layers = target.layers or {}
        if layers.get("error"):
            rows.append(f"<tr><td>{_e(target.name)}</td><td colspan=3>{_e(layers['error'])}</td></tr>")
            continue
        first = layers.get("first_divergent")
        by_name = {t["name"]: t for t in layers.get("tensors", [])}
        worst = ", ".join(
            f"{_e(name)} ({_e(by_name[name]['op'])}, +{_num(by_name[name]['added_error'], 3)})"
            for name in layers.get("worst", [])
            if name in by_name
        )
        first_text = f"{_e(first)} ({_e(layers.get('first_divergent_op'))})" if first else "none"
        rows.append(
            f"<tr><td>{_e(target.name)}</td><td>{first_text}</td><td>{worst or '–'}</td>"
            f"<td>{len(by_name)} compared, {len(layers.get('fused_away', []))} fused away</td></tr>"
        )
    figure = plots.figure(lambda plt: _layers_figure(plt, compared)) if compared else ""
    return (
        '<h2 id="layers">Per-layer error</h2><p class="muted">Relative RMS error of each layer\'s output against '
        "the SavedModel's (log scale) along depth; the first divergent layer is the first whose cosine is under "
        "the target's min_cosine and that added most of its own error.</p>"
        + figure
        + '<table id="layers-table"><tr><th>target</th><th>first divergent layer</th><th>worst layers (added error)'
        "</th><th>layers</th></tr>" + "".join(rows) + "</table>"
    )


def _layers_figure(plt, targets: Sequence[TargetResult]):
    fig, ax = plt.subplots(figsize=(8, 3))
    for target in targets:
        tensors = (target.layers or {}).get("tensors", [])
        depth = [t["depth"] for t in tensors]
        error = [max(float(t["relative_error"]), 1e-7) if math.isfinite(t["relative_error"]) else 1e3 for t in tensors]
        (line,) = ax.plot(depth, error, marker=".", linewidth=1, label=target.name)
        first = (target.layers or {}).get("first_divergent")
        for t, d, e in zip(tensors, depth, error, strict=True):
            if t["name"] == first:
                ax.plot([d], [e], marker="o", markersize=9, fillstyle="none", color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("layer depth (topological order in the frozen graph)")
    ax.set_ylabel("relative error")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return fig


def _target_section(report: Report, target: TargetResult, plots: _Plotter) -> str:
    css = STATUS_CLASS["failed" if target.verdict == "error" else target.verdict]
    parts = [
        f'<section id="{_anchor(target.name)}" data-target="{_e(target.name)}">',
        f'<h2>{_e(target.name)} <span class="{css}">{_e(target.verdict)}</span></h2>',
        f'<p class="muted">converter {_e(target.converter)}, runtime {_e(target.runtime_version or target.runtime)}'
        f"{', backend ' + _e(target.backend) if target.backend else ''}, precision {_e(target.precision or '–')}, "
        f"{target.threads} thread(s)</p>",
        _stages_table(target),
        _size(report, target),
        _accuracy(target, plots),
        _task(report, target),
        _agreement(target),
        _latency(report, target, plots),
        _notes(target),
        "</section>",
    ]
    return "\n".join(filter(None, parts))


def _stages_table(target: TargetResult) -> str:
    rows = "".join(
        f'<tr><td>{s.stage}</td><td class="{STATUS_CLASS[s.status]}">{s.status}</td>'
        f'<td class="num">{wording.duration(s.seconds)}</td><td>{_e(s.reason)}</td></tr>'
        for s in target.stages
    )
    return f"<table><tr><th>stage</th><th>status</th><th>time</th><th>reason</th></tr>{rows}</table>"


def _size(report: Report, target: TargetResult) -> str:
    if target.size_bytes is None:
        return ""
    reference = report.model.get("size_bytes") or 0
    if not reference:
        return f"<h3>Size</h3><p>{wording.size(target.size_bytes)}</p>"
    ratio = target.size_bytes / reference
    width = max(1.0, min(100.0, 100 * ratio))
    files = ", ".join(f"<code>{_e(f)}</code>" for f in target.files[:12]) + (" …" if len(target.files) > 12 else "")
    return (
        f'<h3>Size</h3><p class="size"><span class="bar"><span style="width:{width:.1f}%"></span></span> '
        f"{wording.size(target.size_bytes)} = <strong>{wording.percent(ratio)}</strong> of the SavedModel's "
        f'{wording.size(reference)}</p><p class="muted">files: {files}</p>'
    )


def _accuracy(target: TargetResult, plots: _Plotter) -> str:
    accuracy = target.accuracy
    if accuracy is None:
        check = target.stage("check")
        why = check.reason if check and check.reason else "not checked"
        return f'<h3>Accuracy</h3><p class="muted">{_e(why)}</p>'
    tol = accuracy.tolerance
    gates = ", ".join(f"{k} {v:g}" for k, v in vars(tol).items() if v is not None) or "none"
    head = "".join(
        f"<th>{c}</th>"
        for c in ("output", "shape", "max abs", "mean abs", "RMSE", "cosine", "SNR dB", "top-1", "top-5")
    )
    rows = "".join(
        f'<tr><td>{_e(o.name)}</td><td>{list(o.shape)}</td><td class="num">{o.max_abs_error:.3g}</td>'
        f'<td class="num">{o.mean_abs_error:.3g}</td><td class="num">{o.rmse:.3g}</td>'
        f'<td class="num">{o.cosine:.6f}</td><td class="num">{_num(o.snr_db, 1)}</td>'
        f'<td class="num">{_pct(o.top1_agreement)}</td><td class="num">{_pct(o.top5_agreement)}</td></tr>'
        for o in accuracy.outputs
    )
    failures = "".join(f'<li class="fail">{_e(f)}</li>' for f in accuracy.failures)
    parts = [
        f'<h3>Accuracy</h3><p class="muted">{accuracy.samples} samples against the SavedModel; gates: '
        f'{_e(gates)}</p><table class="accuracy"><tr>{head}</tr>{rows}</table>',
        f"<ul>{failures}</ul>" if failures else "",
    ]
    for output in accuracy.outputs:
        parts.append(
            f"<h3>Absolute error distribution: {_e(output.name)}</h3>"
            + plots.figure(lambda plt, o=output: _error_figure(plt, o))
        )
    return "\n".join(filter(None, parts))


def _task(report: Report, target: TargetResult) -> str:
    line = task_line(target)
    if line is None:
        return ""
    labels = report.samples.get("labels") or {}
    reference = f"; the SavedModel's top-1 {wording.percent(labels['top1'], 2)}" if "top1" in labels else ""
    css = "" if target.accuracy is None or target.accuracy.task is None or target.accuracy.task.passed else "fail"
    return (
        f'<h3>Task accuracy</h3><p class="task {css}">{_e(line)}</p><p class="muted">Against '
        f"{_e(labels.get('count'))} labels ({_e(labels.get('source'))}){_e(reference)}; the drop is the SavedModel's "
        "top-1 minus the artifact's, in percentage points.</p>"
    )


def _agreement(target: TargetResult) -> str:
    if target.accuracy is None or (target.precision or target.variant) not in QUANTIZED:
        return ""
    rows = [
        (o.name, o.top1_agreement, o.top5_agreement) for o in target.accuracy.outputs if o.top1_agreement is not None
    ]
    if not rows:
        return (
            '<h3>Agreement</h3><p class="muted">No classifier-like output (one vector of class scores per '
            "sample), so no top-1/top-5 agreement.</p>"
        )
    items = "".join(
        f"<li><code>{_e(name)}</code>: top-1 <strong>{_pct(top1)}</strong>, top-5 {_pct(top5)}</li>"
        for name, top1, top5 in rows
    )
    return (
        f'<h3>Agreement ({_e(target.precision)})</h3><p class="muted">Share of samples whose SavedModel top-1 '
        f'class is the artifact\'s top-1 (top-5: among its five best).</p><ul class="agreement">{items}</ul>'
    )


def _latency(report: Report, target: TargetResult, plots: _Plotter) -> str:
    lat = target.latency
    if lat is None:
        bench = target.stage("bench")
        why = bench.reason if bench and bench.reason else "not benchmarked"
        return f'<h3>Latency</h3><p class="muted">{_e(why)}</p>'
    rows = [("savedmodel (tensorflow)", report.baseline)] if report.baseline else []
    rows.append((target.name, lat))
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "",
            "runs",
            "p50 [95 % interval]",
            "p90 [95 % interval]",
            "p99 [95 % interval]",
            "mean ± std",
            "min",
            "load",
            "first",
            "peak RSS",
        )
    )
    body = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{s.runs}</td><td class="num">{_e(latency_cell(s))}</td>'
        f'<td class="num">{_e(latency_cell(s, "p90_ms"))}</td><td class="num">{_e(latency_cell(s, "p99_ms"))}</td>'
        f'<td class="num">{wording.latency_ms(s.mean_ms)} ± {wording.latency_ms(s.std_ms)}</td>'
        f'<td class="num">{wording.latency_ms(s.min_ms)}</td>'
        f'<td class="num">{wording.latency_ms(s.load_ms)}</td>'
        f'<td class="num">{wording.latency_ms(s.first_inference_ms)}</td>'
        f'<td class="num">{wording.size(s.peak_rss_mb * (1 << 20))}</td></tr>'
        for name, s in rows
    )
    speedup = ""
    if report.baseline:
        said = wording.ratio(lat.p50_ms, report.baseline.p50_ms, than="the SavedModel on TensorFlow")
        speedup = (
            f'<p class="speed">p50 on {_e(lat.runtime_version)}: <strong>{_e(said)}</strong> '
            f"({wording.latency_ms(lat.p50_ms)} against {wording.latency_ms(report.baseline.p50_ms)}).</p>"
        )
    series = _latency_series(report, (target,))
    return f"<h3>Latency</h3><table><tr>{head}</tr>{body}</table>{speedup}" + plots.figure(
        lambda plt: _latency_figure(plt, series)
    )


def _notes(target: TargetResult) -> str:
    items = [f"<li>warning: {_e(w)}</li>" for w in target.warnings] + [f"<li>{_e(n)}</li>" for n in target.notes]
    return f"<h3>Notes</h3><ul>{''.join(items)}</ul>" if items else ""


def _footer(report: Report) -> str:
    machine = report.machine
    return (
        f'<p class="muted" id="footer">Measured on {_e(machine.get("cpu"))}, {_e(machine.get("platform"))}, '
        f"Python {_e(machine.get('python'))}, {machine.get('threads')} thread(s); {_e(report.created)}; "
        f"edgeport {_e(report.edgeport_version)}, report schema {report.schema_version}.</p>"
        + (f'<p class="muted" id="noise">{_e(noise)}.</p>' if (noise := noise_line(report)) else "")
    )


# ---- plots -------------------------------------------------------------------------------------------------


class _Plotter:
    """Draws figures as inline SVG; with no matplotlib, every figure is an empty string and `missing` says why."""

    def __init__(self, pyplot, missing: str):
        self._plt = pyplot
        self.missing = missing
        self._count = 0

    @classmethod
    def create(cls) -> _Plotter:
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            from matplotlib import pyplot
        except ImportError:
            return cls(None, NO_PLOTS)
        return cls(pyplot, "")

    def figure(self, draw) -> str:
        if self._plt is None:
            return ""
        self._count += 1
        plt = self._plt
        try:
            with plt.rc_context(
                {
                    "svg.fonttype": "none",
                    "svg.hashsalt": f"edgeport-fig{self._count}",
                    "font.size": 9,
                    "axes.spines.top": False,
                    "axes.spines.right": False,
                }
            ):
                fig = draw(plt)
                buffer = io.StringIO()
                fig.savefig(buffer, format="svg", bbox_inches="tight")
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the run its report
            return f'<p class="note">plot not drawn: {_e(type(exc).__name__)}: {_e(exc)}</p>'
        finally:
            plt.close("all")
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: the SVG is inline
        return f'<div class="plot">{_unique_ids(svg, self._count)}</div>'


def _unique_ids(svg: str, number: int) -> str:
    """Prefix every id (and reference to it) so several inline SVGs never share one."""
    prefix = f"f{number}-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}{m.group(1)}"', svg)


def _latency_series(report: Report, targets: Sequence[TargetResult]) -> list[tuple[str, tuple[float, ...]]]:
    series = [("savedmodel (tensorflow)", _positive(report.baseline))] if report.baseline else []
    series += [(t.name, _positive(t.latency)) for t in targets if t.latency is not None]
    return [(name, runs) for name, runs in series if runs]


def _positive(stats: LatencyStats | None) -> tuple[float, ...]:
    return tuple(v for v in (stats.run_ms if stats else ()) if v > 0 and math.isfinite(v))


def _latency_figure(plt, series: list[tuple[str, tuple[float, ...]]]):
    """Violins of log10(run ms) with a box (p25-p75) and the median, one row per series, baseline on top."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    names = [name for name, _ in series][::-1]
    data = [np.log10(np.asarray(runs)) for _, runs in series][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(series) + 1.1))
    positions = list(range(1, len(series) + 1))
    horizontal = _horizontal(ax)
    spread = [(d, p, n) for d, p, n in zip(data, positions, names, strict=False) if d.size > 1 and np.ptp(d) > 0]
    if spread:  # a violin needs a spread to estimate a density from
        violins = ax.violinplot(
            [d for d, _, _ in spread], positions=[p for _, p, _ in spread], showextrema=False, widths=0.8, **horizontal
        )
        for body, name in zip(violins["bodies"], [n for _, _, n in spread], strict=False):
            body.set_facecolor("#9aa5b1" if name.startswith("savedmodel") else "#3d6fb6")
            body.set_alpha(0.55)
    ax.boxplot(
        data,
        positions=positions,
        widths=0.22,
        **horizontal,
        showfliers=False,
        whis=(1, 99),
        patch_artist=True,
        boxprops={"facecolor": "#1d2330"},
        medianprops={"color": "white", "linewidth": 1.5},
    )
    ax.set_yticks(positions, names)
    low, high = min(float(d.min()) for d in data), max(float(d.max()) for d in data)
    ax.set_xticks(_log_ticks(low, high))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10**v:g}"))
    ax.set_xlabel("latency per inference, ms (log scale; whiskers p1-p99)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _horizontal(ax) -> dict:
    """Horizontal violins and boxes: `orientation=` since matplotlib 3.10, `vert=False` before."""
    import inspect

    if "orientation" in inspect.signature(ax.boxplot).parameters:
        return {"orientation": "horizontal"}
    return {"vert": False}


def _log_ticks(low: float, high: float) -> list[float]:
    """log10 positions of 1-2-5 steps covering [low, high] (log10 values), at most about ten of them."""
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [math.log10(m * 10.0**k) for k in range(math.floor(low) - 1, math.ceil(high) + 1) for m in steps]
        inside = [t for t in ticks if low - 0.05 <= t <= high + 0.05]
        if len(inside) <= 10:
            return inside
    return inside


def _error_figure(plt, output: OutputMetrics):
    import numpy as np

    edges, counts = (np.asarray(v, dtype=float) for v in output.abs_error_histogram)
    fig, ax = plt.subplots(figsize=(8, 2.4))
    if counts.size and counts.sum() > 0:
        ax.bar(
            edges[:-1], counts, width=np.diff(edges), align="edge", color="#3d6fb6", edgecolor="white", linewidth=0.4
        )
        ax.set_yscale("symlog", linthresh=1)
    ax.axvline(output.mean_abs_error, color="#b3261e", linewidth=1, label=f"mean {output.mean_abs_error:.3g}")
    ax.legend(frameon=False, loc="upper right")
    ax.set_xlabel("|artifact - SavedModel| per output value")
    ax.set_ylabel("values (symlog)")
    return fig


# ---- formatting --------------------------------------------------------------------------------------------


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _anchor(name: str) -> str:
    return "target-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "∞" if value > 0 else ("-∞" if value < 0 else "nan")
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return wording.percent(value)
