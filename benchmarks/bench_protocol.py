"""The timing protocol that stops when the p50 is known (issue 24) against a long reference run.

For each small model (three Keras models, converted once by edgeport for tflite, onnx and tfjs) and each
runtime (LiteRT, ONNX Runtime, TF.js in Node): one long reference run (`--reference-seconds`, default 60 s,
the fixed-budget protocol: ci_half_width 0), then `--repeats` benchmarks with the new protocol (defaults:
±2 %, at least 10 runs, max_seconds 20) and as many with the old one (min_runs 20, min_seconds 1.0). Reports how
often the reference p50 lies inside the new protocol's 95 % interval, the new and old p50s' distance from the
reference, and the seconds each benchmark took. `--load` runs a memory-bound loop in a subprocess on the other
core meanwhile (numpy copies of a 64 MB array), for the same figures on a loaded machine.

Run:  .venv/bin/python benchmarks/bench_protocol.py [--reference-seconds 60] [--repeats 5] [--load]
      [--models small,medium,large] [--runtimes litert,onnxruntime,tfjs-node] [--json out.json]
Prints a Markdown table. Each benchmark runs in this process, one at a time (the runtimes' own `benchmark`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeport.checks.latency import cpu_name, measure_noise, summarize
from edgeport.contracts import RuntimeSettings, TimingProtocol

MODELS = {"small": (16, 32), "medium": (32, 64), "large": (64, 128)}  # conv filters of a 32x32x3 CNN
TARGETS = {"litert": "tflite", "onnxruntime": "onnx", "tfjs-node": "tfjs"}
NEW = TimingProtocol()
OLD = TimingProtocol(warmup_runs=3, warmup_seconds=0.2, min_runs=20, min_seconds=1.0, ci_half_width=0)


def export(folder: Path, name: str) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    first, second = MODELS[name]
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = keras.layers.Conv2D(first, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(second, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    path = folder / name
    keras.Model(inputs, outputs).export(str(path), verbose=False)
    return path


def convert(model: Path, out: Path, targets: list[str]) -> dict[str, Path]:
    import edgeport

    report = edgeport.convert(model, targets=targets, output=out, bench=False, baseline=False)
    return {t.name: out / t.artifact for t in report.targets if t.artifact}


def memory_load(stop) -> None:
    """A memory-bound loop: copy a 64 MB array back and forth until told to stop."""
    a = np.ones(8 << 20)
    b = np.empty_like(a)
    while not stop.is_set():
        np.copyto(b, a)
        np.copyto(a, b)


def bench(runtime, artifact: Path, samples, protocol: TimingProtocol):
    started = time.perf_counter()
    raw = runtime.benchmark(str(artifact), samples, RuntimeSettings(threads=1), protocol)
    return summarize(raw, protocol), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", action="store_true", help="a memory-bound loop on the other core meanwhile")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtimes", default=",".join(TARGETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from edgeport.run.registry import registry

    runtimes = [r for r in args.runtimes.split(",") if r]
    rows = []
    stop = multiprocessing.Event()
    loader = multiprocessing.Process(target=memory_load, args=(stop,), daemon=True) if args.load else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples_set = None
        for name in args.models.split(","):
            model = export(folder, name)
            artifacts = convert(model, folder / f"{name}-out", [TARGETS[r] for r in runtimes])
            if samples_set is None:
                from edgeport.contracts import SampleSet

                rng = np.random.default_rng(0)
                samples_set = SampleSet({"image": rng.random((8, 1, 32, 32, 3), dtype=np.float32)}, "random", True)
            if loader is not None and not loader.is_alive():
                loader.start()
            for runtime_name in runtimes:
                runtime = registry().runtime(runtime_name)
                artifact = artifacts[TARGETS[runtime_name]]
                reference_protocol = TimingProtocol(
                    min_runs=10,
                    min_seconds=args.reference_seconds,
                    max_seconds=args.reference_seconds + 5,
                    ci_half_width=0,
                )
                reference, _ = bench(runtime, artifact, samples_set, reference_protocol)
                inside, new_err, old_err, new_s, old_s, runs = 0, [], [], [], [], []
                for _ in range(args.repeats):
                    stats, seconds = bench(runtime, artifact, samples_set, NEW)
                    low, high = stats.p50_ci_ms or (float("nan"), float("nan"))
                    inside += low <= reference.p50_ms <= high
                    new_err.append(abs(stats.p50_ms / reference.p50_ms - 1))
                    new_s.append(seconds)
                    runs.append(stats.runs)
                    old, seconds = bench(runtime, artifact, samples_set, OLD)
                    old_err.append(abs(old.p50_ms / reference.p50_ms - 1))
                    old_s.append(seconds)
                rows.append(
                    {
                        "model": name,
                        "runtime": runtime_name,
                        "reference_p50_ms": reference.p50_ms,
                        "reference_runs": reference.runs,
                        "inside": inside,
                        "repeats": args.repeats,
                        "new_runs_median": statistics.median(runs),
                        "new_error_median": statistics.median(new_err),
                        "old_error_median": statistics.median(old_err),
                        "new_seconds_median": statistics.median(new_s),
                        "old_seconds_median": statistics.median(old_s),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    stop.set()
    noise = measure_noise()
    print(
        f"\n{cpu_name()}; load {'on' if args.load else 'off'}; reference {args.reference_seconds:g} s; "
        f"noise after: CV {noise.cv:.1%}, load average {noise.load_avg}\n"
    )
    print(
        "| model | runtime | reference p50 | inside the interval | new: runs, seconds, |p50 - ref| "
        "| old: seconds, |p50 - ref| |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['runtime']} | {r['reference_p50_ms']:.3f} ms | {r['inside']}/{r['repeats']} | "
            f"{r['new_runs_median']:.0f}, {r['new_seconds_median']:.2f} s, {r['new_error_median']:.1%} | "
            f"{r['old_seconds_median']:.2f} s, {r['old_error_median']:.1%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
