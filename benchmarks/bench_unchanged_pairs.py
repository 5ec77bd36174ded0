"""False regressions: pairs of benchmarks of one unchanged ONNX Runtime artifact, compared as `--baseline` does.

Each pair is two benchmarks in a row (as the bench stage runs them: the calibration kernel just before and just
after each), compared by report/regression.compare_reports twice: as it is, and with the kernel's times
removed from both (no machine-speed discount, the comparison before the kernel was timed after a benchmark).
An unchanged artifact should never be "slower"; the script counts how often each comparison says so, and
how often the machine's own speed moved by more than 10 % between the two benchmarks of a pair.

Run:  .venv/bin/python benchmarks/bench_unchanged_pairs.py [--pairs 40] [--seconds 0.6] [--json out.json]
Prints a Markdown table. The model: four 384x384 MatMul+Relu layers on 16 rows (about 0.22 ms on one thread).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeport.checks.latency import cpu_name, summarize, with_machine_noise
from edgeport.checks.timing import time_session
from edgeport.contracts import SampleSet, Session, TimingProtocol
from edgeport.report.files import jsonable
from edgeport.report.regression import compare_reports, said


def tiny_onnx(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, previous = [], [], "x"
    for i in range(4):
        inits.append(numpy_helper.from_array(rng.standard_normal((384, 384)).astype(np.float32) * 0.05, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"]),
        ]
        previous = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 384])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [16, 384])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    return path


class OrtSession(Session):
    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, feeds):
        return dict(zip(["y"], self.session.run(None, feeds), strict=True))


def report_of(latency: dict) -> dict:
    return {
        "schema_version": 1,
        "status": "finished",
        "model": {"path": "m"},
        "samples": {"count": 4, "source": "s"},
        "machine": {"cpu": cpu_name()},
        "targets": [{"name": "onnx", "size_bytes": 1000, "stages": [], "latency": latency}],
    }


def without_kernel_times(latency: dict) -> dict:
    noise = {k: v for k, v in latency["noise"].items() if k not in ("kernel_ms", "kernel_ms_after")}
    return {**latency, "noise": noise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.6, help="max_seconds of each benchmark")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    protocol = TimingProtocol(warmup_seconds=0.0, max_seconds=args.seconds)
    samples = SampleSet({"x": np.random.default_rng(1).random((4, 16, 384), dtype=np.float32)}, "bench", True)
    with tempfile.TemporaryDirectory() as folder:
        model = tiny_onnx(Path(folder))

        def bench() -> dict:
            raw, noise = with_machine_noise(lambda: time_session(lambda: OrtSession(model), samples, protocol, "ort"))
            return jsonable(asdict(summarize(raw, protocol, noise)))

        rows = []
        for _ in range(args.pairs):
            old, new = bench(), bench()
            verdicts = {}
            for name, (a, b) in {
                "with": (old, new),
                "without": (without_kernel_times(old), without_kernel_times(new)),
            }.items():
                changes = compare_reports(report_of(a), report_of(b)).changes
                verdicts[name] = {c.metric: said(c) for c in changes if c.metric in ("p50_ms", "p90_ms")}
            (lo_old, hi_old), (lo_new, hi_new) = (
                sorted((x["noise"]["kernel_ms"], x["noise"]["kernel_ms_after"])) for x in (old, new)
            )
            moved = max(hi_new / lo_old, hi_old / lo_new) - 1.0
            rows.append(
                {
                    "p50_change": new["p50_ms"] / old["p50_ms"] - 1.0,
                    "fastest_change": new["min_ms"] / old["min_ms"] - 1.0,
                    "machine_moved": moved,
                    **{f"{name}_{metric}": word for name, words in verdicts.items() for metric, word in words.items()},
                }
            )
    print(f"{args.pairs} pairs of an unchanged 0.22 ms ONNX Runtime model on {cpu_name()}\n")
    print("| comparison | p50 'slower' | p90 'slower' | p50 'inconclusive' | p90 'inconclusive' |")
    print("|---|---|---|---|---|")
    for name, label in (("without", "without the machine's speed"), ("with", "with the machine's speed")):
        counts = [
            sum(row.get(f"{name}_{metric}") == word for row in rows)
            for word in ("slower", "inconclusive (noise)")
            for metric in ("p50_ms", "p90_ms")
        ]
        print(f"| {label} | {counts[0]} | {counts[1]} | {counts[2]} | {counts[3]} |")
    moved = sum(row["machine_moved"] > 0.10 for row in rows)
    worst = max(abs(row["fastest_change"]) for row in rows)
    print(f"\nthe machine's speed moved by more than 10 % in {moved} of {len(rows)} pairs; ")
    print(f"the largest change of a pair's fastest run: {worst:+.0%}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
