"""The issue's TF.js model zoo, small: a transformer encoder block and a variable-length GRU, through the real
`edgeport convert` CLI to TF.js in Node on the wasm backend (benchmarks/showcase_tfjs.py runs the full zoo).
Also: edgeport never needs the `tensorflowjs` pip package, and it is not installed here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.model.tf_quiet import import_tensorflow
from edgeport_testing import run_cli

tf = import_tensorflow()
CLI_FLAGS = (
    "-t",
    "tfjs@tfjs-node",
    "--backend",
    "wasm",
    "--samples",
    "3",
    "--no-bench",
    "--no-baseline",
    "--no-history",
)


def build_transformer_block(path: Path) -> Path:
    """keras MultiHeadAttention (Einsums) + residual + LayerNormalization + exact GELU Dense (Erfc)."""
    keras = tf.keras
    keras.utils.set_random_seed(0)
    tokens = keras.Input((6, 16), batch_size=1, name="tokens")
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(tokens, tokens)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([tokens, attended]))
    hidden = keras.layers.Dense(24, activation="gelu")(x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, keras.layers.Dense(16)(hidden)]))
    keras.Model(tokens, x).export(str(path), verbose=False)
    return path


def build_variable_length_gru(path: Path) -> Path:
    """keras GRU over [None, None, 4]: a While loop writing TensorLists, batch and length dynamic."""
    keras = tf.keras
    keras.utils.set_random_seed(1)
    tokens = keras.Input((None, 4), name="tokens")
    keras.Model(tokens, keras.layers.Dense(3)(keras.layers.GRU(8)(tokens))).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfjs_zoo")
    return {
        "transformer": build_transformer_block(root / "transformer"),
        "gru": build_variable_length_gru(root / "gru"),
    }


def convert_in_node(saved_model: Path, out: Path, *extra: str) -> dict:
    done = run_cli("convert", saved_model, "-o", out, *CLI_FLAGS, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def only_target(report: dict) -> dict:
    (target,) = report["targets"]
    assert target["runtime"] == "tfjs-node" and target["backend"] == "wasm"
    assert report["verdicts"] == {target["name"]: "passed"}
    return target


def model_ops(report: dict, out: Path) -> set[str]:
    content = json.loads((out / only_target(report)["artifact"]).read_text())
    return {node["op"] for node in content["modelTopology"]["node"]}


def test_transformer_encoder_block_matches_in_node_wasm(zoo, tmp_path):
    report = convert_in_node(zoo["transformer"], tmp_path)
    target = only_target(report)
    (output,) = target["accuracy"]["outputs"]
    assert output["shape"] == [1, 6, 16]
    assert output["cosine"] >= 0.9999
    ops = model_ops(report, tmp_path)
    assert not ops & {"Einsum", "Erfc"}  # lowered to BatchMatMul / rewritten as 1 - Erf: the wasm backend runs them
    assert "Erf" in ops


def test_variable_length_gru_matches_in_node_wasm(zoo, tmp_path):
    report = convert_in_node(zoo["gru"], tmp_path, "--input-shape", "tokens=1,7,4")
    target = only_target(report)
    (output,) = target["accuracy"]["outputs"]
    assert output["shape"] == [1, 3]
    assert output["cosine"] >= 0.9999
    assert "While" in model_ops(report, tmp_path)
    assert report["samples"]["count"] == 3


def test_tensorflowjs_pip_package_is_not_installed():
    done = subprocess.run(
        [sys.executable, "-m", "pip", "show", "tensorflowjs"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0, done.stdout
