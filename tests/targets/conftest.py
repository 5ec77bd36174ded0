"""Shared by the TF.js runtime tests: a hand-written graph model (known weights, checked against numpy) and
a small Keras model converted by edgeport's own TF.js emitter, with its SavedModel reference outputs."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeport.contracts import Feeds, SampleSet


@dataclass(frozen=True)
class HandmadeModel:
    """x @ w + b (logits) and relu of it (activations); the signature names differ from the tensor names."""

    model_json: Path
    weights: np.ndarray
    bias: np.ndarray

    def expected(self, features: np.ndarray) -> Feeds:
        logits = features @ self.weights + self.bias
        return {"logits": logits, "activations": np.maximum(logits, 0.0)}


@dataclass(frozen=True)
class ConvertedModel:
    model_json: Path
    samples: SampleSet
    reference: list[Feeds]


def _dims(shape) -> dict:
    return {"dim": [{"size": str(d)} for d in shape]}


def write_dense_relu_graph_model(folder: Path, weights: np.ndarray, bias: np.ndarray) -> Path:
    """model.json (MatMul + BiasAdd + Relu) and two weight shards, written by hand in the graph-model format."""
    folder.mkdir(parents=True, exist_ok=True)
    n_in, n_out = weights.shape
    float32 = {"type": "DT_FLOAT"}

    def const(name, shape):
        return {
            "name": name,
            "op": "Const",
            "attr": {"dtype": float32, "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": _dims(shape)}}},
        }

    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": float32, "shape": {"shape": _dims((1, n_in))}}},
        const("dense/w", weights.shape),
        const("dense/b", bias.shape),
        {
            "name": "dense/MatMul",
            "op": "MatMul",
            "input": ["x", "dense/w"],
            "attr": {"T": float32, "transpose_a": {"b": False}, "transpose_b": {"b": False}},
        },
        {
            "name": "dense/BiasAdd",
            "op": "BiasAdd",
            "input": ["dense/MatMul", "dense/b"],
            "attr": {"T": float32, "data_format": {"s": base64.b64encode(b"NHWC").decode()}},
        },
        {"name": "dense/Relu", "op": "Relu", "input": ["dense/BiasAdd"], "attr": {"T": float32}},
        {"name": "Identity", "op": "Identity", "input": ["dense/Relu"], "attr": {"T": float32}},
    ]
    blob = weights.astype("<f4").tobytes() + bias.astype("<f4").tobytes()
    half = len(blob) // 2
    (folder / "group1-shard1of2.bin").write_bytes(blob[:half])
    (folder / "group1-shard2of2.bin").write_bytes(blob[half:])
    document = {
        "format": "graph-model",
        "generatedBy": "hand",
        "convertedBy": "edgeport tests",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1}},
        "signature": {
            "inputs": {"features": {"name": "x:0", "dtype": "DT_FLOAT", "tensorShape": _dims((1, n_in))}},
            "outputs": {
                "activations": {"name": "Identity:0", "dtype": "DT_FLOAT", "tensorShape": _dims((1, n_out))},
                "logits": {"name": "dense/BiasAdd:0", "dtype": "DT_FLOAT", "tensorShape": _dims((1, n_out))},
            },
        },
        "weightsManifest": [
            {
                "paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
                "weights": [
                    {"name": "dense/w", "shape": list(weights.shape), "dtype": "float32"},
                    {"name": "dense/b", "shape": list(bias.shape), "dtype": "float32"},
                ],
            }
        ],
    }
    path = folder / "model.json"
    path.write_text(json.dumps(document, indent=1))
    return path


@pytest.fixture(scope="session")
def handmade(tmp_path_factory) -> HandmadeModel:
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(6, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    path = write_dense_relu_graph_model(tmp_path_factory.mktemp("tfjs_handmade"), weights, bias)
    return HandmadeModel(model_json=path, weights=weights, bias=bias)


@pytest.fixture(scope="session")
def handmade_samples() -> SampleSet:
    features = np.random.default_rng(8).normal(size=(5, 1, 6)).astype(np.float32)
    return SampleSet(arrays={"features": features}, source="test", synthetic=True)


def _save_two_head_keras(path: Path) -> Path:
    from edgeport.model.tf_quiet import import_tensorflow

    keras = import_tensorflow().keras
    keras.utils.set_random_seed(5)
    pixels = keras.Input(shape=(12, 12, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, activation="relu")(pixels)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(5, name="scores")(x)
    probs = keras.layers.Softmax(name="probs")(scores)
    keras.Model(pixels, {"scores": scores, "probs": probs}).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def converted_keras(tmp_path_factory) -> ConvertedModel:
    """A small Keras CNN converted by edgeport's TFJSConverter."""
    from edgeport.contracts import ConversionJob, TargetSpec
    from edgeport.converters.tfjs import converter as converter_module
    from edgeport.model.samples import SampleRequest, synthetic_samples
    from edgeport.model.savedmodel import load_model

    base = tmp_path_factory.mktemp("tfjs_keras")
    model = load_model(_save_two_head_keras(base / "saved_model"))
    samples = synthetic_samples(model.signature, SampleRequest(count=4, seed=1))
    converter = converter_module.TFJSConverter()
    workdir = base / "tfjs"
    workdir.mkdir()
    artifact = converter.convert(
        ConversionJob(
            model=model, target=TargetSpec("tfjs"), options=converter.Options(), calibration=samples, workdir=workdir
        )
    )
    return ConvertedModel(
        model_json=workdir / artifact.main_file, samples=samples, reference=model.reference(samples.feeds())
    )


@dataclass(frozen=True)
class WebArtifacts:
    """One small model converted to TF.js, TFLite and ONNX (fp32), for the browser runtimes side by side."""

    tfjs: Path
    tflite: Path
    onnx: Path
    samples: SampleSet
    reference: list[Feeds]


@pytest.fixture(scope="session")
def web_artifacts(tmp_path_factory, converted_keras) -> WebArtifacts:
    from edgeport.contracts import ConversionJob, TargetSpec
    from edgeport.converters.onnx.converter import ONNXConverter
    from edgeport.converters.tflite.converter import TFLiteConverter
    from edgeport.model.savedmodel import load_model

    base = tmp_path_factory.mktemp("web_keras")
    model = load_model(_save_two_head_keras(base / "saved_model"))
    paths = {}
    for name, converter in (("tflite", TFLiteConverter()), ("onnx", ONNXConverter())):
        workdir = base / name
        workdir.mkdir()
        job = ConversionJob(
            model=model,
            target=TargetSpec(name),
            options=converter.Options(),
            calibration=converted_keras.samples,
            workdir=workdir,
        )
        paths[name] = workdir / converter.convert(job).main_file
    return WebArtifacts(
        tfjs=converted_keras.model_json,
        tflite=paths["tflite"],
        onnx=paths["onnx"],
        samples=converted_keras.samples,
        reference=model.reference(converted_keras.samples.feeds()),
    )
