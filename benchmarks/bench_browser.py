"""The three browser runtimes side by side, beside the host runtimes, on two models (issue 26).

`.venv/bin/python benchmarks/bench_browser.py [--models mobilenetv2,lstm_text] [--keep DIR]` builds two models
locally (nothing downloaded) and runs, one after another, the real CLI twice per model:

    edgeport convert MODEL -t tfjs@tfjs-browser -t tflite@litertjs-browser -t onnx@ort-web \
        -t tflite -t onnx -t tfjs --no-history -o OUT/wasm           # browser wasm + host litert/onnxruntime/tfjs-node
    edgeport convert MODEL -t tflite@litertjs-browser -t onnx@ort-web --backend webgpu --no-baseline \
        --no-history -o OUT/webgpu                                   # WebGPU (SwiftShader on a GPU-less machine)

(`--backend` applies to the whole run, so WebGPU is a second run; TF.js in the browser has no webgpu backend in
edgeport: wasm, webgl, cpu.) It then prints a Markdown table read from each report.json: accuracy against the
SavedModel (worst cosine, top-1 agreement), p50 with its 95 % interval, load time, and whether the target ran
(a failed or unavailable target keeps its row with the reason).

- mobilenetv2: MobileNetV2 alpha 0.35 at 96x96x3, 1000 classes, logits, random weights with BatchNorm statistics
  from one pass over random images (bench_npu.py's build, shared cache);
- lstm_text: model_zoo's text classifier, Embedding(1000, 32) + LSTM(64) + Dense(5) over int32 token ids [1, 64]
  (`--input-range ids=0:1000`); int32, because LiteRT.js takes float32/int32/uint8 tensors only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_npu import build as build_npu_model

from common import timed_process
from model_zoo import export, zoo_model

BROWSER = ("tfjs@tfjs-browser", "tflite@litertjs-browser", "onnx@ort-web")
HOST = ("tflite", "onnx", "tfjs")
WEBGPU = ("tflite@litertjs-browser", "onnx@ort-web")
MODELS = {
    "mobilenetv2": ("MobileNetV2 0.35, 96x96x3 (random)", lambda: build_npu_model("mobilenetv2"), ()),
    "lstm_text": (
        "LSTM text, int32 ids [1, 64]",
        lambda: export(zoo_model("lstm_text")),
        ("--input-range", "ids=0:1000"),
    ),
}
RUNS = {
    "wasm": (BROWSER + HOST, ()),
    "webgpu": (WEBGPU, ("--backend", "webgpu", "--no-baseline")),
}


def command(model: Path, targets: tuple[str, ...], extra: tuple[str, ...], out: Path) -> list[str]:
    args = [sys.executable, "-m", "edgeport", "convert", str(model)]
    for target in targets:
        args += ["-t", target]
    return [*args, *extra, "--no-history", "-o", str(out)]


def run(args: list[str], out: Path) -> tuple[float, int, dict | None, str]:
    """(seconds, exit code, report.json or None, the end of the output) of one `edgeport convert`."""
    seconds, result = timed_process(args)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return seconds, result.returncode, report, (result.stderr or result.stdout).strip()[-1500:]


def _reason(text: str) -> str:
    """One line of a stage's reason for a table cell: no terminal colours, no pipes, at most 240 characters."""
    line = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).splitlines()[0] if text else ""
    line = re.sub(r" on \S+/model\.\w+:", ":", line)  # the artifact's path: the row names the target
    return line.replace("|", "/")[:240]


def _ran(target: dict) -> str:
    bad = [s for s in target.get("stages", []) if s.get("status") not in ("passed", "skipped")]
    if not bad:
        return "yes"
    return "; ".join(f"**{s['stage']} {s['status']}**: {_reason(s.get('reason', ''))}" for s in bad)


def _accuracy(target: dict) -> tuple[str, str]:
    outputs = (target.get("accuracy") or {}).get("outputs") or []
    if not outputs:
        return "-", "-"
    cosine = min(o["cosine"] for o in outputs if o.get("cosine") is not None)
    top1 = [o["top1_agreement"] for o in outputs if o.get("top1_agreement") is not None]
    return f"{cosine:.7f}", (f"{100 * min(top1):.1f} %" if top1 else "-")


def _latency(target: dict) -> tuple[str, str]:
    latency = target.get("latency") or {}
    if latency.get("p50_ms") is None:
        return "-", "-"
    ci = latency.get("p50_ci_ms")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    load = latency.get("load_ms")
    return f"{latency['p50_ms']:.3f}{interval}", (f"{load:.0f}" if load is not None else "-")


def _engine(target: dict) -> str:
    version = (target.get("latency") or {}).get("runtime_version") or target.get("runtime") or ""
    return version.split(" on ")[0]


def _sha(out: Path, target: dict) -> str:
    artifact = target.get("artifact")
    if not artifact or not (out / artifact).is_file():
        return ""
    return hashlib.sha256((out / artifact).read_bytes()).hexdigest()[:8]


def rows(title: str, backend: str, report: dict | None, out: Path, error: str) -> list[str]:
    if report is None:
        reason = error.splitlines()[-1] if error else "?"
        return [f"| {title} | all | {backend} | failed, no report.json: {reason} | - | - | - | - | - | - |"]
    lines = []
    for target in report.get("targets", []):
        where = "browser" if "@" in target["name"] else "host"
        cosine, top1 = _accuracy(target)
        p50, load = _latency(target)
        run_backend = backend if where == "browser" else "-"
        lines.append(
            f"| {title} | `{target['name']}` ({where}) | {run_backend} | {_engine(target)} | {_ran(target)} | "
            f"{cosine} | {top1} | {p50} | {load} | {target.get('size_bytes', 0) / 1024:.0f} KB, {_sha(out, target)} |"
        )
    baseline = report.get("baseline") or {}
    if baseline.get("p50_ms") is not None:
        ci = baseline.get("p50_ci_ms")
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        lines.append(
            f"| {title} | SavedModel (host) | - | {baseline.get('runtime_version', 'tensorflow')} | yes | reference | "
            f"reference | {baseline['p50_ms']:.3f}{interval} | - | - |"
        )
    return lines


HEADER = (
    "| model | target (where) | backend | engine | ran | cosine (worst) | top-1 agreement | p50 ms [95 % interval] "
    "| load ms | artifact (size, sha256) |\n|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma separated: " + ", ".join(MODELS))
    parser.add_argument("--keep", type=Path, help="keep each run's output folder here")
    options = parser.parse_args()
    start = time.perf_counter()
    root = options.keep or Path(tempfile.mkdtemp(prefix="edgeport_bench_browser_"))
    print(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    table = [HEADER]
    chromium = set()
    for name in options.models.split(","):
        title, builder, extra_args = MODELS[name]
        model = builder()
        for backend, (targets, extra) in RUNS.items():
            out = root / name / backend
            args = command(model, targets, (*extra_args, *extra), out)
            print("$", " ".join(args[1:]).replace(str(model), f"<{name}>"), flush=True)
            seconds, code, report, error = run(args, out)
            print(f"  {seconds:.1f} s, exit {code}", flush=True)
            table += rows(title, backend, report, out, error)
            for target in (report or {}).get("targets", []):
                version = (target.get("latency") or {}).get("runtime_version") or ""
                if " on Chromium" in version:
                    chromium.add(version.split(" on ")[-1])
    print()
    print("\n".join(table))
    print(f"\nbrowser: {', '.join(sorted(chromium)) or '?'}; outputs in {root}")
    print(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
