"""The TF.js targets on the issue's model zoo (benchmarks/model_zoo.py), through the real `edgeport convert` CLI.

Per model, one invocation checks and benchmarks `tfjs@tfjs-node` and `tfjs@tfjs-browser` on the wasm
backend (plus `tfjs:uint8` on MobileNetV2, run by tfjs-node wasm), and for the image models a second one
runs `tfjs@tfjs-browser --backend webgl` into its own output folder. Synthetic inputs (`--samples 4`), a
short benchmark (`--min-runs 10 --min-seconds 0.5`), no run history. The numbers come from each run's
report.json. Prints a Markdown table (model, target, backend, worst cosine, top-1 agreement, p50, size).

Run:  .venv/bin/python benchmarks/showcase_tfjs.py [--out DIR] [--models mobilenet_v2,gru_varlen] [--json F]
About 10-15 minutes on 2 cores; needs node, `edgeport setup --target tfjs`, Chromium and playwright.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    from benchmarks.common import cpu_line, timed_process
    from benchmarks.model_zoo import ZOO, ZooModel, export
except ModuleNotFoundError:  # run as a script
    from common import cpu_line, timed_process
    from model_zoo import ZOO, ZooModel, export

EDGEPORT = Path(sys.executable).with_name("edgeport")
BENCH_FLAGS = ("--samples", "4", "--min-runs", "10", "--min-seconds", "0.5", "--no-history", "--json")
# Random-weight logits have near-ties, so a quantized model's top-1 agreement says little: uint8 is gated on
# cosine and top-5 (top-1 is still reported), as in showcase_onnx.py and bench_tflite.py.
RANDOM_WEIGHT_GATES = '[target."tfjs:uint8"]\nmin_top1_agreement = 0.0\nmin_top5_agreement = 0.9\n'
UINT8_ON = ("mobilenet_v2",)


@dataclass(frozen=True)
class Invocation:
    label: str  # the output sub-folder
    targets: tuple[str, ...]
    backend: str
    baseline: bool


@dataclass(frozen=True)
class Row:
    model: str
    target: str
    backend: str
    verdict: str
    cosine: float | None
    top1: float | None
    p50_ms: float | None
    size_bytes: int | None
    runtime: str
    reason: str
    baseline_p50_ms: float | None
    seconds: float


def invocations(model: ZooModel) -> list[Invocation]:
    wasm_targets = ("tfjs@tfjs-node", "tfjs@tfjs-browser") + (("tfjs:uint8",) if model.name in UINT8_ON else ())
    runs = [Invocation("wasm", wasm_targets, "wasm", baseline=True)]
    if model.image:
        runs.append(Invocation("webgl", ("tfjs@tfjs-browser",), "webgl", baseline=False))
    return runs


def command(model: ZooModel, saved_model: Path, run: Invocation, out: Path, config: Path) -> list[str]:
    args = [
        str(EDGEPORT),
        "convert",
        str(saved_model),
        "-o",
        str(out),
        "--backend",
        run.backend,
        "--config",
        str(config),
        *BENCH_FLAGS,
    ]
    for target in run.targets:
        args += ["-t", target]
    for shape in model.input_shapes:
        args += ["--input-shape", shape]
    for value_range in model.input_ranges:
        args += ["--input-range", value_range]
    if not run.baseline:
        args.append("--no-baseline")
    return args


def rows_of(model: ZooModel, run: Invocation, report: dict, seconds: float) -> list[Row]:
    baseline = (report.get("baseline") or {}).get("p50_ms")
    rows = []
    for target in report["targets"]:
        outputs = (target.get("accuracy") or {}).get("outputs") or []
        cosines = [o["cosine"] for o in outputs if isinstance(o.get("cosine"), float)]
        top1 = [o["top1_agreement"] for o in outputs if o.get("top1_agreement") is not None]
        reasons = [f"{s['stage']}: {s['reason']}" for s in target["stages"] if s["status"] in ("failed", "error")]
        rows.append(
            Row(
                model=model.name,
                target=target["name"],
                backend=target.get("backend") or run.backend,
                verdict=report["verdicts"].get(target["name"], "?"),
                cosine=min(cosines) if cosines else None,
                top1=min(top1) if top1 else None,
                p50_ms=(target.get("latency") or {}).get("p50_ms"),
                size_bytes=target.get("size_bytes"),
                runtime=(target.get("latency") or {}).get("runtime_version")
                or target.get("runtime_version")
                or target["runtime"],
                reason="; ".join(reasons),
                baseline_p50_ms=baseline,
                seconds=seconds,
            )
        )
    return rows


def run_model(model: ZooModel, out_root: Path, config: Path) -> list[Row]:
    saved_model = export(model)
    rows = []
    for run in invocations(model):
        out = out_root / model.name / run.label
        seconds, done = timed_process(command(model, saved_model, run, out, config))
        report_path = out / "report.json"
        if not report_path.is_file():
            rows.append(
                Row(
                    model.name,
                    ",".join(run.targets),
                    run.backend,
                    f"exit {done.returncode}",
                    None,
                    None,
                    None,
                    None,
                    "",
                    (done.stderr.strip().splitlines() or ["no report"])[-1],
                    None,
                    seconds,
                )
            )
            continue
        rows.extend(rows_of(model, run, json.loads(report_path.read_text()), seconds))
        print(f"{model.name} [{run.label}]: exit {done.returncode} in {seconds:.0f} s", file=sys.stderr)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| model | target | backend | verdict | worst cosine | top-1 agreement | p50 ms | size | TF p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cosine = "–" if r.cosine is None else f"{r.cosine:.7f}"
        top1 = "–" if r.top1 is None else f"{r.top1:.0%}"
        p50 = "–" if r.p50_ms is None else f"{r.p50_ms:.2f}"
        size = "–" if r.size_bytes is None else human_size(r.size_bytes)
        base = "–" if r.baseline_p50_ms is None else f"{r.baseline_p50_ms:.2f}"
        verdict = r.verdict if not r.reason else f"{r.verdict}: {r.reason[:120]}"
        lines.append(
            f"| {r.model} | {r.target} | {r.backend} | {verdict} | {cosine} | {top1} | {p50} | {size} | {base} |"
        )
    return "\n".join(lines)


def human_size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} KB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("showcase-tfjs-out"), help="edgeport output folders")
    parser.add_argument("--models", default=",".join(m.name for m in ZOO), help="comma separated zoo names")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    chosen = [m for m in ZOO if m.name in args.models.split(",")]
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    config = args.out / "edgeport.toml"
    config.write_text(RANDOM_WEIGHT_GATES)
    rows = [row for model in chosen for row in run_model(model, args.out, config)]
    print(f"machine: {cpu_line()}; total {time.perf_counter() - started:.0f} s\n")
    print(markdown(rows))
    runtimes = sorted({r.runtime for r in rows if r.runtime})
    print("\nruntimes: " + "; ".join(runtimes))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0 if all(r.verdict == "passed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
