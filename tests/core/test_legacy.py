"""Legacy SavedModels: Keras 2 models written by older TensorFlow, and TF2 graphs forced into a v1 session.

The fixtures (tests/fixtures/legacy, made by make_legacy_fixtures.py there) fail `tf.saved_model.load` on this
TensorFlow ('_UserObject' object has no attribute 'add_slot'), so edgeport loads their MetaGraph in a v1
session, whose graph is one StatefulPartitionedCall into a function library. The shared frozen graph must have
the calls inlined and the variables folded, whichever loader made it, or no converter can use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeport.model.savedmodel import FUNCTION_CALL_OPS, load_model
from edgeport_testing import run_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
EVERY_TARGET = ("tflite", "tflite:int8", "onnx", "tfjs", "tflm")


def convert_every_target(model: Path, out: Path, *extra: str) -> dict:
    args = [arg for target in EVERY_TARGET for arg in ("-t", target)]
    result = run_cli("convert", model, *args, "-o", out, "--no-bench", "--no-history", *extra)
    report = json.loads((out / "report.json").read_text())
    assert result.returncode == 0, (result.stderr, {t["name"]: t["stages"] for t in report["targets"]})
    assert report["verdicts"] == dict.fromkeys(EVERY_TARGET, "passed")
    return report


@pytest.mark.parametrize("fixture", ["keras2_tf212", "tf_keras"])
def test_keras2_savedmodel_from_older_tensorflow_passes_every_target(fixture, tmp_path):
    report = convert_every_target(FIXTURES / fixture, tmp_path)
    assert report["model"]["mode"] == "v1-session"
    assert any("add_slot" in note and "v1 session" in note for note in report["model"]["notes"])
    for target in report["targets"]:
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.999, target["name"]


def test_legacy_fixtures_are_small_and_carry_their_optimizer():
    for fixture in ("keras2_tf212", "tf_keras"):
        folder = FIXTURES / fixture
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 400_000
        assert (folder / "keras_metadata.pb").is_file() and (folder / "variables" / "variables.index").is_file()


def test_forced_v1_session_on_a_tf2_keras_model_passes_every_target(models, tmp_path):
    report = convert_every_target(models["cnn"], tmp_path, "--legacy")
    assert report["model"]["mode"] == "v1-session"


@pytest.mark.parametrize("source", ["fixture", "forced"])
def test_the_shared_frozen_graph_has_no_function_calls_left(models, source):
    model = load_model(FIXTURES / "keras2_tf212") if source == "fixture" else load_model(models["cnn"], force_v1=True)
    assert model.mode == "v1-session"
    graph = model.frozen.graph_def
    assert not [node.name for node in graph.node if node.op in FUNCTION_CALL_OPS]
    assert not [node.name for node in graph.node if node.op in ("VarHandleOp", "ReadVariableOp", "VariableV2")]
    assert len(graph.library.function) == 0


def _convert_forced(model: Path, out: Path, *targets: str) -> dict:
    args = [arg for target in targets for arg in ("-t", target)]
    result = run_cli("convert", model, *args, "-o", out, "--no-bench", "--no-history", "--legacy")
    report = json.loads((out / "report.json").read_text())
    assert result.returncode == 0, (result.stderr, {t["name"]: t["stages"] for t in report["targets"]})
    assert report["model"]["mode"] == "v1-session"
    return report


def test_forced_v1_session_on_a_recurrent_model_inlines_and_converts(tmp_path):
    """A TF2 LSTM's While body is a library function the session freeze edits: the calls are inlined by
    Grappler on the GraphDef, never re-imported under the edited functions' old names."""
    import keras

    keras.utils.set_random_seed(4)
    ids = keras.Input((12,), dtype="int32", name="ids")
    outputs = keras.layers.Dense(3)(keras.layers.LSTM(8)(keras.layers.Embedding(50, 8)(ids)))
    keras.Model(ids, outputs).export(str(tmp_path / "lstm"), verbose=False)
    report = _convert_forced(tmp_path / "lstm", tmp_path / "out", "tflite", "onnx", "tfjs")
    for target in report["targets"]:
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.9999, target["name"]


def test_forced_v1_session_carries_lookup_tables_to_every_format(tmp_path):
    """The v1 session's tables (the freeze drops their initializers) are exported from the session."""
    import keras

    strings = keras.layers.StringLookup(vocabulary=["red", "green", "blue"])
    codes = keras.layers.IntegerLookup(vocabulary=[3, 7, 11])
    words, numbers = keras.Input((4,), dtype="string", name="words"), keras.Input((4,), dtype="int64", name="codes")
    mixed = keras.ops.cast(strings(words), "float32") + keras.ops.cast(codes(numbers), "float32")
    keras.Model({"words": words, "codes": numbers}, keras.layers.Dense(2)(mixed)).export(
        str(tmp_path / "tables"), verbose=False
    )
    report = _convert_forced(tmp_path / "tables", tmp_path / "out", "tflite", "onnx", "tfjs")
    for target in report["targets"]:
        assert target["accuracy"]["outputs"][0]["max_abs_error"] < 1e-5, target["name"]
