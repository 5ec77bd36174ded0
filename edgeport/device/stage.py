"""The devices stage, after bench: every checked target whose runtime the device has is checked against the
SavedModel reference the run already computed (on the host, once) and benchmarked on each device, over ssh.

A device is visited once: log in, make its per-run folder, copy the runner, read its facts; then each target in
turn (artifact and samples copied, the runner's check then its benchmark, each a fresh process within the
run's check and bench limits); then the folder removed and the ssh master closed. A device that cannot be
reached is said once (a warning) and fails its rows; a target that fails there fails its row only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.checks.latency import summarize
from edgeport.data import Event, RawTimings, SampleSet
from edgeport.device.config import Device
from edgeport.device.remote import RemoteRun, TargetFiles
from edgeport.device.runner import DISTRIBUTIONS, RUNTIMES, read_result
from edgeport.device.ssh import DeviceUnreachable, RemoteFailed
from edgeport.errors import EdgeportError, ExitCode
from edgeport.report.device_rows import DeviceRow
from edgeport.report.files import Report, TargetResult
from edgeport.run.judge import Judged
from edgeport.run.output_folder import artifact_files
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.reference import Reference
from edgeport.run.request import RunRequest

STAGE = "device"


def run_on_devices(
    request: RunRequest,
    plans: Sequence[TargetPlan],
    judged: Mapping[str, Judged],
    references: tuple[Reference, ...],
    samples: SampleSet,
    host_p50: Mapping[str, float | None],
    logs: Path,
    progress: Progress,
) -> tuple[tuple[DeviceRow, ...], tuple[str, ...]]:
    """(one row per target and device, the warnings to say once: each device that could not be used)."""
    rows: list[DeviceRow] = []
    warnings: list[str] = []
    for device in request.devices:
        device_rows, warning = _on_device(request, device, plans, judged, references, samples, host_p50, logs, progress)
        rows += device_rows
        warnings += [warning] if warning else []
    return tuple(rows), tuple(warnings)


def host_p50(results: Sequence[TargetResult]) -> dict[str, float | None]:
    """Each target's p50 on the host, for the device rows' comparison."""
    return {t.name: t.latency.p50_ms if t.latency else None for t in results}


def with_device_rows(report: Report, rows: tuple[DeviceRow, ...], warnings: tuple[str, ...]) -> Report:
    """The report with its device rows; a failed row makes the exit code at least 1 (a gate)."""
    code = report.exit_code
    if any(row.status == "failed" for row in rows):
        code = max(code, int(ExitCode.GATE_FAILED))
    return dataclasses.replace(report, devices=rows, warnings=(*report.warnings, *warnings), exit_code=code)


def _on_device(request, device, plans, judged, references, samples, host_p50, logs, progress):
    wanted = [(plan, judged[plan.name], _why_not(request, plan, judged[plan.name], samples)) for plan in plans]
    rows: list[DeviceRow] = []
    if all(why for _, _, why in wanted):  # nothing to run there: no login at all
        return [_row(plan, device, "skipped", why) for plan, _, why in wanted], None
    progress(Event(device.name, STAGE, "started", device.destination))
    limit = min(request.timeouts.check, 120.0)
    remote = RemoteRun(device)
    try:
        try:
            remote.start(limit)
        except (DeviceUnreachable, RemoteFailed) as exc:
            progress(Event(device.name, STAGE, "failed", exc.message))
            reason = "device not reachable" if isinstance(exc, DeviceUnreachable) else "device not usable"
            rows = [
                _row(plan, device, "skipped" if why else "failed", why or f"{reason} (see the warnings)")
                for plan, _, why in wanted
            ]
            return rows, exc.message
        progress(Event(device.name, STAGE, "passed", _said(remote.facts)))
        for plan, target, why in wanted:
            missing = why or _runtime_missing(plan, device, remote.facts)
            if missing:
                rows.append(_row(plan, device, "skipped", missing, remote.facts))
                continue
            rows.append(_target(request, device, remote, plan, target, references, samples, host_p50, logs, progress))
    finally:
        remote.close()
    return rows, None


def _why_not(request: RunRequest, plan: TargetPlan, judged: Judged, samples: SampleSet) -> str:
    """Why this target is not run on any device ("" when it is)."""
    if judged.artifact is None or judged.checked is None:
        return "not converted"
    if plan.runtime.name not in RUNTIMES:
        return f"not on this device: {plan.runtime.name} is not a Python runtime (devices run {', '.join(RUNTIMES)})"
    if judged.artifact.not_checkable:
        return f"not checkable: {judged.artifact.not_checkable}"
    if not (request.check or request.bench):
        return "--no-check and --no-bench"
    if any(np.asarray(array).dtype == object for array in samples.arrays.values()):
        return "string inputs are not sent to a device"
    return ""


def _runtime_missing(plan: TargetPlan, device: Device, facts: Mapping[str, Any]) -> str:
    said = facts.get("runtimes", {}).get(plan.runtime.name, {})
    if said.get("version"):
        return ""
    return (
        f"not on this device: its python cannot import {RUNTIMES[plan.runtime.name]} ({said.get('error', '?')}); "
        f"to run it there: {device.python} -m pip install {DISTRIBUTIONS[plan.runtime.name]}"
    )


def _target(request, device, remote, plan, judged, references, samples, host_p50, logs, progress) -> DeviceRow:
    name = f"{plan.name} on {device.name}"
    artifact = judged.artifact
    folder = request.out / plan.slug
    progress(Event(name, STAGE, "started"))
    start = time.perf_counter()
    check = request.check and bool(references)
    files: dict[str, Path | bytes] = {f"artifact/{p.relative_to(folder)}": p for p in artifact_files(folder)}
    if check:
        files["samples.npz"] = _npz(references[0].samples)
    bench_same = check and references[0].samples is samples
    if request.bench and not bench_same:
        files["bench-samples.npz"] = _npz(samples)
    limits = {"check": request.timeouts.check} if check else {}
    if request.bench:
        limits["bench"] = request.timeouts.bench
    order = {
        "runtime": plan.runtime.name,
        "artifact": f"artifact/{artifact.main_file}",
        "threads": device.threads or plan.settings.threads,
        "samples": "samples.npz",
        "bench_samples": "samples.npz" if bench_same else "bench-samples.npz",
        "protocol": dataclasses.asdict(request.protocol),
    }
    try:
        result = remote.run_target(plan.slug, files, order, limits)
    except EdgeportError as exc:
        progress(Event(name, STAGE, "failed", exc.message))
        return _row(plan, device, "failed", exc.message, remote.facts, seconds=time.perf_counter() - start)
    _keep_logs(result, logs / f"{plan.slug}--{device.name}.log")
    failures, version, accuracy, latency = [], None, None, None
    if check:
        header, outputs = _result(result, "check", limits)
        if "failure" in header:
            failures.append(f"check: {header['failure']}")
        else:
            version = header.get("runtime_version")
            tolerance = default_tolerance(artifact.precision).replace(**plan.config.tolerance)
            accuracy = compare(references[0].outputs, outputs, tolerance, artifact.output_permutations)
            failures += list(accuracy.failures)
    if request.bench:
        header, _ = _result(result, "bench", limits)
        if "failure" in header:
            failures.append(f"bench: {header['failure']}")
        else:
            version = version or header.get("runtime_version")
            raw = RawTimings(
                load_ms=float(header["load_ms"]),
                first_inference_ms=float(header["first_inference_ms"]),
                warmup_runs=int(header["warmup_runs"]),
                run_ms=tuple(float(t) for t in header["run_ms"]),
                peak_rss_bytes=int(header["peak_rss_bytes"]),
                runtime_version=str(header.get("runtime_version", "")),
            )
            try:
                latency = summarize(raw, request.protocol)
                latency = dataclasses.replace(latency, cpu=_said(remote.facts))
            except EdgeportError as exc:
                failures.append(f"bench: {exc.message}")
    status = "failed" if failures else "passed"
    reason = "; ".join(failures)
    progress(Event(name, STAGE, status, reason))
    return DeviceRow(
        target=plan.name,
        device=device.name,
        status=status,
        reason=reason,
        runtime=plan.runtime.name,
        runtime_version=version,
        accuracy=accuracy,
        latency=latency,
        host_p50_ms=host_p50.get(plan.name),
        facts=remote.facts,
        seconds=round(time.perf_counter() - start, 3),
    )


def _result(result: TargetFiles, mode: str, limits: Mapping[str, float]) -> tuple[dict[str, Any], list]:
    """The runner's header and outputs for `mode`, or a header with the failure when it left no result."""
    data = result.files.get(f"{mode}.npz")
    rc, seconds = result.rc(mode)
    if data is not None:
        try:
            return read_result(data)
        except (ValueError, OSError, KeyError) as exc:
            return {"failure": f"its result could not be read ({exc})"}, []
    if rc in (124, 137) and seconds is not None and seconds >= limits[mode] - 1:  # `timeout` stopped it
        return {"failure": f"ran past the {mode} time limit ({limits[mode]:.0f} s) on the device"}, []
    tail = result.log_tail(mode)
    said = f"the runner exited with {rc if rc is not None else '?'}"
    if rc is not None and rc > 128:
        said += f" (killed by signal {rc - 128}{', out of memory?' if rc == 137 else ''})"
    return {"failure": said + (f": {tail}" if tail else "")}, []


def _npz(samples: SampleSet) -> bytes:
    import io

    buffer = io.BytesIO()
    arrays: dict[str, Any] = {name: np.asarray(array) for name, array in samples.arrays.items()}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _keep_logs(result: TargetFiles, path: Path) -> None:
    texts = [
        f"== {name} ==\n{result.files[name].decode('utf-8', errors='replace')}"
        for name in ("check.log", "bench.log")
        if name in result.files
    ]
    if texts:
        path.write_text("\n".join(texts), encoding="utf-8")


def _said(facts: Mapping[str, Any]) -> str:
    if not facts:
        return ""
    return f"{facts.get('arch')}, {facts.get('cpu')} ({facts.get('cores')} cores)"


def _row(plan: TargetPlan, device: Device, status: str, reason: str, facts=None, seconds: float = 0.0) -> DeviceRow:
    return DeviceRow(
        target=plan.name,
        device=device.name,
        status=status,
        reason=reason,
        runtime=plan.runtime.name,
        facts=facts or {},
        seconds=round(seconds, 3),
    )
