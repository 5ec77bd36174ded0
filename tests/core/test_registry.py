"""Plug-ins: built-ins register through entry points like any third party; a fake third party works end to end."""

from __future__ import annotations

import json

import pytest

from edgeport.contracts import TargetSpec
from edgeport.errors import UsageError
from edgeport.run.registry import Registry
from edgeport_testing import PLUGIN_ENV, run_cli

BUILTIN_CONVERTERS = {"tflite", "onnx", "tfjs", "tflm"}
BUILTIN_RUNTIMES = {"litert", "onnxruntime", "tfjs-node", "tfjs-browser", "tflm"}


def test_every_builtin_is_registered_through_entry_points():
    registry = Registry()
    assert set(registry.converters()) >= BUILTIN_CONVERTERS
    assert set(registry.runtimes()) >= BUILTIN_RUNTIMES
    assert not registry.broken()
    assert registry.origin("converter", "tflite") == "edgeport.converters.tflite.converter:TFLiteConverter"
    for converter in registry.converters().values():
        assert converter.default_runtime in registry.runtimes(), converter.name


def test_unknown_names_list_the_known_ones():
    registry = Registry()
    with pytest.raises(UsageError, match="known targets: .*tflite:int8"):
        registry.resolve(TargetSpec.parse("tensorrt"))
    with pytest.raises(UsageError, match="no variant 'int4'"):
        registry.resolve(TargetSpec.parse("tflite:int4"))
    with pytest.raises(UsageError, match="unknown runtime 'nowhere'"):
        registry.resolve(TargetSpec.parse("tflite@nowhere"))


def test_registering_a_name_twice_is_refused_unless_overriding():
    from edgeport.converters.tflite.converter import TFLiteConverter

    class Other(TFLiteConverter):
        pass

    registry = Registry()
    with pytest.raises(UsageError, match="registered twice"):
        registry.register_converter(Other)
    registry.register_converter(Other, override=True)
    assert isinstance(registry.converter("tflite"), Other)


def test_target_spec_parsing():
    spec = TargetSpec.parse("TFJS:uint8@tfjs-browser")
    assert (spec.converter, spec.variant, spec.runtime) == ("tfjs", "uint8", "tfjs-browser")
    assert spec.name == "tfjs:uint8@tfjs-browser" and spec.slug == "tfjs-uint8--tfjs-browser"


def test_third_party_plugin_end_to_end_and_listed(models, tmp_path):
    listed = run_cli("targets", "--json", env=PLUGIN_ENV)
    assert listed.returncode == 0, listed.stderr
    names = {row["target"]: row for row in json.loads(listed.stdout)}
    assert names["frozengraph"]["origin"] == "edgeport_fake_plugin:FrozenGraphConverter"
    result = run_cli(
        "convert", models["multi"], "-t", "frozengraph", "-t", "tflite", "-o", tmp_path, "--no-bench", env=PLUGIN_ENV
    )
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "report.json").read_text())["targets"][0]
    assert target["name"] == "frozengraph" and target["runtime"] == "graphdef"
    assert {o["name"]: o["max_abs_error"] for o in target["accuracy"]["outputs"]} == {"logits": 0.0, "probs": 0.0}


def test_a_third_party_converter_declares_its_own_flags_grouped_in_help(models, tmp_path):
    shown = run_cli("convert", "--help", env=PLUGIN_ENV)
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("frozengraph options", 1)[1].split("options (from", 1)[0]
    assert "--as-text" in section and "model.pbtxt" in section and "-O note=NOTE" in section
    for builtin, flag in (
        ("tflite", "--allow-tf-ops"),
        ("onnx", "--opset"),
        ("tfjs", "--shard-size"),
        ("tflm", "--ram-limit"),
    ):
        assert flag in shown.stdout.split(f"{builtin} options", 1)[1], builtin
    result = run_cli(
        "convert",
        models["multi"],
        "-t",
        "frozengraph",
        "--as-text",
        "-O",
        "note=hello",
        "-o",
        tmp_path,
        "--no-bench",
        env=PLUGIN_ENV,
    )
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "report.json").read_text())["targets"][0]
    assert "model.pbtxt" in target["files"] and target["notes"] == ["note: hello"]
    refused = run_cli("convert", models["multi"], "-t", "tflite", "--as-text", "-o", tmp_path / "x", env=PLUGIN_ENV)
    assert refused.returncode == 2 and "--as-text does not apply to any selected target" in refused.stderr


def test_a_converter_that_kills_its_process_fails_only_its_target(models, tmp_path):
    result = run_cli(
        "convert", models["multi"], "-t", "crashing", "-t", "tflite", "-o", tmp_path, "--no-bench", env=PLUGIN_ENV
    )
    assert result.returncode == 3
    report = json.loads((tmp_path / "report.json").read_text())
    crashed, survivor = report["targets"]
    assert crashed["stages"][0]["status"] == "error" and "SIGSEGV" in crashed["stages"][0]["reason"]
    assert "the crashing converter crashed the TensorFlow process" in crashed["stages"][0]["reason"]
    assert [s["status"] for s in survivor["stages"]] == ["passed", "passed", "skipped"]
    assert not (tmp_path / "crashing").exists() and not list(tmp_path.glob(".staging*"))
