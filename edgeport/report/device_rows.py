"""What the report says of the devices: one row per (target, device), the device's accuracy against the same
SavedModel reference and its latency beside the host's; summary.md lines and report.html's section.

A row's status: passed | failed (missed an accuracy gate, the runner failed, the device could not be reached) |
skipped (the runtime is not on that device, or the target was not converted). A failed row makes the run's
exit code 1 (a gate); the other targets and devices go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from edgeport.checks.accuracy import AccuracyResult
from edgeport.checks.latency import LatencyStats
from edgeport.report import wording


@dataclass(frozen=True)
class DeviceRow:
    target: str
    device: str  # the device's name ([device.NAME] or host[:port])
    status: str  # passed | failed | skipped
    reason: str = ""
    runtime: str = ""
    runtime_version: str | None = None
    accuracy: AccuracyResult | None = None
    latency: LatencyStats | None = None  # statistics computed on the host from the device's raw times
    host_p50_ms: float | None = None  # the same artifact's p50 on the host, when it was benchmarked
    facts: Mapping[str, Any] = field(default_factory=dict)  # arch, cpu, cores, memory, OS, runtime versions
    seconds: float = 0.0


def device_label(facts: Mapping[str, Any]) -> str:
    """ "aarch64, Cortex-A76 (4 cores), 7.9 GB, Debian GNU/Linux 12"."""
    if not facts:
        return "–"
    parts = [str(facts.get("arch") or "?"), f"{facts.get('cpu') or '?'} ({facts.get('cores') or '?'} cores)"]
    if facts.get("memory_bytes"):
        parts.append(wording.size(facts["memory_bytes"]))
    if facts.get("os"):
        parts.append(str(facts["os"]))
    return ", ".join(parts)


def worst_cosine(row: DeviceRow) -> float | None:
    if row.accuracy is None or not row.accuracy.outputs:
        return None
    return min(o.cosine for o in row.accuracy.outputs)


def status_cell(row: DeviceRow) -> str:
    mark = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}.get(row.status, row.status)
    return f"{mark}: {row.reason}" if row.reason and row.status != "passed" else mark


def cells(row: DeviceRow) -> list[str]:
    """target, device, status, accuracy, p50, p90, peak RSS, against the host."""
    cosine = worst_cosine(row)
    lat = row.latency
    return [
        row.target,
        row.device,
        status_cell(row),
        f"cos {cosine:.6f}" if cosine is not None else wording.MISSING,
        wording.latency_interval(lat.p50_ms, lat.interval("p50_ms")) if lat else wording.MISSING,
        wording.latency_interval(lat.p90_ms, lat.interval("p90_ms")) if lat else wording.MISSING,
        wording.size(lat.peak_rss_mb * 2**20) if lat else wording.MISSING,
        wording.ratio(lat.p50_ms, row.host_p50_ms, than="the host") if lat and row.host_p50_ms else wording.MISSING,
    ]


HEADERS = ("target", "device", "check + bench", "accuracy (worst output)", "p50", "p90", "peak RSS", "p50 vs host")


def devices_of(rows: Sequence[DeviceRow]) -> dict[str, Mapping[str, Any]]:
    """Each device once, with the facts its runner said (empty when it could not be reached)."""
    found: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row.facts or row.device not in found:
            found[row.device] = row.facts
    return found


def summary_lines(rows: Sequence[DeviceRow]) -> list[str]:
    """summary.md's section "On the device"."""
    if not rows:
        return []
    lines = ["", "**On the device**", ""]
    lines += [f"- {name}: {device_label(facts)}" for name, facts in devices_of(rows).items()]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |" for row in rows]
    return lines


def html_section(rows: Sequence[DeviceRow]) -> str:
    """report.html's section "On the device"."""
    if not rows:
        return ""
    facts = "".join(
        f"<li><b>{escape(name)}</b>: {escape(device_label(said))}</li>" for name, said in devices_of(rows).items()
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    body = "".join(
        f'<tr class="{escape(row.status)}">' + "".join(f"<td>{escape(cell)}</td>" for cell in cells(row)) + "</tr>"
        for row in rows
    )
    return (
        '<h2 id="devices">On the device</h2><p class="muted">Each artifact checked against the same SavedModel '
        "reference and benchmarked on the device, over ssh; statistics computed here from its raw times.</p>"
        f'<ul class="devices">{facts}</ul><table class="devices"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
