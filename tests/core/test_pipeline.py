"""End to end through the CLI: real SavedModels, real conversions, real LiteRT, numbers asserted."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeport_testing import quick_bench, run_cli

TFLITE_ALL = ["tflite", "tflite:fp16", "tflite:dynamic", "tflite:int8", "tflite:int16x8"]


@pytest.fixture(scope="module")
def digits_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits-run")
    targets = [arg for t in TFLITE_ALL for arg in ("-t", t)]
    result = run_cli(
        "convert",
        digits / "saved_model",
        *targets,
        "-o",
        out,
        "--data",
        digits / "holdout.npz",
        "--calibration",
        digits / "calibration.npz",
        *quick_bench(),
    )
    return result, out


def test_digits_all_tflite_variants_pass_with_int8_agreement(digits_run):
    result, out = digits_run
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    assert report["samples"]["synthetic"] is False and report["samples"]["count"] == 450
    assert report["calibration"]["same_as_check"] is False
    by_name = {t["name"]: t for t in report["targets"]}
    assert set(by_name) == set(TFLITE_ALL)
    int8 = by_name["tflite:int8"]["accuracy"]["outputs"][0]
    assert int8["top1_agreement"] >= 0.98
    fp32 = by_name["tflite"]["accuracy"]["outputs"][0]
    assert fp32["cosine"] >= 0.9999 and fp32["top1_agreement"] == 1.0
    for target in report["targets"]:
        assert [s["status"] for s in target["stages"]] == ["passed", "passed", "passed"], target["name"]
        latency = target["latency"]
        assert latency["runs"] >= 5 and 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
        assert latency["peak_rss_mb"] > 0 and "ai-edge-litert" in latency["runtime_version"]
        assert (out / target["artifact"]).is_file()
    assert report["baseline"]["runs"] >= 5 and "tensorflow" in report["baseline"]["runtime_version"]
    assert by_name["tflite:int8"]["size_bytes"] < by_name["tflite"]["size_bytes"] / 2


def test_junit_and_summary_have_every_target_and_stage(digits_run):
    _, out = digits_run
    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == 3 * len(TFLITE_ALL)
    assert {c.get("classname") for c in cases} == {f"edgeport.{t}" for t in TFLITE_ALL}
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# edgeport: passed")
    for target in TFLITE_ALL:
        assert f"| {target} |" in summary


def test_nothing_half_written_and_no_staging_left(digits_run):
    _, out = digits_run
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_multi_input_dict_output_keyed_by_signature_names(models, tmp_path):
    result = run_cli("convert", models["multi"], "-t", "tflite", "-t", "tflite:int8", "-o", tmp_path, "--no-bench")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in report["model"]["signature"]["inputs"]] == ["features", "scale"]
    for target in report["targets"]:
        outputs = {o["name"]: o for o in target["accuracy"]["outputs"]}
        assert set(outputs) == {"logits", "probs"}
    fp32 = {o["name"]: o for o in report["targets"][0]["accuracy"]["outputs"]}
    assert fp32["logits"]["cosine"] >= 0.9999
    assert any("synthetic" in w for w in report["warnings"])


@pytest.mark.parametrize("legacy", [False, True])
def test_tf1_builder_savedmodel(models, tmp_path, legacy):
    args = ["--legacy"] if legacy else []
    result = run_cli("convert", models["tf1"], "-t", "tflite", "-o", tmp_path, "--no-bench", *args)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"]["mode"] == ("v1-session" if legacy else "tf2")
    if legacy:
        assert any("v1 session" in note for note in report["model"]["notes"])
    assert report["targets"][0]["accuracy"]["outputs"][0]["cosine"] >= 0.9999


def test_flex_op_needs_the_flag_then_is_converted_not_checked(models, tmp_path):
    without = run_cli("convert", models["flex"], "-t", "tflite", "-o", tmp_path / "a", "--no-bench")
    assert without.returncode == 3
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    reason = report["targets"][0]["stages"][0]["reason"]
    assert "Cumprod" in reason and "--allow-tf-ops" in reason
    assert not (tmp_path / "a" / "tflite").exists()

    with_flag = run_cli("convert", models["flex"], "-t", "tflite", "-o", tmp_path / "b", "--allow-tf-ops", "--no-bench")
    assert with_flag.returncode == 0, with_flag.stderr
    target = json.loads((tmp_path / "b" / "report.json").read_text())["targets"][0]
    assert target["details"]["flex_ops"] == ["Cumprod"]
    check = target["stages"][1]
    assert check["status"] == "skipped" and "converted, not checked: needs Flex ops Cumprod" in check["reason"]
    strict = run_cli(
        "convert", models["flex"], "-t", "tflite", "-o", tmp_path / "c", "--allow-tf-ops", "--no-bench", "--strict"
    )
    assert strict.returncode == 1


def test_failed_target_does_not_stop_the_others(models, tmp_path):
    # bessel_i0e has no TFLite kernel at all (not even Flex): tflite fails, the run still reports everything.
    result = run_cli(
        "convert",
        models["nokernel"],
        "-t",
        "tflite",
        "-t",
        "tflite:fp16",
        "-o",
        tmp_path,
        "--no-bench",
        "--allow-tf-ops",
    )
    assert result.returncode == 3
    report = json.loads((tmp_path / "report.json").read_text())
    for target in report["targets"]:
        assert target["stages"][0]["status"] == "error" and "BesselI0e" in target["stages"][0]["reason"]
        assert [s["status"] for s in target["stages"][1:]] == ["skipped", "skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".edgeport-manifest.json",
        ".edgeport.lock",
        "junit.xml",
        "logs",
        "report.html",
        "report.json",
        "summary.md",
    ]


def test_jobs_two_and_config_gates(models, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'''
model = "{models["cnn"]}"
output = "{tmp_path / "out"}"
targets = ["tflite", "tflite:dynamic"]
jobs = 2
[bench]
min_runs = 5
min_seconds = 0.05
[target."tflite:dynamic"]
min_cosine = 0.5
max_p50_ms = 0.000001
''')
    result = run_cli("convert", "--config", config)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["tflite"]["stages"][2]["status"] == "passed"
    bench = by_name["tflite:dynamic"]["stages"][2]
    assert bench["status"] == "failed" and "p50_ms" in bench["reason"]
    assert by_name["tflite:dynamic"]["accuracy"]["tolerance"]["min_cosine"] == 0.5
    assert report["machine"]["jobs"] == 2


def test_size_budget_fails_the_gate_with_both_numbers(models, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{models["cnn"]}"\n[target.tflite]\nmax_size_bytes = "1KB"\n')
    result = run_cli("convert", "--config", config, "-o", tmp_path / "out", "--no-bench")
    assert result.returncode == 1
    check = json.loads((tmp_path / "out" / "report.json").read_text())["targets"][0]["stages"][1]
    assert check["status"] == "failed" and "size " in check["reason"] and "> size limit 1,024 B" in check["reason"]


def test_json_output_is_the_report(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-o", tmp_path, "--json", *quick_bench())
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["targets"][0]["name"] == "tflite" and printed["exit_code"] == 0


def test_python_api_mirrors_cli(models, tmp_path):
    import edgeport
    from edgeport.contracts import TimingProtocol

    report = edgeport.convert(
        models["cnn"],
        targets=["tflite:fp16"],
        output=tmp_path,
        protocol=TimingProtocol(min_runs=5, min_seconds=0.05, warmup_runs=1),
    )
    assert report.exit_code == 0
    target = report.target("tflite:fp16")
    assert target.accuracy.outputs[0].cosine >= 0.999
    assert target.latency.p50_ms > 0


def test_device_budget_overrun_is_a_failed_gate_with_both_numbers(digits, tmp_path):
    result = run_cli(
        "convert",
        digits / "saved_model",
        "-t",
        "tflm",
        "--data",
        digits / "holdout.npz",
        "--calibration",
        digits / "calibration.npz",
        "--ram-limit",
        "2KB",
        "-o",
        tmp_path,
        "--no-bench",
    )
    assert result.returncode == 1, result.stderr
    target = json.loads((tmp_path / "report.json").read_text())["targets"][0]
    check = target["stages"][1]
    assert check["status"] == "failed" and "arena " in check["reason"] and "> RAM limit 2,048 B" in check["reason"]
    assert target["accuracy"]["outputs"][0]["top1_agreement"] >= 0.98
    assert target["measurements"]["arena_bytes"] > 2048
    # the size a person reads is the model's flash, not the C sources beside it
    assert target["size_bytes"] == target["measurements"]["flash_bytes"] < target["measurements"]["files_bytes"]


@pytest.mark.slow
def test_mobilenet_v2_four_tflite_variants_checked_and_benchmarked(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_tflite import RANDOM_WEIGHT_GATES

    from common import export_keras_application

    model = export_keras_application("MobileNetV2")
    config = tmp_path / "gates.toml"
    config.write_text(RANDOM_WEIGHT_GATES)
    targets = [a for t in ("tflite", "tflite:fp16", "tflite:dynamic", "tflite:int8") for a in ("-t", t)]
    result = run_cli(
        "convert",
        model,
        *targets,
        "--config",
        config,
        "-o",
        tmp_path / "out",
        "--samples",
        "4",
        *quick_bench(),
        "--no-history",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["tflite"]["accuracy"]["outputs"][0]["cosine"] >= 0.9999
    assert by_name["tflite:int8"]["accuracy"]["outputs"][0]["cosine"] >= 0.95
    for target in report["targets"]:
        assert [s["status"] for s in target["stages"]] == ["passed"] * 3, target["name"]
        assert 0 < target["latency"]["p50_ms"] <= target["latency"]["p90_ms"] <= target["latency"]["p99_ms"]


def test_python_api_records_history_and_compares_with_a_baseline(models, tmp_path):
    import sqlite3

    import edgeport
    from edgeport.contracts import TimingProtocol

    protocol = TimingProtocol(min_runs=20, min_seconds=0.1, warmup_runs=2)
    first = edgeport.convert(
        models["cnn"], targets=["tflite"], output=tmp_path / "a", protocol=protocol, history=tmp_path / "history.db"
    )
    assert first.exit_code == 0
    smaller = json.loads((tmp_path / "a" / "report.json").read_text())  # a baseline half the real size
    smaller["targets"][0]["size_bytes"] //= 2
    (tmp_path / "smaller.json").write_text(json.dumps(smaller))
    second = edgeport.convert(
        models["cnn"],
        targets=["tflite"],
        output=tmp_path / "b",
        protocol=protocol,
        history=tmp_path / "history.db",
        baseline_report=tmp_path / "smaller.json",
    )
    assert second.exit_code == 1
    comparison = json.loads((tmp_path / "b" / "comparison.json").read_text())
    assert comparison["regression"] is True
    assert any(
        c["target"] == "tflite" and c["metric"] == "size_bytes" and c["status"] == "regression"
        for c in comparison["changes"]
    )
    with sqlite3.connect(tmp_path / "history.db") as db:
        runs = db.execute("SELECT COUNT(DISTINCT run_id) FROM results WHERE target = 'tflite'").fetchone()[0]
    assert runs == 2
