"""Stage scheduling inside one `edgeport convert`: checks beside conversions, benchmarks alone.

One `edgeport convert MobileNetV2 -t tflite -t tflite:fp16 -t tflite:dynamic -t tflite:int8` with checks,
benchmarks and the SavedModel baseline, as scheduled by default (a target is checked on the free core while
the next one converts; benchmarks run after, one at a time) and with `--sequential` (every stage in turn),
against the four official conversions (`TFLiteConverter.from_saved_model`, as bench_tflite.py runs them) in
separate processes without any check. Rounds alternate the three, so drift on the machine hits all alike.
Goals: scheduled / official at most 0.4; every artifact's p50 within 5 % of the sequential run's.

    .venv/bin/python benchmarks/bench_schedule.py [--rounds 2] [--model MobileNetV2] [--targets T,T,...]

`--targets tflite,tflite:int8,onnx,tfjs` (the issue's set) compares scheduled with sequential only: TF.js has
no official converter that installs beside TensorFlow 2.21.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_tflite import OFFICIAL, RANDOM_WEIGHT_GATES, VARIANTS

from common import cpu_line, export_keras_application, timed_process

WALL_GOAL = 0.4
P50_TOLERANCE = 0.05


def edgeport_run(model: Path, work: Path, sequential: bool, targets: list[str]) -> tuple[float, dict]:
    config = work / "edgeport.toml"
    config.write_text(RANDOM_WEIGHT_GATES)
    args = [str(Path(sys.executable).with_name("edgeport")), "convert", str(model), "-o", str(work / "out")]
    args += [a for t in targets for a in ("-t", t)] + ["--config", str(config), "--json", "--no-history"]
    if sequential:
        args.append("--sequential")
    wall, result = timed_process(args)
    if result.returncode != 0:
        raise SystemExit(f"edgeport convert failed ({result.returncode}): {result.stderr[-800:]}")
    return wall, json.loads(result.stdout)


def official_run(model: Path, work: Path) -> float:
    total = 0.0
    for variant in ("fp32", "fp16", "dynamic", "int8"):
        wall, done = timed_process(
            [sys.executable, "-c", OFFICIAL, variant, str(model), str(work / f"{variant}.tflite")]
        )
        if done.returncode != 0:
            raise SystemExit(f"official conversion {variant} failed: {done.stderr[-800:]}")
        total += wall
    return total


def p50s(report: dict) -> dict[str, float]:
    return {t["name"]: t["latency"]["p50_ms"] for t in report["targets"] if t["latency"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--targets", default=",".join(VARIANTS))
    args = parser.parse_args()
    targets = args.targets.split(",")
    kinds = ("scheduled", "sequential", "official") if targets == VARIANTS else ("scheduled", "sequential")
    model = export_keras_application(args.model)
    walls: dict[str, list[float]] = {kind: [] for kind in kinds}
    latency: dict[str, list[dict[str, float]]] = {"scheduled": [], "sequential": []}
    for index in range(args.rounds):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"bench-schedule-{kind}-") as scratch:
                if kind == "official":
                    walls[kind].append(official_run(model, Path(scratch)))
                    continue
                wall, report = edgeport_run(model, Path(scratch), kind == "sequential", targets)
                walls[kind].append(wall)
                latency[kind].append(p50s(report))
    median = {kind: statistics.median(values) for kind, values in walls.items()}
    base = "official" if "official" in median else "sequential"
    print(f"# bench_schedule: {args.model} 224x224 (random weights), {', '.join(targets)}; {cpu_line()}")
    print(f"| run | wall s (per round) | / {base} |\n|---|---|---|")
    for kind in kinds:
        rounds = ", ".join(f"{w:.1f}" for w in walls[kind])
        print(f"| {kind} | {median[kind]:.1f} ({rounds}) | {median[kind] / median[base]:.2f} |")
    print("\n| artifact | p50 ms scheduled | p50 ms sequential | ratio |\n|---|---|---|---|")
    worst = 0.0
    for name in latency["sequential"][0]:
        ours = statistics.median(run[name] for run in latency["scheduled"])
        alone = statistics.median(run[name] for run in latency["sequential"])
        worst = max(worst, abs(ours / alone - 1))
        print(f"| {name} | {ours:.2f} | {alone:.2f} | {ours / alone:.3f} |")
    ratio = median["scheduled"] / median[base]
    print(
        f"\nscheduled / {base}: {ratio:.2f} (goal vs official <= {WALL_GOAL}); "
        f"worst p50 deviation {worst:.1%} (goal <= 5 %)"
    )
    return 0 if ratio <= WALL_GOAL and worst <= P50_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
