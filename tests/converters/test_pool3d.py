"""3-D pooling lowered in the shared graph (edgeport.model.graph_rewrites.lower_pool3d): TFLite has no 3-D
pooling builtin ("'tf.MaxPool3D' op is neither a custom op nor a flex op"), so a 3-D U-Net failed on TFLite.

Each MaxPool3D / AvgPool3D (NDHWC) becomes two 2-D pools over merged axes; checked on the GraphDef against
TensorFlow's own 3-D pooling (VALID, SAME, strides other than the window, uneven sizes), then end to end on
LiteRT. What it cannot lower (NCDHW, a window over channels) is left as it is, with one line saying why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.model.graph_rewrites import count_ops, lower_pool3d
from edgeport.model.tf_quiet import import_tensorflow
from edgeport_testing import run_cli

tf = import_tensorflow()

CASES = [
    ("MaxPool3D", (2, 2, 2), (2, 2, 2), "VALID"),
    ("MaxPool3D", (3, 3, 3), (2, 2, 2), "SAME"),
    ("AvgPool3D", (2, 2, 2), (2, 2, 2), "VALID"),
    ("AvgPool3D", (3, 2, 3), (2, 1, 2), "SAME"),  # strides != window, SAME: the divisor counts valid cells only
    ("MaxPool3D", (2, 3, 1), (1, 2, 1), "VALID"),
]


def _pool(op, window, strides, padding):
    fn = tf.nn.max_pool3d if op == "MaxPool3D" else tf.nn.avg_pool3d
    return lambda x: fn(x, window, strides, padding)


@pytest.mark.parametrize(("op", "window", "strides", "padding"), CASES, ids=str)
def test_pool3d_lowered_to_2d_pools_matches_tensorflow(op, window, strides, padding):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 7, 6, 3], name="x")
        tf.identity(_pool(op, window, strides, padding)(x), name="y")
    graph_def = graph.as_graph_def()
    assert lower_pool3d(graph_def) == (1, []) and count_ops(graph_def, op) == 0
    rewritten = tf.Graph()
    with rewritten.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    values = np.random.default_rng(0).normal(size=(2, 5, 7, 6, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=rewritten) as session:
        got = session.run("y:0", {"x:0": values})
    want = _pool(op, window, strides, padding)(tf.constant(values)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_a_pool3d_it_cannot_lower_is_left_with_one_line():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 4, 4], name="x")
        tf.raw_ops.MaxPool3D(input=x, ksize=[1, 2, 2, 2, 2], strides=[1, 2, 2, 2, 2], padding="VALID", name="y")
        tf.raw_ops.AvgPool3D(
            input=x, ksize=[1, 1, 2, 2, 2], strides=[1, 1, 2, 2, 2], padding="VALID", data_format="NCDHW", name="z"
        )
    graph_def = graph.as_graph_def()
    assert lower_pool3d(graph_def) == (
        0,
        [
            "MaxPool3D y: a window or stride over batch or channels ([1, 2, 2, 2, 2], [1, 2, 2, 2, 2]) is not lowered",
            "AvgPool3D z: data_format NCDHW is not lowered (only NDHWC)",
        ],
    )
    assert count_ops(graph_def, "MaxPool3D") == count_ops(graph_def, "AvgPool3D") == 1


class _Volume(tf.Module):
    """A small 3-D encoder: Conv3D, MaxPool3D SAME, AvgPool3D VALID with strides != window."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.kernel = tf.Variable(rng.normal(size=(3, 3, 3, 2, 4)).astype(np.float32) * 0.3)

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 8, 2], tf.float32, name="volume")])
    def serve(self, volume):
        h = tf.nn.relu(tf.nn.conv3d(volume, self.kernel, [1, 1, 1, 1, 1], "SAME"))
        h = tf.nn.max_pool3d(h, 3, 2, "SAME")
        return {"features": tf.nn.avg_pool3d(h, (2, 3, 2), (1, 1, 2), "VALID")}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    module = _Volume()
    path = tmp_path_factory.mktemp("volume") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_a_3d_network_converts_to_tflite_and_matches_on_litert(volume, tmp_path):
    result = run_cli("convert", volume, "-t", "tflite", "-o", tmp_path, "--no-bench", "--no-history")
    report = json.loads((tmp_path / "report.json").read_text())
    target = report["targets"][0]
    assert result.returncode == 0, target["stages"]
    assert any("3-D pooling" in note for note in target["notes"]), target["notes"]
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.99999
