"""What used to be silently accepted or a traceback is said: a dtype cast of --data, NaN/Inf in the model's own
outputs, a plug-in that fails to load, a converter variant's own requirements."""

from __future__ import annotations

import json
import os

import numpy as np

from edgeport.contracts import availability_of
from edgeport.run.requirements import Requirement
from edgeport_testing import assert_one_line_error, run_cli, save_multi_io, tf


def test_float64_data_is_cast_with_a_warning(tmp_path):
    model = save_multi_io(tmp_path / "model")
    np.savez(tmp_path / "f64.npz", features=np.zeros((2, 4)), scale=np.ones((2, 1)))
    result = run_cli(
        "convert",
        model,
        "-t",
        "tflite",
        "--data",
        tmp_path / "f64.npz",
        "-o",
        tmp_path / "out",
        "--no-bench",
        "--no-history",
    )
    assert result.returncode == 0, result.stderr
    warnings = json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]
    assert any("features float64 -> float32" in w and "scale float64 -> float32" in w for w in warnings)


def test_nan_in_the_models_own_outputs_is_compared_where_finite_and_said(tmp_path):
    t = tf()

    class Log(t.Module):
        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.math.log(x - 0.5)}  # NaN for half the synthetic inputs in [0, 1)

    module = Log()
    t.saved_model.save(module, str(tmp_path / "model"), signatures={"serving_default": module.serve})
    result = run_cli(
        "convert",
        tmp_path / "model",
        "-t",
        "tflite",
        "-t",
        "onnx",
        "-o",
        tmp_path / "out",
        "--no-bench",
        "--no-history",
    )
    assert result.returncode == 0, result.stderr
    for target in json.loads((tmp_path / "out" / "report.json").read_text())["targets"]:
        assert any("reference values are NaN/Inf" in note for note in target["notes"]), target["name"]
        assert np.isfinite(target["accuracy"]["outputs"][0]["max_abs_error"])


def test_a_plugin_that_fails_to_load_is_named_not_unknown(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo.so')\n")
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[edgeport.converters]\nfoo = broken_plugin:FooConverter\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_cli("convert", tmp_path / "nope", "-t", "foo", "-o", tmp_path / "out", env=env)
    assert_one_line_error(result, 2, "plug-in 'foo' is installed but failed to load", "needs libfoo.so")


def test_onnx_float_targets_do_not_need_the_fp16_package():
    from edgeport.converters.onnx.converter import FP16_ONLY, ONNXConverter

    class WithoutFP16(ONNXConverter):
        def requirements(self):
            missing = Requirement(name=FP16_ONLY, kind="python", found=None)
            return (*[r for r in super().requirements() if r.name != FP16_ONLY], missing)

    converter = WithoutFP16()
    assert converter.variant_availability("").available
    assert converter.variant_availability("int8").available
    fp16 = converter.variant_availability("fp16")
    assert not fp16.available and FP16_ONLY in fp16.reason
    assert availability_of("onnx", converter.requirements()).available is False
