"""Shared by the benchmark scripts: test models built locally (random weights, nothing downloaded), timing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("EDGEPORT_BENCH_CACHE", Path(__file__).with_name(".cache")))


def export_keras_application(name: str, size: int = 224) -> Path:
    """keras.applications model with random weights and LOGITS out, exported once with model.export.

    Random weights collapse a deep network's activations (MobileNetV2's logits come out near 1e-11), which
    makes every float artifact "agree" and rounds an int8 one to zero. So the BatchNorm statistics are set
    from one training-mode pass over random images (momentum 0): weights stay random, activations get the
    scale a trained network has. Logits, not softmax, are compared.
    """
    path = CACHE / f"{name.lower()}_{size}_logits_bnstats"
    if (path / "saved_model.pb").is_file():
        return path
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import keras, numpy as np\nkeras.utils.set_random_seed(0)\n"
        f"m = getattr(keras.applications, {name!r})(weights=None, input_shape=({size}, {size}, 3),"
        " classifier_activation=None)\n"
        "for layer in m.layers:\n"
        "    if isinstance(layer, keras.layers.BatchNormalization):\n"
        "        layer.momentum = 0.0\n"
        f"m(np.random.default_rng(0).uniform(0, 1, (16, {size}, {size}, 3)).astype('float32'), training=True)\n"
        f"m.export({str(path)!r}, verbose=False)\n"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def timed_process(args: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, **kwargs, check=False)
    return time.perf_counter() - start, result


def cpu_line() -> str:
    from edgeport.checks.latency import cpu_name

    return cpu_name()
