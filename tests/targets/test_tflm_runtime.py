"""The tflm runtime: TFLite Micro's reference kernels on the host, the arena search, flash, MACs, budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.checks.budgets import budget_failures
from edgeport.contracts import ConversionJob, RuntimeSettings, SampleSet, TargetSpec, TimingProtocol
from edgeport.converters.tflm.converter import TFLMConverter, TFLMOptions
from edgeport.errors import RuntimeFailure
from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow
from edgeport.targets.tflm.runtime import TFLMRuntime

SETTINGS = RuntimeSettings()
KWS_BUDGET = TFLMOptions(ram_limit="64KB", flash_limit="256KB")


def save_module(tf, module, folder: Path) -> Path:
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def keras_serving(tf, keras_model, spec):
    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.keras_model = keras_model

        @tf.function(input_signature=[spec])
        def serve(self, x):
            return {"scores": self.keras_model(x)}

    return Serving()


def convert(folder: Path, calibration: dict, workdir: Path, options: TFLMOptions | None = None):
    options = options or TFLMOptions()
    model = load_model(folder)
    samples = SampleSet(calibration, "calibration", False)
    artifact = TFLMConverter().convert(
        ConversionJob(
            model=model, target=TargetSpec.parse("tflm"), options=options, calibration=samples, workdir=workdir
        )
    )
    return model, workdir / artifact.main_file


@pytest.fixture(scope="session")
def digits(tiny_digits, tmp_path_factory):
    """The tiny digits CNN, converted with 200 training images as calibration."""
    folder, calibration, held_out = tiny_digits
    model, path = convert(folder, {"image": calibration}, tmp_path_factory.mktemp("digits-tflm"))
    return model, path, SampleSet({"image": held_out}, "digits held-out", False)


def kws_model(tf, *, channels: int, blocks: int, first_stride: int):
    """Keyword-spotting shape: 49 frames x 10 MFCCs, Conv2D then depthwise-separable blocks, 12 classes."""
    tf.keras.utils.set_random_seed(1)
    inputs = tf.keras.Input((49, 10, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(channels, (10, 4), strides=first_stride, padding="same", activation="relu")(inputs)
    for _ in range(blocks):
        x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = tf.keras.layers.Conv2D(channels, 1, activation="relu")(x)
    x = tf.keras.layers.Flatten()(x) if first_stride == 1 else tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(12)(x))


def convert_kws(tmp_path_factory, name: str, **shape):
    tf = import_tensorflow()
    spec = tf.TensorSpec([1, 49, 10, 1], tf.float32, name="mfcc")
    module = keras_serving(tf, kws_model(tf, **shape), spec)
    folder = save_module(tf, module, tmp_path_factory.mktemp(name) / "saved_model")
    calibration = {"mfcc": np.random.default_rng(2).normal(size=(8, 1, 49, 10, 1)).astype(np.float32)}
    _, path = convert(folder, calibration, tmp_path_factory.mktemp(f"{name}-tflm"), KWS_BUDGET)
    return path, SampleSet(calibration, "random", True)


@pytest.fixture(scope="session")
def kws_small(tmp_path_factory):
    return convert_kws(tmp_path_factory, "kws-small", channels=64, blocks=2, first_stride=2)


@pytest.fixture(scope="session")
def kws_large(tmp_path_factory):
    return convert_kws(tmp_path_factory, "kws-large", channels=128, blocks=1, first_stride=1)


def test_digits_int8_on_tflm_agrees_with_the_saved_model(digits):
    model, path, held_out = digits
    outputs = TFLMRuntime().infer(path, held_out, SETTINGS)
    result = compare(model.reference(held_out.feeds()), outputs, default_tolerance("int8"))
    assert result.passed, result.failures
    assert result.outputs[0].top1_agreement >= 0.98
    assert outputs[0]["scores"].dtype == np.float32 and outputs[0]["scores"].shape == (1, 10)


def test_measure_reports_arena_flash_macs_and_litert_agreement(digits):
    _, path, held_out = digits
    measured = TFLMRuntime().measure(path, SETTINGS, held_out)
    assert measured["flash_bytes"] == path.stat().st_size
    assert 1024 < measured["arena_bytes"] < 16 * 1024 and measured["arena_bytes"] % 16 == 0
    # conv 8x8x8 out x 3x3x1, conv 4x4x16 out x 3x3x8, dense 10 x 256; the flatten's SHAPE/STRIDED_SLICE/PACK
    # are folded away (the batch fixed to 1), so the dense layer is op 4
    assert measured["macs_per_op"] == {"0:CONV_2D": 64 * 8 * 9, "2:CONV_2D": 16 * 16 * 72, "4:FULLY_CONNECTED": 2560}
    assert measured["macs"] == 25600
    assert measured["litert_max_diff_steps"] <= 1.0
    assert measured["litert_within_one_step_share"] == 1.0
    assert measured["litert_equal_share"] >= 0.9


def test_measure_takes_the_arena_the_converter_already_searched(digits):
    """One arena search per target: the converter's (it writes the arena into model_data.h), not a second one."""
    _, path, held_out = digits
    searched = TFLMRuntime().measure(path, SETTINGS, held_out)
    known = {"arena_bytes": searched["arena_bytes"], "arena_search_probes": searched["arena_search_probes"]}
    again = TFLMRuntime().measure(path, SETTINGS, held_out, known={**known, "flash_bytes": 1})
    # the converter's flash (the model array compiled with arm-none-eabi-gcc) is kept; the arena is not searched again
    assert again == {**searched, "flash_bytes": 1}
    marked = TFLMRuntime().measure(path, SETTINGS, held_out, known={"arena_bytes": 4096, "arena_search_probes": 0})
    assert (marked["arena_bytes"], marked["arena_search_probes"]) == (4096, 0)


def test_the_arena_found_is_the_smallest_that_runs(digits):
    from edgeport.formats.tflm.arena import probe, search_minimum_arena

    _, path, _ = digits
    data = path.read_bytes()
    found = search_minimum_arena(data)
    assert found.arena_bytes is not None and found.probes > 3
    assert probe(data, found.arena_bytes).ok
    assert not probe(data, found.arena_bytes - 16).ok


def test_kws_sized_model_fits_64kb_ram_and_256kb_flash(kws_small):
    path, samples = kws_small
    measured = TFLMRuntime().measure(path, SETTINGS, samples)
    assert budget_failures(measured, KWS_BUDGET.budgets()) == []
    assert measured["arena_bytes"] <= 64 * 1024 and measured["flash_bytes"] <= 256 * 1024
    # first conv: 25x5x64 outputs x 10x4x1 taps
    assert measured["macs_per_op"]["0:CONV_2D"] == 25 * 5 * 64 * 40
    assert any(key.endswith(":DEPTHWISE_CONV_2D") for key in measured["macs_per_op"])
    assert measured["litert_within_one_step_share"] >= 0.99


def test_larger_model_fails_the_same_budget_with_numbers(kws_large):
    path, samples = kws_large
    measured = TFLMRuntime().measure(path, SETTINGS, samples)
    lines = budget_failures(measured, KWS_BUDGET.budgets())
    assert lines == [
        f"arena {measured['arena_bytes']:,} B > RAM limit 65,536 B",
        f"flash {measured['flash_bytes']:,} B > flash limit 262,144 B",
    ]


def test_inputs_and_outputs_are_keyed_by_signature_names(tmp_path_factory):
    tf = import_tensorflow()

    class TwoInOut(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.normal([6, 3], seed=3))

        @tf.function(
            input_signature=[
                tf.TensorSpec([1, 4], tf.float32, name="wide"),
                tf.TensorSpec([1, 2], tf.float32, name="narrow"),
            ]
        )
        def serve(self, wide, narrow):
            hidden = tf.matmul(tf.concat([wide, 3.0 * narrow], axis=1), self.w)
            return {"b_relu": tf.nn.relu(hidden), "a_sigmoid": tf.sigmoid(hidden)}

    folder = save_module(tf, TwoInOut(), tmp_path_factory.mktemp("two") / "saved_model")
    rng = np.random.default_rng(4)
    arrays = {"wide": rng.random((16, 1, 4), dtype=np.float32), "narrow": rng.random((16, 1, 2), dtype=np.float32)}
    model, path = convert(folder, arrays, tmp_path_factory.mktemp("two-tflm"))
    samples = SampleSet(arrays, "random", True)
    outputs = TFLMRuntime().infer(path, samples, SETTINGS)
    assert set(outputs[0]) == {"a_sigmoid", "b_relu"}
    result = compare(model.reference(samples.feeds()), outputs, default_tolerance("int8"))
    assert result.passed, result.failures


def test_benchmark_is_labelled_host_reference_kernels(digits):
    _, path, held_out = digits
    protocol = TimingProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=3, min_seconds=0.0, max_seconds=5.0)
    timings = TFLMRuntime().benchmark(path, held_out, SETTINGS, protocol)
    assert len(timings.run_ms) >= 3
    assert timings.runtime_version.startswith("tflite-micro ")
    assert "host, reference kernels; not device latency" in timings.runtime_version


def test_registered_ops_come_from_the_installed_interpreter():
    from edgeport.formats.tflm.kernels import registered_builtin_ops

    ops = registered_builtin_ops()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"} <= ops
    assert "CUSTOM" not in ops and len(ops) > 50


def test_a_kernel_that_refuses_the_model_is_reported_with_its_op():
    """A CONV_2D without weights: TFLM's kernel fails in Prepare at any arena size; the search says which op."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from edgeport.formats.tflm.arena import search_minimum_arena

    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = 1
    model.operatorCodes = [code]
    tensors = []
    for name in (b"in", b"out"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, 4, 4, 1], schema.TensorType.FLOAT32, 0, name
        tensors.append(tensor)
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [1], [operator]
    model.subgraphs, model.buffers = [subgraph], [schema.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    found = search_minimum_arena(bytes(builder.Output()), cap=1 << 20)
    assert found.arena_bytes is None
    assert (found.failed_op, found.failed_node) == ("CONV_2D", 0)
    assert "failed to prepare" in found.failure


def test_a_file_tflm_cannot_load_is_a_runtime_failure(tmp_path):
    broken = tmp_path / "model.tflite"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeFailure, match="TFLite Micro cannot"):
        TFLMRuntime().open(broken, SETTINGS)


def test_runtime_is_available_and_versioned():
    from importlib.metadata import version

    runtime = TFLMRuntime()
    assert runtime.availability().available
    assert runtime.version().startswith(f"tflite-micro {version('tflite-micro')} ")


def test_a_damaged_tflite_is_a_runtime_failure(digits, tmp_path):
    _, path, _ = digits
    damaged = tmp_path / "model.tflite"
    damaged.write_bytes(path.read_bytes()[:64])
    with pytest.raises(RuntimeFailure, match="TFLite Micro cannot load"):
        TFLMRuntime().open(damaged, SETTINGS)


def _count_conversions(monkeypatch, module) -> dict[str, int]:
    calls = {"quantize": 0, "dequantize": 0}
    for name in calls:
        original = getattr(module, name)

        def counted(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("runtime_name", ["tflm", "litert"])
def test_int8_io_is_quantized_outside_the_timed_call(digits, monkeypatch, runtime_name):
    """The timing protocol quantizes each sample once, before the clock starts, and never dequantizes: the timed
    call is set the int8 inputs, invoke, copy the int8 outputs out."""
    from edgeport.targets.litert import runtime as litert_runtime
    from edgeport.targets.tflm import runtime as tflm_runtime

    _, path, held_out = digits
    module, runtime = {
        "tflm": (tflm_runtime, TFLMRuntime()),
        "litert": (litert_runtime, litert_runtime.LiteRTRuntime()),
    }[runtime_name]
    session = runtime.open(path, SETTINGS)
    assert session.prepare(held_out.feed(0))["image"].dtype == np.int8  # int8 I/O
    session.close()
    calls = _count_conversions(monkeypatch, module)
    protocol = TimingProtocol(warmup_runs=3, warmup_seconds=0.0, min_runs=3 * held_out.count, min_seconds=0.0)
    timings = runtime.benchmark(path, held_out, SETTINGS, protocol)
    assert len(timings.run_ms) >= 3 * held_out.count
    assert calls == {"quantize": held_out.count, "dequantize": 0}  # once per sample, not once per run
