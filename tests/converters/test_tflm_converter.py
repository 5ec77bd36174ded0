"""The tflm converter: int8 model, C sources that compile, op checks against TFLM's kernels, budgets, errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeport.checks.budgets import budget_failures
from edgeport.contracts import ConversionJob, SampleSet, TargetSpec
from edgeport.converters.tflm.boards import board_profile, boards, parse_size
from edgeport.converters.tflm.converter import TFLMConverter, TFLMOptions
from edgeport.converters.tflm.csource import c_identifier_problem, resolver_method
from edgeport.errors import ConversionError, UsageError
from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow

TARGET = TargetSpec.parse("tflm")
# MicroMutableOpResolver method names as TFLite Micro's micro_mutable_op_resolver.h spells them.
TFLM_METHODS = (
    "AddAveragePool2D",
    "AddConv2D",
    "AddDepthwiseConv2D",
    "AddDequantize",
    "AddFullyConnected",
    "AddMaxPool2D",
    "AddMean",
    "AddPack",
    "AddQuantize",
    "AddReshape",
    "AddShape",
    "AddSoftmax",
    "AddStridedSlice",
)
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


def convert(model, calibration: SampleSet, workdir: Path, **options):
    workdir.mkdir(parents=True, exist_ok=True)
    job = ConversionJob(
        model=model, target=TARGET, options=TFLMOptions(**options), calibration=calibration, workdir=workdir
    )
    return TFLMConverter().convert(job)


@pytest.fixture(scope="session")
def digits(tiny_digits, tmp_path_factory):
    folder, calibration, held_out = tiny_digits
    model = load_model(folder)
    workdir = tmp_path_factory.mktemp("digits-tflm")
    artifact = convert(
        model, SampleSet({"image": calibration}, "digits train", False), workdir, board="arduino-nano-33-ble-sense"
    )
    return model, artifact, workdir


def test_writes_int8_model_and_c_sources(digits):
    _, artifact, workdir = digits
    assert artifact.precision == "int8" and artifact.runtime == "tflm" and artifact.main_file == "model.tflite"
    assert set(artifact.files) == {"model.tflite", "model_data.cc", "model_data.h", "op_resolver.h"}
    for name in artifact.files:
        assert (workdir / name).is_file()
    source = (workdir / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model[]" in source
    assert f"const unsigned int g_model_len = {(workdir / 'model.tflite').stat().st_size};" in source
    size = (workdir / "model.tflite").stat().st_size  # flash: the array compiled for the board's Cortex-M4
    assert artifact.details["flash"]["method"].startswith("compiled with arm-none-eabi-gcc")
    assert size <= artifact.measurements["flash_bytes"] == artifact.details["flash"]["bytes"] <= size + 64
    assert 0 < artifact.measurements["arena_bytes"] < 64 * 1024


def test_model_is_full_integer_with_int8_io(digits):
    from ai_edge_litert.interpreter import Interpreter

    _, _, workdir = digits
    interpreter = Interpreter(model_path=str(workdir / "model.tflite"))
    assert [d["dtype"] for d in interpreter.get_input_details()] == [np.int8]
    assert [d["dtype"] for d in interpreter.get_output_details()] == [np.int8]
    assert list(interpreter.get_signature_list()["serving_default"]["inputs"]) == ["image"]


def test_op_resolver_registers_exactly_the_models_ops(digits):
    _, artifact, workdir = digits
    header = (workdir / "op_resolver.h").read_text()
    ops = [entry["op"] for entry in artifact.details["ops"]]
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    assert "tflite::MicroMutableOpResolver<g_model_op_count>" in header
    assert f"constexpr unsigned int g_model_op_count = {len(ops)};" in header
    assert header.count("resolver.Add") == len(ops)
    assert "AllOpsResolver" not in header.replace("no AllOpsResolver", "")


def test_the_dynamic_batch_is_fixed_to_one_so_the_flatten_leaves_no_shape_ops(digits):
    """The digits CNN's Flatten over a dynamic batch computes its reshape at run time (SHAPE, STRIDED_SLICE,
    PACK: three ops on the device's CPU, which Vela cannot map to an Ethos-U); fixed to 1, they fold away."""
    from ai_edge_litert.interpreter import Interpreter

    model, artifact, workdir = digits
    assert model.signature.inputs[0].shape[0] is None  # the SavedModel's batch is dynamic
    ops = {entry["op"] for entry in artifact.details["ops"]}
    assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK"}, ops
    assert any("fixed the dynamic batch dimension to 1 (image -> [1, 8, 8, 1])" in note for note in artifact.notes)
    assert list(Interpreter(model_path=str(workdir / "model.tflite")).get_input_details()[0]["shape"]) == [1, 8, 8, 1]


def test_budgets_from_board_land_in_details(digits):
    _, artifact, _ = digits
    assert artifact.details["budgets"] == {"max_arena_bytes": 256 * 1024, "max_flash_bytes": 1024 * 1024}
    assert artifact.details["board"].startswith("Arduino Nano 33 BLE Sense")


@needs_gxx
def test_model_data_compiles_and_links_with_the_right_length(digits, tmp_path):
    _, _, workdir = digits
    size = (workdir / "model.tflite").stat().st_size
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdint>\n#include <cstring>\n#include "model_data.h"\n'
        "int main() {\n"
        f"  if (g_model_len != {size}u) return 1;\n"
        '  if (std::memcmp(g_model + 4, "TFL3", 4) != 0) return 2;\n'
        "  if (reinterpret_cast<std::uintptr_t>(g_model) % 16 != 0) return 3;\n"
        "  return g_model_arena_size > 0 ? 0 : 4;\n}\n"
    )
    compile_cc = [
        "g++",
        "-std=c++17",
        "-Wall",
        "-Werror",
        "-c",
        str(workdir / "model_data.cc"),
        "-o",
        str(tmp_path / "model_data.o"),
    ]
    subprocess.run(compile_cc, check=True, capture_output=True)
    subprocess.run(
        ["g++", "-std=c++17", f"-I{workdir}", str(main), str(tmp_path / "model_data.o"), "-o", str(tmp_path / "check")],
        check=True,
        capture_output=True,
    )
    assert subprocess.run([str(tmp_path / "check")], check=False).returncode == 0


@needs_gxx
def test_op_resolver_header_passes_a_syntax_check_against_the_tflm_api(digits, tmp_path):
    _, artifact, workdir = digits
    stub = tmp_path / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    methods = "\n".join(f"  TfLiteStatus {name}();" for name in TFLM_METHODS)
    stub.write_text(
        "#pragma once\ntypedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;\n"
        "namespace tflite {\ntemplate <unsigned int tOpCount>\nclass MicroMutableOpResolver {\n"
        f" public:\n{methods}\n}};\n}}  // namespace tflite\n"
    )
    user = tmp_path / "user.cc"
    user.write_text(
        '#include "op_resolver.h"\n'
        f'static_assert(g_model_op_count == {len(artifact.details["ops"])}, "op count");\n'
        "TfLiteStatus setup() { static g_model_op_resolver resolver; "
        "return g_model_register_ops(resolver); }\n"
    )
    result = subprocess.run(
        ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", f"-I{tmp_path}", f"-I{workdir}", str(user)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_c_name_names_the_array(digits, tmp_path):
    model, _, _ = digits
    calibration = SampleSet({"image": np.random.default_rng(1).random((4, 1, 8, 8, 1), dtype=np.float32)}, "x", True)
    convert(model, calibration, tmp_path, c_name="digits_model", io_type="float")
    assert "const unsigned char digits_model[]" in (tmp_path / "model_data.cc").read_text()
    assert "digits_model_len" in (tmp_path / "model_data.h").read_text()
    assert "using digits_model_op_resolver" in (tmp_path / "op_resolver.h").read_text()


def test_preflight_reports_ops_arena_and_budget(digits):
    model, _, _ = digits
    findings = TFLMConverter().preflight(model, TFLMOptions(ram_limit="1KB"))
    assert {f.target for f in findings} == {"tflm"}
    messages = [f.message for f in findings]
    assert any(m.startswith("ops: CONV_2D") for m in messages)
    assert any(m.startswith("tensor arena ") for m in messages)
    over = [f for f in findings if f.severity == "error"]
    assert len(over) == 1 and "> RAM limit 1,024 B" in over[0].message


# --- errors -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gelu_model(tmp_path_factory):
    tf = import_tensorflow()

    class Gelu(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(tf.random.normal([4, 8], seed=1))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.gelu(tf.matmul(x, self.weights))}

    folder = tmp_path_factory.mktemp("gelu") / "saved_model"
    module = Gelu()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return load_model(folder)


def test_an_op_tflm_lacks_is_a_conversion_error_naming_it(gelu_model, tmp_path):
    calibration = SampleSet({"x": np.random.default_rng(0).random((4, 1, 4), dtype=np.float32)}, "x", True)
    with pytest.raises(ConversionError, match=r"no kernel in tflite-micro .*: GELU \(v\d+\)"):
        convert(gelu_model, calibration, tmp_path)
    assert not (tmp_path / "model_data.cc").exists()
    findings = TFLMConverter().preflight(gelu_model, TFLMOptions())
    assert any(f.severity == "error" and "GELU" in f.message for f in findings)


def test_string_input_is_refused_before_conversion(tmp_path_factory, tmp_path):
    tf = import_tensorflow()

    class Text(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.cast(tf.strings.length(text), tf.float32)}

    folder = tmp_path_factory.mktemp("text") / "saved_model"
    module = Text()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    model = load_model(folder)
    findings = TFLMConverter().preflight(model, TFLMOptions())
    assert [(f.target, f.severity) for f in findings] == [("tflm", "error")]
    assert "string" in findings[0].message and "'text'" in findings[0].message
    with pytest.raises(ConversionError, match="input 'text' is a string tensor"):
        convert(model, SampleSet({"text": np.array([[b"hi"]], dtype=object)}, "x", False), tmp_path)


def save_function_model(tmp_path_factory, name: str, function, width: int = 4):
    tf = import_tensorflow()

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, width], tf.float32, name="x")])
        def serve(self, x):
            return {"y": function(tf, x)}

    folder = tmp_path_factory.mktemp(name) / "saved_model"
    module = Module()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return load_model(folder)


def test_an_op_with_no_builtin_is_a_conversion_error_without_the_flex_advice(tmp_path_factory, tmp_path):
    model = save_function_model(
        tmp_path_factory, "det", lambda tf, x: tf.reshape(tf.linalg.det(tf.reshape(x, [1, 2, 2])), [1, 1])
    )
    calibration = SampleSet({"x": np.random.default_rng(0).random((4, 1, 4), dtype=np.float32)}, "x", True)
    with pytest.raises(ConversionError, match="no Flex on microcontrollers.*MatrixDeterminant") as raised:
        convert(model, calibration, tmp_path)
    assert "allow-tf-ops" not in raised.value.message
    findings = TFLMConverter().preflight(model, TFLMOptions())
    assert [f.severity for f in findings] == ["error"] and "MatrixDeterminant" in findings[0].message


def test_float_ops_left_in_the_int8_model_are_a_warning(tmp_path_factory, tmp_path):
    model = save_function_model(tmp_path_factory, "floor", lambda tf, x: tf.math.floor(x * 3.0) + x)
    calibration = SampleSet({"x": np.random.default_rng(0).random((8, 1, 4), dtype=np.float32)}, "x", True)
    artifact = convert(model, calibration, tmp_path)
    assert any(w.startswith("float ops left in the int8 model") and "FLOOR" in w for w in artifact.warnings)
    findings = TFLMConverter().preflight(model, TFLMOptions())
    assert any(f.severity == "warning" and "FLOOR" in f.message for f in findings)


@pytest.mark.parametrize("name", ["1model", "my-model", "int", "", "__model", "g model"])
def test_bad_c_name_is_a_usage_error(name):
    with pytest.raises(UsageError, match="c_name"):
        TFLMOptions(c_name=name)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"ram_limit": "lots"}, "ram_limit 'lots'"),
        ({"flash_limit": "-1MB"}, "flash_limit"),
        ({"ram_limit": 0}, "more than 0"),
        ({"board": "arduino-uno"}, "unknown board 'arduino-uno'; known boards: arduino-nano-33-ble-sense"),
        ({"io_type": "int16"}, "io_type 'int16'"),
    ],
)
def test_bad_device_options_are_usage_errors(options, match):
    with pytest.raises(UsageError, match=match):
        TFLMOptions(**options)


def test_a_budget_too_small_fails_with_both_numbers(digits, tmp_path):
    model, _, _ = digits
    calibration = SampleSet({"image": np.random.default_rng(2).random((4, 1, 8, 8, 1), dtype=np.float32)}, "x", True)
    artifact = convert(model, calibration, tmp_path, ram_limit="1KB", flash_limit=2048)
    assert artifact.details["budgets"] == {"max_arena_bytes": 1024, "max_flash_bytes": 2048}
    lines = budget_failures(artifact.measurements, artifact.details["budgets"])
    arena, flash = artifact.measurements["arena_bytes"], artifact.measurements["flash_bytes"]
    assert lines == [f"arena {arena:,} B > RAM limit 1,024 B", f"flash {flash:,} B > flash limit 2,048 B"]
    assert [n for n in artifact.notes if n.startswith("over budget")] == [f"over budget: {line}" for line in lines]


# --- helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("256KB", 262144), ("1MB", 1048576), ("1.5 MiB", 1572864), ("65536", 65536), ("512B", 512), (4096, 4096)],
)
def test_parse_size(text, expected):
    assert parse_size(text, what="ram_limit") == expected


def test_board_profiles_and_explicit_limits():
    assert {"arduino-nano-33-ble-sense", "esp32", "stm32f746-discovery", "raspberry-pi-pico", "sparkfun-edge"} <= set(
        boards()
    )
    assert board_profile("ESP32")["ram_bytes"] == 520 * 1024
    options = TFLMOptions(board="raspberry-pi-pico", ram_limit="64KB")
    assert options.budgets() == {"max_arena_bytes": 65536, "max_flash_bytes": 2 * 1024 * 1024}


def test_budget_failures_only_for_exceeded_budgets():
    assert budget_failures({"arena_bytes": 65536, "flash_bytes": 10}, {"max_arena_bytes": 65536}) == []
    assert budget_failures({"arena_bytes": 81920}, {"max_arena_bytes": 65536}) == [
        "arena 81,920 B > RAM limit 65,536 B"
    ]


@pytest.mark.parametrize(
    "op, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("AVERAGE_POOL_2D", "AddAveragePool2D"),
        ("L2_POOL_2D", "AddL2Pool2D"),
        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
        ("RELU6", "AddRelu6"),
        ("PADV2", "AddPadV2"),
        ("SELECT_V2", "AddSelectV2"),
        ("CUMSUM", "AddCumSum"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("L2_NORMALIZATION", "AddL2Normalization"),
        ("LOG_SOFTMAX", "AddLogSoftmax"),
        ("SPLIT_V", "AddSplitV"),
    ],
)
def test_resolver_method_names_follow_tflm(op, method):
    assert resolver_method(op) == method


def test_custom_op_resolver_methods():
    assert resolver_method("TFLite_Detection_PostProcess", custom=True) == "AddDetectionPostprocess"
    assert resolver_method("SignalWindow", custom=True) == "AddWindow"
    with pytest.raises(KeyError):
        resolver_method("MyCustomOp", custom=True)


def test_c_identifier_rules():
    assert c_identifier_problem("g_model") is None
    assert "keyword" in c_identifier_problem("class")
