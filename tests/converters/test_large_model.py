"""The large-model path, forced on a small model by lowering the threshold (EDGEPORT_LARGE_MODEL_BYTES): TFLite and
TFLite Micro convert from the SavedModel directory with the converter's own loader, say so, and still pass on
their runtimes; ONNX keeps the shared frozen graph but skips tf2onnx's optimizers (each deep-copies the graph with
its weights), said too. (A model past the real threshold is measured
in benchmarks/bench_scale.py, not here.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.errors import UsageError
from edgeport.model.savedmodel import LARGE_MODEL_BYTES, LARGE_MODEL_ENV, large_model_threshold
from edgeport_testing import run_cli, save_planted

SAID = "converted from the SavedModel directory by the converter's own loader"


def test_every_tflite_variant_and_tflm_take_the_large_model_path(tmp_path):
    model, images, _ = save_planted(tmp_path / "m", 1.0)
    np.savez(tmp_path / "data.npz", image=images)
    out = tmp_path / "out"
    result = run_cli(
        "convert", model, "--data", tmp_path / "data.npz", "-t", "tflite", "-t", "tflite:fp16", "-t", "tflite:int8",
        "-t", "tflm", "-t", "onnx", "-o", out, "--no-bench", env={LARGE_MODEL_ENV: "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    targets = {t["name"]: t for t in report["targets"]}
    for name in ("tflite", "tflite:fp16", "tflite:int8", "tflm"):
        assert report["verdicts"][name] == "passed"
        assert any(note.startswith(SAID) and "large-model threshold" in note for note in targets[name]["notes"])
    assert targets["tflite:int8"]["accuracy"]["outputs"][0]["cosine"] > 0.99  # calibrated through that path too
    assert not any(SAID in note for note in targets["onnx"]["notes"])
    assert any("without tf2onnx's graph optimizers" in note for note in targets["onnx"]["notes"])
    assert report["verdicts"]["onnx"] == "passed"


def test_the_threshold_and_its_override(monkeypatch):
    monkeypatch.delenv(LARGE_MODEL_ENV, raising=False)
    assert large_model_threshold() == LARGE_MODEL_BYTES
    monkeypatch.setenv(LARGE_MODEL_ENV, "1000")
    assert large_model_threshold() == 1000
    monkeypatch.setenv(LARGE_MODEL_ENV, "big")
    with pytest.raises(UsageError, match=LARGE_MODEL_ENV):
        large_model_threshold()


def test_a_large_model_checks_on_two_synthetic_samples_unless_told(tmp_path):
    model, _, _ = save_planted(tmp_path / "m", 1.0)
    runs = {"default": (), "chosen": ("--samples", "5")}
    counts = {}
    for name, extra in runs.items():
        out = tmp_path / name
        result = run_cli("convert", model, "-t", "tflite", "-o", out, "--no-bench", *extra, env={LARGE_MODEL_ENV: "1"})
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "report.json").read_text())
        counts[name] = report["samples"]["count"]
        said = [w for w in report["warnings"] if w.startswith("a large model")]
        assert bool(said) == (name == "default"), report["warnings"]
    assert counts == {"default": 2, "chosen": 5}
    assert "checked on 2 synthetic samples, not 32; pass --samples N for more" in said_text(tmp_path / "default")


def said_text(out) -> str:
    return " ".join(json.loads((out / "report.json").read_text())["warnings"])


def test_flags_win_over_the_config_sample_count(tmp_path):
    model, _, _ = save_planted(tmp_path / "m", 1.0)
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{model}"\ntargets = ["tflite"]\nsamples = 7\n')
    for extra, expected in (((), 7), (("--samples", "3"), 3)):
        out = tmp_path / f"out{expected}"
        result = run_cli("convert", "--config", config, "-o", out, "--no-bench", *extra)
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "report.json").read_text())["samples"]["count"] == expected
