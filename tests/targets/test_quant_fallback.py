"""Accuracy-controlled quantization (`-O quant_fallback=auto`) on the real converters and runtimes.

The planted model (edgeport_testing.save_planted: a 1x1 conv scaling 2 of 8 channels by 1000, the next one scaling
them back) collapses in int8; kept in float, exactly those two layers make int8 pass again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.run.quant_fallback import keep_layers_in_float, next_float_layers
from edgeport_testing import run_cli, save_planted

PLANTED = {"planted_up", "planted_down"}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fallback")
    model, images, labels = save_planted(base / "planted", 1000.0)
    np.savez(base / "planted.npz", image=images, labels=labels)
    out = base / "out"
    result = run_cli(
        "convert", model, "-t", "tflite:int8", "-t", "onnx:int8", "-t", "tflm", "--data", base / "planted.npz",
        "--labels", "labels", "-O", "quant_fallback=auto", "-o", out, "--no-baseline", "--min-runs", "20",
        "--max-seconds", "2", "--ort-optimized",
    )  # fmt: skip
    # --ort-optimized: the fused file's Conv+Relu is one node, as TFLite's is, so both formats keep exactly the
    # planted layers; the standard ONNX file quantizes each Relu on its own and keeps those two in float as well
    return result, out


def _short(names):
    return {name.rsplit("/", 1)[-1] for name in names}


def test_planted_layers_stay_float_and_the_gates_pass(planted_run):
    result, out = planted_run
    assert result.returncode == 1, result.stderr  # tflm cannot keep layers in float: its gate still fails
    report = json.loads((out / "report.json").read_text())
    targets = {t["name"]: t for t in report["targets"]}
    for name in ("tflite:int8", "onnx:int8"):
        target = targets[name]
        assert report["verdicts"][name] == "passed", target["stages"]
        fallback = target["quant_fallback"]
        assert fallback["status"] == "passed" and _short(fallback["float_layers"]) == PLANTED, fallback
        assert [r["verdict"] for r in fallback["rounds"]] == ["failed", "passed"]  # planted_down, then its producer
        assert target["accuracy"]["outputs"][0]["cosine"] > 0.999
        assert target["accuracy"]["task"]["drop"] == 0.0
        cost = fallback["cost"]
        assert cost["size_bytes"] == target["size_bytes"] and cost["all_quantized_size_bytes"] > 0
        assert cost["p50_ms"] == pytest.approx(target["latency"]["p50_ms"], abs=1e-3) and cost["p50_ratio"] > 0
        assert _short(target["details"]["float_nodes"]) == PLANTED  # the converter's own nodes, per layer
        assert all(target["details"]["float_nodes"].values())
        assert target["layers"]["first_divergent"].endswith("planted_down")  # the all-int8 artifact's story
        assert f"{name}: quant_fallback passed" in result.stdout
        assert any("quant_fallback=auto passed" in note for note in target["notes"])
    tflm = targets["tflm"]["quant_fallback"]
    assert tflm["status"] == "unavailable" and tflm["reason"].startswith("cannot meet the gate: ")
    assert "int16x8" in tflm["reason"] and "planted_down" in tflm["reason"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".staging")]  # no candidate left behind


def test_the_installed_tflite_keeps_the_planted_convolutions_in_float(planted_run):
    from ai_edge_litert.interpreter import Interpreter

    _, out = planted_run
    interpreter = Interpreter(model_path=str(out / "tflite-int8" / "model.tflite"))
    dtypes = {d["name"]: d["dtype"] for d in interpreter.get_tensor_details()}
    ends = {"planted_up1", "planted_down1"}
    planted = {name: dtype for name, dtype in dtypes.items() if name.rsplit("/", 1)[-1] in ends}
    assert planted and all(dtype == np.float32 for dtype in planted.values()), planted
    assert any(dtype == np.int8 for dtype in dtypes.values())  # the rest stays int8


def test_a_float_layer_still_adding_error_sends_its_producer_to_float():
    layers = {
        "tensors": [
            {"name": "conv1", "added_error": 0.01},
            {"name": "up", "added_error": 0.02},
            {"name": "down", "added_error": 0.9},
        ]
    }
    inputs = {"conv1": ("",), "relu": ("conv1",), "up": ("relu",), "down": ("up",)}
    assert next_float_layers(layers, (), inputs) == ("down",)
    assert next_float_layers(layers, ("down",), inputs) == ("up",)
    assert next_float_layers(layers, ("down", "up"), inputs) == ("conv1",)  # through `relu`, fused away
    assert next_float_layers({"tensors": []}, (), inputs) == ()


def test_the_loop_stops_at_its_round_limit():
    from edgeport.run.quant_fallback import Trial

    layers = {"tensors": [{"name": f"l{i}", "added_error": 1.0 - i / 10} for i in range(9)]}
    tried = []

    def attempt(kept):
        tried.append(kept)
        return Trial(kept, passed=False, failure="cosine 0.5 < 0.95", layers=layers)

    outcome = keep_layers_in_float(layers, {}, attempt, max_rounds=3)
    assert outcome.status == "failed" and len(tried) == 3 and tried[-1] == ("l0", "l1", "l2")
    assert "cannot meet the gates with 3 layer(s) in float after 3 round(s)" in outcome.reason


def test_a_bad_fallback_value_is_one_line(tmp_path):
    model, _, _ = save_planted(tmp_path / "m", 1.0)
    result = run_cli("convert", model, "-t", "tflite:int8", "-O", "quant_fallback=always", "-o", tmp_path / "o")
    assert result.returncode == 2
    assert "quant_fallback" in result.stderr and "auto" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_only_int8_keeps_chosen_layers_in_float():
    from edgeport.errors import ConversionError
    from edgeport.formats.tflite.conversion import convert_to_tflite

    with pytest.raises(ConversionError, match="tflite:fp16: only int8 keeps chosen layers in float"):
        convert_to_tflite(None, "fp16", None, float_layers=("dense",))  # refused before any conversion work
