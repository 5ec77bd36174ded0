"""What both TF.js runtimes share: finding programs, backend choice, the artifact check, raw timings."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from edgeport.contracts import RawTimings, RuntimeSettings
from edgeport.errors import RuntimeFailure, UsageError

PROJECT_DIR = Path(__file__).resolve().parent  # runner.js, page.html, page.js, protocol.js


@cache
def program_version(program: str) -> str:
    """`program --version`, first line of stdout ("" if it does not answer)."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else ""


def pick_backend(
    settings: RuntimeSettings, choices: tuple[str, ...], runtime: str, artifact: Path | None = None
) -> str:
    """settings.backend, lower-cased; None means the first choice (wasm), or cpu for a model whose weights
    tfjs-backend-wasm does not compute right (edgeport.formats.tfjs.heap)."""
    from edgeport.formats.tfjs.heap import past_wasm, weight_bytes

    default = choices[0]
    if settings.backend is None and artifact is not None and "cpu" in choices and past_wasm(weight_bytes(artifact)):
        default = "cpu"
    backend = (settings.backend or default).strip().lower()
    if backend not in choices:
        raise UsageError(f"runtime {runtime} has no backend {settings.backend!r}; use one of {', '.join(choices)}")
    return backend


def check_artifact(artifact: Path) -> Path:
    artifact = Path(artifact).resolve()
    if not artifact.is_file():
        raise RuntimeFailure(f"TF.js model {artifact} not found; convert the model with the tfjs target first")
    return artifact


def missing_program(env_var: str, program: str) -> str:
    """Why a program was not found: the override that points nowhere, or nothing on PATH."""
    override = os.environ.get(env_var)
    if override:
        return f"{env_var}={override} is not an executable file"
    return f"{program} is not on PATH (or set {env_var})"


def describe_engine(report: Mapping[str, Any], requested_threads: int, host: str) -> str:
    """e.g. "tfjs 4.22.0 wasm (SIMD, 1 thread; 4 requested) on Node v20.20.2"."""
    used = int(report.get("threads", 1))
    if report.get("backend") == "wasm":
        threads = f"{used} thread{'s' if used != 1 else ''}"
        simd = ("SIMD" if report.get("simd") else "no SIMD") + (", threaded build" if report.get("threaded") else "")
        details = f" ({simd}, {threads}{'' if used == requested_threads else f'; {requested_threads} requested'})"
    else:
        details = "" if requested_threads == 1 else f" (one JS thread; {requested_threads} requested)"
    return f"tfjs {report.get('tfjs', '?')} {report.get('backend', '?')}{details} on {host}"


def raw_timings(
    report: Mapping[str, Any], *, peak_rss_bytes: int, version: str, notes: tuple[str, ...] = ()
) -> RawTimings:
    timings = report["timings"]
    return RawTimings(
        load_ms=float(report["load_ms"]),
        first_inference_ms=float(timings["first_inference_ms"]),
        warmup_runs=int(timings["warmup_runs"]),
        run_ms=tuple(float(t) for t in timings["run_ms"]),
        peak_rss_bytes=int(peak_rss_bytes),
        runtime_version=version,
        notes=notes,
        downloaded_bytes=report.get("downloaded_bytes"),
    )
