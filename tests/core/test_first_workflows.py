"""The workflows a new user tries first (issue 23), through the real CLI on small real models: bench with --data
alone, check of an int8 artifact, gates from the command line, a failed check still benchmarked, output a CI
log can grep, the per-user history."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport_testing import assert_one_line_error, quick_bench, run_cli

BENCH = ("--min-runs", "5", "--min-seconds", "0.05")  # `edgeport bench` has no --warmup-runs


@pytest.fixture(scope="module")
def converted(models, tmp_path_factory):
    """The small CNN as tflite, tflite:int8, onnx and tfjs (tfjs on its cpu backend), converted once."""
    out = tmp_path_factory.mktemp("first-workflows") / "out"
    targets = ("tflite", "tflite:int8", "onnx", "tfjs")
    result = run_cli(
        "convert", models["cnn"], *(f"-t{t}" for t in targets), "-o", out, "--no-bench", "--no-check",
        "--no-history", "--samples", "4", "--backend", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    """4 samples of the CNN's input, one row each ([4, 16, 16, 3], no batch axis), as .npz and .npy."""
    folder = tmp_path_factory.mktemp("pixels")
    rows = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    np.savez(folder / "pixels.npz", pixels=rows)
    np.save(folder / "pixels.npy", rows)
    return folder


@pytest.mark.parametrize("artifact", ["tflite/model.tflite", "onnx/model.onnx", "tfjs"])
def test_bench_with_data_alone_conforms_it_to_the_artifacts_own_inputs(converted, pixels, artifact):
    out, _ = converted
    result = run_cli("bench", out / artifact, "--data", pixels / "pixels.npz", *BENCH, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["runs"] >= 5 and stats["p50_ms"] > 0


def test_bench_with_data_alone_takes_npy_and_names_the_artifacts_inputs_on_a_misfit(converted, pixels, tmp_path):
    out, _ = converted
    npy = run_cli("bench", out / "tflite-int8" / "model.tflite", "--data", pixels / "pixels.npy", *BENCH)
    assert npy.returncode == 0, npy.stderr  # int8: real values in, quantized by the runtime
    assert "model.tflite on ai-edge-litert" in npy.stdout
    np.savez(tmp_path / "wrong.npz", image=np.zeros((2, 16, 16, 3), np.float32))
    wrong = run_cli("bench", out / "onnx" / "model.onnx", "--data", tmp_path / "wrong.npz", *BENCH)
    assert_one_line_error(wrong, 2, "key 'image' is not an input", "model.onnx", "pixels")
    np.savez(tmp_path / "shape.npz", pixels=np.zeros((2, 8, 8, 3), np.float32))
    shape = run_cli("bench", out / "tflite" / "model.tflite", "--data", tmp_path / "shape.npz", *BENCH)
    assert_one_line_error(shape, 2, "'pixels' has shape [2, 8, 8, 3]", "pixels: float32[?,16,16,3]")
    none = run_cli("bench", out / "tflite" / "model.tflite")
    assert_one_line_error(none, 2, "bench needs inputs", "--data", "--model")


def test_check_of_an_int8_artifact_uses_int8_gates_and_says_where_from(converted, models, tmp_path):
    out, _ = converted
    folder = tmp_path / "handed-over"  # the target folder alone: its .edgeport-target marker, no report.json
    shutil.copytree(out / "tflite-int8", folder)
    marked = run_cli("check", folder / "model.tflite", "--model", models["cnn"], "--samples", "4", "--json")
    assert marked.returncode == 0, marked.stdout + marked.stderr
    said = json.loads(marked.stdout)
    assert said["precision"] == "int8" and ".edgeport-target: tflite:int8" in said["precision_source"]
    assert said["tolerance"]["min_cosine"] == 0.95  # int8's default, not fp32's 0.9999
    bare = tmp_path / "model.tflite"  # the file alone: its int8 tensors say it
    shutil.copy(out / "tflite-int8" / "model.tflite", bare)
    result = run_cli("check", bare, "--model", models["cnn"], "--samples", "4", "--gate", "min_snr_db=500")
    assert result.returncode == 1, result.stderr
    assert "precision int8 (from model.tflite: int8 activations); gates (with --gate) min_cosine 0.95" in result.stdout
    assert "min_snr_db 500 dB" in result.stdout and "SNR" in result.stdout and "failed (exit 1)" in result.stdout


def test_bad_gates_are_refused_in_one_line_before_any_work(models, tmp_path):
    def convert(*args):
        return run_cli("convert", models["cnn"], "-t", "tflite", "-t", "tflite:int8", "-o", tmp_path / "o", *args)

    assert_one_line_error(convert("--gate", "min_cosinee=0.9"), 2, "did you mean 'min_cosine'")
    assert_one_line_error(
        convert("--gate", "tflite:int8.min_top1_agreement=1.5"), 2, "--gate tflite:int8.min_top1_agreement", "0..1"
    )
    assert_one_line_error(convert("--gate", "onnx.min_cosine=0.9"), 2, "onnx is not a selected target", "-t onnx")
    assert_one_line_error(convert("--gate", "min_cosine=high"), 2, "'high' is not a number")
    assert_one_line_error(convert("--gate", "min_cosine"), 2, "expected [TARGET.]KEY=VALUE")
    assert_one_line_error(convert("--gate", "io_type=int8"), 2, "io_type is a converter option", "--io-type")
    assert_one_line_error(convert("-O", "min_cosine=0.9"), 2, "min_cosine is a gate", "--gate min_cosine=0.9")
    assert not (tmp_path / "o").exists()
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(b"")
    check = run_cli("check", artifact, "--model", models["cnn"], "--gate", "tflite.min_cosine=0.9")
    assert_one_line_error(check, 2, "judges one artifact", "--gate KEY=VALUE")
    assert_one_line_error(
        run_cli("check", artifact, "--model", models["cnn"], "--gate", "max_p50_ms=3"), 2, "accuracy only"
    )


def test_a_bad_io_type_is_refused_before_the_model_loads(models, tmp_path):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "--io-type", "int8", "-o", tmp_path / "o")
    assert_one_line_error(result, 2, "--io-type int8 does not apply to tflite")
    assert "load" not in result.stderr.replace("edgeport: error:", "")  # no "model: load ..." progress line


def test_a_failed_int8_check_is_still_benchmarked_and_the_log_is_never_wrapped(models, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite:int8", "-o", out, "--samples", "8", "--no-baseline", "--no-history",
        "--gate", "tflite:int8.min_cosine=0.9999999", "--gate", "max_p50_ms=100000", *quick_bench(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the verdict still fails
    target = json.loads((out / "report.json").read_text())["targets"][0]
    stages = {s["stage"]: s for s in target["stages"]}
    assert stages["check"]["status"] == "failed" and "< 0.9999999" in stages["check"]["reason"]
    assert stages["bench"]["status"] == "passed" and target["latency"]["p50_ms"] > 0
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("│ tflite:int8"))
    assert "FAIL: " in row and "< 0.9999999" in row  # the whole reason, on one line
    nexts = [line for line in lines if line.startswith("next: ")]
    assert any("--data" in line and "real samples" in line for line in nexts), result.stdout
    assert any("-O quant_fallback=auto" in line for line in nexts)
    assert any("per-layer comparison" in line or "--layers" in line for line in nexts)
    assert lines[-1] == f"a gate failed (exit 1); report: {out / 'report.json'}, {out / 'report.html'}"
    progress = [line for line in result.stderr.splitlines() if line.startswith("tflite:int8: check FAIL")]
    assert len(progress) == 1 and "< 0.9999999" in progress[0]  # stderr not wrapped at 80 columns either
    assert any(len(line) > 80 for line in lines)


def test_on_a_terminal_the_table_cuts_a_reason_said_above(models, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "convert", models["cnn"], "-t", "tflite:int8", "-o", out, "--samples", "4", "--no-bench", "--no-history",
        "--gate", "min_cosine=0.9999999", "--gate", "min_snr_db=500",
        env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    reason = json.loads((out / "report.json").read_text())["targets"][0]["stages"][1]["reason"]
    assert "; " in reason and "SNR" in reason
    assert "(+1 more)" in result.stdout and "SNR" not in result.stdout.split("reasons cut short")[0]
    assert "reasons cut short in the table" in result.stdout and "summary.md" in result.stdout


def test_synthetic_warning_only_for_targets_checked_and_history_per_user(models, tmp_path):
    work, data_home = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    env = {"EDGEPORT_NODE": str(tmp_path / "nowhere" / "bin"), "EDGEPORT_HOME": "", "XDG_DATA_HOME": str(data_home)}
    result = run_cli(
        "convert", models["multi"], "-t", "tflite", "-t", "tfjs", "-o", work / "out", "--no-bench",
        "--samples", "4", cwd=work, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = json.loads((work / "out" / "report.json").read_text())["warnings"]
    synthetic = [w for w in warnings if "checked on synthetic inputs" in w]
    assert synthetic == [
        "accuracy of tflite checked on synthetic inputs; pass --data with real samples for a realistic check"
    ]  # tfjs (no Node.js here) was not checked: not said of it
    assert (data_home / "edgeport" / "history.db").is_file() and not (work / ".edgeport").exists()
    shown = run_cli("history", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0 and {row["target"] for row in json.loads(shown.stdout)} >= {"tflite", "tfjs"}
    elsewhere = run_cli("history", cwd=tmp_path, env={"EDGEPORT_HOME": str(tmp_path / "home")})
    assert_one_line_error(elsewhere, 2, str(tmp_path / "home" / "history.db"))


def test_missing_model_is_a_usage_error(tmp_path):
    result = run_cli("convert", tmp_path / "nope", "-t", "tflite", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "model not found", "does not exist")


def test_the_table_names_the_backend_a_runtime_ran_on(converted):
    _, result = converted
    assert "tfjs-node (cpu)" in result.stdout
    assert "litert (" not in result.stdout  # a runtime without backends: its name alone


def test_gates_reach_each_target_through_the_api_and_a_typo_is_refused(models, tmp_path):
    from edgeport import convert
    from edgeport.errors import UsageError
    from edgeport.model.samples import SampleRequest
    from edgeport.run.request import build_request

    request = build_request(
        model=models["cnn"],
        targets=["tflite", "tflite:int8"],
        output=tmp_path / "o",
        samples=SampleRequest(),
        target_settings={"tflite:int8": {"min_cosine": 0.97, "max_p50_ms": 9}},
        gates={"min_cosine": 0.999, "tflite:int8.min_top1_agreement": "0.95", "tflite.max_size_bytes": "1MB"},
    )
    by_name = {config.name: config for config in request.targets}
    assert by_name["tflite"].tolerance == {"min_cosine": 0.999} and by_name["tflite"].budgets == {
        "max_size_bytes": 1 << 20
    }
    assert by_name["tflite:int8"].tolerance == {"min_cosine": 0.999, "min_top1_agreement": 0.95}  # over the table's
    assert by_name["tflite:int8"].budgets == {"max_p50_ms": 9}
    with pytest.raises(UsageError, match=r"unknown gate 'min_top1_agrement'; did you mean 'min_top1_agreement'"):
        convert(models["cnn"], targets=["tflite"], output=tmp_path / "p", gates={"min_top1_agrement": 0.9})
    assert not (tmp_path / "p").exists()
