"""Large models: peak memory per stage and wall time of `edgeport convert`, one target per run.

    .venv/bin/python benchmarks/bench_scale.py [--weights-gb 1.1] [-t onnx -t tfjs -t tflite:fp16] [--official]

Builds (once, cached in benchmarks/.cache, nothing downloaded) a plain model of the size class of BERT-large:
an embedding and a stack of 2048x2048 Dense+ReLU layers, `--weights-gb` of fp32 weights. Each target runs in
its own `edgeport convert MODEL -t T --no-bench --samples 2`, while this script samples the resident memory of
the edgeport process tree (every process below it, VmRSS summed) every 0.1 s and files each sample under the
stage the progress lines say is running. Prints, per target: the verdict, wall time, peak of the whole tree
and of its largest process, both against the weight size (goal: at most 2x), and the peak per stage.
`--official` runs, after each target, its official converter on the same model, sampled the same way
(TFLiteConverter.from_saved_model; tf2onnx's CLI with --large_model; TF.js has none here: the tensorflowjs
package is not installed, it pins TF 2.19); a tree past MemTotal less 2 GiB is killed and said.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import CACHE, cpu_line

WIDTH = 2048
VOCAB = 32_000


def build_model(weights_gb: float) -> Path:
    layers = max(1, round((weights_gb * 1e9 / 4 - VOCAB * WIDTH) / (WIDTH * WIDTH + WIDTH)))
    path = CACHE / f"scale_{layers}x{WIDTH}"
    if (path / "saved_model.pb").is_file():
        return path
    code = f"""
import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np, tensorflow as tf
class Stack(tf.Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.embedding = tf.Variable(rng.normal(0, 0.02, ({VOCAB}, {WIDTH})).astype(np.float32))
        self.kernels = [tf.Variable(rng.normal(0, {WIDTH} ** -0.5, ({WIDTH}, {WIDTH})).astype(np.float32))
                        for _ in range({layers})]
        self.biases = [tf.Variable(np.zeros({WIDTH}, np.float32)) for _ in range({layers})]
    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.int32, name='tokens')])
    def serve(self, tokens):
        x = tf.gather(self.embedding, tf.clip_by_value(tokens, 0, {VOCAB - 1}))
        for kernel, bias in zip(self.kernels, self.biases):
            x = tf.nn.relu(tf.matmul(x, kernel) + bias)
        return {{'hidden': tf.reduce_mean(x, axis=1)}}
m = Stack()
tf.saved_model.save(m, {str(path)!r}, signatures={{'serving_default': m.serve}})
"""
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def tree_rss(root: int) -> tuple[int, int]:
    """(sum, largest) VmRSS of root and its descendants, in bytes: what --max-memory watches."""
    from edgeport.run.isolation import descendants
    from edgeport.run.memory import resident_bytes

    sizes = [resident_bytes(pid) for pid in (root, *descendants(root))]
    return sum(sizes), max(sizes, default=0)


def memory_cap() -> int:
    """Where this script stops a process tree (a peer has no --max-memory): MemTotal less 2 GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 - (2 << 30)
    return 22 << 30


def sample(args: list[str], *, stages: bool) -> dict:
    """Run `args`, sampling its tree's memory every 0.1 s (filed under the stage the progress lines name when
    `stages`); a tree past memory_cap() is killed and said."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stage = ["start"]
    peaks: dict[str, int] = {}
    largest = [0, 0]
    lines: list[str] = []
    cap, stopped = memory_cap(), False

    def follow() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if stages and (line.endswith("...\n") or " ... (" in line):  # "<who>: <stage> ..." starts a stage
                who, _, rest = line.partition(": ")
                stage[0] = f"{who} {rest.split(' ', 1)[0]}"

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    while process.poll() is None:
        total, biggest = tree_rss(process.pid)
        peaks[stage[0]] = max(peaks.get(stage[0], 0), total)
        largest[0] = max(largest[0], total)
        largest[1] = max(largest[1], biggest)
        if total > cap and not stopped:
            stopped = True
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.1)
    reader.join(timeout=5)
    return {
        "wall": time.perf_counter() - start,
        "peak": largest[0],
        "largest": largest[1],
        "stages": peaks,
        "returncode": process.returncode,
        "stopped": stopped,
        "stderr": "".join(lines),
    }


def profile(model: Path, target: str, out: Path) -> dict:
    args = [sys.executable, "-m", "edgeport", "convert", str(model), "-t", target, "-o", str(out)]
    args += ["--no-bench", "--samples", "2", "--no-history"]
    row = sample(args, stages=True)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    verdict = report.get("verdicts", {}).get(target, f"exit {row['returncode']}")
    reason = next((s["reason"] for t in report.get("targets", []) for s in t["stages"] if s["reason"]), "")
    return {**row, "verdict": verdict, "reason": reason}


OFFICIAL_TFLITE = """
import sys, tensorflow as tf
converter = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
if sys.argv[3] == "fp16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
open(sys.argv[2], "wb").write(converter.convert())
"""


def official(model: Path, target: str, out: Path) -> dict | None:
    """The official tool for `target` on the same model, sampled the same way; None if there is none here."""
    out.mkdir(parents=True, exist_ok=True)
    if target.startswith("tflite"):
        variant = target.partition(":")[2] or "fp32"
        args = [sys.executable, "-c", OFFICIAL_TFLITE, str(model), str(out / "model.tflite"), variant]
        name = "TFLiteConverter.from_saved_model"
    elif target == "onnx":
        args = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(model), "--large_model"]
        args += ["--output", str(out / "model.zip")]
        name = "tf2onnx --large_model"
    else:
        return None  # tensorflowjs_converter: the tensorflowjs package is not installed (it pins TF 2.19)
    row = sample(args, stages=False)
    if row["stopped"]:
        verdict = "stopped by this script at the memory cap"
    elif row["returncode"] == 0:
        verdict = "finished"
    else:
        verdict = f"exit {row['returncode']}" + (" (killed)" if row["returncode"] < 0 else "")
    return {**row, "verdict": verdict, "tool": name}


def print_row(name: str, row: dict, weights: int) -> None:
    stages = ", ".join(f"{stage} {peak / 1e9:.1f}" for stage, peak in row["stages"].items() if peak)
    peak = f"{row['peak'] / 1e9:.1f} ({row['peak'] / weights:.1f}x)"
    largest = f"{row['largest'] / 1e9:.1f} ({row['largest'] / weights:.1f}x)"
    print(f"| {name} | {row['verdict']} | {row['wall']:.0f} | {peak} | {largest} | {stages} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-gb", type=float, default=1.1)
    parser.add_argument("-t", "--target", action="append", dest="targets")
    parser.add_argument("--official", action="store_true", help="also run the official converter per target")
    args = parser.parse_args()
    targets = args.targets or ["onnx", "tfjs", "tflite:fp16"]
    model = build_model(args.weights_gb)
    weights = sum(p.stat().st_size for p in (model / "variables").iterdir())
    print(f"# bench_scale: {model.name}, {weights / 1e9:.2f} GB of weights; {cpu_line()}")
    print("| target | verdict | wall s | peak tree GB (x weights) | largest process GB (x weights) | per stage GB |")
    print("|---|---|---|---|---|---|")
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
            row = profile(model, target, Path(scratch) / "out")
            print_row(f"edgeport {target}", row, weights)
            if row["reason"]:
                print(f"|  | {row['reason'][:300]} | | | | |", flush=True)
            if args.official:
                peer = official(model, target, Path(scratch) / "official")
                if peer is None:
                    print(f"| official {target} | not run: no official converter is installed here | | | | |")
                else:
                    print_row(peer["tool"], peer, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
