"""Rewrites that mean the same in every format live once (edgeport.model.graph_rewrites) and serve each.

Exact GELU is 0.5 * x * erfc(-x / sqrt(2)): tf2onnx has no Erfc handler and TF.js no Erfc kernel; both have
Erf. The same rewrite makes the model convert to ONNX and to TF.js, checked on ONNX Runtime and in Node.
"""

from __future__ import annotations

import json

import pytest

from edgeport.model.graph_rewrites import count_ops, rewrite_erfc
from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow
from edgeport_testing import run_cli


@pytest.fixture(scope="module")
def gelu_dense(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(2)
    features = keras.Input((12,), name="features")
    hidden = keras.layers.Dense(16, activation="gelu")(features)  # exact GELU: Erfc in the graph
    path = tmp_path_factory.mktemp("gelu") / "saved_model"
    keras.Model(features, keras.layers.Dense(4, name="logits")(hidden)).export(str(path), verbose=False)
    return path


def test_gelu_converts_to_onnx_and_tfjs_with_one_rewrite(gelu_dense, tmp_path):
    assert count_ops(load_model(gelu_dense).frozen.graph_def, "Erfc") >= 1
    result = run_cli("convert", gelu_dense, "-t", "onnx", "-t", "tfjs", "-o", tmp_path, "--no-bench", "--no-history")
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.returncode == 0, [t["stages"] for t in report["targets"]]
    onnx, tfjs = report["targets"]
    assert onnx["details"]["erfc_rewrites"] >= 1 and any("written as 1 - Erf" in note for note in onnx["notes"])
    for target in (onnx, tfjs):
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.99999, target["name"]
    inspected = run_cli("inspect", gelu_dense, "-t", "onnx", "--json")
    assert inspected.returncode == 0 and not [
        f for f in json.loads(inspected.stdout)["preflight"]["onnx"] if f["severity"] == "error"
    ]


def test_erfc_rewrite_is_exact_to_float_precision():
    tf = import_tensorflow()
    import numpy as np

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        tf.math.erfc(x, name="y")
    graph_def = graph.as_graph_def()
    assert rewrite_erfc(graph_def) == 1 and count_ops(graph_def, "Erfc") == 0
    rewritten = tf.Graph()
    with rewritten.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    values = np.linspace(-4, 4, 81, dtype=np.float32)
    with tf.compat.v1.Session(graph=rewritten) as session:
        got = session.run("y:0", {"x:0": values})
    assert np.abs(got - tf.math.erfc(values).numpy()).max() < 1e-6
