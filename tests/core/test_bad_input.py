"""Bad input: one clear line, the documented exit code, no traceback, nothing half-written."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from edgeport_testing import assert_one_line_error, run_cli


def test_missing_model_folder(tmp_path):
    result = run_cli("convert", tmp_path / "nope", "-t", "tflite", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "does not exist", "saved_model.pb")  # a usage error
    assert not (tmp_path / "out").exists()


def test_folder_that_is_not_a_savedmodel(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("convert", tmp_path / "empty", "-t", "tflite", "-o", tmp_path / "out")
    assert_one_line_error(result, 3, "is not a SavedModel", "model.export")


def test_truncated_saved_model_pb(models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(models["cnn"], broken)
    pb = broken / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])
    result = run_cli("convert", broken, "-t", "tflite", "-o", tmp_path / "out")
    assert_one_line_error(result, 3, "corrupt or truncated", "saved_model.pb")
    assert not (tmp_path / "out" / "tflite").exists()


def test_unknown_signature_lists_those_present(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "--signature", "predict", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "'predict' not found", "serving_default")


def test_unknown_target_lists_known_ones(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite:int4", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "tflite:int4", "tflite:int8")
    result = run_cli("convert", models["cnn"], "-t", "coreml", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "unknown target 'coreml'", "known targets:", "tflite:fp16")


@pytest.mark.parametrize("case", ["key", "shape", "dtype"])
def test_data_that_does_not_fit_names_the_input(models, tmp_path, case):
    arrays = {"features": np.zeros((3, 4), np.float32), "scale": np.ones((3, 1), np.float32)}
    if case == "key":
        arrays["colour"] = arrays.pop("scale")
        expected = ("'colour'", "not an input")
    elif case == "shape":
        arrays["features"] = np.zeros((3, 5), np.float32)
        expected = ("'features'", "[3, 5]")
    else:
        arrays["features"] = np.zeros((3, 4), np.complex64)
        expected = ("'features'", "complex64", "float32")
    np.savez(tmp_path / "data.npz", **arrays)
    result = run_cli(
        "convert", models["multi"], "-t", "tflite", "--data", tmp_path / "data.npz", "-o", tmp_path / "out"
    )
    assert_one_line_error(result, 2, *expected)
    assert not (tmp_path / "out" / "tflite").exists()


def test_config_with_unknown_key(models, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{models["cnn"]}"\ntargets = ["tflite"]\nthreds = 2\n')
    assert_one_line_error(run_cli("convert", "--config", config), 2, "unknown key 'threds'")
    config.write_text(f'model = "{models["cnn"]}"\n[target."tflite:int8"]\nio_typ = "int8"\n')
    assert_one_line_error(run_cli("convert", "--config", config), 2, "unknown key 'io_typ'", "io_type")


def test_option_that_no_target_takes(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-O", "opset=13", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "--opset does not apply", "tflite")


def test_unwritable_output_folder(models, tmp_path):
    # A path below a regular file can never be created, whoever runs the test (CI runs as root).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-o", blocker / "out")
    assert_one_line_error(result, 2, "not writable", str(blocker / "out"))


def test_dynamic_dims_are_chosen_and_an_input_shape_still_wins(tmp_path):
    from edgeport_testing import save_dynamic_sum

    save_dynamic_sum(tmp_path / "dyn")
    chosen = run_cli("convert", tmp_path / "dyn", "-t", "tflite", "-o", tmp_path / "out", "--no-bench")
    assert chosen.returncode == 0, chosen.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("checked at [1, 16, 3] and [1, 24, 3]" in w and "--input-shape" in w for w in report["warnings"])
    assert [c["shapes"] for c in report["targets"][0]["shape_checks"]] == [
        {"sequence": [1, 16, 3]},
        {"sequence": [1, 24, 3]},
    ]
    fixed = run_cli(
        "convert",
        tmp_path / "dyn",
        "-t",
        "tflite",
        "-o",
        tmp_path / "out2",
        "--input-shape",
        "sequence=1,7,3",
        "--no-bench",
    )
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert [c["shapes"] for c in report["targets"][0]["shape_checks"]] == [{"sequence": [1, 7, 3]}]
    assert not any("dynamic dimensions chosen" in w for w in report["warnings"])


def test_string_input_gets_synthetic_words_and_an_op_no_format_has_is_named(models, tmp_path):
    result = run_cli("convert", models["strings"], "-t", "tflite", "-t", "tfjs", "-o", tmp_path / "out", "--no-bench")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "strings from generic words, 25% out of vocabulary" in report["samples"]["source"]
    assert result.returncode == 3 and "Traceback" not in result.stderr
    for target in report["targets"]:
        convert = target["stages"][0]
        assert convert["status"] == "error" and "StringLength" in convert["reason"], target["name"]


def test_missing_calibration_file_is_named_before_any_work(models, tmp_path):
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite:int8", "--calibration", tmp_path / "calib.npz", "-o", tmp_path / "out"
    )
    assert_one_line_error(result, 2, "--calibration", "calib.npz", "does not exist")
    assert not (tmp_path / "out").exists()


def test_backend_is_checked_before_any_work(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tfjs", "--backend", "webgl", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "tfjs-node has no backend 'webgl'", "wasm, cpu")
    result = run_cli("convert", models["cnn"], "-t", "tflite", "--backend", "wasm", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "--backend wasm", "no")
    assert not (tmp_path / "out").exists()


def test_option_errors_found_by_plugins_stop_the_run_before_any_conversion(models, tmp_path):
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite", "-t", "onnx", "--opset", "99", "-o", tmp_path / "out", "--no-history"
    )
    assert_one_line_error(result, 2, "opset=99", "above what onnxruntime")
    assert not (tmp_path / "out" / "tflite").exists() and not (tmp_path / "out" / "onnx").exists()
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite:int16x8", "--io-type", "int8", "-o", tmp_path / "out", "--no-history"
    )
    assert_one_line_error(result, 2, "--io-type int8", "int16")


def test_an_image_folder_without_pillow_names_the_extra(models, tmp_path):
    """An installed edgeport without Pillow: the import is blocked (sys.modules['PIL'] = None, Python's own way
    of making a module unimportable) in a real run; one line names the extra, before the model loads."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "a.png")
    (tmp_path / "no_pil").mkdir()
    (tmp_path / "no_pil" / "sitecustomize.py").write_text("import sys\nsys.modules['PIL'] = None\n")
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite", "--data", tmp_path / "images", "-o", tmp_path / "out",
        env={"PYTHONPATH": str(tmp_path / "no_pil")},
    )  # fmt: skip
    assert_one_line_error(result, 2, "--data", "needs Pillow", "pip install 'edgeport[images]'")
    assert not (tmp_path / "out").exists()


def test_pillow_is_declared_in_the_images_extra():
    import tomllib

    from edgeport_testing import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(spec.startswith("pillow") for spec in extras["images"])
    make_test_extras = re.search(r"^TEST_EXTRAS := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "images" in extras["all"][0] and "images" in make_test_extras.split(",")  # `make test` installs it


def test_a_comparison_of_zero_elements_never_passes():
    from edgeport.checks.accuracy import compare
    from edgeport.data import Precision

    empty = [{"y": np.zeros((1, 0), np.float32)} for _ in range(3)]
    result = compare(empty, empty, Precision(min_cosine=0.9999))
    assert not result.passed and "no values compared" in result.failures[0], result.failures
    full = [{"y": np.ones((1, 2), np.float32), "empty": np.zeros((0,), np.float32)} for _ in range(3)]
    assert not compare(full, full, Precision(min_cosine=0.9999)).passed  # one empty output is enough


def test_control_characters_in_the_model_path_stay_escaped_in_every_report_file(models, tmp_path):
    odd = tmp_path / "line\nbreak\x1bmodel"
    shutil.copytree(models["multi"], odd)
    result = run_cli("convert", odd, "-t", "tflite", "-o", tmp_path / "out", "--no-bench", "--no-history")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.md").read_text()
    model_line = next(line for line in summary.splitlines() if line.startswith("Model "))
    assert "line\\nbreak\\x1bmodel" in model_line and "samples:" in model_line  # still one line
    assert "\x1b" not in summary
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite")  # valid XML
    assert suite is not None and "line\\nbreak\\x1bmodel" in suite.get("name", "")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "line\\nbreak\\x1bmodel" in html and "\x1b" not in html
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["path"] == str(odd)  # report.json keeps the path as it is
