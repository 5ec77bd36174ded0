"""Per-layer comparison on the real runtimes: a planted int8-hostile layer pair is named, a healthy model's none.

The planted model: conv 3x3 -> relu -> a 1x1 conv scaling 2 of 8 channels by 1000 (`planted_up`) -> a 1x1 conv
scaling them back (`planted_down`) -> conv -> relu -> mean -> matmul. int8 activations share one scale per
tensor, so after `planted_up` the 6 unscaled channels round to zero; the error shows (and is added) at
`planted_down`. The healthy model is the same with scale 1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.checks.layers import match_names, name_candidates, undo_layout
from edgeport_testing import run_cli, tf

PLANTED = ("planted_up", "planted_down")


def save_planted(path, scale: float):
    t = tf()
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.4, (3, 3, 3, 8)).astype(np.float32)
    up = np.diag([scale] * 2 + [1.0] * 6).astype(np.float32).reshape(1, 1, 8, 8)
    down = np.diag([1 / scale] * 2 + [1.0] * 6).astype(np.float32).reshape(1, 1, 8, 8)
    w2 = rng.normal(0, 0.4, (3, 3, 8, 8)).astype(np.float32)
    wd = rng.normal(0, 0.4, (8, 10)).astype(np.float32)

    class Planted(t.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.up, self.down, self.w2, self.wd = (t.Variable(v) for v in (w1, up, down, w2, wd))

        @t.function(input_signature=[t.TensorSpec([None, 8, 8, 3], t.float32, name="image")])
        def serve(self, image):
            x = t.nn.relu(t.nn.conv2d(image, self.w1, 1, "SAME", name="conv1"), name="relu1")
            x = t.nn.conv2d(x, self.up, 1, "SAME", name="planted_up")
            x = t.nn.conv2d(x, self.down, 1, "SAME", name="planted_down")
            x = t.nn.relu(t.nn.conv2d(x, self.w2, 1, "SAME", name="conv2"), name="relu2")
            x = t.reduce_mean(x, axis=[1, 2], name="pool")
            return {"scores": t.matmul(x, self.wd, name="logits")}

    module = Planted()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    images = np.random.default_rng(1).uniform(0, 1, (16, 1, 8, 8, 3)).astype(np.float32)
    scores = np.stack([module.serve(image)["scores"].numpy() for image in images])
    return path, images, scores.reshape(16, -1).argmax(-1)  # labels the SavedModel gets all right


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("layers")
    out = {}
    for name, scale in (("planted", 1000.0), ("healthy", 1.0)):
        path, images, labels = save_planted(base / name, scale)
        np.savez(base / f"{name}.npz", image=images, labels=labels)
        out[name] = (path, base / f"{name}.npz")
    return base, out


def _layers(out):
    report = json.loads((out / "report.json").read_text())
    return report, {t["name"]: t for t in report["targets"]}


def test_names_match_across_formats():
    layers = ["StatefulPartitionedCall/conv1", "StatefulPartitionedCall/relu1", "StatefulPartitionedCall/planted_up"]
    assert "StatefulPartitionedCall/planted_up" in name_candidates("StatefulPartitionedCall/planted_up1")
    assert "StatefulPartitionedCall/relu1" in name_candidates("StatefulPartitionedCall/relu1:0_QuantizeLinear_Output")
    matched = match_names(
        ["StatefulPartitionedCall/relu1;StatefulPartitionedCall/conv1", "StatefulPartitionedCall/planted_up1"], layers
    )
    assert matched == {  # a fused tensor stands for its deepest layer; conv1 was fused away
        "StatefulPartitionedCall/relu1;StatefulPartitionedCall/conv1": "StatefulPartitionedCall/relu1",
        "StatefulPartitionedCall/planted_up1": "StatefulPartitionedCall/planted_up",
    }
    reference = np.zeros((1, 4, 5, 3))
    assert undo_layout(np.zeros((1, 3, 4, 5)), reference).shape == (1, 4, 5, 3)


def test_planted_layer_is_first_divergent_automatically_and_the_task_gate_fails(planted):
    base, models = planted
    model, data = models["planted"]
    config = base / "planted.toml"
    config.write_text(
        f'model = "{model}"\ndata = "{data}"\nlabels = "labels"\ntargets = ["tflite:int8", "onnx:int8", "tflite"]\n'
        '[target."tflite:int8"]\nmax_accuracy_drop = 0.01\n'
    )
    out = base / "out-planted"
    result = run_cli("convert", "--config", config, "-o", out, "--no-bench", "--no-baseline")
    assert result.returncode == 1, result.stderr
    report, targets = _layers(out)
    for name in ("tflite:int8", "onnx:int8"):  # no --layers: the failed check ran the per-layer comparison
        layers = targets[name]["layers"]
        assert layers["first_divergent"].endswith("planted_down"), layers
        assert layers["first_divergent_op"] == "Conv2D" and layers["worst"][0] == layers["first_divergent"]
        assert {"name", "op", "shape", "cosine", "snr_db", "max_abs_error", "added_error"} <= set(layers["tensors"][0])
        assert any(n.endswith("conv1") for n in layers["fused_away"])  # fused into its relu by both converters
        node_data = json.loads((out / layers["model_explorer_file"]).read_text())
        (graph,) = node_data.values()
        assert graph["results"] and all("value" in r for r in graph["results"].values())
        assert f"{name}: first divergent layer" in result.stdout
    assert targets["tflite"]["layers"] is None  # passed, no --layers: not compared
    task = targets["tflite:int8"]["accuracy"]["task"]
    assert task["metric"] == "top1" and task["reference"] == 1.0 and task["drop"] > 0.5
    assert report["samples"]["labels"]["top1"] == 1.0 and report["samples"]["labels"]["count"] == 16
    assert "max_accuracy_drop 0.01" in result.stdout and "drop" in targets["tflite:int8"]["stages"][1]["reason"]
    assert targets["onnx:int8"]["accuracy"]["task"]["max_drop"] is None  # no gate there


def test_healthy_model_names_no_layer(planted):
    base, models = planted
    model, data = models["healthy"]
    out = base / "out-healthy"
    result = run_cli(
        "convert", model, "-t", "tflite:int8", "-t", "onnx:int8", "--data", data, "--labels", f"{data}:labels",
        "--layers", "-o", out, "--no-bench", "--no-baseline",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _, targets = _layers(out)
    for name in ("tflite:int8", "onnx:int8"):
        layers = targets[name]["layers"]
        assert layers["first_divergent"] is None and len(layers["tensors"]) >= 5, layers
        assert all(t["cosine"] > 0.99 for t in layers["tensors"])
        assert f"{name}: no divergent layer" in result.stdout
