"""tfjs-node on real Node.js: the runner, the wire format, the timing protocol and every error path."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.contracts import RawTimings, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure, RuntimeUnavailable, UsageError
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.targets.tfjs import wire as tfjs_wire
from edgeport.targets.tfjs.node import TFJSNodeRuntime

QUICK = TimingProtocol(warmup_runs=2, warmup_seconds=0.0, min_runs=15, min_seconds=0.05, max_seconds=10.0)


@pytest.fixture(scope="module")
def runtime() -> TFJSNodeRuntime:
    runtime = TFJSNodeRuntime()
    if not runtime.availability().available:
        pytest.fail(f"tfjs-node must run here: {runtime.availability().reason}")
    return runtime


def assert_matches_numpy(outputs, handmade, samples: SampleSet) -> None:
    assert len(outputs) == samples.count
    for index, result in enumerate(outputs):
        expected = handmade.expected(samples.feed(index)["features"])
        assert set(result) == {"activations", "logits"}
        for name, value in expected.items():
            assert result[name].dtype == np.float32 and result[name].shape == value.shape
            np.testing.assert_allclose(result[name], value, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ results
@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_handmade_graph_model_matches_numpy(runtime, handmade, handmade_samples, backend):
    outputs = runtime.infer(handmade.model_json, handmade_samples, RuntimeSettings(backend=backend))
    assert_matches_numpy(outputs, handmade, handmade_samples)


def test_default_backend_is_wasm(runtime, handmade, handmade_samples):
    raw = runtime.benchmark(handmade.model_json, handmade_samples, RuntimeSettings(), QUICK)
    assert " wasm (SIMD" in raw.runtime_version and "Node v" in raw.runtime_version


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_converted_keras_model_matches_savedmodel(runtime, converted_keras, backend):
    outputs = runtime.infer(converted_keras.model_json, converted_keras.samples, RuntimeSettings(backend=backend))
    result = compare(converted_keras.reference, outputs, default_tolerance("fp32"))
    assert result.passed, result.failures
    assert {m.name for m in result.outputs} == {"scores", "probs"}
    assert min(m.cosine for m in result.outputs) >= 0.9999


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_benchmark_returns_raw_timings_from_the_protocol(runtime, handmade, handmade_samples, backend):
    raw = runtime.benchmark(handmade.model_json, handmade_samples, RuntimeSettings(backend=backend, threads=2), QUICK)
    assert isinstance(raw, RawTimings)
    assert len(raw.run_ms) >= QUICK.min_runs
    assert all(t > 0 for t in raw.run_ms)
    assert raw.warmup_runs >= QUICK.warmup_runs
    assert raw.load_ms > 0 and raw.first_inference_ms > 0
    assert 20 * 2**20 < raw.peak_rss_bytes < 4 * 2**30
    assert f"tfjs {tfjs_project.installed_version()} {backend}" in raw.runtime_version
    assert "2 requested" in raw.runtime_version  # Node has no wasm threads: the request is recorded


def test_peak_rss_is_nodes_own_not_inherited_from_python(runtime, handmade, handmade_samples):
    ballast = np.ones(400 * 2**20, dtype=np.uint8)  # getrusage's maxRSS would carry this across fork + exec
    raw = runtime.benchmark(handmade.model_json, handmade_samples, RuntimeSettings(backend="cpu"), QUICK)
    assert ballast.sum() == 400 * 2**20
    assert raw.peak_rss_bytes < 300 * 2**20


def test_benchmark_is_capped_by_max_seconds(runtime, handmade, handmade_samples):
    capped = TimingProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=10**9, min_seconds=0.0, max_seconds=0.3)
    raw = runtime.benchmark(handmade.model_json, handmade_samples, RuntimeSettings(backend="cpu"), capped)
    assert 0 < len(raw.run_ms) < 10**9 and sum(raw.run_ms) <= 0.3e3 + max(raw.run_ms)


# ------------------------------------------------------------------------------------------------ wire format
def test_wire_bundle_round_trips_tfjs_dtypes(tmp_path):
    feeds = [
        {
            "f": np.arange(6, dtype=np.float64).reshape(2, 3),
            "i": np.array([[-3, 2**31 - 1]], dtype=np.int64),
            "b": np.array([True, False, True]),
        },
        {"f": np.zeros((2, 3)), "i": np.zeros((1, 2), np.int64), "b": np.zeros(3, bool)},
    ]
    tfjs_wire.write_bundle(tmp_path / "x.bin", meta={"hello": "world"}, samples=feeds)
    meta, back = tfjs_wire.read_bundle(tmp_path / "x.bin")
    assert meta == {"hello": "world"} and len(back) == 2
    assert back[0]["f"].dtype == np.float32 and back[0]["i"].dtype == np.int32 and back[0]["b"].dtype == np.bool_
    for sent, received in zip(feeds, back, strict=True):
        for name in sent:
            np.testing.assert_array_equal(received[name], sent[name])
    assert tfjs_wire.decode_base64(tfjs_wire.encode_base64(feeds))[0]["b"].tolist() == [True, False, True]


def test_wire_rejects_inputs_tfjs_has_no_dtype_for():
    with pytest.raises(RuntimeFailure, match="TF.js cannot take"):
        tfjs_wire.to_tfjs(np.array([1 + 2j]), "z")
    with pytest.raises(RuntimeFailure, match="str or bytes only"):
        tfjs_wire.to_tfjs(np.array(["a", 3], dtype=object), "text")


def test_wire_decodes_length_prefixed_string_outputs():
    elements = [b"yes", b"", "caf\u00e9".encode(), b"\xff\x00raw"]
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    decoded = tfjs_wire.from_tfjs("string", [2, 2], raw)
    assert decoded.dtype == object and decoded.shape == (2, 2)
    assert decoded.reshape(-1).tolist() == elements
    with pytest.raises(RuntimeFailure, match="truncated"):
        tfjs_wire.from_tfjs("string", [4], raw[:-2])
    with pytest.raises(RuntimeFailure, match="3 elements for shape"):
        tfjs_wire.from_tfjs("string", [4], raw[: -(4 + len(elements[-1]))])


def test_outputs_get_the_signature_dtype_back(tmp_path, handmade):
    document = json.loads(handmade.model_json.read_text())
    document["signature"]["outputs"]["logits"]["dtype"] = "DT_INT64"
    (tmp_path / "model.json").write_text(json.dumps(document))
    restored = tfjs_wire.restore_dtypes(
        [{"logits": np.array([1, 2], np.int32), "activations": np.ones(2, np.float32)}], tmp_path / "model.json"
    )
    assert restored[0]["logits"].dtype == np.int64 and restored[0]["activations"].dtype == np.float32


# ------------------------------------------------------------------------------------------------ errors
def test_node_missing_is_unavailable_with_the_install_command(monkeypatch, handmade, handmade_samples):
    monkeypatch.setenv("EDGEPORT_NODE", "/nonexistent/node")
    runtime = TFJSNodeRuntime()
    availability = runtime.availability()
    assert not availability.available and "apt-get install nodejs npm" in availability.reason
    assert "EDGEPORT_NODE=/nonexistent/node is not an executable file" in availability.reason
    with pytest.raises(RuntimeUnavailable, match="apt-get install nodejs npm"):
        runtime.infer(handmade.model_json, handmade_samples, RuntimeSettings())


def test_node_modules_missing_is_unavailable_with_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setenv(tfjs_project.NODE_MODULES_ENV, str(tmp_path / "node_modules"))
    availability = TFJSNodeRuntime().availability()
    assert not availability.available
    assert "@tensorflow/tfjs" in availability.reason
    assert (
        "edgeport setup --target tfjs" in availability.reason and str(tmp_path / "node_modules") in availability.reason
    )


def test_runner_killed_mid_run_is_a_runtime_failure_naming_the_signal(monkeypatch, runtime, handmade, handmade_samples):
    monkeypatch.setenv("EDGEPORT_TFJS_KILL_AFTER_RUNS", "3")
    with pytest.raises(RuntimeFailure, match="killed by SIGKILL") as caught:
        runtime.benchmark(handmade.model_json, handmade_samples, RuntimeSettings(), QUICK)
    assert "\n" not in caught.value.message and str(handmade.model_json) in caught.value.message


def test_runner_exit_code_is_reported_when_node_says_nothing():
    from edgeport.targets.tfjs.node import runner_failure

    message = runner_failure(134, "some output\nAborted (core dumped)\n", {"backend": "wasm", "model": "m.json"})
    assert message == "tfjs-node (wasm) on m.json: the Node runner exited with code 134: Aborted (core dumped)"


def test_node_error_becomes_one_line(runtime, handmade, tmp_path):
    wrong_names = SampleSet(arrays={"pixels": np.zeros((1, 1, 6), np.float32)}, source="test", synthetic=True)
    expected = r"signature inputs are \[features\] but the samples hold \[pixels\]"
    with pytest.raises(RuntimeFailure, match=expected) as caught:
        runtime.infer(handmade.model_json, wrong_names, RuntimeSettings())
    assert "\n" not in caught.value.message and caught.value.message.startswith("tfjs-node (wasm) on ")


def test_missing_weight_shard_is_a_runtime_failure(runtime, handmade, handmade_samples, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(handmade.model_json.parent, broken)
    (broken / "group1-shard2of2.bin").unlink()
    with pytest.raises(RuntimeFailure, match="group1-shard2of2.bin"):
        runtime.infer(broken / "model.json", handmade_samples, RuntimeSettings())


def test_missing_artifact_is_a_runtime_failure(runtime, handmade_samples, tmp_path):
    with pytest.raises(RuntimeFailure, match="not found; convert the model"):
        runtime.infer(tmp_path / "model.json", handmade_samples, RuntimeSettings())


def test_unknown_backend_is_a_usage_error(runtime, handmade, handmade_samples):
    with pytest.raises(UsageError, match="has no backend 'webgl'; use one of wasm, cpu"):
        runtime.infer(handmade.model_json, handmade_samples, RuntimeSettings(backend="webgl"))


def test_is_registered_under_its_entry_point():
    from edgeport.run.registry import registry

    assert isinstance(registry().runtime("tfjs-node"), TFJSNodeRuntime)
