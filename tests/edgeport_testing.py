"""Small real SavedModels for the tests, and helpers to run the CLI (imported by conftest.py and the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = Path(__file__).resolve().parent / "core" / "fake_plugin"  # a third-party plug-in, importable
PLUGIN_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")]))}
sys.path.insert(0, str(ROOT / "examples"))


def tf():
    from edgeport.model.tf_quiet import import_tensorflow

    return import_tensorflow()


def save_multi_io(path: Path) -> Path:
    """Two named inputs, a dict of two outputs."""
    t = tf()

    class MultiIO(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(t.random.stateless_normal([4, 3], seed=[1, 2]))

        @t.function(
            input_signature=[
                t.TensorSpec([None, 4], t.float32, name="features"),
                t.TensorSpec([None, 1], t.float32, name="scale"),
            ]
        )
        def serve(self, features, scale):
            logits = t.matmul(features, self.w) * scale
            return {"logits": logits, "probs": t.nn.softmax(logits)}

    module = MultiIO()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_small_cnn(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(6, activation="softmax")(x)
    keras.Model(inputs, outputs).export(str(path), verbose=False)
    return path


def save_tf1_builder(path: Path) -> Path:
    """A TF1 graph saved with tf.compat.v1.saved_model.Builder (variables, a v1 signature)."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.float32, [None, 3], name="x")
        w = t.compat.v1.get_variable("w", [3, 4], initializer=t.compat.v1.random_normal_initializer(seed=2))
        b = t.compat.v1.get_variable("b", [4], initializer=t.compat.v1.constant_initializer(0.1))
        y = t.nn.tanh(t.matmul(x, w) + b, name="y")
        with t.compat.v1.Session(graph=graph) as session:
            session.run(t.compat.v1.global_variables_initializer())
            builder = t.compat.v1.saved_model.Builder(str(path))
            signature = t.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def save_tiny(path: Path, seed: int = 5) -> Path:
    """y = tanh(x @ w), x [1, 4]: the smallest model a whole run converts, checks and benchmarks in seconds."""
    t = tf()

    class Tiny(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(t.random.stateless_normal([4, 3], seed=[seed, 1]))

        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.tanh(t.matmul(x, self.w))}

    module = Tiny()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_with_op(path: Path, op: str) -> Path:
    """A model using one op with no TFLite builtin: 'cumprod' (a Flex op) or 'bessel' (no kernel at all)."""
    t = tf()
    functions = {"cumprod": lambda x: t.math.cumprod(x, axis=1), "bessel": t.math.bessel_i0e}

    class WithOp(t.Module):
        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": functions[op](x) + 1.0}

    module = WithOp()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_dynamic_sum(path: Path) -> Path:
    """A tf.Module over [?, ?, 3] (batch and length dynamic) summing over the length."""
    t = tf()

    class Dynamic(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, None, 3], t.float32, name="sequence")])
        def serve(self, sequence):
            return {"total": t.reduce_sum(sequence, axis=1)}

    module = Dynamic()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_string_input(path: Path) -> Path:
    t = tf()

    class Strings(t.Module):
        @t.function(input_signature=[t.TensorSpec([None], t.string, name="text")])
        def serve(self, text):
            return {"length": t.strings.length(text)}

    module = Strings()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_tiny_digits_model(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A tiny CNN (logits out, `scores`) trained on scikit-learn's 8x8 digits in seconds.

    Returns (SavedModel folder, 200 training images for calibration, held-out images), images as feeds.
    """
    from sklearn.datasets import load_digits

    t = tf()
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    train, held_out = order[:1400], order[1400:]
    t.keras.utils.set_random_seed(0)
    model = t.keras.Sequential(
        [
            t.keras.Input((8, 8, 1)),
            t.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            t.keras.layers.MaxPooling2D(),
            t.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            t.keras.layers.Flatten(),
            t.keras.layers.Dense(10),
        ]
    )
    model.compile("adam", t.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[train], digits.target[train], epochs=15, batch_size=32, verbose=0)

    class Serving(t.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.keras_model = keras_model

        @t.function(input_signature=[t.TensorSpec([None, 8, 8, 1], t.float32, name="image")])
        def serve(self, image):
            return {"scores": self.keras_model(image)}

    module = Serving(model)
    t.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder, images[train[:200]][:, None], images[held_out][:, None]


def save_planted(path: Path, scale: float) -> tuple[Path, np.ndarray, np.ndarray]:
    """The per-layer comparison's planted model (tests/targets/test_layers.py, test_quant_fallback.py,
    tests/core/test_layers_report.py): conv 3x3 -> relu -> a 1x1 conv scaling 2 of 8 channels by `scale`
    (`planted_up`) -> a 1x1 conv scaling them back (`planted_down`) -> conv -> relu -> mean -> matmul. At scale
    1000 int8's one scale per tensor rounds the 6 unscaled channels after `planted_up` to zero, and
    `planted_down` adds the error.

    Returns (SavedModel folder, 16 images as feeds, the labels the SavedModel gets all right).
    """
    t = tf()
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.4, (3, 3, 3, 8)).astype(np.float32)
    up = np.diag([scale] * 2 + [1.0] * 6).astype(np.float32).reshape(1, 1, 8, 8)
    down = np.diag([1 / scale] * 2 + [1.0] * 6).astype(np.float32).reshape(1, 1, 8, 8)
    w2 = rng.normal(0, 0.4, (3, 3, 8, 8)).astype(np.float32)
    wd = rng.normal(0, 0.4, (8, 10)).astype(np.float32)

    class Planted(t.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.up, self.down, self.w2, self.wd = (t.Variable(v) for v in (w1, up, down, w2, wd))

        @t.function(input_signature=[t.TensorSpec([None, 8, 8, 3], t.float32, name="image")])
        def serve(self, image):
            x = t.nn.relu(t.nn.conv2d(image, self.w1, 1, "SAME", name="conv1"), name="relu1")
            x = t.nn.conv2d(x, self.up, 1, "SAME", name="planted_up")
            x = t.nn.conv2d(x, self.down, 1, "SAME", name="planted_down")
            x = t.nn.relu(t.nn.conv2d(x, self.w2, 1, "SAME", name="conv2"), name="relu2")
            x = t.reduce_mean(x, axis=[1, 2], name="pool")
            return {"scores": t.matmul(x, self.wd, name="logits")}

    module = Planted()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    images = np.random.default_rng(1).uniform(0, 1, (16, 1, 8, 8, 3)).astype(np.float32)
    scores = np.stack([module.serve(image)["scores"].numpy() for image in images])
    return path, images, scores.reshape(16, -1).argmax(-1)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeport", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=900,
        check=False,
    )


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    """The run failed with `code` and one line `edgeport: error: ...` (last on stderr) holding every fragment."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeport: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines may come before it
    assert "Traceback" not in result.stderr and "Error:" not in "\n".join(lines[:-1])
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def quick_bench() -> list[str]:
    return ["--min-runs", "5", "--min-seconds", "0.05", "--warmup-runs", "1"]


def random_feeds(shape, count=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, *shape)).astype(np.float32)


# The per-layer tests compare onnx:int8 on the ONNX Runtime-fused file (--ort-optimized), where Conv+Relu is one
# node as in TFLite. On the standard ONNX file (the default since issue 23) each Relu is quantized on its own and
# the per-layer comparison names the first Relu as divergent even on a healthy model: an open defect, said in
# the closing note of issue 23, not hidden here.
ORT_FUSED_FOR_LAYERS = ("--ort-optimized",)
