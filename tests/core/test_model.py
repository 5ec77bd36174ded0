"""The SavedModel front-end on real SavedModels: signatures, names, reference outputs, freezing, fallback."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.errors import ModelLoadError, UsageError
from edgeport.model.savedmodel import load_model


def test_multi_input_signature_keyed_by_names(models):
    model = load_model(models["multi"])
    assert [s.name for s in model.signature.inputs] == ["features", "scale"]
    assert [s.name for s in model.signature.outputs] == ["logits", "probs"]
    assert model.signature.input("features").shape == (None, 4)
    feed = {"features": np.ones((1, 4), np.float32), "scale": np.full((1, 1), 2.0, np.float32)}
    out = model.reference([feed])[0]
    np.testing.assert_allclose(out["probs"].sum(), 1.0, rtol=1e-6)
    frozen = model.frozen
    assert set(frozen.input_tensors) == {"features", "scale"} and set(frozen.output_tensors) == {"logits", "probs"}
    assert "VarHandleOp" not in frozen.op_histogram() and frozen.op_histogram()["MatMul"] == 1
    assert model.parameter_count() == 12


def test_builder_savedmodel_in_a_v1_session_gives_the_same_numbers(models):
    tf2, v1 = load_model(models["tf1"]), load_model(models["tf1"], force_v1=True)
    assert v1.mode == "v1-session" and "v1 session" in v1.notes[0]
    feed = {"x": np.random.default_rng(0).normal(size=(1, 3)).astype(np.float32)}
    np.testing.assert_allclose(tf2.reference([feed])[0]["y"], v1.reference([feed])[0]["y"], rtol=1e-6)
    result = v1.concrete_function(x=feed["x"])
    np.testing.assert_allclose(result["y"].numpy(), v1.reference([feed])[0]["y"], rtol=1e-6)
    assert v1.frozen.input_tensors == {"x": "x:0"}


def test_loader_failure_falls_back_to_the_v1_session(models, tmp_path, monkeypatch):
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()

    def broken_load(*args, **kwargs):
        raise ValueError("Unable to restore object graph (simulated legacy export)")

    monkeypatch.setattr(tf.saved_model, "load", broken_load)
    model = load_model(models["tf1"])
    assert model.mode == "v1-session"
    assert "tf.saved_model.load failed (ValueError: Unable to restore" in model.notes[0]


def test_signature_and_path_errors(models, tmp_path):
    with pytest.raises(UsageError, match="'nope' not found .* present: .*serving_default"):
        load_model(models["cnn"], "nope")
    with pytest.raises(UsageError, match="does not exist"):  # a path the user gave: exit 2
        load_model(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "file")


def test_tensorflow_is_imported_without_keras_and_keras_still_imports_later():
    """A model service pays TensorFlow's import once; Keras (1-2 s of it) is not part of it."""
    import subprocess
    import sys

    script = (
        "import sys; from edgeport.model.tf_quiet import import_tensorflow; tf = import_tensorflow(); "
        "print('keras' in sys.modules, None in tf.__path__); "
        "import tensorflow.keras.layers as layers; print(layers.Dense.__module__.split('.')[0], tf.keras.Sequential)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    first, second = result.stdout.splitlines()
    assert first == "False False", result.stdout
    assert second.startswith("keras <class 'keras.src.models.sequential.Sequential'>"), result.stdout
