"""What `--layers` costs: MobileNetV2 through the four formats, with and without the per-layer comparison.

`.venv/bin/python benchmarks/bench_layers.py [--size 224] [--repeat 2]` runs
`edgeport convert MODEL -t tflite:int8 -t onnx -t tfjs -t tflm --no-bench --no-baseline` twice per repeat, once
with `--layers`, alternating so drift hits both alike, and prints the added wall time (goal: at most 30 s) and
each target's per-layer stage time from report.json. Nothing is downloaded: the model is built locally with
random weights (common.export_keras_application). A check that fails compares layers by itself, so the
quantized targets' gates are opened (GATES) to keep the run without `--layers` free of any comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import cpu_line, export_keras_application, timed_process

TARGETS = ("tflite:int8", "onnx", "tfjs", "tflm")
GOAL_SECONDS = 30.0
GATES = "".join(
    f'[target."{target}"]\nmin_cosine = 0.0\nmin_top1_agreement = 0.0\n' for target in ("tflite:int8", "tflm")
)


def convert(model: Path, out: Path, layers: bool) -> tuple[float, dict]:
    config = out.with_suffix(".toml")
    config.write_text(GATES)
    args = [sys.executable, "-m", "edgeport", "convert", str(model), "-o", str(out), "--no-bench", "--no-baseline"]
    args += ["--config", str(config)]
    for target in TARGETS:
        args += ["-t", target]
    if layers:
        args.append("--layers")
    seconds, result = timed_process(args)
    if result.returncode != 0:
        raise SystemExit(f"edgeport convert failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return seconds, json.loads((out / "report.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    model = export_keras_application("MobileNetV2", args.size)
    plain: list[float] = []
    with_layers: list[float] = []
    last: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as scratch:
        for index in range(args.repeat):
            for layers in (False, True) if index % 2 == 0 else (True, False):
                seconds, report = convert(model, Path(scratch) / f"run-{index}-{int(layers)}", layers)
                (with_layers if layers else plain).append(seconds)
                if layers:
                    last = report
    added = statistics.median(with_layers) - statistics.median(plain)
    compared = [t["name"] for t in last.get("targets", []) if (t.get("layers") or {}).get("tensors")]
    if len(compared) != len(TARGETS):
        raise SystemExit(f"--layers compared only {', '.join(compared) or 'no target'}")
    print(f"MobileNetV2 {args.size}x{args.size}, targets {', '.join(TARGETS)}; {cpu_line()}")
    print(f"wall time: without --layers {statistics.median(plain):.1f} s, with {statistics.median(with_layers):.1f} s")
    print(f"added by --layers: {added:.1f} s (goal: at most {GOAL_SECONDS:g} s), median of {args.repeat} runs each")
    print("\n| target | layers compared | fused away | per-layer stage s | first divergent |\n|---|---|---|---|---|")
    for target in last.get("targets", []):
        layers = target.get("layers") or {}
        print(
            f"| {target['name']} | {len(layers.get('tensors', []))} | {len(layers.get('fused_away', []))} | "
            f"{layers.get('seconds', '-')} | {layers.get('first_divergent') or 'none'} |"
        )
    return 0 if added <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
