"""A runtime that is not installed is reported as unavailable (with the command that installs it), not a crash."""

from __future__ import annotations

import json

import pytest

from edgeport_testing import run_cli


@pytest.mark.parametrize(
    ("target", "variable", "install"),
    [
        ("tfjs", "EDGEPORT_NODE", "apt-get install nodejs npm"),
        ("tfjs@tfjs-browser", "EDGEPORT_CHROMIUM", "apt-get install -y chromium"),
    ],
)
def test_missing_runtime_program_is_unavailable_then_strict_fails(models, tmp_path, target, variable, install):
    env = {variable: str(tmp_path / "nowhere" / "bin")}
    result = run_cli("convert", models["multi"], "-t", target, "-o", tmp_path / "a", "--no-history", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    check, bench = report["targets"][0]["stages"][1:]
    assert check["status"] == "skipped" and "unavailable" in check["reason"] and install in check["reason"]
    assert bench["status"] == "skipped"
    assert (tmp_path / "a" / report["targets"][0]["artifact"]).is_file()  # converted all the same
    strict = run_cli(
        "convert", models["multi"], "-t", target, "-o", tmp_path / "b", "--no-history", "--strict", env=env
    )
    assert strict.returncode == 1


def test_an_op_tfjs_lacks_is_named_and_nothing_is_written(tmp_path):
    from edgeport_testing import tf

    t = tf()

    class WithLgamma(t.Module):
        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.math.lgamma(x + 1.0)}

    module = WithLgamma()
    t.saved_model.save(module, str(tmp_path / "lgamma"), signatures={"serving_default": module.serve})
    result = run_cli(
        "convert",
        tmp_path / "lgamma",
        "-t",
        "tfjs",
        "-t",
        "tflite",
        "-o",
        tmp_path / "out",
        "--no-history",
        "--no-bench",
    )
    assert result.returncode == 3
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    tfjs, tflite = report["targets"]
    assert tfjs["stages"][0]["status"] == "error" and "Lgamma" in tfjs["stages"][0]["reason"]
    assert not (tmp_path / "out" / "tfjs").exists()
    assert tflite["stages"][1]["status"] == "passed"  # the other target is unaffected
