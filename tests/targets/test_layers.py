"""Per-layer comparison on the real runtimes: a planted int8-hostile layer pair is named, a healthy model's none.

The planted model: conv 3x3 -> relu -> a 1x1 conv scaling 2 of 8 channels by 1000 (`planted_up`) -> a 1x1 conv
scaling them back (`planted_down`) -> conv -> relu -> mean -> matmul. int8 activations share one scale per
tensor, so after `planted_up` the 6 unscaled channels round to zero; the error shows (and is added) at
`planted_down`. The healthy model is the same with scale 1.

TF.js uint8 quantizes weights (per tensor) and keeps activations float: planted_up's weights {0, 1, 1000} get
one step of 1000/255, so its 1.0s round to 0, which hides under the 1000-scaled channels (planted_up's cosine
stays above 0.9999); planted_down's {0, 0.001, 1} get a step of 1/255, so its 0.001s round to 0 as well, and
planted_down outputs zeros (cosine 0): the error is added at planted_down there too. TFLM's layers are LiteRT's
reference kernels on TFLM's int8 flatbuffer, so it names planted_down as tflite:int8 does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.checks.layers import match_names, name_candidates, undo_layout
from edgeport.targets.tfjs.layers import BATCH_NODES, LayerPlan, requestable
from edgeport_testing import ORT_FUSED_FOR_LAYERS, run_cli, save_planted

PLANTED = ("planted_up", "planted_down")


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
    result = run_cli("convert", "--config", config, "-o", out, "--no-bench", "--no-baseline", *ORT_FUSED_FOR_LAYERS)
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
        "convert", model, "-t", "tflite:int8", "-t", "onnx:int8", "-t", "tfjs", "-t", "tfjs:uint8", "--data", data,
        "--labels", f"{data}:labels", "--layers", "-o", out, "--no-bench", "--no-baseline", *ORT_FUSED_FOR_LAYERS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _, targets = _layers(out)
    for name in ("tflite:int8", "onnx:int8", "tfjs", "tfjs:uint8"):
        layers = targets[name]["layers"]
        assert layers["first_divergent"] is None and len(layers["tensors"]) >= 5, layers
        assert all(t["cosine"] > 0.99 for t in layers["tensors"])
        assert f"{name}: no divergent layer" in result.stdout


@pytest.fixture(scope="module")
def planted_elsewhere(planted):
    """The planted model on TF.js uint8 (Node and Chromium) and on TFLM, every target compared layer by layer."""
    base, models = planted
    model, data = models["planted"]
    out = base / "out-planted-elsewhere"
    result = run_cli(
        "convert", model, "-t", "tfjs:uint8", "-t", "tfjs:uint8@tfjs-browser", "-t", "tflm", "--data", data,
        "--labels", f"{data}:labels", "--layers", "-o", out, "--no-bench", "--no-baseline",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # every target fails its check: the planted pair
    return result, *_layers(out)


def _by_layer(layers) -> dict[str, dict]:
    return {tensor["name"].rpartition("/")[2]: tensor for tensor in layers["tensors"]}


@pytest.mark.parametrize("name", ["tfjs:uint8", "tfjs:uint8@tfjs-browser"])
def test_tfjs_uint8_names_the_planted_layer_on_node_and_in_the_browser(planted_elsewhere, name):
    result, _report, targets = planted_elsewhere
    layers = targets[name]["layers"]
    assert layers["first_divergent"].rpartition("/")[2] in PLANTED, layers
    assert layers["first_divergent"].endswith("planted_down") and layers["first_divergent_op"] == "Conv2D"
    tensors = _by_layer(layers)
    assert tensors["planted_up"]["cosine"] > 0.9999  # its rounded-off 1.0s hide under the 1000-scaled channels
    assert tensors["planted_down"]["cosine"] < 0.1 and tensors["planted_down"]["artifact_tensor"].endswith(
        "planted_down"
    )  # a model.json node name: TF.js executes to it
    assert {"relu1", "planted_up", "planted_down", "relu2", "pool", "logits"} <= set(tensors)
    assert layers["notes"] == [] and f"{name}: first divergent layer" in result.stdout


def test_browser_layers_equal_node_layers(planted_elsewhere):
    _result, _report, targets = planted_elsewhere
    node, browser = (_by_layer(targets[name]["layers"]) for name in ("tfjs:uint8", "tfjs:uint8@tfjs-browser"))
    assert set(node) == set(browser)
    for layer, tensor in node.items():  # both on wasm: the same kernels
        assert browser[layer]["cosine"] == pytest.approx(tensor["cosine"], abs=1e-6), layer


def test_tflm_names_the_planted_layer_and_says_the_layers_came_from_litert(planted_elsewhere):
    result, _report, targets = planted_elsewhere
    layers = targets["tflm"]["layers"]
    assert layers["first_divergent"].endswith("planted_down") and layers["worst"][0] == layers["first_divergent"]
    assert any("LiteRT's reference kernels on the same flatbuffer" in note for note in layers["notes"]), layers
    assert _by_layer(layers)["planted_up"]["cosine"] > 0.999 and "tflm: first divergent layer" in result.stdout


def test_tfjs_layer_plan_requests_float_nodes_outside_control_flow_only():
    float32, int32 = {"T": {"type": "DT_FLOAT"}}, {"T": {"type": "DT_INT32"}}
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "conv", "op": "Conv2D", "input": ["x", "w"], "attr": float32},
        {"name": "shape", "op": "Shape", "input": ["conv"], "attr": {**float32, "out_type": {"type": "DT_INT32"}}},
        {"name": "count", "op": "Size", "input": ["conv"], "attr": int32},
        {"name": "switch", "op": "Switch", "input": ["conv", "flag"], "attr": float32},
        {"name": "branch", "op": "Relu", "input": ["switch:1"], "attr": float32},
        {"name": "merge", "op": "Merge", "input": ["switch", "branch"], "attr": float32},
        {"name": "after", "op": "Relu", "input": ["merge"], "attr": float32},
        {"name": "enter", "op": "Enter", "input": ["after"], "attr": float32},
        {"name": "body", "op": "Mul", "input": ["enter", "enter"], "attr": float32},
        {"name": "exit", "op": "Exit", "input": ["body"], "attr": float32},
        {"name": "done", "op": "Tanh", "input": ["exit"], "attr": float32},
        {"name": "untyped", "op": "Identity", "input": ["done"]},
    ]
    assert requestable(nodes) == ["conv", "after", "done", "untyped"]
    plan = LayerPlan(layers={f"n{i}": f"layer{i}" for i in range(BATCH_NODES + 1)})
    batches = plan.request()["batches"]
    assert [len(batch) for batch in batches] == [BATCH_NODES, 1] and batches[1] == [f"n{BATCH_NODES}"]
    run = plan.layer_run([{"n0": np.ones(2, np.float32)}], {"fetched": BATCH_NODES, "dropped": {"n1": "int32"}})
    assert set(run.values[0]) == {"layer0"} and run.artifact_names["layer1"] == "n1"
    assert any(f"1 of {BATCH_NODES + 1} TF.js layer tensors not fetched" in note for note in run.notes)
    assert any("1 TF.js layer tensors dropped: n1: int32" in note for note in run.notes)
