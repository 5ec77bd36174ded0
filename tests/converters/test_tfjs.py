"""tfjs converter: real small SavedModels, converted by edgeport and run by the real TF.js runtime in Node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.contracts import ConversionJob, RuntimeSettings, SampleSet, TargetSpec
from edgeport.converters.tfjs.converter import TFJSConverter, TFJSOptions
from edgeport.converters.tfjs.quantize import dequantize, quantize
from edgeport.errors import ConversionError, UsageError
from edgeport.formats.tfjs import packages
from edgeport.formats.tfjs.ops import load_runtime_ops, parse_op_list, read_installed, read_shipped, shipped_table
from edgeport.model.samples import SampleRequest, synthetic_samples
from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow

tf = import_tensorflow()


# ---------------------------------------------------------------- model builders (shared by this module only)


def _randomize(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if "batch_normalization" in layer.name:  # gamma, beta, moving mean, moving variance
            gamma, beta, mean, variance = (w.shape for w in weights)
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma),
                    rng.normal(0, 0.2, beta),
                    rng.normal(0, 0.2, mean),
                    rng.uniform(0.5, 1.5, variance),
                ]
            )
        else:
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in weights])


def build_cnn(path: Path) -> Path:
    keras = tf.keras
    image = keras.Input((16, 16, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    scores = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(image, scores)
    _randomize(model)
    model.export(str(path))
    return path


def build_residual_tanh(path: Path) -> Path:
    """Conv + BiasAdd + residual Add + Relu and Dense + tanh: fusions TF.js cannot run if Grappler makes them."""
    keras = tf.keras
    image = keras.Input((8, 8, 4), batch_size=1, name="image")
    y = keras.layers.Conv2D(4, 3, padding="same")(image)
    y = keras.layers.ReLU()(keras.layers.Add()([y, image]))
    y = keras.layers.Flatten()(y)
    out = keras.layers.Dense(6, activation="tanh")(y)
    model = keras.Model(image, out)
    _randomize(model, seed=3)
    model.export(str(path))
    return path


class _MultiIO(tf.Module):
    def __init__(self):
        self.w = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype("float32"))

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, 4], tf.float32, name="features"),
            tf.TensorSpec([1, 1], tf.float32, name="scale"),
        ]
    )
    def serve(self, features, scale):
        logits = tf.matmul(features, self.w) * scale
        return {"logits": logits, "probs": tf.nn.softmax(logits)}


class _ControlFlow(tf.Module):
    def __init__(self):
        self.w = tf.Variable([[0.5, -0.25, 0.125, 1.0]])

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def serve(self, x):
        def body(i, acc):
            return i + 1, acc * 0.9 + tf.sin(acc)

        _, y = tf.while_loop(lambda i, acc: i < 5, body, [tf.constant(0), x])
        z = tf.cond(tf.reduce_sum(x) > 2.0, lambda: y * 2.0 + self.w, lambda: y - 1.0)
        return {"y": z}


class _HashTable(tf.Module):
    def __init__(self):
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant([0, 1, 2, 3], tf.int64), tf.constant([1.5, 2.0, 3.0, -1.0])
        )
        self.table = tf.lookup.StaticHashTable(init, default_value=-7.0)  # integer -> float: lowered to tensor ops
        names = tf.lookup.KeyValueTensorInitializer(tf.constant([0, 1], tf.int64), tf.constant(["no", "yes"]))
        self.names = tf.lookup.StaticHashTable(names, default_value="?")  # integer -> string: a TF.js hash table

    @tf.function(
        input_signature=[tf.TensorSpec([1, 3], tf.int32, name="ids"), tf.TensorSpec([1, 3], tf.float32, name="x")]
    )
    def serve(self, ids, x):
        return {
            "y": self.table.lookup(tf.cast(ids, tf.int64)) * x,
            "label": self.names.lookup(tf.cast(ids[0, :2], tf.int64)),
            "greeting": tf.constant(["hi", "there"]),
        }


class _Lgamma(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.math.lgamma(x + 1.0) * 2.0}


class _GeluEinsum(tf.Module):
    """Exact GELU (Erfc, which TF.js lacks) and attention-style Einsums (no Einsum kernel on wasm)."""

    def __init__(self):
        rng = np.random.default_rng(4)
        self.w = tf.Variable(rng.normal(0, 0.5, (6, 2, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6], tf.float32, name="x")])
    def serve(self, x):
        heads = tf.einsum("abc,cde->abde", x, self.w)  # dense projection into heads; batch is dynamic
        scores = tf.nn.softmax(tf.einsum("aecd,abcd->acbe", heads, heads))
        context = tf.einsum("acbe,aecd->abcd", scores, heads)
        return {"y": tf.nn.gelu(tf.reshape(context, [-1, 4, 6]), approximate=False)}


def build_gru(path: Path) -> Path:
    """keras GRU: its loop body writes the new state into a TensorList and also carries it (Identity)."""
    keras = tf.keras
    tokens = keras.Input((5, 3), batch_size=1, name="tokens")
    model = keras.Model(tokens, keras.layers.GRU(4)(tokens))
    _randomize(model, seed=5)
    model.export(str(path))
    return path


def save_module(module, path: Path) -> Path:
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def build_v1(path: Path) -> Path:
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]]))
        b = tf.compat.v1.get_variable("b", initializer=tf.constant([0.1, -0.2]))
        y = tf.nn.relu6(tf.matmul(x, w) + b, name="y")
        checked = tf.debugging.check_numerics(y, "y is finite", name="checked")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": checked})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfjs_models")
    paths = {
        "cnn": build_cnn(root / "cnn"),
        "residual": build_residual_tanh(root / "residual"),
        "multi": save_module(_MultiIO(), root / "multi"),
        "control": save_module(_ControlFlow(), root / "control"),
        "table": save_module(_HashTable(), root / "table"),
        "lgamma": save_module(_Lgamma(), root / "lgamma"),
        "gelu_einsum": save_module(_GeluEinsum(), root / "gelu_einsum"),
        "gru": build_gru(root / "gru"),
    }
    loaded = {name: load_model(path) for name, path in paths.items()}
    loaded["v1"] = load_model(build_v1(root / "v1"), force_v1=True)  # the TF1 session freeze path
    return loaded


# ---------------------------------------------------------------- helpers


def convert(model, target: str, workdir: Path, **options):
    workdir.mkdir(parents=True, exist_ok=True)
    samples = synthetic_samples(model.signature, SampleRequest(count=4))
    job = ConversionJob(
        model=model,
        target=TargetSpec.parse(target),
        options=TFJSOptions(**options),
        calibration=samples,
        workdir=workdir,
    )
    return TFJSConverter().convert(job)


def run_in_node(artifact_dir: Path, samples: SampleSet, backend: str = "cpu"):
    from edgeport.targets.tfjs.node import TFJSNodeRuntime

    return TFJSNodeRuntime().infer(artifact_dir / "model.json", samples, RuntimeSettings(backend=backend))


def check_against_reference(
    model, artifact_dir: Path, precision: str, samples: SampleSet | None = None, backend: str = "cpu"
):
    samples = samples or synthetic_samples(model.signature, SampleRequest(count=4))
    result = compare(
        model.reference(samples.feeds()), run_in_node(artifact_dir, samples, backend), default_tolerance(precision)
    )
    return result


NODE_SCRIPT = """
const fs = require('fs'), path = require('path');
const tf = require(path.join(process.argv[2], '@tensorflow/tfjs'));
(async () => {
  await tf.setBackend('cpu');
  const dir = process.argv[3], feeds = JSON.parse(fs.readFileSync(process.argv[4], 'utf8'));
  const modelJSON = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const model = await tf.loadGraphModel({load: () => tf.io.getModelArtifactsForJSON(modelJSON, async manifest => {
    const buffers = manifest[0].paths.map(p => new Uint8Array(fs.readFileSync(path.join(dir, p))).buffer);
    return [manifest[0].weights, tf.io.concatenateArrayBuffers(buffers)];
  })});
  const names = Object.keys(model.signature.outputs), results = [];
  for (const feed of feeds) {
    const inputs = {};
    for (const [name, t] of Object.entries(feed)) inputs[name] = tf.tensor(t.data, t.shape, t.dtype);
    let out = await model.executeAsync(inputs, names);
    out = Array.isArray(out) ? out : [out];
    const record = {};
    names.forEach((n, i) => { record[n] = out[i].dtype === 'string'
      ? out[i].dataSync().map(b => Buffer.from(b).toString('utf8')) : Array.from(out[i].dataSync()); });
    results.push(record);
  }
  process.stdout.write(JSON.stringify(results));
})().catch(e => { console.error(e.stack || String(e)); process.exit(1); });
"""


def run_with_tfjs_loader(artifact_dir: Path, feeds: list[dict], scratch: Path) -> list[dict]:
    """tf.loadGraphModel + executeAsync in Node (cpu), for outputs the wire format of the runner lacks (strings)."""
    import subprocess

    script, feeds_file = scratch / "load.js", scratch / "feeds.json"
    script.write_text(NODE_SCRIPT)
    feeds_file.write_text(
        json.dumps(
            [
                {
                    name: {
                        "data": value.reshape(-1).tolist(),
                        "shape": list(value.shape),
                        "dtype": "int32" if value.dtype.kind in "iu" else "float32",
                    }
                    for name, value in feed.items()
                }
                for feed in feeds
            ]
        )
    )
    done = subprocess.run(
        ["node", str(script), str(packages.node_modules()), str(artifact_dir), str(feeds_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def read_model_json(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


def fused_nodes(content: dict) -> dict[str, list[list[str]]]:
    import base64

    found: dict[str, list[list[str]]] = {}
    for node in content["modelTopology"]["node"]:
        if "fused_ops" in node.get("attr", {}):
            steps = [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"].get("s", [])]
            found.setdefault(node["op"], []).append(steps)
    return found


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.bin"))


# ---------------------------------------------------------------- the runtime's op tables


def test_op_tables_come_from_the_installed_tfjs_converter():
    runtime = load_runtime_ops()
    assert runtime.version == "4.22.0"
    assert {
        "Conv2D",
        "_FusedConv2D",
        "FusedDepthwiseConv2dNative",
        "_FusedMatMul",
        "While",
        "HashTableV2",
    } <= runtime.ops
    assert "Lgamma" not in runtime.ops
    assert {"relu", "relu6", "elu", "leakyrelu", "sigmoid"} <= runtime.fused_activations
    assert "tanh" not in runtime.fused_activations


def test_op_list_parser_reads_js_literals():
    source = (
        "/** header */\nexport const json = [\n  {\n    'tfOpName': 'Foo',\n"
        "    'attrs': [{'name': 'it\\'s',},],\n  },\n];\n"
    )
    assert parse_op_list(source) == [{"tfOpName": "Foo", "attrs": [{"name": "it's"}]}]


def test_shipped_op_tables_are_the_lockfiles_version_and_match_the_installed_packages():
    shipped = read_shipped(shipped_table())
    assert shipped.version == packages.pinned_version("@tensorflow/tfjs-converter") == packages.pinned_version()
    installed = read_installed(packages.node_modules())
    assert (shipped.ops, shipped.fused_activations, shipped.version) == (
        installed.ops,
        installed.fused_activations,
        installed.version,
    )


def test_converting_needs_no_node_packages_and_writes_the_same_model(models, tmp_path, monkeypatch):
    with_packages = convert(models["cnn"], "tfjs", tmp_path / "installed")
    assert load_runtime_ops().source.endswith("op_list")
    monkeypatch.setenv(packages.NODE_MODULES_ENV, str(tmp_path / "no_node_modules"))
    assert load_runtime_ops().source == f"{shipped_table().name} (shipped)"
    assert TFJSConverter().availability().available
    without = convert(models["cnn"], "tfjs", tmp_path / "shipped")
    assert without.main_file == with_packages.main_file
    assert read_model_json(tmp_path / "shipped") == read_model_json(tmp_path / "installed")
    findings = TFJSConverter().preflight(models["cnn"], TFJSOptions())
    assert not [f for f in findings if f.severity == "error"]


# ---------------------------------------------------------------- the CNN: structure, fusions, accuracy


def test_cnn_model_json_structure_and_fusions(models, tmp_path):
    model = models["cnn"]
    artifact = convert(model, "tfjs", tmp_path)
    content = read_model_json(tmp_path)
    assert artifact.main_file == "model.json" and artifact.precision == "fp32" and artifact.runtime == "tfjs-node"
    assert content["format"] == "graph-model"
    assert content["generatedBy"] == f"TensorFlow {tf.__version__}"
    assert content["convertedBy"].startswith("edgeport ")
    assert {"node", "versions"} <= set(content["modelTopology"])
    assert set(content["signature"]["inputs"]) == {"image"}
    assert content["signature"]["inputs"]["image"]["name"] == model.frozen.input_tensors["image"]
    assert content["signature"]["inputs"]["image"]["tensorShape"]["dim"] == [
        {"size": "-1"},
        {"size": "16"},
        {"size": "16"},
        {"size": "3"},
    ]
    assert set(content["signature"]["outputs"]) == {spec.name for spec in model.signature.outputs}
    assert content["userDefinedMetadata"]["structuredOutputKeys"] == list(content["signature"]["outputs"])
    manifest = content["weightsManifest"]
    assert [tmp_path / p for p in manifest[0]["paths"]] and all((tmp_path / p).is_file() for p in manifest[0]["paths"])
    assert set(artifact.files) == {"model.json", *manifest[0]["paths"]}
    consts = [n for n in content["modelTopology"]["node"] if n["op"] == "Const"]
    assert consts and all("value" not in n.get("attr", {}) for n in consts)  # values live in the shards
    assert {n["name"] for n in consts} == {w["name"] for w in manifest[0]["weights"]}
    fused = fused_nodes(content)
    assert fused["_FusedConv2D"] and fused["FusedDepthwiseConv2dNative"] and fused["_FusedMatMul"]
    assert ["BiasAdd", "Relu6"] in fused["_FusedConv2D"]  # batch norm folded, then fused with relu6
    assert fused["FusedDepthwiseConv2dNative"] == [["BiasAdd", "Relu6"]]
    assert ["BiasAdd", "Relu"] in fused["_FusedMatMul"]
    ops = {n["op"] for n in content["modelTopology"]["node"]}
    assert not ops & {"Mul", "Rsqrt", "FusedBatchNormV3", "Relu6", "BiasAdd"}
    assert artifact.details["fused_ops"]["_FusedConv2D"] == 2
    assert artifact.notes and "fused ops" in artifact.notes[0]


def test_cnn_runs_in_tfjs_wasm_matching_the_savedmodel(models, tmp_path):
    model = models["cnn"]
    convert(model, "tfjs", tmp_path)
    result = check_against_reference(model, tmp_path, "fp32", backend="wasm")
    assert result.passed, result.failures
    assert min(o.cosine for o in result.outputs) >= 0.9999


def test_without_optimize_the_graph_is_unfused_and_still_matches(models, tmp_path):
    model = models["cnn"]
    optimized = convert(model, "tfjs", tmp_path / "opt")
    plain = convert(model, "tfjs", tmp_path / "plain", optimize=False)
    assert not fused_nodes(read_model_json(tmp_path / "plain"))
    assert plain.details["node_count"] > 2 * optimized.details["node_count"]
    result = check_against_reference(model, tmp_path / "plain", "fp32")
    assert min(o.cosine for o in result.outputs) >= 0.9999


def test_unsupported_fusions_are_split_into_plain_ops(models, tmp_path):
    model = models["residual"]
    artifact = convert(model, "tfjs", tmp_path)
    runtime = load_runtime_ops()
    for op, variants in fused_nodes(read_model_json(tmp_path)).items():
        for steps in variants:
            assert steps[0] == "BiasAdd" and len(steps) <= 2, (op, steps)
            assert len(steps) == 1 or steps[1].lower() in runtime.fused_activations, (op, steps)
    result = check_against_reference(model, tmp_path, "fp32")
    assert min(o.cosine for o in result.outputs) >= 0.9999, artifact.details


# ---------------------------------------------------------------- variants and shards


def test_weight_variants_sizes_manifest_and_accuracy(models, tmp_path):
    model = models["cnn"]
    sizes = {}
    for variant in ("", "fp16", "uint8", "uint16"):
        folder = tmp_path / (variant or "fp32")
        artifact = convert(model, f"tfjs:{variant}" if variant else "tfjs", folder)
        assert artifact.precision == (variant or "fp32")
        sizes[variant or "fp32"] = weight_bytes(folder)
        weights = read_model_json(folder)["weightsManifest"][0]["weights"]
        floats = [w for w in weights if w["dtype"] == "float32"]
        if variant:
            dtype = "float16" if variant == "fp16" else variant
            assert all(w["quantization"]["dtype"] == dtype for w in floats)
            if variant in ("uint8", "uint16"):
                assert all({"scale", "min"} <= set(w["quantization"]) for w in floats)
        else:
            assert not any("quantization" in w for w in weights)
        assert not any("quantization" in w for w in weights if w["dtype"] != "float32")
        result = check_against_reference(model, folder, "fp32")
        assert min(o.cosine for o in result.outputs) >= (0.9999 if variant in ("", "fp16", "uint16") else 0.999)
    assert 3.6 < sizes["fp32"] / sizes["uint8"] <= 4.0
    assert 1.9 < sizes["fp32"] / sizes["fp16"] <= 2.0
    assert 1.9 < sizes["fp32"] / sizes["uint16"] <= 2.0


def test_shards_respect_the_size_option(models, tmp_path):
    model = models["cnn"]
    artifact = convert(model, "tfjs", tmp_path, shard_size_bytes=1024)
    paths = read_model_json(tmp_path)["weightsManifest"][0]["paths"]
    sizes = [(tmp_path / p).stat().st_size for p in paths]
    assert len(paths) == artifact.details["shards"] > 1
    assert all(size == 1024 for size in sizes[:-1]) and 0 < sizes[-1] <= 1024
    assert paths[0] == f"group1-shard1of{len(paths)}.bin"
    result = check_against_reference(model, tmp_path, "fp32")
    assert min(o.cosine for o in result.outputs) >= 0.9999


def test_default_shard_size_is_4_mb():
    assert TFJSOptions().shard_size_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize("options", [{"shard_size_bytes": 10}, {"shard_size_bytes": "big"}, {"optimize": "yes"}])
def test_bad_options_are_usage_errors(models, tmp_path, options):
    with pytest.raises(UsageError):
        convert(models["multi"], "tfjs", tmp_path, **options)


def test_affine_quantization_keeps_zero_exact_and_bounds_the_error():
    values = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    values[:10] = 0.0
    for dtype, levels in (("uint8", 255), ("uint16", 65535)):
        packed = quantize(values, dtype)
        restored = dequantize(packed.data, packed.quantization, values.shape)
        assert np.all(restored[:10] == 0.0)
        assert np.abs(restored - values).max() <= 0.51 * (values.max() - values.min()) / levels + 1e-6
    constant = quantize(np.full(4, 2.5, np.float32), "uint8")
    assert np.all(dequantize(constant.data, constant.quantization, (4,)) == 2.5)


def test_float16_refuses_values_it_cannot_hold():
    assert quantize(np.array([1e6], np.float32), "float16") is None
    assert quantize(np.array([1.5], np.float32), "float16").quantization == {"dtype": "float16"}


# ---------------------------------------------------------------- other model shapes


def test_multi_input_dict_output(models, tmp_path):
    model = models["multi"]
    convert(model, "tfjs", tmp_path)
    signature = read_model_json(tmp_path)["signature"]
    assert set(signature["inputs"]) == {"features", "scale"}
    assert set(signature["outputs"]) == {"logits", "probs"}
    assert {v["name"] for v in signature["outputs"].values()} == set(model.frozen.output_tensors.values())
    result = check_against_reference(model, tmp_path, "fp32")
    assert {o.name for o in result.outputs} == {"logits", "probs"}
    assert min(o.cosine for o in result.outputs) >= 0.9999


def test_while_loop_and_cond_survive(models, tmp_path):
    model = models["control"]
    convert(model, "tfjs", tmp_path)
    content = read_model_json(tmp_path)
    ops = {n["op"] for n in content["modelTopology"]["node"]}
    assert ops & {"While", "StatelessWhile"} and ops & {"If", "StatelessIf"}
    functions = content["modelTopology"]["library"]["function"]
    assert len(functions) >= 4
    weight_names = {w["name"] for w in content["weightsManifest"][0]["weights"]}
    body_consts = [n["name"] for f in functions for n in f.get("nodeDef", []) if n["op"] == "Const"]
    assert body_consts and set(body_consts) <= weight_names  # function constants are weights, uniquely named
    low = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    high = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    samples = SampleSet(arrays={"x": np.stack([low, high])}, source="both branches", synthetic=False)
    result = check_against_reference(model, tmp_path, "fp32", samples)
    assert min(o.cosine for o in result.outputs) >= 0.9999, result.failures


def test_tf1_builder_savedmodel(models, tmp_path):
    model = models["v1"]
    assert model.mode == "v1-session"
    convert(model, "tfjs", tmp_path)
    ops = {n["op"] for n in read_model_json(tmp_path)["modelTopology"]["node"]}
    assert "CheckNumerics" not in ops
    samples = SampleSet(
        arrays={"x": np.array([[[1.0, 0.5, -0.5]], [[0.2, 0.1, 0.9]]], np.float32)}, source="fixed", synthetic=False
    )
    result = check_against_reference(model, tmp_path, "fp32", samples)
    assert min(o.cosine for o in result.outputs) >= 0.9999, result.failures


def test_erfc_and_einsum_are_rewritten_into_ops_wasm_runs(models, tmp_path):
    model = models["gelu_einsum"]
    for optimize in (True, False):
        folder = tmp_path / f"optimize-{optimize}"
        convert(model, "tfjs", folder, optimize=optimize)
        ops = {n["op"] for n in read_model_json(folder)["modelTopology"]["node"]}
        assert not ops & {"Einsum", "Erfc"} and {"Erf", "BatchMatMulV2"} <= ops
        result = check_against_reference(model, folder, "fp32", backend="wasm")
        assert min(o.cosine for o in result.outputs) >= 0.9999, result.failures


def test_einsum_lowering_matches_numpy_for_each_label_layout():
    from edgeport.converters.tfjs.lower_einsum import lower_einsums

    cases = [
        ("abc,cde->abde", (None, 3, 4), (4, 2, 5)),
        ("aecd,abcd->acbe", (2, 3, 4, 5), (2, 6, 4, 5)),
        ("ij,jk->ki", (3, 4), (4, 5)),
        ("abc,bd->ad", (2, 3, 4), (3, 5)),
        ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ]
    rng = np.random.default_rng(0)
    for equation, shape_a, shape_b in cases:
        graph = tf.Graph()
        with graph.as_default():
            a = tf.compat.v1.placeholder(tf.float32, shape_a, name="a")
            b = tf.compat.v1.placeholder(tf.float32, shape_b, name="b")
            tf.identity(tf.raw_ops.Einsum(inputs=[a, b], equation=equation), name="out")
        graph_def = graph.as_graph_def()
        assert lower_einsums(graph_def, {"a", "b", "out"}) == 1
        assert "Einsum" not in {node.op for node in graph_def.node}
        feeds = {"a:0": rng.normal(size=[d or 2 for d in shape_a]), "b:0": rng.normal(size=shape_b)}
        lowered = tf.Graph()
        with lowered.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
            with tf.compat.v1.Session(graph=lowered) as session:
                got = session.run("out:0", feeds)
        np.testing.assert_allclose(got, np.einsum(equation, feeds["a:0"], feeds["b:0"]), rtol=1e-5, atol=1e-5)


def test_tensor_list_written_in_a_loop_body_survives_on_wasm(models, tmp_path):
    model = models["gru"]
    convert(model, "tfjs", tmp_path)
    result = check_against_reference(model, tmp_path, "fp32", backend="wasm")
    assert min(o.cosine for o in result.outputs) >= 0.9999, result.failures


def test_hash_table_with_initializer_and_string_constant(models, tmp_path):
    model = models["table"]
    artifact = convert(model, "tfjs", tmp_path)
    content = read_model_json(tmp_path)
    assert len(artifact.details["hash_tables"]) == 1  # the integer -> float table became tensor ops
    assert "LookupTableFindV2" in {n["op"] for n in content["modelTopology"]["node"]}
    init_ops = [n["op"] for n in content["modelInitializer"]["node"]]
    assert "HashTableV2" in init_ops and "LookupTableImportV2" in init_ops
    assert any(w["dtype"] == "string" for w in content["weightsManifest"][0]["weights"])
    ids = np.array([[[1, 0, 9]], [[2, 1, 5]]], np.int32)
    x = np.ones((2, 1, 3), np.float32)
    samples = SampleSet(arrays={"ids": ids, "x": x}, source="fixed", synthetic=False)
    outputs = run_with_tfjs_loader(tmp_path, samples.feeds(), tmp_path)
    reference = model.reference(samples.feeds())
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(got["y"], want["y"].reshape(-1))  # the loader script returns flat data
        assert got["label"] == [s.decode() for s in want["label"]]
        assert got["greeting"] == ["hi", "there"]
    assert [o["label"] for o in outputs] == [["yes", "no"], ["?", "yes"]]  # 2 is no key: the table's default
    np.testing.assert_allclose(outputs[0]["y"], [2.0, 1.5, -7.0])  # 9 is no key: the table's default


def test_string_outputs_come_back_from_the_node_runner(models, tmp_path):
    model = models["table"]
    convert(model, "tfjs", tmp_path)
    ids = np.array([[[0, 3, 9]], [[2, 1, 5]]], np.int32)
    samples = SampleSet(arrays={"ids": ids, "x": np.ones((2, 1, 3), np.float32)}, source="fixed", synthetic=False)
    outputs = run_in_node(tmp_path, samples, backend="wasm")
    for got, want in zip(outputs, model.reference(samples.feeds()), strict=True):
        assert got["label"].dtype == object and got["label"].tolist() == want["label"].tolist()
        assert got["greeting"].tolist() == [b"hi", b"there"]
        np.testing.assert_allclose(got["y"], want["y"])
    assert [o["label"].tolist() for o in outputs] == [[b"no", b"?"], [b"?", b"yes"]]


def test_op_tfjs_lacks_fails_before_writing_and_preflight_names_it(models, tmp_path):
    model = models["lgamma"]
    findings = TFJSConverter().preflight(model, TFJSOptions())
    errors = [f for f in findings if f.severity == "error"]
    assert errors and errors[0].target == "tfjs" and "Lgamma" in errors[0].message
    with pytest.raises(ConversionError, match="Lgamma"):
        convert(model, "tfjs", tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_preflight_reports_fusions_for_a_supported_model(models):
    findings = TFJSConverter().preflight(models["cnn"], TFJSOptions())
    assert not [f for f in findings if f.severity == "error"]
    assert any("_FusedConv2D" in f.message for f in findings if f.severity == "info")


def test_registered_under_its_entry_point():
    from edgeport.run.registry import registry

    converter, runtime = registry().resolve(TargetSpec.parse("tfjs:uint8"))
    assert isinstance(converter, TFJSConverter)
    assert converter.variants == ("", "fp16", "uint8", "uint16") and converter.default_runtime == "tfjs-node"


def test_fusion_tfjs_cannot_run_is_split_back_into_plain_ops():
    """A `_FusedMatMul[BiasAdd, Tanh]` (Grappler makes it; TF.js has no fused tanh) becomes MatMul, BiasAdd, Tanh."""
    from tensorflow.core.framework import graph_pb2

    from edgeport.converters.tfjs.fused_ops import undo_unsupported_fusions
    from edgeport.converters.tfjs.graph_edit import GraphIndex

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    graph = graph_pb2.GraphDef()
    x = graph.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = 1
    index = GraphIndex(graph, {"x", "y"})
    fused = index.add_node("y", "_FusedMatMul", ["x", index.add_const("w", w), index.add_const("b", b)])
    fused.attr["T"].type = 1
    fused.attr["num_args"].i = 1
    fused.attr["fused_ops"].list.s.extend([b"BiasAdd", b"Tanh"])
    undone = undo_unsupported_fusions(graph, {"x", "y"}, load_runtime_ops().fused_activations)
    assert undone == ["_FusedMatMul[BiasAdd,Tanh]"]
    assert {n.op for n in graph.node} == {"Placeholder", "Const", "MatMul", "BiasAdd", "Tanh", "Identity"}
    feed = rng.normal(size=(4, 3)).astype(np.float32)
    run = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
    result = run.prune(run.graph.get_tensor_by_name("x:0"), run.graph.get_tensor_by_name("y:0"))(tf.constant(feed))
    np.testing.assert_allclose(result.numpy(), np.tanh(feed @ w + b), rtol=1e-5, atol=1e-6)


def test_an_unreadable_shipped_op_table_is_one_clear_error(tmp_path):
    from edgeport.formats.tfjs.ops import RuntimeOpsMissing

    broken = tmp_path / "ops-4.22.0.json"
    broken.write_text("{not json")
    with pytest.raises(RuntimeOpsMissing, match="cannot be read .*reinstall edgeport"):
        read_shipped(broken)
