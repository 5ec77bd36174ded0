"""Verdicts you can trust: "passed" means checked and within every gate that could apply.

Agreement gates are judged on their 95 % Wilson interval; gates that cannot apply are said; nothing compared
is no pass; a target whose check did not run is `unchecked` (exit 1 with --strict); an unknown precision gets
fp32's tolerances or a usage error; a typo of a tolerance key stops the run before any work; a converter's
output permutation is checked against the output's rank and applied by `edgeport check` too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.checks.accuracy import DEFAULT_TOLERANCES, compare, default_tolerance, wilson_interval
from edgeport.data import DEFAULT_SYNTHETIC_COUNT, Precision
from edgeport_testing import run_cli, save_multi_io, tf

INT8 = DEFAULT_TOLERANCES["int8"]


def _classifier_runs(agreeing: int, total: int, classes: int = 10):
    rng = np.random.default_rng(0)
    reference, candidate = [], []
    for index in range(total):
        scores = rng.normal(size=(1, classes)).astype(np.float32)
        flipped = scores.copy()
        if index >= agreeing:  # swap the top class with another: the top-1 disagrees, cosine barely moves
            top, other = int(np.argmax(scores)), int(np.argmin(scores))
            flipped[0, [top, other]] = flipped[0, [other, top]]
        reference.append({"logits": scores})
        candidate.append({"logits": flipped})
    return reference, candidate


def test_agreement_gates_use_the_95_percent_interval_at_the_default_sample_count():
    assert DEFAULT_SYNTHETIC_COUNT == 32
    loose = Precision(min_top1_agreement=0.9)
    passing = compare(*_classifier_runs(26, 32), loose)
    failing = compare(*_classifier_runs(25, 32), loose)
    assert passing.passed, passing.failures
    assert not failing.passed
    assert "top-1 agreement 78.1% < 90.0% (95% interval" in failing.failures[0]
    assert "over 32 samples" in failing.failures[0]
    low, high = passing.outputs[0].top1_interval
    assert low < 26 / 32 < high and high >= 0.9
    assert wilson_interval(8, 8)[1] == pytest.approx(1.0) and wilson_interval(0, 8)[0] == pytest.approx(0.0)


def test_a_quantized_output_that_ties_the_reference_class_with_its_top_agrees_and_says_so():
    # an elementwise model whose outputs all sit near one value: int8 gives several classes the same level
    rng = np.random.default_rng(0)
    near = [0.89 + 0.004 * rng.random((1, 8)) for _ in range(32)]
    for row in near:  # and two entries the output does tell apart
        row[0, rng.permutation(8)[:2]] = (0.80, 0.70)
    reference = [{"y": row.astype(np.float32)} for row in near]
    step = 1 / 128
    tied = [{"y": np.round(r["y"] / step) * step} for r in reference]
    result = compare(reference, tied, INT8)
    assert result.passed, result.failures
    metrics = result.outputs[0]
    assert metrics.top1_agreement == 1.0 and metrics.top1_ties > 0
    assert any(f"on {metrics.top1_ties} of 32 samples" in note and "level with" in note for note in result.notes)
    # a flip the artifact does not tie is a disagreement still
    flipped = [{"y": r["y"] * np.where(np.arange(8) == np.argmax(r["y"]), 0.9, 1.0)} for r in reference]
    assert not compare(reference, flipped, INT8).passed
    # an output that is one value throughout ties every class with every other: no agreement by ties
    flat = compare(
        reference, [{"y": np.zeros((1, 8), np.float32)} for _ in reference], Precision(min_top1_agreement=0.9)
    )
    assert flat.outputs[0].top1_ties == 0 and not flat.passed
    # unless the reference itself tells no class apart (a random-weight softmax): then the tie is the format's
    uniform = [{"p": (0.1 + 1e-7 * rng.random((1, 10))).astype(np.float32)} for _ in range(32)]
    levelled = [{"p": np.full((1, 10), 26 / 256, np.float32)} for _ in uniform]
    assert compare(uniform, levelled, Precision(min_top1_agreement=0.9)).outputs[0].top1_agreement == 1.0


def test_top1_gate_on_an_output_that_is_no_classifier_is_said_not_to_apply():
    reference = [{"boxes": np.ones((1, 4, 4), np.float32)}]
    result = compare(reference, reference, INT8)
    assert result.passed
    assert any("top-1 gate does not apply" in note and "[1, 4, 4]" in note for note in result.notes)


def test_nothing_compared_is_no_pass():
    assert compare([], [], INT8).failures == ("no samples were compared",)
    assert not compare([{}], [{}], INT8).passed


def test_an_unknown_precision_gets_the_strictest_tolerances():
    assert default_tolerance("bf16") == DEFAULT_TOLERANCES["fp32"]


def test_a_permutation_that_does_not_fit_the_output_rank_fails_the_check():
    reference = [{"scores": np.ones((1, 3), np.float32)}]
    result = compare(reference, reference, INT8, {"scores": (0, 3, 1, 2)})
    assert not result.passed and "no permutation of a rank-2 output" in result.failures[0]


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory):
    return save_multi_io(tmp_path_factory.mktemp("verdicts") / "model")


def test_a_target_not_checked_is_unchecked_and_fails_with_strict(multi_io, tmp_path):
    result = run_cli("convert", multi_io, "-t", "tflite", "-o", tmp_path / "a", "--no-check", "--no-bench")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert result.returncode == 0 and report["verdicts"] == {"tflite": "unchecked"}
    assert "unchecked: tflite" in result.stdout
    assert "unchecked: tflite" in (tmp_path / "a" / "summary.md").read_text()
    strict = run_cli("convert", multi_io, "-t", "tflite", "-o", tmp_path / "b", "--no-check", "--no-bench", "--strict")
    assert strict.returncode == 1
    assert json.loads((tmp_path / "b" / "report.json").read_text())["verdicts"] == {"tflite": "failed"}


def test_a_typo_in_a_tolerance_key_stops_before_any_work(multi_io, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{multi_io}"\ntargets = ["tflite"]\n[target.tflite]\nmin_cosinee = 0.99\n')
    result = run_cli("convert", "--config", config, "-o", tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'min_cosinee'" in lines[0] and "did you mean 'min_cosine'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_check_refuses_a_precision_it_has_no_tolerances_for(multi_io, tmp_path):
    result = run_cli("check", tmp_path / "model.tflite", "--model", multi_io, "--precision", "float16")
    assert result.returncode == 2
    assert "--precision 'float16'" in result.stderr and "Traceback" not in result.stderr


def test_standalone_check_applies_the_onnx_artifacts_nchw_output_layout(tmp_path):
    t = tf()

    class FeatureMap(t.Module):
        def __init__(self):
            super().__init__()
            self.kernel = t.Variable(np.random.default_rng(2).normal(size=(3, 3, 2, 4)).astype(np.float32))

        @t.function(input_signature=[t.TensorSpec([1, 6, 6, 2], t.float32, name="pixels")])
        def serve(self, pixels):
            return {"feature_map": t.nn.conv2d(pixels, self.kernel, strides=1, padding="SAME")}

    module = FeatureMap()
    model = tmp_path / "model"
    t.saved_model.save(module, str(model), signatures={"serving_default": module.serve})
    out = tmp_path / "out"
    converted = run_cli(
        "convert", model, "-t", "onnx", "-O", "outputs_as_nchw=feature_map", "-o", out, "--no-bench", "--no-history"
    )
    assert converted.returncode == 0, converted.stderr
    checked = run_cli("check", out / "onnx" / "model.onnx", "--model", model, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    outputs = json.loads(checked.stdout)["accuracy"]["outputs"]
    assert outputs[0]["shape"] == [1, 4, 6, 6] and outputs[0]["cosine"] > 0.9999


def test_a_latency_budget_no_benchmark_judged_is_said(multi_io, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{multi_io}"\ntargets = ["tflite"]\n[target.tflite]\nmax_p50_ms = 5\n')
    result = run_cli("convert", "--config", config, "-o", tmp_path / "out", "--no-bench", "--no-history")
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "out" / "report.json").read_text())["targets"][0]
    assert "latency budgets max_p50_ms not judged: the bench stage was skipped (--no-bench)" in target["notes"]
