"""The memory budget (`--max-memory`, run/memory): a process tree past it is stopped by edgeport, naming the stage
and what it held, before the kernel's OOM killer; only that target fails. Real processes, real allocations."""

from __future__ import annotations

import json

import pytest

from edgeport.errors import UsageError
from edgeport.run.memory import default_budget, machine_memory_bytes
from edgeport.run.request import parse_max_memory
from edgeport_testing import PLUGIN_ENV, run_cli


def test_a_conversion_past_the_budget_fails_its_target_and_the_others_pass(models, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "convert", models["cnn"], "-t", "frozengraph", "-t", "tflite", "-o", out, "--no-bench",
        "--max-memory", "1.5GB", "-O", "hold_memory_mb=2048",
        env=PLUGIN_ENV,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    targets = {t["name"]: t for t in report["targets"]}
    stopped = targets["frozengraph"]["stages"][0]
    assert stopped["status"] == "error"
    reason = stopped["reason"]
    assert reason.startswith("frozengraph: convert stopped: ") and "over the memory budget of 1.50 GB" in reason
    assert "--max-memory" in reason and "only this target failed" in reason
    held = float(reason.split(" held ")[1].split(" GB")[0])
    assert 1.5 <= held < 4.0  # stopped on the way up, not after the kernel had to step in
    assert report["verdicts"]["tflite"] == "passed"  # a fresh model service converted the next target
    assert not (out / "frozengraph").exists()


def test_a_load_past_the_budget_is_one_line_and_leaves_only_its_logs(models, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-o", out, "--max-memory", "100MB")
    assert result.returncode == 3
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]  # the rest is progress
    assert line.startswith("edgeport: error: load stopped: ") and "over the memory budget of 100.0 MB" in line
    # the model started loading: its log stays to say why, and nothing else of a run is there
    assert sorted(p.name for p in out.iterdir()) == [".edgeport-manifest.json", ".edgeport.lock", "logs"]


@pytest.mark.parametrize("value", ["lots", "0", "-1GB"])
def test_a_bad_budget_is_one_line(models, tmp_path, value):
    result = run_cli("convert", models["cnn"], "-t", "tflite", "-o", tmp_path / "out", "--max-memory", value)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "--max-memory" in line and "Traceback" not in result.stderr


def test_the_default_is_the_machine_less_a_margin_and_off_turns_it_off():
    total = machine_memory_bytes()
    assert total is not None and total > 0
    budget = default_budget()
    assert budget is not None and total - budget.limit_bytes >= 1 << 30
    assert "default" in budget.source
    assert parse_max_memory(None) == budget
    assert parse_max_memory("off") is None
    assert parse_max_memory("8GB").limit_bytes == 8 << 30
    with pytest.raises(UsageError):
        parse_max_memory("eight")


def test_the_config_key(models, tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text(f'model = "{models["cnn"]}"\ntargets = ["tflite"]\nmax_memory = "100MB"\n')
    result = run_cli("convert", "--config", config, "-o", tmp_path / "out")
    assert result.returncode == 3 and "over the memory budget of 100.0 MB (--max-memory 100MB)" in result.stderr
