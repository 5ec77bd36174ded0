"""Recurrent Keras models to TFLite with no flags: LSTM, GRU, Bidirectional, stacked, return_sequences.

Their TensorList ops need static shapes that a dynamic batch denies ('tf.TensorListReserve' op requires
element_shape to be static). edgeport retries with the batch fixed to 1 (inputs and the recurrent layers'
element shapes), says so in the report, and the artifact is checked on LiteRT against the SavedModel.
To int8, the converter's calibrator crashed the process on the WHILE loop's pass-through input sequence
(tensorflow/tensorflow#75140); edgeport copies it for calibration, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeport_testing import run_cli


def save_recurrent(path: Path, kind: str) -> Path:
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(1)
    frames = keras.Input((10, 6), name="frames")  # [batch?, time, features]
    if kind == "lstm":
        x = layers.LSTM(8)(frames)
    elif kind == "gru_sequences":
        x = layers.GlobalAveragePooling1D()(layers.GRU(8, return_sequences=True)(frames))
    elif kind == "bidirectional":
        x = layers.Bidirectional(layers.LSTM(6))(frames)
    else:  # stacked
        x = layers.LSTM(6)(layers.GRU(6, return_sequences=True)(frames))
    keras.Model(frames, layers.Dense(3, name="logits")(x)).export(str(path), verbose=False)
    return path


@pytest.mark.parametrize("kind", ["lstm", "gru_sequences", "bidirectional", "stacked"])
def test_recurrent_model_converts_with_the_batch_fixed_and_says_so(kind, tmp_path):
    model = save_recurrent(tmp_path / kind, kind)
    result = run_cli("convert", model, "-t", "tflite", "-o", tmp_path / "out", "--no-bench", "--no-history")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    target = report["targets"][0]
    assert result.returncode == 0, target["stages"]
    assert target["details"]["fixed_shapes"] == {"frames": [1, 10, 6]}
    assert any("fixed the dynamic batch dimension to 1 (frames -> [1, 10, 6])" in note for note in target["notes"])
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.99999
    assert "fixed the dynamic batch" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize("kind", ["lstm", "gru_sequences", "bidirectional", "stacked"])
def test_recurrent_model_calibrates_to_int8_without_crashing_the_converter(kind, tmp_path):
    model = save_recurrent(tmp_path / kind, kind)
    result = run_cli("convert", model, "-t", "tflite:int8", "-o", tmp_path / "out", "--no-bench", "--no-history")
    target = json.loads((tmp_path / "out" / "report.json").read_text())["targets"][0]
    assert result.returncode == 0, target["stages"]
    assert [stage["status"] for stage in target["stages"][:2]] == ["passed", "passed"]
    assert any("passes through unchanged were copied for calibration" in note for note in target["notes"])
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.95


def test_a_model_that_converts_as_it_is_keeps_its_dynamic_batch(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-o", tmp_path, "--no-bench", "--no-history")
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "report.json").read_text())["targets"][0]
    assert target["details"]["fixed_shapes"] == {} and not target["notes"]
