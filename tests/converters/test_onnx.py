"""The ONNX converter on real small SavedModels, checked on the real onnxruntime against the SavedModel."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.contracts import ConversionJob, RuntimeSettings, SampleSet, TargetSpec
from edgeport.converters.onnx.converter import ONNXConverter, ONNXOptions
from edgeport.converters.onnx.opsets import onnxruntime_max_opset, tf2onnx_max_opset
from edgeport.errors import ConversionError, UsageError
from edgeport.model.samples import SampleRequest, synthetic_samples
from edgeport.model.savedmodel import load_model
from edgeport.targets.onnxruntime.runtime import ONNXRuntime


# ---------------------------------------------------------------- small SavedModels, built once per session
def _tf():
    from edgeport.model.tf_quiet import import_tensorflow

    return import_tensorflow()


@pytest.fixture(scope="session")
def keras_cnn_dir(tmp_path_factory) -> Path:
    tf = _tf()
    keras = tf.keras
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(image)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    squeeze = keras.layers.GlobalAveragePooling2D()(x)  # a squeeze-and-excitation block, as in EfficientNet
    squeeze = keras.layers.Reshape((1, 1, 16))(squeeze)
    x = x * keras.layers.Conv2D(16, 1, activation="sigmoid")(squeeze)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path_factory.mktemp("models") / "keras_cnn"
    model.export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def multi_io_dir(tmp_path_factory) -> Path:
    """Two inputs (an NHWC image and a vector), dict outputs (an NHWC feature map and scores)."""
    tf = _tf()

    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(1)
            self.kernel = tf.Variable(rng.normal(size=(3, 3, 4, 6)).astype(np.float32) * 0.3)
            self.dense = tf.Variable(rng.normal(size=(6 + 5, 3)).astype(np.float32) * 0.3)

        @tf.function(
            input_signature=[
                tf.TensorSpec([1, 8, 8, 4], tf.float32, name="pixels"),
                tf.TensorSpec([1, 5], tf.float32, name="extra"),
            ]
        )
        def __call__(self, pixels, extra):
            features = tf.nn.relu(tf.nn.conv2d(pixels, self.kernel, strides=1, padding="SAME"))
            pooled = tf.reduce_mean(features, axis=[1, 2])
            scores = tf.matmul(tf.concat([pooled, extra], axis=1), self.dense)
            return {"feature_map": features, "scores": tf.nn.softmax(scores)}

    module = TwoHeads()
    path = tmp_path_factory.mktemp("models") / "multi_io"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


@pytest.fixture(scope="session")
def tf1_dir(tmp_path_factory) -> Path:
    """A TF1 graph saved with tf.compat.v1.saved_model.Builder (variables, placeholders, signature_def)."""
    tf = _tf()
    path = tmp_path_factory.mktemp("models") / "tf1"
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 12], name="x")
        w = tf.compat.v1.get_variable("w", initializer=np.random.default_rng(2).normal(size=(12, 7)).astype(np.float32))
        b = tf.compat.v1.get_variable("b", initializer=np.linspace(-1, 1, 7).astype(np.float32))
        y = tf.nn.tanh(tf.matmul(x, w) + b, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def(inputs={"features": x}, outputs={"logits": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


@pytest.fixture(scope="session")
def lstm_dir(tmp_path_factory) -> Path:
    """Embedding + LSTM over int32 token ids: a While loop in the frozen graph's function library."""
    tf = _tf()
    keras = tf.keras
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((12,), dtype="int32", name="tokens"),
            keras.layers.Embedding(50, 8),
            keras.layers.LSTM(8),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("models") / "lstm"
    model.export(str(path), verbose=False)
    return path


def _module_dir(tmp_path_factory, name: str, function, spec) -> Path:
    tf = _tf()
    module = tf.Module()
    module.f = tf.function(function, input_signature=[spec])
    path = tmp_path_factory.mktemp("models") / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return path


@pytest.fixture(scope="session")
def lgamma_dir(tmp_path_factory) -> Path:
    """Lgamma has no tf2onnx handler at any opset (nor a custom-domain one)."""
    tf = _tf()
    return _module_dir(
        tmp_path_factory,
        "lgamma",
        lambda x: {"y": tf.math.lgamma(x) * 2.0},
        tf.TensorSpec([1, 4], tf.float32, name="x"),
    )


@pytest.fixture(scope="session")
def bitwise_dir(tmp_path_factory) -> Path:
    """BitwiseAnd maps to ONNX from opset 18 only."""
    tf = _tf()
    return _module_dir(
        tmp_path_factory,
        "bitwise",
        lambda x: {"y": tf.bitwise.bitwise_and(x, 6)},
        tf.TensorSpec([1, 4], tf.int32, name="x"),
    )


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory) -> Path:
    """Weights below float16's smallest subnormal: onnxconverter_common warns 3 times (per constant and sign)."""
    tf = _tf()
    small = np.array([[1e-9, 0.5], [-2e-10, 0.25]], dtype=np.float32)
    bias = np.array([3e-9, 0.1], dtype=np.float32)
    return _module_dir(
        tmp_path_factory,
        "tiny_weights",
        lambda x: {"y": tf.matmul(x, small) + bias},
        tf.TensorSpec([1, 2], tf.float32, name="x"),
    )


_LOADED: dict[Path, object] = {}


def loaded(path: Path):
    if path not in _LOADED:
        _LOADED[path] = load_model(path)
    return _LOADED[path]


def samples_for(model, count: int = 8) -> SampleSet:
    return synthetic_samples(model.signature, SampleRequest(count=count))


def convert(path: Path, workdir: Path, variant: str = "", calibration: SampleSet | None = None, **options):
    model = loaded(path)
    workdir.mkdir(parents=True, exist_ok=True)
    job = ConversionJob(
        model=model,
        target=TargetSpec("onnx", variant),
        options=ONNXOptions(**options),
        calibration=calibration if calibration is not None else samples_for(model),
        workdir=workdir,
    )
    return ONNXConverter().convert(job)


def check(path: Path, workdir: Path, artifact, permutations=True):
    """Run the artifact on onnxruntime and compare with the SavedModel, as the pipeline's check does."""
    model = loaded(path)
    samples = samples_for(model)
    candidate = ONNXRuntime().infer(workdir / artifact.main_file, samples, RuntimeSettings(threads=1))
    reference = model.reference(samples.feeds())
    return compare(
        reference,
        candidate,
        default_tolerance(artifact.precision),
        artifact.output_permutations if permutations else None,
    )


def onnx_model(workdir: Path, name: str = "model.onnx"):
    import onnx

    return onnx.load(str(workdir / name))


# ---------------------------------------------------------------- fp32
@pytest.mark.parametrize("fixture", ["keras_cnn_dir", "multi_io_dir", "tf1_dir", "lstm_dir"])
def test_fp32_matches_the_savedmodel(fixture, request, tmp_path):
    path = request.getfixturevalue(fixture)
    artifact = convert(path, tmp_path)
    result = check(path, tmp_path, artifact)
    assert result.passed, result.failures
    assert all(output.cosine >= 0.9999 for output in result.outputs)
    assert artifact.precision == "fp32" and artifact.runtime == "onnxruntime"
    assert artifact.main_file == "model.onnx" and artifact.files == ("model.onnx",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # staging folder removed


def test_names_are_the_signatures(multi_io_dir, tmp_path):
    convert(multi_io_dir, tmp_path)
    graph = onnx_model(tmp_path).graph
    assert sorted(value.name for value in graph.input) == ["extra", "pixels"]
    assert sorted(value.name for value in graph.output) == ["feature_map", "scores"]


def test_default_opset_is_the_highest_both_sides_support(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path)
    expected = min(tf2onnx_max_opset(), onnxruntime_max_opset())
    assert artifact.details["opset"] == expected
    assert {o.domain: o.version for o in onnx_model(tmp_path).opset_import}[""] == expected


def test_explicit_opset(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path, opset=13)
    assert artifact.details["opset"] == 13
    assert check(keras_cnn_dir, tmp_path, artifact).passed


def test_saved_graph_is_simplified_by_onnxruntime(keras_cnn_dir, tmp_path):
    convert(keras_cnn_dir, tmp_path / "plain", optimization_level="none")
    convert(keras_cnn_dir, tmp_path / "basic")
    plain = [node.op_type for node in onnx_model(tmp_path / "plain").graph.node]
    basic = [node.op_type for node in onnx_model(tmp_path / "basic").graph.node]
    assert len(basic) < len(plain)  # batch norm folded into the convolution, constants folded
    assert "BatchNormalization" not in basic and "FusedConv" not in basic


STANDARD_IMPORTS = {"", "ai.onnx.ml"}


def assert_standard(path: Path) -> None:
    """Default domain and ai.onnx.ml only, in the imports and the nodes; onnx's full check passes."""
    import onnx

    model = onnx.load(str(path))
    assert {o.domain for o in model.opset_import} <= STANDARD_IMPORTS, [o.domain for o in model.opset_import]
    assert "" in {o.domain for o in model.opset_import}
    assert {node.domain for node in model.graph.node} <= STANDARD_IMPORTS
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize(
    "variant, options, cosine",
    [("", {}, 0.9999), ("fp16", {}, 0.999), ("int8", {}, 0.99), ("int8", {"dynamic": True}, 0.99)],
    ids=["fp32", "fp16", "int8", "int8-dynamic"],
)
def test_default_artifact_is_standard_onnx(keras_cnn_dir, tmp_path, variant, options, cosine):
    """No com.microsoft op or onnxruntime domain import (the extended level wrote FusedConv into fp32,
    QLinearSoftmax into int8 and DynamicQuantizeMatMul into dynamic int8): what other runtimes load."""
    artifact = convert(keras_cnn_dir, tmp_path, variant, **options)
    assert_standard(tmp_path / "model.onnx")
    assert artifact.details["standard_onnx"] is True and artifact.details["ort_only_ops"] == {}
    assert artifact.details["optimization_level"] == "basic"
    assert any("standard ONNX" in note and "full check passed" in note for note in artifact.notes), artifact.notes
    assert not any("ONNX Runtime-only" in note for note in artifact.notes)
    result = check(keras_cnn_dir, tmp_path, artifact)
    assert result.outputs[0].cosine >= cosine, result.failures


@pytest.mark.parametrize(
    "variant, options, fused",
    [("", {}, "com.microsoft.FusedConv"), ("int8", {}, "com.microsoft.QLinearSoftmax")],
    ids=["fp32", "int8"],
)
def test_ort_optimized_is_onnx_runtime_only_and_said(keras_cnn_dir, tmp_path, variant, options, fused):
    import onnx

    standard = convert(keras_cnn_dir, tmp_path / "standard", variant, **options)
    ort_only = convert(keras_cnn_dir, tmp_path / "ort", variant, ort_optimized=True, **options)
    model = onnx.load(str(tmp_path / "ort" / "model.onnx"))
    ops = [f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in model.graph.node]
    assert fused in ops
    assert {"com.microsoft", "com.microsoft.nchwc"} <= {o.domain for o in model.opset_import}
    assert ort_only.details["standard_onnx"] is False and ort_only.details["optimization_level"] == "extended"
    assert ort_only.details["ort_only_ops"][fused] >= 1
    assert any(note.startswith("opset") and "ONNX Runtime-only: com.microsoft ops (" in note for note in ort_only.notes)
    assert (tmp_path / "ort" / "model.onnx").read_bytes() != (tmp_path / "standard" / "model.onnx").read_bytes()
    # both run on onnxruntime and agree with the SavedModel
    for folder, artifact in (("standard", standard), ("ort", ort_only)):
        result = check(keras_cnn_dir, tmp_path / folder, artifact)
        assert result.outputs[0].cosine >= (0.9999 if not variant else 0.99), (folder, result.failures)


def test_a_non_standard_file_fails_the_conversion(tmp_path):
    """finish_standard: unused onnxruntime imports dropped; a com.microsoft node is a conversion error."""
    import onnx
    from onnx import TensorProto, helper

    from edgeport.converters.onnx.files import finish_standard

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    imports = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft.nchwc", 1)]
    relu = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]), opset_imports=imports
    )
    onnx.save(relu, str(tmp_path / "relu.onnx"))
    assert finish_standard(tmp_path / "relu.onnx", allowed_domains=(), target="onnx") == {}
    assert [o.domain for o in onnx.load(str(tmp_path / "relu.onnx")).opset_import] == [""]
    gelu = helper.make_model(
        helper.make_graph([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")], "g", [x], [y]),
        opset_imports=[*imports, helper.make_opsetid("com.microsoft", 1)],
    )
    onnx.save(gelu, str(tmp_path / "gelu.onnx"))
    with pytest.raises(ConversionError, match=r"gelu.onnx is not standard ONNX \(com.microsoft.Gelu x1\)"):
        finish_standard(tmp_path / "gelu.onnx", allowed_domains=(), target="onnx")
    assert finish_standard(tmp_path / "gelu.onnx", allowed_domains=("com.microsoft",), target="onnx") == {
        "com.microsoft.Gelu": 1
    }


def test_spatial_means_become_global_average_pool(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path)
    ops = [node.op_type for node in onnx_model(tmp_path).graph.node]
    assert artifact.details["global_pool_rewrites"] == 1 and ops.count("GlobalAveragePool") == 1
    assert ops.count("ReduceMean") == 1  # the head's mean feeds a MatMul: left alone
    assert check(keras_cnn_dir, tmp_path, artifact).passed


# ---------------------------------------------------------------- fp16, int8
def test_fp16_keeps_float32_io(keras_cnn_dir, tmp_path):
    from onnx import TensorProto

    artifact = convert(keras_cnn_dir, tmp_path, "fp16")
    assert artifact.precision == "fp16"
    graph = onnx_model(tmp_path).graph
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*graph.input, *graph.output])
    assert any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer)
    result = check(keras_cnn_dir, tmp_path, artifact)
    assert result.passed, result.failures


def test_int8_static_qdq(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path, "int8")
    assert artifact.precision == "int8"
    ops = {node.op_type for node in onnx_model(tmp_path).graph.node}
    assert any("Quantize" in op or op.startswith("QLinear") for op in ops), ops
    result = check(keras_cnn_dir, tmp_path, artifact)
    # An untrained net's class scores are near ties, so top-1 agreement says little here: judge by cosine.
    assert result.outputs[0].cosine >= 0.99, result.failures


def test_fp16_clamp_warnings_are_one_line(tiny_weights_dir, tmp_path):
    artifact = convert(tiny_weights_dir, tmp_path, "fp16")
    clamps = [w for w in artifact.warnings if "float16" in w and "clamped" in w]
    assert len(clamps) == 1, artifact.warnings
    assert "(3 onnxconverter_common warnings" in clamps[0] and "-1e-07, 1e-07" in clamps[0]
    assert not any("will be truncated" in w for w in artifact.warnings), artifact.warnings
    assert check(tiny_weights_dir, tmp_path, artifact).passed


def test_summarize_float16_clamps_keeps_other_warnings():
    from edgeport.converters.onnx.precision import summarize_float16_clamps

    assert summarize_float16_clamps(("UserWarning: something else",)) == ("UserWarning: something else",)
    summary = summarize_float16_clamps(
        (
            "UserWarning: the float32 number 1e+06 will be truncated to 65504.0",
            "UserWarning: the float32 number -1e-09 will be truncated to -1e-07",
            "UserWarning: other",
        )
    )
    assert len(summary) == 2 and summary[1] == "UserWarning: other"
    assert "(2 onnxconverter_common warnings" in summary[0] and "-1e-07, 65504" in summary[0]


@pytest.mark.parametrize("dynamic", [False, True])
def test_int8_warnings_carry_no_onnxruntime_log_lines(keras_cnn_dir, tmp_path, dynamic):
    """onnxruntime.quantization's own sessions log C++ warnings ("Removing initializer ..."), one per line."""
    artifact = convert(keras_cnn_dir, tmp_path, "int8", dynamic=dynamic)
    assert not any("onnxruntime:" in w or "\x1b[" in w for w in artifact.warnings), artifact.warnings


def test_int8_calibrates_nchw_inputs(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path, "int8", inputs_as_nchw=("image",))
    result = check(keras_cnn_dir, tmp_path, artifact)
    assert result.outputs[0].cosine >= 0.99, result.failures


def test_int8_dynamic_is_weight_only(tf1_dir, tmp_path):
    artifact = convert(tf1_dir, tmp_path, "int8", dynamic=True)
    assert artifact.precision == "dynamic"
    ops = {node.op_type for node in onnx_model(tmp_path).graph.node}
    assert ops & {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger"}, ops
    result = check(tf1_dir, tmp_path, artifact)
    assert result.passed, result.failures


def test_int8_without_calibration_fails_cleanly(keras_cnn_dir, tmp_path):
    empty = SampleSet(arrays={"image": np.zeros((0, 1, 16, 16, 3), np.float32)}, source="none", synthetic=True)
    with pytest.raises(ConversionError, match="calibration"):
        convert(keras_cnn_dir, tmp_path, "int8", calibration=empty)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- layout
def test_nchw_input_takes_nhwc_feeds(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path, inputs_as_nchw=("image",))
    assert artifact.input_permutations == {"image": (0, 3, 1, 2)}
    dims = [d.dim_value for d in onnx_model(tmp_path).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 16, 16]
    result = check(keras_cnn_dir, tmp_path, artifact)
    assert result.passed, result.failures


def test_nchw_output_is_checked_through_permutations(multi_io_dir, tmp_path):
    artifact = convert(multi_io_dir, tmp_path, inputs_as_nchw=("pixels",), outputs_as_nchw=("feature_map",))
    assert artifact.output_permutations == {"feature_map": (0, 3, 1, 2)}
    outputs = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in onnx_model(tmp_path).graph.output}
    assert outputs["feature_map"] == [1, 6, 8, 8]
    result = check(multi_io_dir, tmp_path, artifact)
    assert result.passed, result.failures
    assert min(output.cosine for output in result.outputs) >= 0.9999
    unpermuted = check(multi_io_dir, tmp_path, artifact, permutations=False)
    assert any("feature_map: shape" in failure for failure in unpermuted.failures)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"inputs_as_nchw": ("nope",)}, "not a signature input"),
        ({"outputs_as_nchw": ("scores",)}, "not rank 4"),
    ],
)
def test_layout_options_are_validated(multi_io_dir, tmp_path, options, match):
    with pytest.raises(UsageError, match=match):
        convert(multi_io_dir, tmp_path, **options)


# ---------------------------------------------------------------- files
def test_external_data_past_threshold(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path / "made", external_data_threshold_bytes=0)
    assert artifact.files == ("model.onnx", "model.onnx.data")
    assert artifact.details["external_data_file"] == "model.onnx.data"
    assert (tmp_path / "made" / "model.onnx.data").stat().st_size > 1024
    moved = tmp_path / "moved"  # the data file is found relative to the model, wherever the folder goes
    shutil.copytree(tmp_path / "made", moved)
    shutil.rmtree(tmp_path / "made")
    result = check(keras_cnn_dir, moved, artifact)
    assert result.passed, result.failures


def test_small_model_stays_in_one_file(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path)
    assert artifact.details["external_data_file"] is None and not (tmp_path / "model.onnx.data").exists()


def test_ort_format_file(keras_cnn_dir, tmp_path):
    artifact = convert(keras_cnn_dir, tmp_path, ort_format=True)
    assert artifact.files == ("model.onnx", "model.ort") and artifact.details["ort_file"] == "model.ort"
    assert artifact.details["checked_file"] == "model.onnx"
    samples = samples_for(loaded(keras_cnn_dir))
    runtime = ONNXRuntime()
    from_onnx = runtime.infer(tmp_path / "model.onnx", samples, RuntimeSettings())
    from_ort = runtime.infer(tmp_path / "model.ort", samples, RuntimeSettings())
    for a, b in zip(from_onnx, from_ort, strict=False):
        np.testing.assert_allclose(a["output_0"], b["output_0"], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- errors and preflight
def test_op_with_no_onnx_mapping(lgamma_dir, tmp_path):
    with pytest.raises(ConversionError) as caught:
        convert(lgamma_dir, tmp_path / "work")
    message = caught.value.message
    assert "Lgamma" in message and "no tf2onnx handler at any opset" in message
    assert "\n" not in message
    assert list((tmp_path / "work").iterdir()) == []


def test_op_that_needs_a_higher_opset(bitwise_dir, tmp_path):
    with pytest.raises(ConversionError, match=r"BitwiseAnd \(opset 18\+ would map it"):
        convert(bitwise_dir, tmp_path, opset=17)
    artifact = convert(bitwise_dir, tmp_path / "ok", opset=18)
    result = check(bitwise_dir, tmp_path / "ok", artifact)
    assert result.passed, result.failures


def test_opset_above_onnxruntime(keras_cnn_dir, tmp_path):
    with pytest.raises(UsageError, match=r"above what onnxruntime .* runs \(up to opset \d+\)"):
        convert(keras_cnn_dir, tmp_path, opset=onnxruntime_max_opset() + 1)
    assert list(tmp_path.iterdir()) == []


def test_opset_above_tf2onnx(keras_cnn_dir, tmp_path):
    if tf2onnx_max_opset() >= onnxruntime_max_opset():
        pytest.skip("tf2onnx reaches onnxruntime's newest opset here")
    with pytest.raises(UsageError, match="above what tf2onnx converts to"):
        convert(keras_cnn_dir, tmp_path, opset=tf2onnx_max_opset() + 1)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"optimization_level": "all"}, "optimization_level"),
        ({"optimization_level": "extended"}, "only ONNX Runtime loads; pass ort_optimized=true"),
        ({"ort_optimized": True, "optimization_level": "none"}, "contradict"),
        ({"external_data_threshold_bytes": -1}, "external_data_threshold_bytes"),
        ({"opset": "18"}, "not an integer"),
    ],
)
def test_bad_options(keras_cnn_dir, tmp_path, options, match):
    with pytest.raises(UsageError, match=match):
        convert(keras_cnn_dir, tmp_path, **options)


def test_dynamic_only_changes_int8(keras_cnn_dir, tmp_path):
    # `-t onnx:fp16 -t onnx:int8 --dynamic` hands the flag to both; only int8 is weight-only quantized.
    assert convert(keras_cnn_dir, tmp_path, "fp16", dynamic=True).precision == "fp16"


def test_unwritable_workdir(keras_cnn_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConversionError, match="cannot write the artifact"):
        convert_into = blocker / "work"
        job = ConversionJob(
            model=loaded(keras_cnn_dir),
            target=TargetSpec("onnx"),
            options=ONNXOptions(),
            calibration=samples_for(loaded(keras_cnn_dir)),
            workdir=convert_into,
        )
        ONNXConverter().convert(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("variant, fixture", [("int8", "keras_cnn_dir"), ("", "lgamma_dir")])
def test_nothing_is_written_outside_the_workdir(variant, fixture, request, tmp_path, monkeypatch):
    """Temporary files of tf2onnx and onnxruntime.quantization stay in the workdir, success or failure."""
    path = request.getfixturevalue(fixture)
    loaded(path)  # load outside the watch: TensorFlow's own loader is not the converter's business
    watched = tmp_path / "tmp"
    watched.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(watched))
    monkeypatch.setenv("TMPDIR", str(watched))
    workdir = tmp_path / "work"
    try:
        convert(path, workdir, variant)
    except ConversionError:
        pass
    assert list(watched.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp", "work"]
    assert not (workdir / ".onnx-staging").exists()


def test_preflight_names_unmapped_ops(lgamma_dir, keras_cnn_dir):
    converter = ONNXConverter()
    findings = converter.preflight(loaded(lgamma_dir), ONNXOptions())
    assert [f.target for f in findings] == ["onnx"] and findings[0].severity == "error"
    assert "Lgamma" in findings[0].message
    assert converter.preflight(loaded(keras_cnn_dir), ONNXOptions()) == []


def test_preflight_is_quiet_on_control_flow(lstm_dir):
    assert ONNXConverter().preflight(loaded(lstm_dir), ONNXOptions()) == []


def test_preflight_knows_the_opset(bitwise_dir):
    converter = ONNXConverter()
    findings = converter.preflight(loaded(bitwise_dir), ONNXOptions(opset=17))
    assert len(findings) == 1 and "BitwiseAnd" in findings[0].message and "opset 18" in findings[0].message
    assert converter.preflight(loaded(bitwise_dir), ONNXOptions(opset=18)) == []


def test_registered_by_entry_point():
    from edgeport.run.registry import Registry

    registry = Registry()
    converter, runtime = registry.resolve(TargetSpec.parse("onnx:int8"))
    assert isinstance(converter, ONNXConverter) and isinstance(runtime, ONNXRuntime)
    assert converter.variants == ("", "fp16", "int8") and converter.needs_calibration("int8")
    assert converter.availability().available


def test_conversion_prints_nothing(keras_cnn_dir, tmp_path, capfd):
    convert(keras_cnn_dir, tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_input_permutations_travel_in_the_model(keras_cnn_dir, tmp_path):
    convert(keras_cnn_dir, tmp_path, inputs_as_nchw=("image",))
    props = {p.key: p.value for p in onnx_model(tmp_path).metadata_props}
    assert json.loads(props["edgeport.input_permutations"]) == {"image": [0, 3, 1, 2]}


# ---------------------------------------------------------------- a real network (minutes on 2 cores)
@pytest.mark.slow
def test_mobilenet_v2_fp32(tmp_path):
    tf = _tf()
    path = tmp_path / "mobilenet_v2"
    tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)).export(str(path), verbose=False)
    artifact = convert(path, tmp_path / "work")
    result = check(path, tmp_path / "work", artifact)
    assert result.passed, result.failures
    assert result.outputs[0].cosine >= 0.9999
