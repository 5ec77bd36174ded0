"""`edgeport fleet` (embedded Ray) against `edgeport convert` once per model, sequentially, on the same models.

    .venv/bin/python benchmarks/bench_fleet.py [--models 12] [-t tflite -t onnx]

Reports the wall-time ratio fleet / sequential (goal: at most 0.6 on 2 cores) and, per artifact, its p50 in the
fleet run against its p50 in the sequential run, where each benchmark had the machine to itself (goal: within
10 %). Both sides use the same timing protocol and skip the SavedModel baseline row (a fleet does not time it).
Models are small MLPs and CNNs with random weights, built once into benchmarks/.cache/fleet/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE

EDGEPORT = [sys.executable, "-m", "edgeport"]
BENCH = {"warmup_runs": 3, "min_runs": 50, "min_seconds": 1.0}


def build_models(count: int) -> list[Path]:
    folder = CACHE / "fleet" / "models"
    paths = [folder / f"model{i:02d}" for i in range(count)]
    missing = [p for p in paths if not (p / "saved_model.pb").is_file()]
    if missing:
        code = f"""
import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import keras
for i, path in {[(int(p.name[5:]), str(p)) for p in missing]!r}:
    keras.utils.set_random_seed(i)
    if i % 2:
        inputs = keras.Input((32, 32, 3), name='pixels')
        x = keras.layers.Conv2D(8 + 4 * (i % 4), 3, activation='relu')(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(16, 3, activation='relu')(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        inputs = keras.Input((64,), name='features')
        x = keras.layers.Dense(128 + 64 * (i % 4), activation='relu')(inputs)
        x = keras.layers.Dense(128, activation='relu')(x)
    outputs = keras.layers.Dense(10, activation='softmax')(x)
    keras.Model(inputs, outputs).export(path, verbose=False)
"""
        subprocess.run([sys.executable, "-c", code], check=True)
    return paths


def run(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def p50s(out: Path) -> dict[str, float]:
    report = json.loads((out / "report.json").read_text())
    return {t["name"]: t["latency"]["p50_ms"] for t in report["targets"] if t.get("latency")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("-t", "--target", dest="targets", action="append")
    args = parser.parse_args()
    targets = args.targets or ["tflite", "onnx"]
    models = build_models(args.models)
    work = CACHE / "fleet" / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench_flags = ["--warmup-runs", "3", "--min-runs", str(BENCH["min_runs"]), "--min-seconds", "1.0"]

    sequential = 0.0
    solo: dict[tuple[str, str], float] = {}
    for model in models:
        out = work / "sequential" / model.name
        command = [*EDGEPORT, "convert", str(model), *[f"-t{t}" for t in targets], "-o", str(out)]
        sequential += run([*command, "--no-baseline", "--no-history", *bench_flags], work)
        solo.update({(model.name, t): v for t, v in p50s(out).items()})

    manifest = work / "fleet.toml"
    bench_table = "".join(f"{k} = {v}\n" for k, v in BENCH.items())
    entries = "".join(f'[[model]]\npath = "{m}"\n' for m in models)
    manifest.write_text(f"targets = {json.dumps(targets)}\n[bench]\n{bench_table}{entries}")
    env_cores = os.cpu_count()
    fleet_wall = run([*EDGEPORT, "fleet", str(manifest), "-o", str(work / "fleet"), "--no-history"], work)
    fleet: dict[tuple[str, str], float] = {}
    for model in models:
        fleet.update({(model.name, t): v for t, v in p50s(work / "fleet" / model.name).items()})

    ratios = {key: fleet[key] / solo[key] for key in solo if key in fleet}
    print(f"{len(models)} models x {targets} on {env_cores} cores")
    print(
        f"sequential `edgeport convert` x {len(models)}: {sequential:.1f} s; `edgeport fleet` (embedded): "
        f"{fleet_wall:.1f} s; ratio {fleet_wall / sequential:.2f}"
    )
    print("| model | target | solo p50 ms | fleet p50 ms | fleet / solo |")
    print("|---|---|---|---|---|")
    for (name, target), ratio in sorted(ratios.items()):
        print(f"| {name} | {target} | {solo[name, target]:.4f} | {fleet[name, target]:.4f} | {ratio:.3f} |")
    within = sum(1 for r in ratios.values() if abs(r - 1) <= 0.10)
    print(
        f"p50 fleet/solo: median {statistics.median(ratios.values()):.3f}, min {min(ratios.values()):.3f}, "
        f"max {max(ratios.values()):.3f}; within 10 %: {within}/{len(ratios)}"
    )


if __name__ == "__main__":
    main()
