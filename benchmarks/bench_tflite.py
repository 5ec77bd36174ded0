"""TFLite benchmarks (issue: foundation), run side by side with the official tools.

1. Latency: edgeport's LiteRT p50 for MobileNetV2 (fp32, int8) against `litert-benchmark` (shipped with
   ai-edge-litert) on the same .tflite and threads, as a ratio (target 0.9-1.1).
2. Wall time: one `edgeport convert` doing four TFLite variants WITH checks and benchmarks, against the four
   official conversions (`tf.lite.TFLiteConverter.from_saved_model`) run as separate processes without any
   check, as a ratio (goal <= 0.6: TensorFlow imported and the SavedModel loaded once, not four times).

    .venv/bin/python benchmarks/bench_tflite.py [--threads 1] [--model MobileNetV2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_line, export_keras_application, timed_process

VARIANTS = ["tflite", "tflite:fp16", "tflite:dynamic", "tflite:int8"]
# Random-weight logits have near-ties between classes, so a quantized model's top-1 agreement says little;
# the quantized targets are gated on cosine and top-5 instead (top-1 is still reported).
RANDOM_WEIGHT_GATES = """
[target."tflite:dynamic"]
min_top1_agreement = 0.0
min_top5_agreement = 0.9
[target."tflite:int8"]
min_top1_agreement = 0.0
min_top5_agreement = 0.9
"""
OFFICIAL = """
import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np, tensorflow as tf
variant, model, out = sys.argv[1:4]
converter = tf.lite.TFLiteConverter.from_saved_model(model)
if variant != 'fp32':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
if variant == 'fp16':
    converter.target_spec.supported_types = [tf.float16]
if variant == 'int8':
    rng = np.random.default_rng(0)
    def data():
        for _ in range(8):
            yield [rng.uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)]
    converter.representative_dataset = data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
open(out, 'wb').write(converter.convert())
"""


def litert_benchmark_p50(tflite: Path, threads: int, runs: int) -> float:
    bench = Path(sys.executable).with_name("litert-benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        result_json = Path(tmp) / "result.json"
        _, result = timed_process(
            [
                str(bench),
                "--model",
                str(tflite),
                "--num_threads",
                str(threads),
                "--num_runs",
                str(runs),
                "--warmup_runs",
                "10",
                "--result_json",
                str(result_json),
            ]
        )
        if result.returncode != 0:
            raise SystemExit(f"litert-benchmark failed: {result.stderr[-500:]}")
        return json.loads(result_json.read_text())["latency"]["median_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of each latency measurement")
    args = parser.parse_args()
    model = export_keras_application(args.model)
    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-tflite-"))

    edgeport = Path(sys.executable).with_name("edgeport")
    config = work / "edgeport.toml"
    config.write_text(RANDOM_WEIGHT_GATES)
    targets = [a for t in VARIANTS for a in ("-t", t)]
    edgeport_wall, result = timed_process(
        [
            str(edgeport),
            "convert",
            str(model),
            *targets,
            "-o",
            str(work / "out"),
            "--config",
            str(config),
            "--threads",
            str(args.threads),
            "--json",
            "--no-history",
        ]
    )
    if result.returncode not in (0, 1):  # 1: a gate failed; the numbers are still worth printing
        raise SystemExit(f"edgeport convert failed ({result.returncode}): {result.stderr[-800:]}")
    report = json.loads(result.stdout)

    official_walls = []
    for variant in ("fp32", "fp16", "dynamic", "int8"):
        wall, done = timed_process(
            [sys.executable, "-c", OFFICIAL, variant, str(model), str(work / f"{variant}.tflite")]
        )
        if done.returncode != 0:
            raise SystemExit(f"official conversion {variant} failed: {done.stderr[-800:]}")
        official_walls.append(wall)
    official_wall = sum(official_walls)

    rows = []
    for target in ("tflite", "tflite:int8"):
        entry = next(t for t in report["targets"] if t["name"] == target)
        if not entry["latency"]:
            continue
        tflite = work / "out" / entry["artifact"]
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternate, so drift on the machine hits both alike
            ours.append(_edgeport_bench_p50(edgeport, tflite, model, args.threads))
            theirs.append(litert_benchmark_p50(tflite, args.threads, runs=max(50, len(entry["latency"]["run_ms"]))))
        rows.append((target, statistics.median(ours), statistics.median(theirs)))

    print(f"# bench_tflite: {args.model} 224x224 (random weights), {args.threads} thread(s), {cpu_line()}")
    print("| artifact | edgeport p50 ms | litert-benchmark median ms | ratio |")
    print("|---|---|---|---|")
    for target, ours, theirs in rows:
        print(f"| {target} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")
    print()
    checks = {
        t["name"]: {key: t["accuracy"]["outputs"][0][key] for key in ("cosine", "top1_agreement", "top5_agreement")}
        for t in report["targets"]
        if t["accuracy"]
    }
    print(f"edgeport convert, 4 variants + checks + benchmarks + baseline: {edgeport_wall:.1f} s")
    print(
        f"official from_saved_model x4 in separate processes, no checks: {official_wall:.1f} s "
        f"({', '.join(f'{w:.1f}' for w in official_walls)})"
    )
    print(f"ratio: {edgeport_wall / official_wall:.2f}")
    print(f"accuracy vs SavedModel: {json.dumps(checks)}")
    print(
        "p50 ms per target: "
        + ", ".join(f"{t['name']} {t['latency']['p50_ms']:.2f}" for t in report["targets"] if t["latency"])
        + f"; SavedModel on TensorFlow {report['baseline']['p50_ms']:.2f}"
    )
    print(f"exit code of edgeport convert: {report['exit_code']}")


def _edgeport_bench_p50(edgeport: Path, tflite: Path, model: Path, threads: int) -> float:
    _, result = timed_process(
        [
            str(edgeport),
            "bench",
            str(tflite),
            "--model",
            str(model),
            "--threads",
            str(threads),
            "--min-runs",
            "50",
            "--json",
        ]
    )
    if result.returncode != 0:
        raise SystemExit(f"edgeport bench failed: {result.stderr[-500:]}")
    return json.loads(result.stdout)["p50_ms"]


if __name__ == "__main__":
    main()
