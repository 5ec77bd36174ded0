"""edgeport's TF.js graph models for MobileNetV2 (keras.applications, weights=None, 224x224, model.export).

  * latency on TF.js in Node (wasm backend, through the `tfjs-node` runtime's own timing protocol) of the
    graph emitted with the graph optimizations (Grappler + fusions) vs without (`optimize=false`), as a
    ratio of p50s; the two artifacts are timed in alternating rounds so machine load hits both alike;
  * conversion time (in process, the SavedModel already loaded and frozen, as in the pipeline);
  * artifact sizes (model.json + shards) for tfjs, tfjs:fp16 and tfjs:uint8, with each variant's cosine
    against the SavedModel on synthetic samples (cpu backend).

Run:  .venv/bin/python benchmarks/bench_tfjs.py [--rounds 3] [--min-runs 30] [--json out.json]
Takes a few minutes on 2 cores. Prints a Markdown table; nothing is written unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.checks.latency import cpu_name
from edgeport.contracts import ConversionJob, RuntimeSettings, TargetSpec, TimingProtocol
from edgeport.converters.tfjs.converter import TFJSConverter, TFJSOptions
from edgeport.model.samples import SampleRequest, synthetic_samples
from edgeport.model.savedmodel import load_model
from edgeport.targets.tfjs.node import TFJSNodeRuntime

MODEL = "MobileNetV2"
VARIANTS = (("tfjs", True), ("tfjs", False), ("tfjs:fp16", True), ("tfjs:uint8", True))


def export_model(folder: Path) -> Path:
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    model = getattr(tf.keras.applications, MODEL)(weights=None, input_shape=(224, 224, 3))
    path = folder / MODEL
    model.export(str(path), verbose=False)
    return path


def convert(model, target: str, optimize: bool, folder: Path, samples):
    folder.mkdir(parents=True)
    job = ConversionJob(
        model=model,
        target=TargetSpec.parse(target),
        options=TFJSOptions(optimize=optimize),
        calibration=samples,
        workdir=folder,
    )
    start = time.perf_counter()
    artifact = TFJSConverter().convert(job)
    seconds = time.perf_counter() - start
    size = sum((folder / name).stat().st_size for name in artifact.files)
    return artifact, seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds per artifact")
    parser.add_argument("--min-runs", type=int, default=30, help="timed runs per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runtime = TFJSNodeRuntime()
    with tempfile.TemporaryDirectory(prefix="bench-tfjs-") as tmp:
        root = Path(tmp)
        model = load_model(export_model(root))
        samples = synthetic_samples(model.signature, SampleRequest(count=4))
        model.frozen  # noqa: B018 - freeze once, outside the conversion timings (the pipeline shares it)
        reference = model.reference(samples.feeds())
        rows = {}
        for target, optimize in VARIANTS:
            key = f"{target}{'' if optimize else ' (optimize=false)'}"
            folder = root / key.replace(":", "-").replace(" ", "_").replace("(", "").replace(")", "")
            artifact, seconds, size = convert(model, target, optimize, folder, samples)
            outputs = runtime.infer(folder / artifact.main_file, samples, RuntimeSettings(backend="cpu"))
            accuracy = compare(reference, outputs, default_tolerance(artifact.precision))
            rows[key] = {
                "folder": folder,
                "convert_s": seconds,
                "bytes": size,
                "nodes": artifact.details["node_count"],
                "fused": artifact.details["fused_ops"],
                "cosine": min(o.cosine for o in accuracy.outputs),
                "p50_ms": [],
            }
        protocol = TimingProtocol(warmup_runs=5, min_runs=args.min_runs, min_seconds=2.0, max_seconds=30.0)
        timed = ("tfjs", "tfjs (optimize=false)")
        for _ in range(args.rounds):
            for key in timed:
                raw = runtime.benchmark(
                    rows[key]["folder"] / "model.json", samples, RuntimeSettings(backend="wasm"), protocol
                )
                rows[key]["p50_ms"].append(statistics.median(raw.run_ms))
                rows[key]["engine"] = raw.runtime_version
    report(rows, timed)
    if args.json:
        args.json.write_text(
            json.dumps(
                {k: {f: v for f, v in r.items() if f != "folder"} for k, r in rows.items()}, indent=2, default=str
            )
        )


def report(rows: dict, timed: tuple[str, str]) -> None:
    optimized, plain = (statistics.median(rows[k]["p50_ms"]) for k in timed)
    print(f"machine: {cpu_name()}; engine: {rows[timed[0]].get('engine', '?')}\n")
    print("| artifact | nodes | fused ops | convert s | size MB | min cosine | wasm p50 ms (per round) |")
    print("|---|---|---|---|---|---|---|")
    for key, row in rows.items():
        fused = ", ".join(f"{op} x{n}" for op, n in row["fused"].items()) or "-"
        rounds = " / ".join(f"{p:.1f}" for p in row["p50_ms"]) or "-"
        print(
            f"| {key} | {row['nodes']} | {fused} | {row['convert_s']:.1f} | {row['bytes'] / 1e6:.2f} | "
            f"{row['cosine']:.6f} | {rounds} |"
        )
    print(
        f"\nlatency ratio optimized / unoptimized (median of round p50s): {optimized:.1f} / {plain:.1f} ms = "
        f"{optimized / plain:.2f}"
    )


if __name__ == "__main__":
    main()
