"""Synthetic inputs drawn from the range the model's graph says: pixels for a model that rescales them, ids
for an input that indexes an embedding; `--input-range` wins; the samples' source says what was inferred.

Before, a MobileNetV3 (its `x / 127.5 - 1` in the graph) was fed [0, 1): an image that is all -1 to within
0.008, on which tflite:int8 calibrated to cosine 0.53.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.data import Signature, TensorSpec
from edgeport.model.input_ranges import InferredRange
from edgeport.model.samples import SampleRequest, synthetic_samples
from edgeport.model.savedmodel import LARGE_MODEL_ENV
from edgeport_testing import run_cli


def _save_rescaling_embedding(path):
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3), name="image")
    ids = keras.Input((6,), dtype="int32", name="ids")
    pixels = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 127.5, offset=-1)(image)))
    words = keras.layers.Flatten()(keras.layers.Embedding(50, 4)(ids))
    joined = keras.layers.Concatenate()([pixels, words])
    keras.Model([image, ids], keras.layers.Dense(3, name="scores")(joined)).export(str(path), verbose=False)
    return path


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_pixels_and_ids_are_drawn_from_what_the_graph_says_and_said(tmp_path, large):
    """Large: the embedding is a weight kept by reference (a placeholder) and still read as a table."""
    model = _save_rescaling_embedding(tmp_path / "model")
    env = {LARGE_MODEL_ENV: "1"} if large else {}
    result = run_cli("convert", model, "-t", "tflite", "-o", tmp_path / "out", "--no-bench", "--no-history", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    source = report["samples"]["source"]
    assert "image in [0, 255): pixels: rescaled by 0.007843" in source
    assert "ids in [0, 50): ids: they index a table of 50 rows" in source
    assert report["targets"][0]["accuracy"]["outputs"][0]["cosine"] > 0.9999


def test_a_given_input_range_wins_over_the_inferred_one():
    signature = Signature("s", (TensorSpec("image", "float32", (1, 4)), TensorSpec("ids", "int32", (1, 64))), ())
    inferred = {"image": InferredRange(0.0, 255.0, "pixels"), "ids": InferredRange(0, 50, "ids")}
    samples = synthetic_samples(signature, SampleRequest(count=8, input_ranges={"image": (0.0, 1.0)}), (), inferred)
    assert samples.arrays["image"].max() < 1.0
    ids = samples.arrays["ids"]
    assert ids.min() >= 0 and ids.max() < 50 and ids.max() >= 10 and np.issubdtype(ids.dtype, np.integer)
    assert "ids in [0, 50)" in samples.source and "image in" not in samples.source


def _save_tabular(path):
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # an age, an income and a count: three features of very different scales
    data = np.stack([rng.normal(40, 10, 256), rng.normal(50_000, 20_000, 256), rng.normal(3, 1, 256)], axis=1)
    normalize = keras.layers.Normalization()
    normalize.adapt(data.astype("float32"))
    features = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(normalize(features))
    keras.Model(features, keras.layers.Dense(2, name="scores")(hidden)).export(str(path), verbose=False)
    return path


def test_a_standardized_tabular_input_is_drawn_per_feature_and_keeps_int8_accurate(tmp_path):
    # quantized, `x - mean` shared one int8 scale (the income's) and the artifact computed zeros: cosine 0
    model = _save_tabular(tmp_path / "tabular")
    result = run_cli("convert", model, "-t", "tflite:int8", "-o", tmp_path / "out", "--no-bench", "--no-history")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    target = report["targets"][0]
    assert result.returncode == 0, target["stages"]
    assert "features in [" in report["samples"]["source"] and "per feature, 3 features" in report["samples"]["source"]
    assert any("kept the per-feature standardization of features in float" in note for note in target["notes"])
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.999


def test_only_features_of_disparate_scales_keep_their_standardization_in_float():
    from edgeport.formats.tflite.conversion import _disparate

    channels = ((16.0, 224.0), (10.0, 230.0), (20.0, 210.0))  # an image's RGB: one scale, stays quantized
    tabular = ((23.0, 57.0), (13_000.0, 83_000.0), (1.1, 4.6))  # an age, an income, a count
    assert not _disparate(channels) and _disparate(tabular) and not _disparate(((0.0, 1.0),))
