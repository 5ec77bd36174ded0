"""The large-model path, forced on a small model by lowering the threshold (EDGEPORT_LARGE_MODEL_BYTES): TFLite and
TFLite Micro convert from the SavedModel directory with the converter's own loader, say so, and still pass on
their runtimes; ONNX and TF.js get the frozen graph with its weights by reference (every variable, at this
threshold) and write them from the variables: ONNX to external data (fp32) or in memory (fp16), TF.js to its
shards. (A model past the real threshold is measured in benchmarks/bench_scale.py, not here.)"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeport.errors import UsageError
from edgeport.model.savedmodel import LARGE_MODEL_BYTES, LARGE_MODEL_ENV, large_model_threshold
from edgeport_testing import run_cli, save_planted

SAID = "converted from the SavedModel directory by the converter's own loader"
BOUND = "weight(s) written by edgeport from the SavedModel's variables after the flatbuffer"


def test_every_target_takes_the_large_model_path(tmp_path):
    model, images, _ = save_planted(tmp_path / "m", 1.0)
    np.savez(tmp_path / "data.npz", image=images)
    out = tmp_path / "out"
    result = run_cli(
        "convert", model, "--data", tmp_path / "data.npz", "-t", "tflite", "-t", "tflite:fp16", "-t", "tflite:dynamic",
        "-t", "tflite:int8", "-t", "tflm", "-t", "onnx", "-t", "onnx:fp16", "-t", "tfjs", "-o", out, "--no-bench",
        env={LARGE_MODEL_ENV: "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    targets = {t["name"]: t for t in report["targets"]}
    assert all(verdict == "passed" for verdict in report["verdicts"].values()), report["verdicts"]
    for name in ("tflite", "tflite:fp16"):  # weights bound by edgeport after the converter's weightless model
        assert targets[name]["details"]["weights_bound_by_edgeport"], name
        assert any(BOUND in note for note in targets[name]["notes"]), targets[name]["notes"]
        assert targets[name]["accuracy"]["outputs"][0]["cosine"] > 0.9999, name
    assert any("stored as float16, each with a DEQUANTIZE" in n for n in targets["tflite:fp16"]["notes"])
    assert any("transposed as written" in note for note in targets["tflite"]["notes"])  # the conv kernels
    for name in ("tflite:dynamic", "tflite:int8", "tflm"):  # the converter's own loader, from the directory
        assert any(note.startswith(SAID) and "large-model threshold" in note for note in targets[name]["notes"])
    assert targets["tflite:int8"]["accuracy"]["outputs"][0]["cosine"] > 0.99  # calibrated through that path too
    offset = {name: any("buffer-offset mode" in note for note in targets[name]["notes"]) for name in targets}
    assert offset == {**dict.fromkeys(targets, False), "tflite:dynamic": True}  # LiteRT checked it
    assert not any(SAID in note for note in targets["onnx"]["notes"])
    assert any("without tf2onnx's graph optimizers" in note for note in targets["onnx"]["notes"])
    for name in ("onnx", "onnx:fp16", "tfjs"):
        assert report["verdicts"][name] == "passed", name
        assert targets[name]["details"]["weights_by_reference"] >= 2, name  # the kernel and the dense weights
        assert targets[name]["accuracy"]["outputs"][0]["cosine"] > 0.9999, name
    assert any("straight to model.onnx.data, one at a time" in note for note in targets["onnx"]["notes"])
    assert targets["onnx"]["details"]["optimization_level"] == "none"
    onnx_model = onnx.load(str(out / "onnx" / "model.onnx"), load_external_data=False)
    external = [t for t in onnx_model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all(not t.raw_data for t in external)
    assert {value.name for value in onnx_model.graph.input} == {"image"}  # no weight left as an input
    assert any("read from the SavedModel's variables" in note for note in targets["tfjs"]["notes"])


def test_weights_edgeport_cannot_bind_go_through_the_converters_loader_said(tmp_path):
    """A fake-quant range held in variables (kept by reference at this threshold) must be constant for the
    TFLite converter: binding fails, the converter's own loader converts it, the report says both."""
    import tensorflow as tf

    class FakeQuant(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.random.default_rng(0).normal(0, 0.3, (8, 4)).astype(np.float32))
            self.low, self.high = tf.Variable(-1.0), tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(tf.quantization.fake_quant_with_min_max_vars(x, self.low, self.high), self.w)}

    module = FakeQuant()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    out = tmp_path / "out"
    result = run_cli("convert", tmp_path / "m", "-t", "tflite", "-o", out, "--no-bench", env={LARGE_MODEL_ENV: "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    target = json.loads((out / "report.json").read_text())["targets"][0]
    assert target["details"]["weights_bound_by_edgeport"] is False
    assert "FakeQuantWithMinMaxVars" in target["notes"][0] and "could not bind the weights itself" in target["notes"][0]
    assert target["notes"][1].startswith(SAID)
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.9999


def test_weights_by_reference_freeze_runs_like_the_savedmodel(tmp_path):
    """The frozen graph with its variables as placeholders, fed their values, computes the SavedModel's outputs;
    a variable smaller than the threshold stays a constant."""
    import tensorflow as tf

    from edgeport.model.weight_references import freeze_by_reference, reference_feeds

    model, images, _ = save_planted(tmp_path / "m", 1.0)
    loaded = tf.saved_model.load(str(model))  # owns the variables the references read
    function = loaded.signatures["serving_default"]
    graph_def, inputs, outputs, references = freeze_by_reference(function, min_bytes=64)
    sizes = sorted(ref.nbytes for ref in references)
    assert sizes and min(sizes) >= 64
    constants = [n for n in graph_def.node if n.op == "Const" and n.attr["value"].tensor.tensor_content]
    assert all(len(n.attr["value"].tensor.tensor_content) < 64 for n in constants)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    weights = reference_feeds(references)
    with tf.compat.v1.Session(graph=graph) as session:
        got = session.run(outputs, {inputs[0]: images[0], **weights})
    expected = function(image=tf.constant(images[0]))
    np.testing.assert_allclose(got[0], next(iter(expected.values())).numpy(), rtol=1e-5, atol=1e-6)
    for ref in references:  # what the writers stream: slices of at most 100 bytes (a row at least), in order
        chunks = list(ref.chunks(max_bytes=100))
        row = ref.nbytes // ref.shape[0]
        assert all(chunk.nbytes <= max(100, row) for chunk in chunks)
        rows_per_chunk = max(1, 100 // row)
        assert len(chunks) == (1 if ref.nbytes <= 100 else -(-ref.shape[0] // rows_per_chunk))
        np.testing.assert_array_equal(np.concatenate(chunks), ref.value())


def test_the_threshold_and_its_override(monkeypatch):
    monkeypatch.delenv(LARGE_MODEL_ENV, raising=False)
    assert large_model_threshold() == LARGE_MODEL_BYTES
    monkeypatch.setenv(LARGE_MODEL_ENV, "1000")
    assert large_model_threshold() == 1000
    monkeypatch.setenv(LARGE_MODEL_ENV, "big")
    with pytest.raises(UsageError, match=LARGE_MODEL_ENV):
        large_model_threshold()


def test_a_large_model_checks_on_two_synthetic_samples_unless_told(tmp_path):
    model, _, _ = save_planted(tmp_path / "m", 1.0)
    runs = {"default": (), "chosen": ("--samples", "5")}
    counts = {}
    for name, extra in runs.items():
        out = tmp_path / name
        result = run_cli("convert", model, "-t", "tflite", "-o", out, "--no-bench", *extra, env={LARGE_MODEL_ENV: "1"})
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "report.json").read_text())
        counts[name] = report["samples"]["count"]
        said = [w for w in report["warnings"] if w.startswith("a large model")]
        assert bool(said) == (name == "default"), report["warnings"]
    assert counts == {"default": 2, "chosen": 5}
    assert "checked on 2 synthetic samples, not 32; pass --samples N for more" in said_text(tmp_path / "default")


def said_text(out) -> str:
    return " ".join(json.loads((out / "report.json").read_text())["warnings"])


def test_flags_win_over_the_config_sample_count(tmp_path):
    model, _, _ = save_planted(tmp_path / "m", 1.0)
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{model}"\ntargets = ["tflite"]\nsamples = 7\n')
    for extra, expected in (((), 7), (("--samples", "3"), 3)):
        out = tmp_path / f"out{expected}"
        result = run_cli("convert", "--config", config, "-o", out, "--no-bench", *extra)
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "report.json").read_text())["samples"]["count"] == expected


def test_a_tfjs_model_past_2_gib_is_checked_on_cpu_unless_a_backend_is_chosen(tmp_path):
    """tfjs-backend-wasm computes wrong outputs past a 2 GiB heap (measured in benchmarks/bench_scale.py): the
    runtimes default to cpu for such a model, a chosen backend wins, and the note says why. The shard is a
    sparse file of 2 GiB: its size is what the runtimes read."""
    import re

    from edgeport.data import RuntimeSettings
    from edgeport.formats.tfjs.heap import WASM_HEAP_MAX_BYTES, wasm_note
    from edgeport.formats.tfjs.packages import node_modules
    from edgeport.targets.tfjs.shared import pick_backend

    def model(folder, size: int):
        folder.mkdir()
        with (folder / "group1-shard1of1.bin").open("wb") as shard:
            shard.truncate(size)
        manifest = [{"paths": ["group1-shard1of1.bin"], "weights": []}]
        (folder / "model.json").write_text(json.dumps({"weightsManifest": manifest}))
        return folder / "model.json"

    big, small = model(tmp_path / "big", 1 << 31), model(tmp_path / "small", 1 << 20)
    choices = ("wasm", "cpu")
    assert pick_backend(RuntimeSettings(), choices, "tfjs-node", big) == "cpu"
    assert pick_backend(RuntimeSettings(backend="wasm"), choices, "tfjs-node", big) == "wasm"
    assert pick_backend(RuntimeSettings(), choices, "tfjs-node", small) == "wasm"
    assert "computes wrong outputs" in wasm_note(1 << 31) and "cpu backend" in wasm_note(1 << 31)
    assert "cannot load it" in wasm_note(WASM_HEAP_MAX_BYTES)
    built = (node_modules() / "@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-simd.js").read_text()
    assert [int(n) for n in re.findall(r"getHeapMax\(\)\{return (\d+)", built)] == [WASM_HEAP_MAX_BYTES]


def _embedding_mlp(path):
    """Issue 22's family, small: a 1000x64 embedding gathered by 32 int32 tokens, then three Dense(64, relu)
    with a residual add and a layer norm each: the first with a bias, the second without, the third reusing the
    second's kernel (a weight read twice), and an output projection on the embedding itself (a weight read by a
    GATHER and a MatMul with transpose_b). The Dense layers on a 2-D activation are what the converter makes a
    TRANSPOSE + FULLY_CONNECTED of, whose fused Relu its FuseTransposeFCRhsToBatchMatmul dropped when the
    kernel was a non-constant input and there was no bias (cosine 0.87 here, 0.709 on 300 MB)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def variable(*shape, mean=0.0, scale=0.3):
        return tf.Variable(rng.normal(mean, scale, shape).astype(np.float32))

    class EmbeddingMLP(tf.Module):
        def __init__(self):
            self.embedding = variable(1000, 64, scale=1.0)
            self.kernels = [variable(64, 64, scale=64**-0.5) for _ in range(2)]
            self.bias = variable(64)
            self.gammas = [variable(64, mean=1.0) for _ in range(3)]
            self.betas = [variable(64) for _ in range(3)]

        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.int32, name="tokens")])
        def serve(self, tokens):
            x = tf.reshape(tf.gather(self.embedding, tokens), [32, 64])
            for layer, kernel in enumerate((self.kernels[0], self.kernels[1], self.kernels[1])):
                h = tf.matmul(x, kernel) + self.bias if layer == 0 else tf.matmul(x, kernel)
                mean, variance = tf.nn.moments(x + tf.nn.relu(h), axes=[-1], keepdims=True)
                x = (x + tf.nn.relu(h) - mean) * tf.math.rsqrt(variance + 1e-3) * self.gammas[layer] + self.betas[layer]
            return {"logits": tf.matmul(x, self.embedding, transpose_b=True), "hidden": x}

    module = EmbeddingMLP()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _weight_bytes(path) -> list[tuple[bytes, bool]]:
    """(each bound buffer's bytes, whether it is bound) for the constant buffers of a .tflite file: data inline
    or at a buffer offset (edgeport's bound weights)."""
    from tensorflow.lite.tools import flatbuffer_utils

    data = path.read_bytes()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    found = []
    for buffer in model.buffers:
        if buffer.offset > 1:
            found.append((data[buffer.offset : buffer.offset + buffer.size], True))
        elif buffer.data is not None and len(buffer.data):
            found.append((bytes(buffer.data), False))
    return found


@pytest.mark.parametrize("variant", ["", "fp16"])
def test_bound_weights_compute_what_the_converter_computes(tmp_path, monkeypatch, variant):
    """Issue 22: the forced bound path on the embedding + MLP family agrees with the SavedModel, and every
    weight edgeport bound is, byte for byte, a constant of the converter's own conversion of the same model
    (its buffer mapping, transposes and float16 as the converter's)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.formats.tflite.bound_weights import convert_with_bound_weights
    from edgeport.model.savedmodel import load_model

    monkeypatch.setenv(LARGE_MODEL_ENV, "1")
    model_path = _embedding_mlp(tmp_path / "m")
    model = load_model(model_path)
    assert model.large and len(model.frozen.references) == 10
    bound_path = tmp_path / "bound.tflite"
    _, _, notes = convert_with_bound_weights(model, variant, bound_path, allow_tf_ops=False)
    assert "10 weight(s) written by edgeport" in notes[0]
    assert "2 transposed as written" in notes[0]  # the two kernels as [out, in]; the embedding as it is

    tokens = np.random.default_rng(1).integers(0, 1000, (2, 1, 32)).astype(np.int32)
    runner = Interpreter(model_path=str(bound_path)).get_signature_runner()
    for sample in tokens:
        expected = model.reference([{"tokens": sample}])[0]
        got = runner(tokens=sample)
        for name in ("logits", "hidden"):
            a, b = got[name].ravel().astype(np.float64), expected[name].ravel().astype(np.float64)
            cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
            assert cosine >= (0.9999 if variant == "" else 0.999), (name, cosine)
            if variant == "":
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-4)

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model_path))
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    (tmp_path / "own.tflite").write_bytes(converter.convert())
    own = {data for data, _ in _weight_bytes(tmp_path / "own.tflite")}
    bound = [data for data, is_bound in _weight_bytes(bound_path) if is_bound]
    assert len(bound) == 10
    for data in bound:  # 64x64 kernels written untransposed, or swapped with each other, match nothing here
        assert data in own, f"a bound weight of {len(data)} bytes is no constant of the converter's own model"
