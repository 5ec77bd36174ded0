"""The onnxruntime runtime on small ONNX models built here with onnx.helper (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeport.contracts import RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure
from edgeport.formats.onnx.conventions import INPUT_PERMUTATIONS_KEY
from edgeport.targets.onnxruntime.runtime import ONNXRuntime, session_options

OPSET = 17


def _save(model, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


@pytest.fixture
def two_input_model(tmp_path) -> Path:
    """sum = a + b (float [1,3]); twice = 2 * b; names as a signature would have them."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3])
    total = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3])
    twice = helper.make_tensor_value_info("twice", TensorProto.FLOAT, [1, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["b", "two"], ["twice"])],
        "two_inputs",
        [a, b],
        [total, twice],
        initializer=[two],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), tmp_path / "two.onnx")


@pytest.fixture
def nchw_model(tmp_path) -> Path:
    """Takes NCHW [1,2,3,4], returns it flattened; the metadata says its input was NHWC in the signature."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 3, 4])
    y = helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 24])
    graph = helper.make_graph([helper.make_node("Flatten", ["image"], ["flat"])], "nchw", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.metadata_props.add(key=INPUT_PERMUTATIONS_KEY, value=json.dumps({"image": [0, 3, 1, 2]}))
    return _save(model, tmp_path / "nchw.onnx")


def _samples(**arrays) -> SampleSet:
    return SampleSet(arrays=arrays, source="test", synthetic=True)


def test_runs_by_signature_name(two_input_model):
    a = np.arange(6, dtype=np.float32).reshape(2, 1, 3)
    b = np.ones((2, 1, 3), np.float32)
    outputs = ONNXRuntime().infer(two_input_model, _samples(a=a, b=b), RuntimeSettings(threads=2))
    assert len(outputs) == 2 and set(outputs[0]) == {"sum", "twice"}
    np.testing.assert_array_equal(outputs[1]["sum"], a[1] + 1)
    np.testing.assert_array_equal(outputs[0]["twice"], 2 * b[0])


def test_feeds_are_cast_to_the_model_dtype(two_input_model):
    a = np.ones((1, 1, 3), np.float64)
    outputs = ONNXRuntime().infer(two_input_model, _samples(a=a, b=a), RuntimeSettings())
    assert outputs[0]["sum"].dtype == np.float32


def test_nhwc_feed_is_transposed_for_an_nchw_input(nchw_model):
    nhwc = np.arange(24, dtype=np.float32).reshape(1, 1, 3, 4, 2)  # one sample, [1, H, W, C]
    outputs = ONNXRuntime().infer(nchw_model, _samples(image=nhwc), RuntimeSettings())
    expected = np.transpose(nhwc[0], (0, 3, 1, 2)).reshape(1, 24)
    np.testing.assert_array_equal(outputs[0]["flat"], expected)


def test_missing_input_is_a_runtime_failure(two_input_model):
    session = ONNXRuntime().open(two_input_model, RuntimeSettings())
    with pytest.raises(RuntimeFailure, match="feed lacks model inputs b"):
        session.run({"a": np.ones((1, 3), np.float32)})


def test_unloadable_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    with pytest.raises(RuntimeFailure) as caught:
        ONNXRuntime().open(broken, RuntimeSettings())
    assert str(broken) in caught.value.message and "\n" not in caught.value.message


def test_session_options():
    options = session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_loads_ort_format(two_input_model, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "two.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(two_input_model), options, providers=["CPUExecutionProvider"])
    ones = np.ones((1, 1, 3), np.float32)
    outputs = ONNXRuntime().infer(tmp_path / "two.ort", _samples(a=ones, b=ones), RuntimeSettings())
    np.testing.assert_array_equal(outputs[0]["sum"], 2 * ones[0])


def test_version_and_availability():
    runtime = ONNXRuntime()
    assert runtime.version() == f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
    assert runtime.availability().available
    assert runtime.artifact_suffixes == (".onnx", ".ort")


def test_benchmark_uses_the_core_protocol(two_input_model):
    ones = np.ones((2, 1, 3), np.float32)
    protocol = TimingProtocol(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.0, max_seconds=5.0)
    raw = ONNXRuntime().benchmark(two_input_model, _samples(a=ones, b=ones), RuntimeSettings(), protocol)
    assert len(raw.run_ms) >= 5 and raw.warmup_runs >= 2
    assert raw.runtime_version.startswith("onnxruntime ")
