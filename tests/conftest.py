"""Session fixtures: small real SavedModels built once, and the trained digits example."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgeport_testing import (
    save_multi_io,
    save_small_cnn,
    save_string_input,
    save_tf1_builder,
    save_tiny_digits_model,
    save_with_op,
)


@pytest.fixture(scope="session", autouse=True)
def private_history(tmp_path_factory):
    """Every run of the suite records into a history of its own, never the user's per-user one."""
    import os

    folder = tmp_path_factory.mktemp("xdg-data")
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {
        "multi": save_multi_io(base / "multi"),
        "cnn": save_small_cnn(base / "cnn"),
        "tf1": save_tf1_builder(base / "tf1"),
        "flex": save_with_op(base / "flex", "cumprod"),
        "nokernel": save_with_op(base / "nokernel", "bessel"),
        "strings": save_string_input(base / "strings"),
    }


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """The bundled example: a CNN trained on scikit-learn's digits, with held-out and calibration samples."""
    from train_digits import train  # examples/ is on sys.path (edgeport_testing)

    out = tmp_path_factory.mktemp("digits")
    train(out, epochs=12)
    return out


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory):
    """(SavedModel, calibration images, held-out images) of the tiny digits CNN, trained once per session."""
    return save_tiny_digits_model(tmp_path_factory.mktemp("tiny-digits") / "saved_model")
