"""Samples that test nothing: a float input the graph casts to ids gets ids over the whole table, and a check
whose reference does not vary across the samples is `inconclusive`, never "passed".

Before: a float input cast to int32 and looked up in an Embedding of 40 rows was fed [0, 1), so every id was 0,
every output the same, and tflite:int8 "passed" (cosine 0.99998 on 32 copies of one output). Now the ids span
[0, 40) and the same check compares 32 different outputs (cosine 0.99997); forced back to [0, 1)
(`--input-range`), the check is inconclusive: exit 0 as an unchecked target, exit 1 with --strict.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.checks.accuracy import DEFAULT_TOLERANCES, FLAT_OUTPUT, compare
from edgeport.errors import ExitCode
from edgeport.model.input_ranges import graph_input_ranges
from edgeport.model.tf_quiet import import_tensorflow
from edgeport.report.files import StageResult, TargetResult, exit_code_for
from edgeport_testing import run_cli

tf = import_tensorflow()
ROWS = 40


def _graph(*ops: str, rows: int = ROWS):
    """x (float) -> ops... -> Cast int32 -> GatherV2 of a [rows, 3] table -> y."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 5], name="x")
        table = tf.constant(np.arange(rows * 3, dtype=np.float32).reshape(rows, 3), name="table")
        h = x
        for op in ops:
            h = {"Floor": tf.floor, "Round": tf.round, "Ceil": tf.math.ceil, "Identity": tf.identity}[op](h)
        tf.gather(table, tf.cast(h, tf.int32), name="y")
    return graph.as_graph_def()


@pytest.mark.parametrize(
    ("ops", "high"),
    [((), ROWS), (("Floor",), ROWS), (("Identity", "Floor"), ROWS), (("Round",), ROWS - 1), (("Ceil",), ROWS - 1)],
    ids=["cast", "floor", "identity-floor", "round", "ceil"],
)
def test_a_float_input_cast_to_ids_takes_the_tables_rows(ops, high):
    found = graph_input_ranges(_graph(*ops), {"x": "x:0"}, {"x": "float32"})["x"]
    assert (found.low, found.high) == (0, high) and f"table of {ROWS} rows" in found.why
    values = np.random.default_rng(0).uniform(found.low, found.high, 10000)
    for op in ops:
        values = {"Floor": np.floor, "Round": np.round, "Ceil": np.ceil, "Identity": np.asarray}[op](values)
    ids = values.astype(int)  # Cast truncates
    assert ids.min() <= 1 and ids.max() == ROWS - 1  # the whole table (Ceil makes 0 rare), and no id off it


def test_a_float_input_not_used_as_ids_keeps_the_default_range():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 5], name="x")
        tf.reduce_sum(tf.cast(x, tf.int32) * 2, name="y")  # cast, but no table
    assert graph_input_ranges(graph.as_graph_def(), {"x": "x:0"}, {"x": "float32"}) == {}


def _runs(values):
    return [{"y": np.asarray(v, dtype=np.float32)} for v in values]


def test_a_reference_that_does_not_vary_makes_the_check_inconclusive_with_the_reason():
    constant = _runs([[0.5, -1.0, 2.0]] * 8)
    result = compare(constant, constant, DEFAULT_TOLERANCES["int8"])
    assert result.passed and result.outputs[0].cosine == 1.0 and result.outputs[0].reference_spread == 0.0
    assert result.inconclusive.startswith("inconclusive: the SavedModel's outputs barely vary across the 8 samples")
    assert "y (largest std across samples 0" in result.inconclusive and result.inconclusive in result.notes
    # a spread just above the threshold is informative
    varied = _runs([[0.5 + i * 1e-5, -1.0, 2.0] for i in range(8)])
    assert compare(varied, varied, DEFAULT_TOLERANCES["int8"]).inconclusive == ""
    assert compare(varied, varied, DEFAULT_TOLERANCES["int8"]).outputs[0].reference_spread > FLAT_OUTPUT


def test_a_constant_output_beside_one_that_varies_is_a_note_and_a_failure_stays_a_failure():
    rng = np.random.default_rng(1)
    refs = [{"flat": np.ones(3, np.float32), "varied": rng.normal(size=3).astype(np.float32)} for _ in range(6)]
    result = compare(refs, refs, DEFAULT_TOLERANCES["fp32"])
    assert result.passed and not result.inconclusive
    assert any(n.startswith("flat (largest std") and "only the others test" in n for n in result.notes)
    zeros = _runs([[0.0, 0.0]] * 4)  # all zeros: no magnitude, no spread
    assert compare(zeros, zeros, DEFAULT_TOLERANCES["fp32"]).inconclusive
    wrong = compare(_runs([[1.0, 2.0]] * 4), _runs([[2.0, 1.0]] * 4), DEFAULT_TOLERANCES["fp32"])
    assert not wrong.passed and not wrong.inconclusive and "cosine" in wrong.failures[0]
    single = _runs([[1.0, 2.0]])  # one sample: no spread measured, nothing claimed
    assert compare(single, single, DEFAULT_TOLERANCES["fp32"]).inconclusive == ""


def test_inconclusive_is_a_verdict_of_its_own_with_the_exit_code_of_unchecked():
    constant = _runs([[1.0, 2.0]] * 4)
    stages = (StageResult("convert", "passed"), StageResult("check", "passed"), StageResult("bench", "skipped"))
    target = TargetResult(
        "t", "tflite", "int8", "litert", stages, accuracy=compare(constant, constant, DEFAULT_TOLERANCES["int8"])
    )
    unchecked = TargetResult("u", "tflite", "int8", "litert", (stages[0], StageResult("check", "skipped")))
    assert target.verdict == "inconclusive" and unchecked.verdict == "unchecked"
    assert exit_code_for((target,)) == exit_code_for((unchecked,)) == ExitCode.OK


@pytest.fixture(scope="module")
def cast_embedding(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(4)
    ids = keras.Input((6,), name="ids")  # float32: the graph casts it to int32 (Keras' Embedding does)
    words = keras.layers.Flatten()(keras.layers.Embedding(ROWS, 8)(ids))
    path = tmp_path_factory.mktemp("cast_embedding") / "saved_model"
    keras.Model(ids, keras.layers.Dense(5, name="scores")(words)).export(str(path), verbose=False)
    return path


def _convert(model, out, *extra, target="tflite:int8"):
    result = run_cli("convert", model, "-t", target, "-o", out, "--no-bench", "--no-history", *extra)
    report = json.loads((out / "report.json").read_text())
    return result, report, report["targets"][0]


def test_float_ids_span_the_table_and_int8_is_checked_on_outputs_that_vary(cast_embedding, tmp_path):
    result, report, target = _convert(cast_embedding, tmp_path / "out")
    assert result.returncode == 0, target["stages"]
    assert f"ids in [0, {ROWS})" in report["samples"]["source"]
    assert report["verdicts"][target["name"]] == "passed"
    output = target["accuracy"]["outputs"][0]
    assert output["reference_spread"] > 0.1 and output["cosine"] > 0.999, output  # 0.99997 over 32 outputs


def test_samples_that_make_every_id_0_are_inconclusive_and_fail_with_strict(cast_embedding, tmp_path):
    result, report, target = _convert(cast_embedding, tmp_path / "a", "--input-range", "ids=0:1")
    assert result.returncode == 0 and report["verdicts"][target["name"]] == "inconclusive"
    assert target["accuracy"]["outputs"][0]["cosine"] > 0.999 and target["accuracy"]["inconclusive"]
    assert "inconclusive" in (tmp_path / "a" / "summary.md").read_text().splitlines()[0]
    assert f"all gates that ran passed; inconclusive: {target['name']} (exit 0)" in result.stdout
    strict, report, target = _convert(
        cast_embedding, tmp_path / "b", "--input-range", "ids=0:1", "--strict", target="tflite"
    )
    assert strict.returncode == 1 and report["verdicts"][target["name"]] == "failed"
    assert "(--strict: an inconclusive check fails)" in target["stages"][1]["reason"]
