"""The fleet's own files, beside each model's OUT/<model>/ reports: fleet.json, fleet.html, junit.xml, summary.md.

fleet.json (`schema_version` 1): `schema_version`, `edgeport_version`, `created` (UTC ISO), `manifest`, `output`,
`address` (`embedded` or the Ray address), `wall_seconds`, `exit_code` (the highest of the models'; 4 when a
model's task was lost on every attempt), `nodes` [{id, ip, hostname, cpu}], and `models` [{name, path, node
{id, ip, hostname, cpu} or null, exit_code, verdicts {target: passed|failed|error}, wall_seconds, reused,
attempts, error, infrastructure_failure, report (OUT-relative report.json, or null), targets [{target, verdict,
size_bytes, worst_cosine, top1_agreement, p50_ms, p90_ms}]}].
"""

from __future__ import annotations

import html
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edgeport.fleet.driver import FleetResult, ModelRecord
from edgeport.fleet.manifest import FleetManifest
from edgeport.report import wording
from edgeport.report.files import atomic_write, jsonable
from edgeport.report.history import summary_rows
from edgeport.run.output_folder import claim_folder, edgeport_names

SCHEMA_VERSION = 1
VERDICT = {0: "passed", 1: "FAILED (a gate)", 2: "usage error", 3: "FAILED (load/conversion)", 4: "infrastructure"}
FLEET_FILES = ("fleet.json", "fleet.html", "junit.xml", "summary.md")  # what write_outputs writes into OUT


def claim_outputs(fleet: FleetManifest, out: Path) -> None:
    """Before any model runs: OUT and every OUT/<model> must be new, empty or edgeport's, and nothing edgeport
    writes there may be taken by the user's files (run/output_folder; UsageError, exit 2, if so)."""
    from edgeport.fleet.resume import STAMP
    from edgeport.fleet.tasks import ATTEMPTS

    claim_folder(out, FLEET_FILES, folders=[model.name for model in fleet.models])
    for model in fleet.models:
        slugs = [target.spec.slug for target in model.request.targets]
        claim_folder(model.request.out, {*edgeport_names(slugs), STAMP, ATTEMPTS}, slugs=slugs)


def write_outputs(result: FleetResult) -> dict[str, Path]:
    out = result.out
    data = fleet_dict(result)
    written = {
        "json": out / "fleet.json",
        "html": out / "fleet.html",
        "junit": out / "junit.xml",
        "summary": out / "summary.md",
    }
    atomic_write(written["json"], json.dumps(data, indent=2) + "\n")
    atomic_write(written["html"], fleet_html(data))
    atomic_write(written["junit"], fleet_junit(result))
    atomic_write(written["summary"], fleet_summary(data))
    return written


def fleet_dict(result: FleetResult) -> dict[str, Any]:
    from edgeport.fleet.resume import versions

    return jsonable(
        {
            "schema_version": SCHEMA_VERSION,
            "edgeport_version": versions()["edgeport"],
            "created": result.created,
            "manifest": str(result.manifest),
            "output": str(result.out),
            "address": result.address,
            "wall_seconds": round(result.seconds, 2),
            "exit_code": result.exit_code,
            "nodes": [_node(n) for n in result.nodes],
            "models": [_model(r) for r in result.records],
        }
    )


def _node(node) -> dict[str, Any] | None:
    if node is None:
        return None
    return {"id": node.id, "ip": node.ip, "hostname": node.hostname, "cpu": node.cpu}


def _model(record: ModelRecord) -> dict[str, Any]:
    report = record.report or {}
    return {
        "name": record.name,
        "path": record.path,
        "node": _node(record.node),
        "exit_code": record.exit_code,
        "verdicts": dict(report.get("verdicts", {})),
        "wall_seconds": round(record.seconds, 2),
        "reused": record.reused,
        "attempts": record.attempts,
        "error": record.error,
        "infrastructure_failure": record.infrastructure_failure,
        "report": f"{record.name}/report.json" if record.report is not None else None,
        "targets": summary_rows(report) if report else [],
    }


# ---- junit.xml: one test suite per model -------------------------------------------------------------------


def fleet_junit(result: FleetResult) -> str:
    root = ET.Element("testsuites")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for record in result.records:
        suite = _model_suite(result.out, record)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _model_suite(out: Path, record: ModelRecord) -> ET.Element:
    """The model's own junit.xml suite (written by its run), renamed to the model; an error case if it has none."""
    if record.report is not None:
        try:
            suite = ET.parse(out / record.name / "junit.xml").getroot().find("testsuite")
        except (OSError, ET.ParseError):
            suite = None
        if suite is not None:
            suite.set("name", record.name)
            for case in suite.iter("testcase"):
                case.set("classname", f"{record.name}.{case.get('classname', '').removeprefix('edgeport.')}")
            return suite
    suite = ET.Element("testsuite", name=record.name, tests="1", failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname=record.name, name="run", time=f"{record.seconds:.3f}")
    what = "infrastructure failure" if record.infrastructure_failure else "model failed before its report"
    ET.SubElement(case, "error", message=record.error or what).text = record.error or what
    return suite


# ---- summary.md ------------------------------------------------------------------------------------------


def fleet_summary(data: dict[str, Any]) -> str:
    targets = _targets(data)
    models = data["models"]
    failed = sum(1 for m in models if m["exit_code"])
    lines = [
        f"# edgeport fleet: {VERDICT.get(data['exit_code'], data['exit_code'])}",
        "",
        f"{len(models)} models ({sum(m['reused'] for m in models)} reused, {failed} not passed) on "
        f"{len(data['nodes'])} node(s), {wording.duration(data['wall_seconds'])} wall; Ray: {data['address']}.",
        "",
        "| model | node | exit | wall | " + " | ".join(targets) + " |",
        "|---|---|---|---|" + "---|" * len(targets),
    ]
    for m in models:
        rows = {row["target"]: row for row in m["targets"]}
        cells = [_summary_cell(rows.get(t)) for t in targets]
        node = _node_label(m["node"])
        wall = "reused" if m["reused"] else wording.duration(m["wall_seconds"])
        lines.append(f"| {m['name']} | {node} | {m['exit_code']} | {wall} | " + " | ".join(cells) + " |")
    errors = [m for m in models if m["error"]]
    if errors:
        lines += ["", "**Errors**", ""] + [f"- {m['name']}: {m['error']}" for m in errors]
    return "\n".join(lines) + "\n"


def _summary_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    p50 = row.get("p50_ms")
    return f"{row['verdict']}" + (f", p50 {wording.latency_ms(p50)}" if isinstance(p50, (int, float)) else "")


def _targets(data: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(row["target"] for m in data["models"] for row in m["targets"]))


def _node_label(node: dict[str, Any] | None) -> str:
    return f"{node['ip']}/{node['id'][:8]}" if node else "–"


# ---- fleet.html ------------------------------------------------------------------------------------------

STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}th{background:#f3f3f3}
.passed{color:#176b2c}.failed,.error{color:#b00020}.small{color:#555;font-size:12px}svg{margin:1em 0}"""


def fleet_html(data: dict[str, Any]) -> str:
    targets = _targets(data)
    head = "".join(f"<th>{html.escape(t)}</th>" for t in targets)
    rows = []
    for m in data["models"]:
        cells = {row["target"]: row for row in m["targets"]}
        name = html.escape(m["name"])
        link = f'<a href="{name}/report.html">{name}</a>' if m["report"] else name
        extra = (
            " (reused)"
            if m["reused"]
            else (f"<br><span class=small>{html.escape(m['error'])}</span>" if m["error"] else "")
        )
        node = html.escape(_node_label(m["node"]))
        rows.append(
            f"<tr><td>{link}{extra}</td><td>{node}</td><td>{m['exit_code']}</td>"
            + "".join(_html_cell(cells.get(t)) for t in targets)
            + "</tr>"
        )
    plots = _plot(data, targets, "p50_ms", "p50 latency", wording.latency_ms) + _plot(
        data, targets, "size_bytes", "artifact size", wording.size
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>edgeport fleet</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>edgeport fleet: {html.escape(VERDICT.get(data['exit_code'], str(data['exit_code'])))}</h1>"
        f"<p>{len(data['models'])} models on {len(data['nodes'])} node(s), "
        f"{wording.duration(data['wall_seconds'])} wall, "
        f"Ray {html.escape(data['address'])}, {html.escape(data['created'])}.</p>"
        f"<table><tr><th>model</th><th>node</th><th>exit</th>{head}</tr>{''.join(rows)}</table>"
        f"{plots}</body></html>\n"
    )


def _html_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "<td>–</td>"
    verdict = html.escape(str(row["verdict"]))
    parts = [f'<span class="{verdict}">{verdict}</span>', wording.size(row.get("size_bytes"))]
    if isinstance(row.get("worst_cosine"), (int, float)):
        parts.append(f"cos {row['worst_cosine']:.6f}")
    if isinstance(row.get("p50_ms"), (int, float)):
        parts.append(f"p50 {wording.latency_ms(row['p50_ms'])}")
    return "<td>" + "<br>".join(parts) + "</td>"


def _plot(data: dict[str, Any], targets: list[str], key: str, title: str, label) -> str:
    """One inline SVG: per target a row, a dot per model at its value (log scale), the model named on hover."""
    points = [
        (t, m["name"], float(row[key]))
        for m in data["models"]
        for row in m["targets"]
        for t in [row["target"]]
        if isinstance(row.get(key), (int, float)) and row[key] > 0 and t in targets
    ]
    if not points:
        return ""
    low, high = math.log10(min(p[2] for p in points)), math.log10(max(p[2] for p in points))
    span = (high - low) or 1.0
    left, width, step = 140, 520, 26
    height = step * len(targets) + 40

    def x(value: float) -> float:
        return left + (math.log10(value) - low) / span * width

    out = [f'<h2>{html.escape(title)} per target</h2><svg width="{left + width + 90}" height="{height}">']
    for i, target in enumerate(targets):
        y = 20 + i * step
        out.append(f'<text x="0" y="{y + 4}" font-size="12">{html.escape(target)}</text>')
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        for t, model, value in points:
            if t == target:
                out.append(
                    f'<circle cx="{x(value):.1f}" cy="{y}" r="4" fill="#3d6fb6" fill-opacity="0.7">'
                    f"<title>{html.escape(model)}: {html.escape(label(value))}</title></circle>"
                )
    base = height - 8
    for value in (10**low, 10**high):
        out.append(
            f'<text x="{x(value):.1f}" y="{base}" font-size="11" text-anchor="middle">'
            f"{html.escape(label(value))}</text>"
        )
    out.append("</svg>")
    return "".join(out)
