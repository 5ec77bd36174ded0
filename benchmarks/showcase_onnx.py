"""The ONNX targets on the issue's model zoo (benchmarks/model_zoo.py), through the real `edgeport convert` CLI.

Per model, one invocation checks and benchmarks `onnx` against the SavedModel (with the TensorFlow baseline);
on the image models (MobileNetV2, EfficientNetB0: random weights with BatchNorm statistics, logits out) the same
invocation adds `onnx:int8` (static QDQ, calibrated on the run's samples) and `onnx:fp16`. On MobileNetV2 a
second invocation runs `onnx --inputs-as-nchw <its input>` into its own output folder, to show the layout path
checks clean. Synthetic inputs (`--samples 4`), a short benchmark (`--min-runs 10 --min-seconds 0.5`), no run
history. The numbers come from each run's report.json. Prints a Markdown table (model, target, verdict, worst
cosine, SNR, top-1 and top-5 agreement, p50, size, SavedModel TF p50).

Random-weight logits have near-ties between classes, so a quantized model's top-1 agreement says little: the
reduced-precision targets are gated by a config table (min_top1_agreement = 0, min_top5_agreement = 0.9, as
benchmarks/bench_tflite.py does) on top of their default cosine/SNR tolerances; top-1 is still reported.

Run:  .venv/bin/python benchmarks/showcase_onnx.py [--out DIR] [--models mobilenet_v2,lstm_text] [--json F]
About 5 minutes on 2 cores; needs `pip install 'edgeport[onnx]'`.
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
    from benchmarks.model_zoo import ZooModel, export, zoo_model
except ModuleNotFoundError:  # run as a script
    from common import cpu_line, timed_process
    from model_zoo import ZooModel, export, zoo_model

EDGEPORT = Path(sys.executable).with_name("edgeport")
BENCH_FLAGS = ("--samples", "4", "--min-runs", "10", "--min-seconds", "0.5", "--no-history", "--json")
DEFAULT_MODELS = ("mobilenet_v2", "efficientnet_b0", "lstm_text", "multi_io", "tf1_builder")
REDUCED_PRECISION = ("onnx:int8", "onnx:fp16")
NCHW_ON = ("mobilenet_v2",)
RANDOM_WEIGHT_GATES = "".join(
    f'[target."{target}"]\nmin_top1_agreement = 0.0\nmin_top5_agreement = 0.9\n' for target in REDUCED_PRECISION
)


@dataclass(frozen=True)
class Invocation:
    label: str  # the output sub-folder
    targets: tuple[str, ...]
    baseline: bool
    nchw: bool = False  # pass --inputs-as-nchw with the model's (single) image input


@dataclass(frozen=True)
class Row:
    model: str
    target: str
    verdict: str
    cosine: float | None
    snr_db: float | None
    top1: float | None
    top5: float | None
    p50_ms: float | None
    size_bytes: int | None
    runtime: str
    reason: str
    baseline_p50_ms: float | None
    seconds: float


def invocations(model: ZooModel) -> list[Invocation]:
    targets = ("onnx",) + (REDUCED_PRECISION if model.image else ())
    runs = [Invocation("onnx", targets, baseline=True)]
    if model.name in NCHW_ON:
        runs.append(Invocation("nchw", ("onnx",), baseline=False, nchw=True))
    return runs


def command(
    model: ZooModel, saved_model: Path, run: Invocation, out: Path, config: Path, image_input: str | None
) -> list[str]:
    args = [str(EDGEPORT), "convert", str(saved_model), "-o", str(out), "--config", str(config), *BENCH_FLAGS]
    for target in run.targets:
        args += ["-t", target]
    for shape in model.input_shapes:
        args += ["--input-shape", shape]
    for value_range in model.input_ranges:
        args += ["--input-range", value_range]
    if run.nchw:
        args += ["--inputs-as-nchw", image_input]
    if not run.baseline:
        args.append("--no-baseline")
    return args


def worst(outputs: list[dict], key: str) -> float | None:
    values = [o[key] for o in outputs if isinstance(o.get(key), (int, float))]
    return min(values) if values else None


def rows_of(model: ZooModel, run: Invocation, report: dict, seconds: float, image_input: str | None) -> list[Row]:
    baseline = (report.get("baseline") or {}).get("p50_ms")
    rows = []
    for target in report["targets"]:
        outputs = (target.get("accuracy") or {}).get("outputs") or []
        reasons = [f"{s['stage']}: {s['reason']}" for s in target["stages"] if s["status"] in ("failed", "error")]
        name = target["name"] + (f" --inputs-as-nchw {image_input}" if run.nchw else "")
        rows.append(
            Row(
                model=model.name,
                target=name,
                verdict=report["verdicts"].get(target["name"], "?"),
                cosine=worst(outputs, "cosine"),
                snr_db=worst(outputs, "snr_db"),
                top1=worst(outputs, "top1_agreement"),
                top5=worst(outputs, "top5_agreement"),
                p50_ms=(target.get("latency") or {}).get("p50_ms"),
                size_bytes=target.get("size_bytes"),
                runtime=target.get("runtime_version") or target["runtime"],
                reason="; ".join(reasons),
                baseline_p50_ms=baseline,
                seconds=seconds,
            )
        )
    return rows


def run_model(model: ZooModel, out_root: Path, config: Path) -> list[Row]:
    saved_model = export(model)
    rows: list[Row] = []
    image_input = None
    for run in invocations(model):
        out = out_root / model.name / run.label
        seconds, done = timed_process(command(model, saved_model, run, out, config, image_input))
        report_path = out / "report.json"
        print(f"{model.name} [{run.label}]: exit {done.returncode} in {seconds:.0f} s", file=sys.stderr)
        if not report_path.is_file():
            rows.append(
                Row(
                    model.name,
                    ",".join(run.targets),
                    f"exit {done.returncode}",
                    None,
                    None,
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
        report = json.loads(report_path.read_text())
        image_input = next(
            (spec["name"] for spec in report["model"]["signature"]["inputs"] if len(spec.get("shape") or ()) == 4),
            image_input,
        )
        rows.extend(rows_of(model, run, report, seconds, image_input))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| model | target | verdict | worst cosine | SNR dB | top-1 | top-5 | p50 ms | size | TF p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = r.verdict if not r.reason else f"{r.verdict}: {r.reason[:160]}"
        lines.append(
            f"| {r.model} | {r.target} | {verdict} | {_number(r.cosine, '.7f')} | {_number(r.snr_db, '.1f')}"
            f" | {_number(r.top1, '.0%')} | {_number(r.top5, '.0%')} | {_number(r.p50_ms, '.2f')} | "
            f"{'–' if r.size_bytes is None else human_size(r.size_bytes)} | "
            f"{_number(r.baseline_p50_ms, '.2f')} |"
        )
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def human_size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} KB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("showcase-onnx-out"), help="edgeport output folders")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma separated zoo names")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    chosen = [zoo_model(name.strip()) for name in args.models.split(",") if name.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    config = args.out / "edgeport.toml"
    config.write_text(RANDOM_WEIGHT_GATES)
    started = time.perf_counter()
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
