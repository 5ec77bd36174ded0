"""Regressions against a baseline: `edgeport compare` on edited copies of a real report, a real unchanged rerun
(`convert --baseline`, exits 0 thanks to the noise allowance) and a real slower, bigger model (exits 1)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from digits_runs import digits_cli_args, digits_report_once

from edgeport.cli.main import main
from edgeport.report.regression import Thresholds, compare_reports, load_report
from edgeport_testing import run_cli


@pytest.fixture(scope="session")
def digits_report(digits, tmp_path_factory):
    return digits_report_once(digits, tmp_path_factory)


@pytest.fixture()
def baseline(digits_report) -> dict:
    return load_report(digits_report.out / "report.json")


def quiet(report: dict) -> dict:
    """The report as if measured on a quiet machine: the edited copies here test the thresholds, not the noise
    of the machine the digits run happened on (a noisy one widens what counts as a regression)."""
    report = copy.deepcopy(report)
    report["machine"]["noise"] = None
    for t in [*report["targets"], *([report["baseline"]] if report.get("baseline") else [])]:
        if t.get("latency") or t.get("noise"):
            (t.get("latency") or t)["noise"] = None
    return report


def write(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def target(report: dict, name: str) -> dict:
    return next(t for t in report["targets"] if t["name"] == name)


def slower(report: dict, name: str, factor: float) -> None:
    latency = target(report, name)["latency"]
    latency["run_ms"] = [t * factor for t in latency["run_ms"]]
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"):
        latency[key] *= factor


def compare_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["compare", *map(str, args)])
    return result.exit_code, result.output


def test_slower_and_less_accurate_copy_exits_1_naming_target_and_metric(baseline, digits_report, tmp_path):
    baseline = quiet(baseline)
    old_path = write(tmp_path / "old" / "report.json", baseline)
    new = copy.deepcopy(baseline)
    slower(new, "tflite", 3.0)
    output = target(new, "tflite:int8")["accuracy"]["outputs"][0]
    output["cosine"] -= 0.01
    output["top1_agreement"] -= 0.05
    # the digits model runs in ~0.02 ms: below the default 0.05 ms floor any change is jitter, so the floor is off
    code, text = compare_cli(old_path, write(tmp_path / "new" / "report.json", new), "--latency-floor-ms", "0")
    assert code == 1, text
    lines = text.splitlines()
    assert any("tflite " in line and "p50_ms" in line and "REGRESSION" in line and "+200.0%" in line for line in lines)
    assert any("tflite:int8" in line and "cosine[output_0]" in line and "REGRESSION" in line for line in lines)
    assert any("tflite:int8" in line and "top1[output_0]" in line and "-5.00 pp" in line for line in lines)
    assert "regression against the baseline: " in text
    for column in ("target", "metric", "old", "new", "change", "threshold"):
        assert column in lines[1] or column in lines[2]

    code, text = compare_cli(
        old_path,
        tmp_path / "new",
        "--json",  # a folder works too
        "--latency-floor-ms",
        "0",
    )
    data = json.loads(text)
    assert code == 1 and data["regression"] is True and data["exit_code"] == 1
    moved = {(c["target"], c["metric"]) for c in data["changes"] if c["status"] == "regression"}
    assert moved == {
        ("tflite", "p50_ms"),
        ("tflite", "p90_ms"),
        ("tflite:int8", "cosine[output_0]"),
        ("tflite:int8", "top1[output_0]"),
    }


def test_a_report_against_itself_exits_0(digits_report):
    report = digits_report.out / "report.json"
    code, text = compare_cli(report, report)
    assert code == 0, text
    assert "no regression against the baseline" in text
    code, text = compare_cli(report, report, "--all")
    assert "p50_ms" in text and "size_bytes" in text and "snr_db[output_0]" in text


def test_thresholds_are_options(baseline, digits_report, tmp_path):
    baseline = quiet(baseline)
    old_path = write(tmp_path / "old.json", baseline)
    new = copy.deepcopy(baseline)
    slower(new, "tflite", 3.0)
    path = write(tmp_path / "report.json", new)
    no_floor = ("--latency-floor-ms", "0")
    assert compare_cli(old_path, path, "--latency-threshold", "5", *no_floor)[0] == 0
    assert compare_cli(old_path, path, "--latency-threshold", "0.5", *no_floor)[0] == 1


def test_p50_moving_while_the_fastest_run_stays_is_noise(baseline):
    """What a busy machine does (measured: p50 1.8x apart between reruns, fastest run within 6%)."""
    new = copy.deepcopy(baseline)
    latency = target(new, "tflite")["latency"]
    fastest = latency["min_ms"]
    latency["run_ms"] = [max(fastest, t * 1.8) for t in latency["run_ms"]]
    latency["p50_ms"] *= 1.8
    latency["p90_ms"] *= 1.8
    comparison = compare_reports(baseline, new, Thresholds(noise=0.0, latency_floor_ms=0.0))
    p50 = next(c for c in comparison.changes if c.target == "tflite" and c.metric == "p50_ms")
    assert p50.change == pytest.approx(0.8) and p50.change > p50.allowed
    assert p50.status == "noise" and not comparison.regressions


def test_size_growth_lost_verdict_and_missing_target(baseline, digits_report, tmp_path):
    new = copy.deepcopy(baseline)
    new["targets"] = [t for t in new["targets"] if t["name"] == "tflite"]
    tflite = target(new, "tflite")
    tflite["size_bytes"] = int(tflite["size_bytes"] * 1.2)
    tflite["stages"][1] = {"stage": "check", "status": "failed", "seconds": 0.1, "reason": "output_0: cosine 0.9"}
    new["targets"].append({**copy.deepcopy(tflite), "name": "onnx"})
    code, text = compare_cli(digits_report.out / "report.json", write(tmp_path / "report.json", new))
    assert code == 1, text
    assert "size_bytes" in text and "+20.0%" in text
    assert "verdict" in text and "stopped passing" in text
    assert "missing: tflite:int8 is in the baseline but not in the new report" in text
    assert "new: onnx is only in the new report: no baseline to compare with" in text


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("[1, 2]", "is not an edgeport report.json"),
        ("{not json", "is not a readable report.json"),
        ('{"schema_version": 9, "targets": []}', "report schema 9"),
    ],
)
def test_unreadable_baselines_are_usage_errors(tmp_path, digits_report, content, message):
    path = tmp_path / "old.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["compare", str(path), str(digits_report.out / "report.json")])
    assert result.exit_code == 2 and message in result.output


def test_bad_thresholds_are_usage_errors(digits_report, tmp_path):
    report = digits_report.out / "report.json"
    result = CliRunner().invoke(main, ["compare", str(report), str(report), "--latency-threshold", "-1"])
    assert result.exit_code == 2 and "must be a number >= 0" in result.output
    # thresholds without --baseline, and a missing --baseline, fail before any work starts
    args = ["convert", str(digits_report.model), "-t", "tflite", "-o", str(tmp_path / "o"), "--no-history"]
    result = CliRunner().invoke(main, [*args, "--size-threshold", "0.1"])
    assert result.exit_code == 2 and "need a baseline" in result.output
    result = CliRunner().invoke(main, [*args, "--baseline", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "o").exists()


def test_real_rerun_against_its_own_baseline_exits_0(digits_report, tmp_path):
    """The same command twice on the digits model: run-to-run noise must not be a regression."""
    history = tmp_path / "history.db"
    out = tmp_path / "rerun"
    result = run_cli(
        *digits_cli_args(digits_report, out), "--baseline", digits_report.out / "report.json", "--history", history
    )
    assert result.returncode == 0, result.stdout + result.stderr
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["regression"] is False and comparison["missing"] == [] and comparison["added"] == []
    p50 = {c["target"]: c for c in comparison["changes"] if c["metric"] == "p50_ms"}
    assert set(p50) == {"tflite", "tflite:int8"}
    print(
        "rerun p50 change:",
        {name: f"{c['change']:+.1%} allowed {c['allowed']:.0%} ({c['basis']})" for name, c in p50.items()},
    )
    assert "no regression against the baseline" in result.stdout
    # progress went to stderr as plain lines (not a terminal): each stage with its time, targets counted
    assert "tflite:int8: bench ok (" in result.stderr and "[2/2 targets done" in result.stderr
    assert "\x1b[" not in result.stderr
    # and the run is in the history
    history_result = run_cli("history", "--history", history, "--json")
    rows = json.loads(history_result.stdout)
    assert {r["target"] for r in rows} == {"savedmodel", "tflite", "tflite:int8"}
    assert len({r["run_id"] for r in rows}) == 1


def save_heavier_digits_model(path: Path) -> Path:
    """Same signature as the digits CNN (image 8x8x1 -> 10 classes), about 100x the compute and 5x the weights."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = inputs
    for _ in range(3):
        x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    keras.Model(inputs, outputs).export(str(path), verbose=False)
    return path


def test_real_slower_bigger_model_against_the_digits_baseline_exits_1(digits_report, tmp_path):
    """A model change that makes the artifact slower and bigger, caught by `convert --baseline`."""
    heavier = save_heavier_digits_model(tmp_path / "heavier")
    out = tmp_path / "heavier-out"
    args = digits_cli_args(digits_report, out, "tflite")
    args[1] = str(heavier)
    result = run_cli(*args, "--baseline", digits_report.out / "report.json", "--no-history")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["exit_code"] == 0, "the run itself passed its gates: exit 1 comes from the regression"
    comparison = json.loads((out / "comparison.json").read_text())
    moved = {(c["target"], c["metric"]) for c in comparison["changes"] if c["status"] == "regression"}
    assert {("tflite", "p50_ms"), ("tflite", "size_bytes")} <= moved
    assert comparison["missing"] == ["tflite:int8"]
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("regression against the baseline"))
    assert "tflite p50_ms" in verdict and "tflite size_bytes" in verdict
    assert "missing: tflite:int8" in result.stdout


def test_same_files_written_relative_or_absolute_are_the_same_samples_and_model(baseline):
    baseline = quiet(baseline)
    relative = copy.deepcopy(baseline)
    for section, key in (("model", "path"), ("samples", "source")):
        absolute = Path(baseline[section][key])
        relative[section][key] = str(Path(absolute.parent.name) / absolute.name)  # as typed in the folder above
    assert compare_reports(baseline, relative).notes == ()
    other = copy.deepcopy(baseline)
    other["samples"]["source"] = "elsewhere/holdout.npz"
    other["model"]["path"] = "elsewhere/saved_model"
    notes = compare_reports(baseline, other).notes
    assert any("different samples" in n for n in notes) and any("different model paths" in n for n in notes)


def test_changes_below_the_latency_floor_are_jitter(baseline, digits_report, tmp_path):
    new = copy.deepcopy(baseline)
    assert target(new, "tflite")["latency"]["p50_ms"] < 0.04  # the digits model: ~0.02 ms
    slower(new, "tflite", 2.0)  # twice as slow, yet the change is below the 0.05 ms floor
    code, text = compare_cli(digits_report.out / "report.json", write(tmp_path / "new" / "report.json", new), "--json")
    data = json.loads(text)
    assert code == 0 and data["regression"] is False
    p50 = next(c for c in data["changes"] if c["target"] == "tflite" and c["metric"] == "p50_ms")
    assert p50["status"] == "noise" and "floor 0.05 ms" in p50["basis"]
