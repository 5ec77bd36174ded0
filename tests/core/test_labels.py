"""Task accuracy against labels (`--labels`): parsing, scoring, the max_accuracy_drop gate, the digits run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.checks.task import LabelSet, load_labels, parse_labels_spec, task_accuracy
from edgeport.errors import UsageError
from edgeport.run.request import split_target_settings
from edgeport_testing import run_cli


def test_label_specs(tmp_path):
    data = tmp_path / "data.npz"
    assert parse_labels_spec("y.npy", tmp_path).path == tmp_path / "y.npy"
    assert parse_labels_spec("d.npz:classes", tmp_path).key == "classes"
    assert parse_labels_spec("d.npz", tmp_path).key == "labels"
    bare = parse_labels_spec("labels", tmp_path, data)
    assert bare.path == data and bare.key == "labels"
    with pytest.raises(UsageError, match="no"):
        parse_labels_spec("labels", tmp_path, None)
    with pytest.raises(UsageError, match="FILE.npy"):
        parse_labels_spec("y.csv", tmp_path)


def test_labels_are_validated(tmp_path):
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    np.save(tmp_path / "f.npy", np.array([0.5, 1.0, 2.0]))
    np.savez(tmp_path / "d.npz", labels=np.array([[1], [2], [3]]))
    assert load_labels(parse_labels_spec("y.npy", tmp_path), 3).values.tolist() == [0, 1, 2]
    assert load_labels(parse_labels_spec("d.npz", tmp_path), 3).values.tolist() == [1, 2, 3]
    with pytest.raises(UsageError, match="3 labels for 4 samples"):
        load_labels(parse_labels_spec("y.npy", tmp_path), 4)
    with pytest.raises(UsageError, match="class indices"):
        load_labels(parse_labels_spec("f.npy", tmp_path), 3)
    with pytest.raises(UsageError, match="no key 'other'"):
        load_labels(parse_labels_spec("d.npz:other", tmp_path), 3)


def test_task_accuracy_and_its_gate():
    labels = LabelSet(np.array([0, 1, 2, 3]), "y.npy")
    eye = np.eye(6, dtype=np.float32)
    reference = [{"scores": eye[i][None]} for i in (0, 1, 2, 3)]  # all right
    artifact = [{"scores": eye[i][None]} for i in (0, 1, 2, 5)]  # one wrong
    task = task_accuracy(reference, artifact, labels, max_drop=0.1)
    assert (task.metric, task.reference, task.artifact, task.drop) == ("top1", 1.0, 0.75, 0.25)
    assert task.reference_top5 == 1.0 and not task.passed
    assert "drop 25.00 pp > max_accuracy_drop 0.1 (10.00 pp)" in task.failure
    assert task_accuracy(reference, artifact, labels, max_drop=0.25).passed


def test_max_accuracy_drop_is_a_target_key_and_needs_labels(tmp_path):
    config = split_target_settings("tflite:int8", {"max_accuracy_drop": 0.01}, ())
    assert config.max_accuracy_drop == 0.01 and not config.budgets
    with pytest.raises(UsageError, match="0..1"):
        split_target_settings("tflite", {"max_accuracy_drop": 2}, ())
    (tmp_path / "c.toml").write_text('targets = ["tflite"]\n[target.tflite]\nmax_accuracy_drop = 0.01\n')
    result = run_cli("convert", tmp_path, "--config", tmp_path / "c.toml", "-o", tmp_path / "out")
    assert result.returncode == 2 and "pass --labels" in result.stderr, result.stderr


def test_digits_top1_of_savedmodel_and_artifacts(tiny_digits, tmp_path):
    from sklearn.datasets import load_digits

    model, _, held_out = tiny_digits
    order = np.random.default_rng(0).permutation(len(load_digits().target))  # as save_tiny_digits_model
    labels = load_digits().target[order[1400:]]
    np.savez(tmp_path / "holdout.npz", image=held_out[:64], labels=labels[:64])
    out = tmp_path / "out"
    result = run_cli(
        "convert", model, "-t", "tflite", "-t", "tflite:int8", "--data", tmp_path / "holdout.npz",
        "--labels", "labels", "-o", out, "--no-bench", "--no-baseline",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    own = report["samples"]["labels"]
    assert own["count"] == 64 and own["output"] == "scores" and own["top1"] > 0.8
    for target in report["targets"]:
        task = target["accuracy"]["task"]
        assert task["metric"] == "top1" and task["reference"] == own["top1"]
        assert abs(task["drop"] - (task["reference"] - task["artifact"])) < 1e-9
    assert report["targets"][0]["accuracy"]["task"]["drop"] == 0.0  # fp32
    assert "SavedModel top-1" in result.stdout and "tflite:int8: top-1" in result.stdout
