"""String inputs and lookup tables, on every format's real runtime.

Synthetic strings come from the model's own vocabulary, plus out-of-vocabulary words; strings cross the
TF.js wire to Node and the browser; string tables become hash tables (TFLite, TF.js) or CategoryMapper
(ONNX); integer-keyed tables become tensor ops every format runs; a string hash no format has fails only
the targets that cannot express it, naming the op.
"""

from __future__ import annotations

import json

import numpy as np

from edgeport.data import Signature, TensorSpec
from edgeport.model.samples import OUT_OF_VOCABULARY, SampleRequest, synthetic_samples
from edgeport.model.vocabulary import model_vocabulary
from edgeport_testing import run_cli

WORDS = Signature("s", (TensorSpec("words", "string", (None, 4)),), ())


def test_synthetic_strings_are_vocabulary_words_and_some_unknown_ones():
    samples = synthetic_samples(WORDS, SampleRequest(count=40), ("red", "green", "blue"))
    values = {value.decode() for value in samples.arrays["words"].ravel()}
    assert samples.arrays["words"].dtype == object and samples.arrays["words"].shape == (40, 1, 4)
    assert {"red", "green", "blue"} <= values <= {"red", "green", "blue", *OUT_OF_VOCABULARY}
    assert values & set(OUT_OF_VOCABULARY)
    assert "3 words of the model's vocabulary" in samples.source


def test_vocabulary_assets_are_read_line_by_line(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("alpha\nbeta\n\ngamma\n")
    assert model_vocabulary(None, tmp_path) == ("alpha", "beta", "gamma")


def _export_keras(folder, inputs, preprocess):
    import keras

    keras.utils.set_random_seed(0)
    outputs = keras.layers.Dense(2)(keras.ops.cast(preprocess(inputs), "float32"))
    keras.Model(inputs, outputs).export(str(folder), verbose=False)
    return folder


def _convert(model, out, *targets):
    args = [a for target in targets for a in ("-t", target)]
    result = run_cli("convert", model, *args, "-o", out, "--no-bench", "--no-history")
    report = json.loads((out / "report.json").read_text())
    return result, {target["name"]: target for target in report["targets"]}, report


def _stage(target, name):
    return next(stage for stage in target["stages"] if stage["stage"] == name)


def test_string_lookup_passes_on_every_format_and_both_tfjs_runtimes(tmp_path):
    import keras

    lookup = keras.layers.StringLookup(vocabulary=["red", "green", "blue"])
    model = _export_keras(tmp_path / "lookup", keras.Input((4,), dtype="string", name="words"), lookup)
    result, targets, report = _convert(model, tmp_path / "out", "tflite", "onnx", "tfjs", "tfjs@tfjs-browser")
    assert result.returncode == 0, {name: t["stages"] for name, t in targets.items()}
    assert "3 words of the model's vocabulary" in report["samples"]["source"]
    for target in targets.values():
        outputs = target["accuracy"]["outputs"][0]
        assert outputs["cosine"] > 0.9999 and outputs["max_abs_error"] < 1e-5, target["name"]
    import onnx

    graph = onnx.load(str(tmp_path / "out" / "onnx" / "model.onnx")).graph
    assert any(node.op_type == "CategoryMapper" and node.domain == "ai.onnx.ml" for node in graph.node)


def test_string_inputs_calibrate_to_int8_on_the_words_they_are_fed(tmp_path):
    # the converter's calibrator copies numpy bytes into a string tensor: every word missed, every lookup was 0
    import keras

    lookup = keras.layers.StringLookup(vocabulary=["red", "green", "blue"])
    model = _export_keras(tmp_path / "lookup", keras.Input((4,), dtype="string", name="words"), lookup)
    result, targets, _ = _convert(model, tmp_path / "out", "tflite:int8")
    target = targets["tflite:int8"]
    assert result.returncode == 0, target["stages"]
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.999
    assert any("calibrated on LiteRT's interpreter" in note for note in target["notes"])


def test_integer_lookup_becomes_tensor_ops_every_format_runs(tmp_path):
    import keras

    lookup = keras.layers.IntegerLookup(vocabulary=[3, 7, 11, 19])
    model = _export_keras(tmp_path / "codes", keras.Input((4,), dtype="int64", name="codes"), lookup)
    result, targets, _ = _convert(model, tmp_path / "out", "tflite", "onnx", "tfjs")
    assert result.returncode == 0, {name: t["stages"] for name, t in targets.items()}
    for target in targets.values():
        assert target["accuracy"]["outputs"][0]["max_abs_error"] < 1e-5, target["name"]


def test_lowered_integer_lookup_answers_exactly_as_the_table():
    import tensorflow as tf

    from edgeport.model.lookup_tables import lower_integer_lookups, table_contents

    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant([5, 9, 2], tf.int64), tf.constant([10, 20, 30], tf.int64)),
        default_value=-1,
    )
    module = tf.Module()
    module.table = table
    function = tf.function(lambda x: {"y": table.lookup(x), "n": table.size()}).get_concrete_function(
        tf.TensorSpec([None, 3], tf.int64, name="x")
    )
    from edgeport.model.savedmodel import freeze_function

    frozen = freeze_function(function, ("x",), ("n", "y"))
    contents = table_contents(frozen.graph_def, function)
    assert lower_integer_lookups(frozen.graph_def, contents) == 2
    assert not {node.op for node in frozen.graph_def.node} & {"LookupTableFindV2", "LookupTableSizeV2"}
    keys = np.array([[5, 2, 4], [9, 9, -3]], dtype=np.int64)
    run = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(frozen.graph_def, name=""), [])
    feed = run.graph.get_tensor_by_name(frozen.input_tensors["x"])
    fetch = [run.graph.get_tensor_by_name(frozen.output_tensors[name]) for name in ("y", "n")]
    y, n = run.prune(feeds=[feed], fetches=fetch)(tf.constant(keys))
    np.testing.assert_array_equal(y.numpy(), [[10, 30, -1], [20, 20, -1]])
    assert int(n.numpy()) == 3


def test_string_hashing_runs_in_tfjs_and_fails_only_the_formats_without_the_op(tmp_path):
    import keras

    hashing = keras.layers.Hashing(16)
    model = _export_keras(tmp_path / "hashing", keras.Input((4,), dtype="string", name="words"), hashing)
    result, targets, _ = _convert(model, tmp_path / "out", "tfjs", "onnx", "tflite")
    assert result.returncode == 3
    assert _stage(targets["tfjs"], "check")["status"] == "passed"
    assert targets["tfjs"]["accuracy"]["outputs"][0]["max_abs_error"] < 1e-5
    for name in ("onnx", "tflite"):
        convert = _stage(targets[name], "convert")
        assert convert["status"] == "error" and "StringToHashBucketFast" in convert["reason"], convert


def test_string_tensors_cross_the_tfjs_wire_byte_for_byte(tmp_path):
    from edgeport.targets.tfjs.wire import decode_base64, encode_base64, read_bundle, write_bundle

    words = np.array([["red", "", "grün"], [b"\xff\x00raw", "blue", "x" * 300]], dtype=object)
    expected = np.array([[w.encode() if isinstance(w, str) else w for w in row] for row in words], dtype=object)
    write_bundle(tmp_path / "feeds.bin", meta={}, samples=[{"words": words}])
    _, samples = read_bundle(tmp_path / "feeds.bin")
    for decoded in (samples[0]["words"], decode_base64(encode_base64([{"words": words}]))[0]["words"]):
        assert decoded.shape == (2, 3) and decoded.tolist() == expected.tolist()
