"""Dynamic dimensions beyond the batch convert with no flags and are checked at two sizes on every runtime.

A GRU over [?, ?, 16] (any length) and a fully-convolutional detector over [?, ?, ?, 3] (any image size): an
artifact that runs at one size only is the failure users meet in production, so each is checked at two.
"""

from __future__ import annotations

import json

import pytest

from edgeport_testing import run_cli


def save_dynamic(path, kind: str):
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    if kind == "gru":
        frames = keras.Input((None, 16), name="frames")
        model = keras.Model(frames, layers.Dense(4, name="logits")(layers.GRU(8)(frames)))
    else:
        image = keras.Input((None, None, 3), name="image")
        x = image
        for filters in (8, 16, 16):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        model = keras.Model(image, layers.Conv2D(5, 1, name="heatmap")(x))
    model.export(str(path), verbose=False)
    return path


@pytest.mark.parametrize(
    ("kind", "shapes"), [("gru", ([1, 16, 16], [1, 24, 16])), ("fcn", ([1, 64, 64, 3], [1, 96, 96, 3]))]
)
def test_dynamic_model_is_checked_at_two_sizes_on_every_runtime(kind, shapes, tmp_path):
    model = save_dynamic(tmp_path / kind, kind)
    args = ["-t", "tflite", "-t", "onnx", "-t", "tfjs"]
    result = run_cli("convert", model, *args, "-o", tmp_path / "out", "--no-bench", "--no-history")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert result.returncode == 0, [t["stages"] for t in report["targets"]]
    for target in report["targets"]:
        checked = [list(check["shapes"].values())[0] for check in target["shape_checks"]]
        assert checked == list(shapes), target["name"]
        assert all(check["passed"] and check["worst_cosine"] > 0.9999 for check in target["shape_checks"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"[{', '.join(map(str, shapes[1]))}]: passed" in summary


def test_tflm_cannot_take_dynamic_shapes_and_says_so_in_one_line(tmp_path):
    model = save_dynamic(tmp_path / "fcn", "fcn")
    result = run_cli("convert", model, "-t", "tflm", "-o", tmp_path / "out", "--no-bench", "--no-history")
    assert result.returncode == 3
    reason = json.loads((tmp_path / "out" / "report.json").read_text())["targets"][0]["stages"][0]["reason"]
    assert "dynamic dimensions; TFLite Micro needs static shapes" in reason and "\n" not in reason


def test_an_artifact_that_runs_at_one_size_only_fails_its_check_at_the_other(tmp_path):
    """A (third-party) converter that bakes the traced shapes in: the second size is what catches it."""
    from edgeport_testing import PLUGIN_ENV, save_dynamic_sum

    save_dynamic_sum(tmp_path / "dyn")
    common = ("convert", tmp_path / "dyn", "-t", "frozengraph", "--no-bench", "--no-history")
    fine = run_cli(*common, "-o", tmp_path / "dynamic", env=PLUGIN_ENV)
    assert fine.returncode == 0, fine.stderr
    pinned = run_cli(*common, "-O", "static_shapes=true", "-o", tmp_path / "pinned", env=PLUGIN_ENV)
    assert pinned.returncode == 1, pinned.stderr
    target = json.loads((tmp_path / "pinned" / "report.json").read_text())["targets"][0]
    check = target["stages"][1]
    assert check["status"] == "failed" and check["reason"].startswith("at sequence [1, 24, 3]: graphdef: ")
    first, second = target["shape_checks"]
    assert first["passed"] and first["shapes"] == {"sequence": [1, 16, 3]}
    assert not second["passed"] and second["worst_cosine"] is None and "shape" in second["failures"][0]
