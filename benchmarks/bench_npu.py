"""Microcontroller NPUs: Vela's estimates for three small models on Ethos-U55-128 and Ethos-U65-256 (issue 27).

`.venv/bin/python benchmarks/bench_npu.py [--models digits,mobilenetv2,dscnn]` builds three models locally
(nothing downloaded) and runs ONE real `edgeport convert MODEL -t tflm -t tflm:ethos-u55-128 -t tflm:ethos-u65-256
--no-bench --no-history` per model, one after another, then prints a Markdown table read from each report.json:
Vela's estimated time, NPU cycles, operators on the NPU, SRAM, the compiled flash and the host TFLM arena.

- digits: the tests' tiny CNN trained in seconds on scikit-learn's 8x8 digits (save_tiny_digits_model);
- MobileNetV2 alpha 0.35 at 96x96x3, 1000 classes, logits, random weights (BatchNorm statistics from one pass
  over random images, as common.export_keras_application does);
- DS-CNN-S for keyword spotting (Arm ML-zoo's shape): 49x10x1 MFCC, Conv2D 64 10x4 stride 2, four
  depthwise-separable blocks of 64, average pooling, Dense 12; random weights, BatchNorm statistics likewise.

Each NPU target takes its board from edgeport.toml (Corstone-300 for the U55-128, NXP i.MX 93 for the U65-256);
plain `tflm` takes BOARD_TFLM. Vela's figures are estimates of its performance model, not measurements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CACHE, timed_process

U55, U65 = "tflm:ethos-u55-128", "tflm:ethos-u65-256"
TARGETS = ("tflm", U55, U65)
BOARD_TFLM = "raspberry-pi-pico"  # 2 MB flash: the only board in boards.json with an Arm core that fits MobileNetV2
CONFIG = f"""
[target.tflm]
board = "{BOARD_TFLM}"

[target."{U55}"]
board = "corstone-300"

[target."{U65}"]
board = "nxp-imx93"
"""

_BN_STATS = (
    "for layer in m.layers:\n"
    "    if isinstance(layer, keras.layers.BatchNormalization):\n"
    "        layer.momentum = 0.0\n"
    "m(np.random.default_rng(0).uniform({low}, {high}, (16, {shape})).astype('float32'), training=True)\n"
)
_HEADER = (
    "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\nimport keras, numpy as np\nkeras.utils.set_random_seed(0)\n"
)

BUILDERS = {
    "mobilenetv2": _HEADER + "m = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(96, 96, 3),"
    " classifier_activation=None)\n"
    + _BN_STATS.format(low=0, high=1, shape="96, 96, 3")
    + "m.export({path!r}, verbose=False)\n",
    "dscnn": _HEADER + "L = keras.layers\n"
    "x = inputs = keras.Input((49, 10, 1), name='mfcc')\n"
    "x = L.Conv2D(64, (10, 4), strides=2, padding='same', use_bias=False)(x)\n"
    "x = L.ReLU()(L.BatchNormalization()(x))\n"
    "for _ in range(4):\n"
    "    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding='same', use_bias=False)(x)))\n"
    "    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 1, use_bias=False)(x)))\n"
    "x = L.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])))(x)\n"
    "outputs = L.Dense(12)(L.Flatten()(x))\n"
    "m = keras.Model(inputs, outputs)\n"
    + _BN_STATS.format(low=-1, high=1, shape="49, 10, 1")
    + "m.export({path!r}, verbose=False)\n",
    "digits": "import sys; from pathlib import Path\n"
    "sys.path.insert(0, {tests!r})\n"
    "from edgeport_testing import save_tiny_digits_model\n"
    "save_tiny_digits_model(Path({path!r}))\n",
}
TITLES = {
    "digits": "digits CNN (8x8x1, trained)",
    "mobilenetv2": "MobileNetV2 0.35, 96x96x3 (random)",
    "dscnn": "DS-CNN-S KWS, 49x10x1 (random)",
}


def build(name: str) -> Path:
    """The model's SavedModel folder, built once into the benchmark cache."""
    path = CACHE / f"npu_{name}"
    if (path / "saved_model.pb").is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    subprocess.run([sys.executable, "-c", BUILDERS[name].format(path=str(path), tests=tests)], check=True)
    return path


def convert(model: Path, work: Path) -> tuple[float, int, dict | None, str]:
    """(seconds, exit code, report.json or None, the end of stderr) of one `edgeport convert` of the 3 targets."""
    config = work / "edgeport.toml"
    config.write_text(CONFIG)
    args = [sys.executable, "-m", "edgeport", "convert", str(model), "--config", str(config)]
    for target in TARGETS:
        args += ["-t", target]
    args += ["--no-bench", "--no-history", "-o", str(work / "out")]
    seconds, result = timed_process(args, cwd=work)
    report_path = work / "out" / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return seconds, result.returncode, report, (result.stderr or result.stdout).strip()[-1500:]


def _target(report: dict, name: str) -> dict | None:
    return next((t for t in report.get("targets", []) if t.get("name") == name), None)


def _failure(row: dict) -> str:
    bad = [s for s in row.get("stages", []) if s.get("status") not in ("passed", "skipped")]
    stages = [f"{s['stage']} {s['status']}" for s in bad]
    return ", ".join(stages) or str(row.get("verdict") or "failed")


def rows(title: str, report: dict | None, error: str) -> list[str]:
    if report is None:
        return [f"| {title} | all | failed, no report.json: {error.splitlines()[-1] if error else '?'} |" + " |" * 7]
    host = _target(report, "tflm") or {}
    arena = host.get("measurements", {}).get("arena_bytes")
    lines = []
    for name in TARGETS:
        row = _target(report, name)
        if row is None:
            lines.append(f"| {title} | `{name}` | not in report.json |" + " |" * 6)
            continue
        verdict = report.get("verdicts", {}).get(name)
        flash = row.get("measurements", {}).get("flash_bytes")
        outputs = (row.get("accuracy") or {}).get("outputs") or []
        cosine = f"{outputs[0]['cosine']:.5f}" if outputs and outputs[0].get("cosine") is not None else "-"
        check = f"{cosine} ({verdict})" if verdict else cosine
        npu = row.get("details", {}).get("ethos_u")
        if npu:
            ms = f"{npu['inference_ms_estimated']:.3f} @ {npu['clock_hz'] / 1e6:.0f} MHz"
            cycles = f"{npu['npu_cycles_estimated']:,} ({npu['total_cycles_estimated']:,} total)"
            fallbacks = npu["cpu_fallbacks"]
            total = npu["npu_operators"] + len(fallbacks)
            ops = f"{npu['npu_operators']} / {total}"
            if fallbacks:
                ops += "; CPU: " + "; ".join(f"{f['op']} ({f['reason']})" for f in fallbacks)
            sram = f"{npu['sram_bytes_estimated']:,}"
        elif name == "tflm":
            ms = cycles = ops = sram = "- (no NPU)"
        else:
            ms = f"no estimate: {_failure(row)}"
            cycles = ops = sram = "-"
        flash_said = f"{flash:,}" if isinstance(flash, int) else "-"
        arena_said = f"{arena:,}" if isinstance(arena, int) else "-"
        lines.append(
            f"| {title} | `{name}` | {ms} | {cycles} | {ops} | {sram} | {flash_said} | {arena_said} | {check} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,mobilenetv2,dscnn", help="comma-separated: " + ", ".join(BUILDERS))
    parser.add_argument("--keep", type=Path, help="keep each run's output under this folder")
    args = parser.parse_args()
    table = [
        "| model | target | Vela estimated ms (at clock) | NPU cycles (total) | ops on NPU / total | SRAM B (est.) "
        "| flash B (compiled) | host TFLM arena B | check: cosine (verdict) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    timings = []
    for name in args.models.split(","):
        model = build(name)
        with tempfile.TemporaryDirectory(prefix=f"bench-npu-{name}-") as tmp:
            work = args.keep / name if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            seconds, code, report, error = convert(model, work)
        timings.append(f"{name}: {seconds:.1f} s, exit {code}")
        if code != 0:
            print(f"{name}: edgeport convert exited {code}: {error}", file=sys.stderr)
        table += rows(TITLES[name], report, error)
    print("\n".join(table))
    print("\nconvert wall time: " + "; ".join(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
