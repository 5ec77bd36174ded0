"""Issue 22, families 1-3: graphs published trained models carry, converted with no flags.

* an STFT front-end (RFFT, ComplexAbs) with a dynamic batch: tf2onnx's RFFT handler fails on it and TF.js's
  wasm backend has no Complex kernel; ComplexAbs is written as sqrt(re² + im²) and its RFFT as a real DFT
  (edgeport.model.graph_rewrites.rewrite_complex_abs), checked on ONNX Runtime, LiteRT and TF.js;
* Conv3DTranspose (Conv3DBackpropInputV2), which TF.js's graph executor lacks: zeros inserted, padded, a
  Conv3D with the filter flipped (converters/tfjs/transposed_conv3d.py), checked on TF.js wasm in Node.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.converters.tfjs.transposed_conv3d import lower_transposed_conv3d
from edgeport.model.graph_rewrites import count_ops, rewrite_complex_abs
from edgeport.model.tf_quiet import import_tensorflow
from edgeport_testing import run_cli

tf = import_tensorflow()


def _run(graph, graph_def, fetch, feed):
    rewritten = tf.Graph()
    with rewritten.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=rewritten) as session:
        got = session.run(fetch, feed)
    with tf.compat.v1.Session(graph=graph) as session:
        want = session.run(fetch, feed)
    return got, want


def test_complex_abs_of_rfft_is_a_real_dft_matching_tensorflow():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 500], name="x")
        tf.identity(tf.abs(tf.signal.stft(x, 64, 32)), name="spectrum")
        tf.identity(tf.abs(tf.signal.rfft(x[:, :40], [48])), name="padded")  # frames shorter than fft_length
        tf.identity(tf.abs(tf.signal.rfft(x[:, :40], [32])), name="cropped")  # longer
        tf.identity(tf.abs(tf.complex(x, 2 * x)), name="plain")  # not an RFFT: Real / Imag
    graph_def = graph.as_graph_def()
    assert rewrite_complex_abs(graph_def) == (4, []) and count_ops(graph_def, "ComplexAbs") == 0
    assert count_ops(graph_def, "Real") == 1  # only `plain`'s; the RFFTs' parts are MatMuls
    values = np.random.default_rng(0).normal(size=(3, 500)).astype(np.float32)
    got, want = _run(graph, graph_def, ["spectrum:0", "padded:0", "cropped:0", "plain:0"], {"x:0": values})
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g - w).max() < 1e-4 * np.abs(w).max()


class _Spectrogram(tf.Module):
    def __init__(self):
        self.w = tf.Variable(np.random.default_rng(0).normal(size=(33, 4)).astype(np.float32) * 0.1)

    @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32, name="audio")])
    def serve(self, audio):
        spectrum = tf.abs(tf.signal.stft(audio, 64, 32))
        return {"logits": tf.reduce_mean(tf.matmul(spectrum, self.w), axis=1)}


@pytest.fixture(scope="module")
def spectrogram(tmp_path_factory):
    module = _Spectrogram()
    path = tmp_path_factory.mktemp("stft") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_an_stft_front_end_converts_to_onnx_tflite_and_tfjs(spectrogram, tmp_path):
    result = run_cli(
        "convert", spectrogram, "-t", "onnx", "-t", "tflite", "-t", "tfjs", "-o", tmp_path, "--no-bench", "--no-history"
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.returncode == 0, [t["stages"] for t in report["targets"]]
    onnx = report["targets"][0]
    assert any("ComplexAbs op(s) written as sqrt" in note for note in onnx["notes"]), onnx["notes"]
    for target in report["targets"]:
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.99999, target["name"]


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3d_transpose_lowered_for_tfjs_matches_tensorflow(padding):
    rng = np.random.default_rng(1)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 3, 5, 4], name="x")
        sizes = (8, 6, 10) if padding == "SAME" else (9, 7, 11)
        out = tf.stack([tf.shape(x)[0], *sizes, 3])
        kernel = tf.constant(rng.normal(size=(3, 3, 3, 3, 4)).astype(np.float32))
        tf.identity(tf.nn.conv3d_transpose(x, kernel, out, [1, 2, 2, 2, 1], padding), name="y")
    graph_def = graph.as_graph_def()
    assert lower_transposed_conv3d(graph_def) == 1 and count_ops(graph_def, "Conv3DBackpropInputV2") == 0
    got, want = _run(graph, graph_def, "y:0", {"x:0": rng.normal(size=(2, 4, 3, 5, 4)).astype(np.float32)})
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    volume = keras.Input((4, 4, 4, 2), name="volume")
    same = keras.layers.Conv3DTranspose(3, 3, strides=2, padding="same")(volume)
    valid = keras.layers.Conv3DTranspose(2, 3, strides=2, padding="valid")(same)
    path = tmp_path_factory.mktemp("conv3dt") / "saved_model"
    keras.Model(volume, keras.layers.Flatten(name="flat")(valid)).export(str(path), verbose=False)
    return path


def test_conv3d_transpose_converts_to_tfjs_and_matches_on_wasm(upsampler, tmp_path):
    result = run_cli("convert", upsampler, "-t", "tfjs", "-o", tmp_path, "--no-bench", "--no-history")
    report = json.loads((tmp_path / "report.json").read_text())
    target = report["targets"][0]
    assert result.returncode == 0, target["stages"]
    emitted = (tmp_path / "tfjs" / "model.json").read_text()
    assert "Conv3DBackpropInputV2" not in emitted and '"Conv3D"' in emitted
    assert target["accuracy"]["outputs"][0]["cosine"] >= 0.9999


@pytest.fixture(scope="module")
def tf1_dropout(tmp_path_factory):
    """A TF1 SavedModelBuilder model: dropout under a cond on is_training = placeholder_with_default(False)."""
    tf1 = tf.compat.v1
    path = tmp_path_factory.mktemp("dropout") / "saved_model"
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 8], name="x")
        training = tf1.placeholder_with_default(False, [], name="is_training")
        w = tf1.get_variable("w", initializer=np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
        h = tf.nn.relu(tf.matmul(x, w))
        h = tf1.cond(training, lambda: tf1.nn.dropout(h, rate=0.5), lambda: h)
        y = tf.identity(tf.matmul(h, tf.ones([4, 3])), name="y")
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.builder.SavedModelBuilder(str(path))
            signature = tf1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def test_dropout_in_a_dead_branch_does_not_reach_the_outputs(tf1_dropout, tmp_path):
    """The RandomUniform stays in the untaken branch: both formats match the SavedModel (a live 0.5 dropout
    would not, nor twice the same)."""
    result = run_cli("convert", tf1_dropout, "-t", "onnx", "-t", "tflite", "-o", tmp_path, "--no-bench", "--no-history")
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.returncode == 0, [t["stages"] for t in report["targets"]]
    for target in report["targets"]:
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.999999, target["name"]
