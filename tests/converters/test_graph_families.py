"""Graph families from Keras 3 applications and tf.Modules users bring, on every format's real runtime.

* `_noinline` functions (`tf.function(jit_compile=True)` inside a layer, ConvNeXt's depthwise convolutions)
  are inlined into the shared frozen graph, so ONNX and TF.js get no function call.
* Grouped convolutions (Conv2D with fewer filter input channels than input channels) run in TF.js, as a
  depthwise convolution (one channel per group) or split per group.
* A lookup table filled from a vocabulary file (an asset) converts to TFLite as tensor ops, said in the report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow
from edgeport_testing import run_cli

tf = import_tensorflow()


class _GroupedConvolutions(tf.Module):
    """Input 8 channels: a jit-compiled grouped conv with one channel per group (depthwise, multiplier 2), then
    a plain one with 2 channels per group (4 groups)."""

    def __init__(self):
        rng = np.random.default_rng(3)
        self.depthwise = tf.Variable(rng.normal(size=(3, 3, 1, 16)).astype(np.float32))
        self.grouped = tf.Variable(rng.normal(size=(3, 3, 4, 8)).astype(np.float32) * 0.2)

    @tf.function(jit_compile=True)
    def _depthwise(self, x):
        return tf.nn.conv2d(x, self.depthwise, strides=1, padding="SAME")

    @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 8], tf.float32, name="image")])
    def serve(self, image):
        h = tf.nn.relu(self._depthwise(image))
        return {"features": tf.nn.conv2d(h, self.grouped, strides=2, padding="VALID")}


def _convert(model, out, *targets):
    args = [a for target in targets for a in ("-t", target)]
    result = run_cli("convert", model, *args, "-o", out, "--no-bench", "--no-history")
    report = json.loads((out / "report.json").read_text())
    return result, {target["name"]: target for target in report["targets"]}


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    module = _GroupedConvolutions()
    path = tmp_path_factory.mktemp("grouped") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_noinline_functions_are_inlined_into_the_shared_frozen_graph(grouped):
    graph_def = load_model(grouped).frozen.graph_def
    assert not {node.op for node in graph_def.node} & {"PartitionedCall", "StatefulPartitionedCall"}
    assert len(graph_def.library.function) == 0


def test_grouped_convolutions_run_on_every_format(grouped, tmp_path):
    result, targets = _convert(grouped, tmp_path / "out", "tflite", "onnx", "tfjs")
    assert result.returncode == 0, {name: t["stages"] for name, t in targets.items()}
    for target in targets.values():
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.99999, target["name"]
    topology = json.loads((tmp_path / "out" / "tfjs" / "model.json").read_text())["modelTopology"]["node"]
    ops = {node["op"] for node in topology}
    assert ops & {"DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"} and "Split" in ops


def test_vocabulary_file_table_converts_to_tflite_as_tensor_ops(tmp_path):
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("sun\nmoon\nstar\ncomet\n")

    class Words(tf.Module):
        def __init__(self):
            initializer = tf.lookup.TextFileInitializer(
                str(vocabulary),
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)
            self.w = tf.Variable(np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.string, name="words")])
        def serve(self, words):
            return {"scores": tf.matmul(tf.cast(self.table.lookup(words) + 1, tf.float32), self.w)}

    module = Words()
    path = tmp_path / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    vocabulary.unlink()  # the SavedModel carries it as an asset
    result, targets = _convert(path, tmp_path / "out", "tflite", "onnx")
    assert result.returncode == 0, {name: t["stages"] for name, t in targets.items()}
    tflite = targets["tflite"]
    assert tflite["accuracy"]["outputs"][0]["max_abs_error"] < 1e-5
    assert any("lookup table(s) (4 keys) converted as tensor ops" in note for note in tflite["notes"])
    assert targets["onnx"]["accuracy"]["outputs"][0]["max_abs_error"] < 1e-5
