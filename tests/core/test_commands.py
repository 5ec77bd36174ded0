"""The other commands: inspect, check, bench, targets — through the real CLI."""

from __future__ import annotations

import json

import pytest

from edgeport_testing import run_cli


@pytest.fixture(scope="module")
def converted(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite", "-t", "tflite:int8", "-o", out, "--no-bench", "--no-check"
    )
    assert result.returncode == 0, result.stderr
    return out


def test_inspect_shows_signature_ops_and_preflight(models):
    result = run_cli("inspect", models["multi"], "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["signature"]["key"] == "serving_default"
    assert info["loaded"] and info["scan"]["clean"] and info["scan"]["findings"] == []  # the pre-load scan
    assert [i["name"] for i in info["signature"]["inputs"]] == ["features", "scale"]
    assert info["signature"]["inputs"][0]["shape"] == [None, 4]
    assert info["op_histogram"]["MatMul"] == 1 and info["parameters"] == 12 and info["size_bytes"] > 0
    assert {"tflite", "onnx", "tfjs", "tflm"} <= set(info["preflight"])
    assert info["preflight"]["tflite"] == []


def test_inspect_flags_non_builtin_ops_and_string_tensors(models):
    flex = json.loads(run_cli("inspect", models["flex"], "--json", "-t", "tflite").stdout)
    assert any("Cumprod" in f["message"] and "--allow-tf-ops" in f["message"] for f in flex["preflight"]["tflite"])
    strings = json.loads(run_cli("inspect", models["strings"], "--json", "-t", "tflite").stdout)
    assert strings["string_or_resource_tensors"] == ["text: string[?]"]
    text = run_cli("inspect", models["flex"], "-t", "tflite")
    assert text.returncode == 0 and "Cumprod" in text.stdout and "pre-flight" in text.stdout
    assert "pre-load scan" in text.stdout and "clean" in text.stdout


def test_check_an_artifact_against_its_model(models, converted):
    result = run_cli(
        "check", converted / "tflite-int8" / "model.tflite", "--model", models["cnn"], "--precision", "int8", "--json"
    )
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    assert checked["accuracy"]["passed"] and checked["accuracy"]["outputs"][0]["cosine"] > 0.95
    table = run_cli("check", converted / "tflite" / "model.tflite", "--model", models["cnn"])
    assert table.returncode == 0 and "cosine" in table.stdout and "passed" in table.stdout
    assert table.stderr.strip() == ""  # TensorFlow's and LiteRT's chatter goes to the worker logs


def test_check_against_the_wrong_model_fails_cleanly(models, converted):
    result = run_cli("check", converted / "tflite" / "model.tflite", "--model", models["multi"])
    assert result.returncode == 2  # the artifact does not fit the model: a usage error (README, Exit codes)
    assert "Traceback" not in result.stderr and "takes inputs pixels, the signature features, scale" in result.stderr


def test_bench_an_artifact(models, converted):
    result = run_cli(
        "bench",
        converted / "tflite" / "model.tflite",
        "--model",
        models["cnn"],
        "--min-runs",
        "5",
        "--min-seconds",
        "0.05",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["runs"] >= 5 and stats["p50_ms"] > 0 and "ai-edge-litert" in stats["runtime_version"]
    missing = run_cli("bench", converted / "tflite" / "model.tflite")
    assert missing.returncode == 2 and "--model" in missing.stderr


def test_targets_lists_every_builtin():
    result = run_cli("targets", "--json")
    assert result.returncode == 0
    rows = {row["target"]: row for row in json.loads(result.stdout)}
    for name in ("tflite", "tflite:int8", "onnx:fp16", "tfjs:uint8", "tflm", "litert", "tfjs-browser"):
        assert name in rows
    assert rows["tflite:int8"]["available"] is True


def test_a_folder_or_file_picks_its_runtime():
    import tempfile
    from pathlib import Path

    from edgeport.cli.commands import runtime_for
    from edgeport.errors import UsageError

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.json").write_text("{}")
        (folder / "group1-shard1of1.bin").write_bytes(b"")
        runtime, file = runtime_for(folder, None)
        assert runtime.name == "tfjs-node" and file.name == "model.json"
        assert runtime_for(folder, "tfjs-browser")[0].name == "tfjs-browser"
        (folder / "model.tflite").write_bytes(b"")
        assert runtime_for(folder / "model.tflite", None)[0].name == "litert"
        (folder / "notes.txt").write_text("x")
        with pytest.raises(UsageError, match="no runtime loads notes.txt"):
            runtime_for(folder / "notes.txt", None)
