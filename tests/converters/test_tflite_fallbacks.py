"""Every fallback the TFLite conversion takes is said in the report; an artifact without a signature fails.

EfficientNetB0 (random weights, 32x32 input to stay small) converts from the shared frozen graph into a
.tflite without a signature: LiteRT could not match its tensors to the SavedModel's by name. edgeport then
converts from the signature function instead and says so.
"""

from __future__ import annotations

import json

from edgeport.formats.tflite.flatbuffer import read_model
from edgeport_testing import run_cli


def test_lost_signature_falls_back_to_the_signature_function_and_says_so(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = tmp_path / "efficientnet"
    keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10).export(
        str(model), verbose=False
    )
    result = run_cli(
        "convert", model, "-t", "tflite", "-o", tmp_path / "out", "--no-bench", "--no-history", "--samples", "2"
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    target = report["targets"][0]
    assert result.returncode == 0, target["stages"]
    assert any("came out without a signature" in note for note in target["notes"])
    assert read_model((tmp_path / "out" / "tflite" / "model.tflite").read_bytes()).signatureDefs
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.9999
