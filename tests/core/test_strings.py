"""String inputs: synthetic strings come from the model's own vocabulary, plus out-of-vocabulary words."""

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


def test_string_lookup_model_is_checked_on_its_own_words(tmp_path):
    import keras

    lookup = keras.layers.StringLookup(vocabulary=["red", "green", "blue"])
    words = keras.Input((4,), dtype="string", name="words")
    outputs = keras.layers.Dense(2)(keras.ops.cast(lookup(words), "float32"))
    keras.Model(words, outputs).export(str(tmp_path / "lookup"), verbose=False)
    result = run_cli(
        "convert", tmp_path / "lookup", "-t", "tflite", "-o", tmp_path / "out", "--no-bench", "--no-history"
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert result.returncode == 0, report["targets"][0]["stages"]
    assert "3 words of the model's vocabulary" in report["samples"]["source"]
    outputs = report["targets"][0]["accuracy"]["outputs"][0]
    assert outputs["cosine"] > 0.9999 and np.isfinite(outputs["max_abs_error"])
