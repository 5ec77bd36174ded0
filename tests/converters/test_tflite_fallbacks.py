"""Every fallback the TFLite conversion takes is said in the report; an artifact without a signature fails.

EfficientNetB0 (random weights, 32x32 input to stay small) converts from the shared frozen graph into a
.tflite without a signature: LiteRT could not match its tensors to the SavedModel's by name. edgeport then
converts from the signature function instead and says so. int8 fails earlier, in the calibrator ("model has
0 Signatures"), and takes the same way out.
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
        "convert",
        model,
        "-t",
        "tflite",
        "-t",
        "tflite:int8",
        "-o",
        tmp_path / "out",
        "--no-bench",
        "--no-history",
        "--samples",
        "2",
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert result.returncode == 0, [target["stages"] for target in report["targets"]]
    for target, floor in zip(report["targets"], (0.9999, 0.95), strict=True):
        assert any("came out without a signature" in note for note in target["notes"]), target["name"]
        artifact = tmp_path / "out" / target["folder"] / "model.tflite"
        assert read_model(artifact.read_bytes()).signatureDefs
        assert target["accuracy"]["outputs"][0]["cosine"] > floor
