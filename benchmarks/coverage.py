"""Coverage: a zoo of SavedModels through `tflite`, `tflite:int8`, `onnx`, `tfjs` with no flags, beside the peers.

    .venv/bin/python benchmarks/coverage.py [--models NAME ...] [--out benchmarks/.cache/coverage] [--legacy]

`--legacy` forces edgeport's v1-session loader on every model (no peers): the path a Keras 2-era SavedModel
takes when `tf.saved_model.load` cannot restore it must convert every model the TF2 path does.

Every model is built locally (random or one-step-trained weights, nothing downloaded) in its own process and
cached. A cell passes when the artifact converted and its outputs agree with the SavedModel's on the same
inputs, on the real runtime. edgeport: `edgeport convert MODEL -t T --no-bench` (its own check). Peers, fed the
same synthetic inputs and judged by the same independent check here (cosine against the SavedModel's outputs,
0.9999 for float, 0.95 for int8): the TFLite converter (`TFLiteConverter.from_saved_model`, int8 with a
representative dataset of those inputs) on LiteRT, and the tf2onnx CLI (`--saved-model`, opset 18) on ONNX
Runtime. The official TF.js converter cannot be installed beside TensorFlow 2.21 (it pins 2.19), so the TF.js
column has no peer. Prints the Markdown matrix for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGEPORT_BENCH_CACHE", Path(__file__).with_name(".cache"))) / "coverage"
TARGETS = ("tflite", "tflite:int8", "onnx", "tfjs")
EDGEPORT = Path(sys.executable).with_name("edgeport")

PRELUDE = """\
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import keras
keras.utils.set_random_seed(0)
L = keras.layers
out = sys.argv[1]
def keras_export(model):
    model.export(out, verbose=False)
def with_batchnorm_statistics(model, shape):
    # random weights collapse activations; one training-mode pass with momentum 0 sets real BN statistics
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.0
    model(np.random.default_rng(0).random((8, *shape), dtype=np.float32), training=True)
    return model
def module_export(module, signatures=None):
    tf.saved_model.save(module, out, signatures=signatures or {"serving_default": module.serve})
"""

# name -> the body of a script that writes a SavedModel to `out`
ZOO: dict[str, str] = {
    "mobilenetv3small": "keras_export(with_batchnorm_statistics(keras.applications.MobileNetV3Small(weights=None, "
    "input_shape=(96, 96, 3), classifier_activation=None), (96, 96, 3)))",
    "efficientnetv2b0": "keras_export(keras.applications.EfficientNetV2B0(weights=None, input_shape=(64, 64, 3), "
    "classifier_activation=None))",
    "densenet121": "keras_export(keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), "
    "classes=10, classifier_activation=None))",
    "resnet50": "keras_export(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10, "
    "classifier_activation=None))",
    "conv1d_audio": """
x = keras.Input((4000, 1), name="waveform")
h = x
for filters in (8, 16, 32):
    h = L.Conv1D(filters, 9, strides=4, activation="relu")(h)
keras_export(keras.Model(x, L.Dense(6)(L.GlobalAveragePooling1D()(h))))
""",
    "lstm_text": """
ids = keras.Input((32,), dtype="int32", name="ids")
keras_export(keras.Model(ids, L.Dense(5)(L.LSTM(16)(L.Embedding(100, 8)(ids)))))
""",
    "bigru_text": """
ids = keras.Input((24,), dtype="int32", name="ids")
h = L.Bidirectional(L.GRU(8, return_sequences=True))(L.Embedding(100, 8)(ids))
keras_export(keras.Model(ids, L.Dense(3)(L.GlobalMaxPooling1D()(h))))
""",
    "transformer": """
x = keras.Input((16, 32), name="tokens")
a = L.MultiHeadAttention(4, 8)(x, x)
h = L.LayerNormalization()(x + a)
f = L.Dense(32)(L.Dense(64, activation="gelu")(h))
keras_export(keras.Model(x, L.LayerNormalization()(h + f)))
""",
    "gru_dynamic": """
x = keras.Input((None, 16), name="frames")
keras_export(keras.Model(x, L.Dense(4)(L.GRU(8)(x))))
""",
    "fcn_dynamic": """
x = keras.Input((None, None, 3), name="image")
h = x
for filters in (8, 16, 16):
    h = L.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
keras_export(keras.Model(x, L.Conv2D(5, 1)(h)))
""",
    "string_lookup": """
lookup = L.StringLookup(vocabulary=["red", "green", "blue"])
words = keras.Input((4,), dtype="string", name="words")
keras_export(keras.Model(words, L.Dense(2)(keras.ops.cast(lookup(words), "float32"))))
""",
    "integer_lookup": """
lookup = L.IntegerLookup(vocabulary=[3, 7, 11, 19])
codes = keras.Input((4,), dtype="int64", name="codes")
keras_export(keras.Model(codes, L.Dense(2)(keras.ops.cast(lookup(codes), "float32"))))
""",
    "hashing": """
words = keras.Input((4,), dtype="string", name="words")
keras_export(keras.Model(words, L.Dense(2)(keras.ops.cast(L.Hashing(16)(words), "float32"))))
""",
    "while_loop": """
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def serve(self, x):
        i = tf.constant(0)
        _, y = tf.while_loop(lambda i, y: i < 5, lambda i, y: (i + 1, tf.tanh(y * 1.5 + 0.1)), [i, x])
        return {"y": y}
module_export(M())
""",
    "cond": """
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.cond(tf.reduce_sum(x) > 4.0, lambda: x * 2.0, lambda: tf.sqrt(x + 1.0))}
module_export(M())
""",
    "mixed_dtypes": """
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 6], tf.int64, name="count"),
                                  tf.TensorSpec([1, 6], tf.bool, name="mask"),
                                  tf.TensorSpec([1, 6], tf.uint8, name="pixels")])
    def serve(self, count, mask, pixels):
        mixed = tf.cast(count, tf.float32) * tf.cast(mask, tf.float32) + tf.cast(pixels, tf.float32) / 255.0
        return {"mixed": mixed}
module_export(M())
""",
    "two_signatures": """
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.normal([8, 3], seed=1))
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def serve(self, x):
        return {"logits": tf.matmul(x, self.w)}
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def probs(self, x):
        return {"probs": tf.nn.softmax(tf.matmul(x, self.w))}
m = M()
module_export(m, {"serving_default": m.serve, "probs": m.probs})
""",
    "tf1_builder": """
g = tf.Graph()
with g.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 8], name="x")
    w = tf.compat.v1.get_variable("w", [8, 4], initializer=tf.compat.v1.random_normal_initializer(seed=2))
    y = tf.nn.relu(tf.matmul(x, w), name="y")
    with tf.compat.v1.Session(graph=g) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(out)
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
""",
    "multi_io": """
a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
h = L.Dense(8, activation="relu")(L.Concatenate()([a, b]))
keras_export(keras.Model({"a": a, "b": b}, {"score": L.Dense(1)(h), "embedding": L.Dense(3)(h)}))
""",
    "gelu_mlp": """
x = keras.Input((12,), name="features")
keras_export(keras.Model(x, L.Dense(4)(L.Dense(16, activation="gelu")(x))))
""",
    "convnext_tiny": "keras_export(keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), "
    "classes=10, classifier_activation=None))",
    "asset_vocabulary": """
vocabulary = os.path.join(os.path.dirname(out), "asset_vocabulary.txt")
with open(vocabulary, "w") as file:
    file.write("\\n".join(["sun", "moon", "star", "comet", "planet"]) + "\\n")
class M(tf.Module):
    def __init__(self):
        self.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            vocabulary, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=-1)
        self.w = tf.Variable(tf.random.normal([6, 3], seed=1))
    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.string, name="words")])
    def serve(self, words):
        return {"scores": tf.matmul(tf.cast(self.table.lookup(words) + 1, tf.float32), self.w)}
m = M()
module_export(m)
""",
    "text_vectorization": """
vectorize = L.TextVectorization(max_tokens=20, output_sequence_length=6, vocabulary=["the", "cat", "sat", "mat"])
text = keras.Input((1,), dtype="string", name="text")
keras_export(keras.Model(text, L.Dense(2)(keras.ops.cast(vectorize(text), "float32"))))
""",
}
FIXTURES = {
    "keras2_tf212": ROOT / "tests/fixtures/legacy/keras2_tf212",
    "tf_keras": ROOT / "tests/fixtures/legacy/tf_keras",
}

PEER_CHECK = """\
import os, sys, json, subprocess, tempfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
path, which, work = sys.argv[1], sys.argv[2], sys.argv[3]
ranges = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}  # the ranges edgeport drew from, where it inferred one
loaded = tf.saved_model.load(path)
fn = loaded.signatures["serving_default"]
_, specs = fn.structured_input_signature
rng = np.random.default_rng(0)
def sample():
    feed = {}
    for name, spec in specs.items():
        shape = [1 if d is None else d for d in spec.shape.as_list()]
        shape = [shape[0]] + [16 if d is None else d for d in spec.shape.as_list()[1:]]
        if spec.dtype == tf.string:
            feed[name] = np.array(rng.choice(["red", "green", "blue", "cyan"], size=shape), dtype=object)
        elif spec.dtype.is_integer:
            low, high = ranges.get(name, (0, 10))
            feed[name] = rng.integers(int(low), int(high), size=shape).astype(spec.dtype.as_numpy_dtype)
        elif spec.dtype == tf.bool:
            feed[name] = rng.random(shape) < 0.5
        else:
            low, high = ranges.get(name, (0.0, 1.0))
            feed[name] = rng.uniform(low, high, size=shape).astype(spec.dtype.as_numpy_dtype)
    return feed
feeds = [sample() for _ in range(4)]
refs = [{k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in f.items()}).items()} for f in feeds]
def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    n = np.linalg.norm(a) * np.linalg.norm(b)
    return 1.0 if n == 0 and np.abs(a - b).max(initial=0) == 0 else (float(a @ b / n) if n else 0.0)
def verdict(outs, floor):
    worst = min(cosine(r[k], o[k]) for r, o in zip(refs, outs) for k in r)
    return {"passed": worst >= floor, "cosine": worst}
try:
    if which.startswith("tflite"):
        from ai_edge_litert.interpreter import Interpreter
        converter = tf.lite.TFLiteConverter.from_saved_model(path)
        if which == "tflite:int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: iter(feeds)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        interpreter = Interpreter(model_content=converter.convert())
        runner = interpreter.get_signature_runner()
        outs = [runner(**f) for f in feeds]
        print(json.dumps(verdict(outs, 0.95 if which == "tflite:int8" else 0.9999)))
    else:
        import onnxruntime as ort
        model = os.path.join(work, "model.onnx")
        done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", path, "--output", model,
                               "--opset", "18"], capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError((done.stderr.strip().splitlines() or ["tf2onnx failed"])[-1])
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        inputs = {i.name: i for i in session.get_inputs()}
        def by_name(f):
            out = {}
            for name, value in f.items():
                key = next((k for k in inputs if k == name or k.startswith(name + ":")), None) or list(inputs)[0]
                out[key] = value
            return out
        outs = [dict(zip(sorted(refs[0]), [v for _, v in sorted(zip(names, session.run(names, by_name(f))))]))
                for f in feeds]
        print(json.dumps(verdict(outs, 0.9999)))
except Exception as exc:
    lines = str(exc).strip().splitlines()
    print(json.dumps({"passed": False, "error": f"{type(exc).__name__}: {lines[-1][:160] if lines else ''}"}))
"""


def build(name: str) -> Path:
    if name in FIXTURES:
        return FIXTURES[name]
    folder = CACHE / "models" / name
    if (folder / "saved_model.pb").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    script = PRELUDE + textwrap.dedent(ZOO[name])
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode:
        raise SystemExit(f"building {name} failed: {done.stderr[-1500:]}")
    return folder


INFERRED_RANGE = re.compile(r"; (\w+) in \[([-\d.e]+), ([-\d.e]+)\): ")


def edgeport_cells(model: Path, out: Path, legacy: bool = False) -> tuple[dict[str, str], dict[str, list[float]]]:
    """(target -> cell, input -> the [low, high) range edgeport inferred from the graph and drew from)."""
    args = [a for target in TARGETS for a in ("-t", target)] + (["--legacy"] if legacy else [])
    done = subprocess.run(
        [str(EDGEPORT), "convert", str(model), *args, "-o", str(out), "--no-bench", "--no-history", "--json"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        line = (done.stderr.strip().splitlines() or ["no report"])[-1]
        return dict.fromkeys(TARGETS, f"error: {line[:120]}"), {}
    cells = {}
    for target in report["targets"]:
        failed = [s["reason"] for s in target["stages"] if s["status"] in ("failed", "error")]
        cells[target["name"]] = "pass" if not failed else f"FAIL: {failed[0][:120]}"
    source = report.get("samples", {}).get("source", "")
    ranges = {name: [float(low), float(high)] for name, low, high in INFERRED_RANGE.findall(source)}
    return cells, ranges


def peer_cell(model: Path, which: str, work: Path, ranges: dict[str, list[float]]) -> str:
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", PEER_CHECK, str(model), which, str(work), json.dumps(ranges)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"FAIL: crashed ({done.returncode})"
    if result.get("passed"):
        return "pass"
    if result.get("error"):
        return f"FAIL: {result['error']}"
    return f"FAIL: cosine {result.get('cosine', 0.0):.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[*ZOO, *FIXTURES])
    parser.add_argument("--out", type=Path, default=CACHE / "runs")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--legacy", action="store_true", help="force edgeport's v1-session loader (no peers)")
    args = parser.parse_args()
    if args.legacy:
        args.no_peers = True
    rows = []
    for name in args.models:
        model = build(name)
        ours, ranges = edgeport_cells(
            model, args.out / name / ("edgeport-legacy" if args.legacy else "edgeport"), args.legacy
        )
        peers = (
            {}
            if args.no_peers
            else {
                which: peer_cell(model, which, args.out / name / which.replace(":", "-"), ranges)
                for which in ("tflite", "tflite:int8", "onnx")
            }
        )
        rows.append((name, ours, peers))
        print(json.dumps({"model": name, "edgeport": ours, "peers": peers}), flush=True)
    print("\n| model | tflite | peer | tflite:int8 | peer | onnx | peer (tf2onnx) | tfjs |")
    print("|---|---|---|---|---|---|---|---|")
    mark = lambda cell: "pass" if cell == "pass" else "**fail**"  # noqa: E731
    for name, ours, peers in rows:
        cells = [mark(ours.get(t, "missing")) for t in TARGETS]
        print(
            f"| {name} | {cells[0]} | {mark(peers.get('tflite', '-')) if peers else '-'} | {cells[1]} | "
            f"{mark(peers.get('tflite:int8', '-')) if peers else '-'} | {cells[2]} | "
            f"{mark(peers.get('onnx', '-')) if peers else '-'} | {cells[3]} |"
        )
    totals = {t: sum(ours.get(t) == "pass" for _, ours, _ in rows) for t in TARGETS}
    peer_totals = {w: sum(p.get(w) == "pass" for _, _, p in rows) for w in ("tflite", "tflite:int8", "onnx")}
    print(
        f"\nedgeport: {sum(totals.values())}/{len(rows) * len(TARGETS)} cells ({totals}); peers: {peer_totals} "
        f"of {len(rows)} each"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
