"""edgeport's `onnx` artifact vs the plain `python -m tf2onnx.convert --saved-model` output, on onnxruntime.

For MobileNetV2 and EfficientNetB0 (keras.applications, weights=None, 224x224, exported with model.export):
  * latency: p50 of onnxruntime (CPU EP, the same session options and thread count for both files), the two
    sessions timed in alternating blocks so machine load hits both alike; reported as edgeport / tf2onnx;
  * conversion time: edgeport (load SavedModel + freeze + convert, in process) vs the tf2onnx CLI (a fresh
    process; its Python + TensorFlow import time is measured separately and shown);
  * accuracy: whether edgeport's `onnx` artifact checks with cosine >= 0.9999 against the SavedModel on
    synthetic samples; also for an Embedding+LSTM text classifier over int32 token ids.

Run:  .venv/bin/python benchmarks/bench_onnx.py [--threads 2] [--runs 200] [--json out.json]
Takes several minutes on 2 cores. Prints a Markdown table; nothing is written unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.checks.latency import cpu_name
from edgeport.contracts import ConversionJob, RuntimeSettings, TargetSpec
from edgeport.model.samples import SampleRequest, synthetic_samples
from edgeport.model.savedmodel import load_model

IMAGE_MODELS = ("MobileNetV2", "EfficientNetB0")
BLOCK = 5  # runs per block; blocks alternate between the two files


def export_image_model(name: str, folder: Path) -> Path:
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    model = getattr(tf.keras.applications, name)(weights=None, input_shape=(224, 224, 3))
    path = folder / name
    model.export(str(path), verbose=False)
    return path


def export_lstm_classifier(folder: Path) -> Path:
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,), dtype="int32", name="tokens"),
            keras.layers.Embedding(5000, 64),
            keras.layers.LSTM(64),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    path = folder / "lstm_text_classifier"
    model.export(str(path), verbose=False)
    return path


def edgeport_convert(saved_model: Path, workdir: Path):
    from edgeport.converters.onnx.converter import ONNXConverter, ONNXOptions

    start = time.perf_counter()
    model = load_model(saved_model)
    model.frozen  # noqa: B018 - the run freezes once; it is part of what edgeport does per SavedModel
    loaded = time.perf_counter()
    samples = synthetic_samples(model.signature, SampleRequest())
    workdir.mkdir(parents=True)
    artifact = ONNXConverter().convert(
        ConversionJob(
            model=model, target=TargetSpec("onnx"), options=ONNXOptions(), calibration=samples, workdir=workdir
        )
    )
    done = time.perf_counter()
    return (
        model,
        samples,
        artifact,
        {"load_freeze_s": loaded - start, "convert_s": done - loaded, "total_s": done - start},
    )


def tf2onnx_cli(saved_model: Path, output: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def import_time() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tf2onnx.convert"], check=True, capture_output=True)
    return time.perf_counter() - start


def check(model, samples, artifact, workdir: Path) -> float:
    from edgeport.targets.onnxruntime.runtime import ONNXRuntime

    candidate = ONNXRuntime().infer(workdir / artifact.main_file, samples, RuntimeSettings(threads=1))
    result = compare(
        model.reference(samples.feeds()), candidate, default_tolerance(artifact.precision), artifact.output_permutations
    )
    return min(output.cosine for output in result.outputs)


def alternating_p50(files: dict[str, Path], feed: dict[str, np.ndarray], threads: int, runs: int) -> dict[str, float]:
    """p50 per file, and the median of per-round p50 ratios (robust to load drift on a shared machine).

    Both sessions use edgeport's session options; they run in alternating blocks of BLOCK runs.
    """
    from edgeport.targets.onnxruntime.runtime import ONNXRuntimeSession

    sessions = {label: ONNXRuntimeSession(path, threads) for label, path in files.items()}
    times: dict[str, list[float]] = {label: [] for label in files}
    round_ratios = []
    for session in sessions.values():  # warm-up
        for _ in range(10):
            session.run(feed)
    while min(len(t) for t in times.values()) < runs:
        block = {}
        for label, session in sessions.items():
            block[label] = []
            for _ in range(BLOCK):
                start = time.perf_counter()
                session.run(feed)
                block[label].append((time.perf_counter() - start) * 1e3)
            times[label].extend(block[label])
        first, second = list(files)
        round_ratios.append(float(np.median(block[first]) / np.median(block[second])))
    result = {label: float(np.percentile(t, 50)) for label, t in times.items()}
    result["paired_ratio"] = float(np.median(round_ratios))
    return result


def nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def plain_feed(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tf2onnx CLI names inputs after the signature too; check it, so both files get the same arrays."""
    import onnx

    names = [value.name for value in onnx.load(str(path), load_external_data=False).graph.input]
    if sorted(names) != sorted(feed):
        raise SystemExit(f"tf2onnx CLI inputs {names} differ from the signature's {sorted(feed)}")
    return feed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows, checks = [], []
    cli_import_s = import_time()
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-onnx-") as tmp:
        folder = Path(tmp)
        for name in IMAGE_MODELS:
            saved = export_image_model(name, folder)
            model, samples, artifact, edgeport_times = edgeport_convert(saved, folder / f"{name}-edgeport")
            plain = folder / f"{name}-tf2onnx.onnx"
            cli_s = tf2onnx_cli(saved, plain)
            cosine = check(model, samples, artifact, folder / f"{name}-edgeport")
            feed = samples.feed(0)
            p50 = alternating_p50(
                {"edgeport": folder / f"{name}-edgeport" / artifact.main_file, "tf2onnx": plain},
                plain_feed(plain, feed),
                args.threads,
                args.runs,
            )
            rows.append(
                {
                    "model": name,
                    "p50_edgeport_ms": p50["edgeport"],
                    "p50_tf2onnx_ms": p50["tf2onnx"],
                    "ratio": p50["edgeport"] / p50["tf2onnx"],
                    "paired_ratio": p50["paired_ratio"],
                    "nodes_edgeport": nodes(folder / f"{name}-edgeport" / artifact.main_file),
                    "nodes_tf2onnx": nodes(plain),
                    **{f"edgeport_{k}": v for k, v in edgeport_times.items()},
                    "tf2onnx_cli_s": cli_s,
                    "opset": artifact.details["opset"],
                }
            )
            checks.append({"model": name, "cosine": cosine, "passes": cosine >= 0.9999})
        saved = export_lstm_classifier(folder)
        model, samples, artifact, _ = edgeport_convert(saved, folder / "lstm-edgeport")
        cosine = check(model, samples, artifact, folder / "lstm-edgeport")
        checks.append({"model": "Embedding+LSTM text classifier", "cosine": cosine, "passes": cosine >= 0.9999})
    print(
        f"machine: {cpu_name()}; threads={args.threads}; runs>={args.runs} per file; "
        f"tf2onnx CLI import time {cli_import_s:.1f} s\n"
    )
    print(
        "| model | edgeport p50 ms | tf2onnx CLI p50 ms | ratio | paired ratio | nodes (edgeport / CLI) "
        "| edgeport load+freeze s | edgeport convert s | edgeport total s | tf2onnx CLI s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['p50_edgeport_ms']:.2f} | {r['p50_tf2onnx_ms']:.2f} | {r['ratio']:.3f} | "
            f"{r['paired_ratio']:.3f} | {r['nodes_edgeport']} / {r['nodes_tf2onnx']} | "
            f"{r['edgeport_load_freeze_s']:.1f} | {r['edgeport_convert_s']:.1f} | {r['edgeport_total_s']:.1f} | "
            f"{r['tf2onnx_cli_s']:.1f} |"
        )
    print("\n| model | min cosine vs SavedModel | >= 0.9999 |")
    print("|---|---|---|")
    for c in checks:
        print(f"| {c['model']} | {c['cosine']:.7f} | {'yes' if c['passes'] else 'NO'} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": cpu_name(),
                    "threads": args.threads,
                    "rows": rows,
                    "checks": checks,
                    "tf2onnx_import_s": cli_import_s,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
