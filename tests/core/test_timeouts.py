"""Every stage has a time limit; a hang fails its own target, never the run, and leaves no process behind."""

from __future__ import annotations

import json
import operator
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgeport.cli.config import load_config
from edgeport.data import StageTimeouts, TimingProtocol
from edgeport.errors import StageTimedOut, UsageError
from edgeport.run.isolation import Worker, call_isolated
from edgeport.run.request import check_limits, parse_stage_timeouts
from edgeport_testing import PLUGIN_ENV, quick_bench, run_cli


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def all_gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def hang_pids(record: Path) -> list[int]:
    return [int(pid) for line in record.read_text().splitlines() for pid in line.split()]


# ------------------------------------------------------------------------------------------------ the worker
def test_a_call_past_its_limit_is_stopped_with_the_processes_it_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = f"echo $$ > {pid_file}; exec sleep 600"
    started = time.monotonic()
    with pytest.raises(StageTimedOut, match=r"^bench timed out after 2 s: sleeper did not answer") as caught:
        call_isolated(subprocess.run, ["sh", "-c", script], timeout=2, stage="bench", what="sleeper")
    assert time.monotonic() - started < 15
    assert caught.value.stage == "bench" and caught.value.seconds == 2 and "\n" not in caught.value.message
    assert all_gone([int(pid_file.read_text())])


def test_a_worker_that_does_not_start_in_time_times_out_as_load():
    started = time.monotonic()
    with pytest.raises(StageTimedOut, match=r"^load timed out after 1 s: model loader did not answer"):
        Worker(time.sleep, 600, timeout=1, what="model loader")
    assert time.monotonic() - started < 10


def test_a_service_call_past_its_limit_stops_the_service_and_a_fast_one_answers():
    with Worker(threading.Event, what="service") as worker:
        assert worker.call_within(30, "convert", "is_set") is False
        with pytest.raises(StageTimedOut, match=r"^convert timed out after 1 s: service"):
            worker.call_within(1, "convert", "wait")  # Event().wait() never returns
        assert not worker.alive  # the pipeline's pool starts a fresh service for the next conversion
    assert call_isolated(operator.add, 2, 3, timeout=30) == 5


# ------------------------------------------------------------------------------------------------ the limits
def test_stage_timeouts_from_flags_and_config_values():
    assert parse_stage_timeouts("3") == StageTimeouts(load=3, convert=3, check=3, bench=3)
    assert parse_stage_timeouts(["bench=30", "3"]) == StageTimeouts(load=3, convert=3, check=3, bench=30)
    assert parse_stage_timeouts(120) == StageTimeouts(120, 120, 120, 120)
    assert parse_stage_timeouts({"convert": 5}) == StageTimeouts(convert=5)
    assert parse_stage_timeouts(["check=2.5"], base=StageTimeouts(bench=9)) == StageTimeouts(check=2.5, bench=9)
    for bad, said in (
        ("reference=3", "unknown stage 'reference'; stages with a time limit: load, convert, check, bench"),
        ("0", "not a number of seconds above 0"),
        ("bench=-1", "not a number of seconds above 0"),
        ("soon", "not a number of seconds above 0"),
    ):
        with pytest.raises(UsageError, match=said):
            parse_stage_timeouts([bad])


def test_config_key_stage_timeout_is_a_number_or_a_table(tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text("stage_timeout = 300\n")
    assert load_config(config).get("stage_timeout") == 300
    config.write_text("[stage_timeout]\nconvert = 1800\nbench = 60\n")
    assert parse_stage_timeouts(load_config(config).get("stage_timeout")) == StageTimeouts(convert=1800, bench=60)
    config.write_text("[stage_timeout]\nconvrt = 1800\n")
    with pytest.raises(UsageError, match=r"stage_timeout: unknown stage 'convrt'"):
        load_config(config)
    config.write_text('stage_timeout = "long"\n')
    with pytest.raises(UsageError, match="stage_timeout: 'long' is not a number of seconds"):
        load_config(config)


def test_the_bench_limit_must_leave_room_for_max_seconds():
    check_limits(TimingProtocol(max_seconds=20), StageTimeouts(bench=21))
    with pytest.raises(UsageError, match=r"bench stage's time limit \(3 s\) must be longer than --max-seconds 20"):
        check_limits(TimingProtocol(max_seconds=20), StageTimeouts(bench=3))
    check_limits(TimingProtocol(max_seconds=20), StageTimeouts(bench=3), bench=False)  # --no-bench: no bench
    with pytest.raises(UsageError, match="--max-seconds 0: the timing protocol needs a cap above 0 s"):
        check_limits(TimingProtocol(max_seconds=0), StageTimeouts())


def test_a_too_short_bench_limit_is_refused_before_anything_runs(models, tmp_path):
    refused = run_cli("convert", models["multi"], "-t", "tflite", "-o", tmp_path / "out", "--stage-timeout", "bench=5")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "must be longer than --max-seconds 20" in refused.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ whole runs
def test_a_hanging_conversion_fails_its_target_and_the_next_gets_a_fresh_service(models, tmp_path):
    record = tmp_path / "hang-pids.txt"
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_cli(
        "convert",
        models["multi"],
        "-t",
        "sleepy:convert",
        "-t",
        "tflite",
        "-o",
        out,
        "--stage-timeout",
        "3",
        "--stage-timeout",
        "load=120",
        "--max-seconds",
        "1",
        *quick_bench(),
        "--no-baseline",
        "--no-history",
        env={**PLUGIN_ENV, "EDGEPORT_FAKE_HANG_PIDS": str(record)},
    )
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 150
    report = json.loads((out / "report.json").read_text())
    hung, survivor = report["targets"]
    convert = hung["stages"][0]
    assert convert["status"] == "error" and "convert timed out after 3 s" in convert["reason"]
    assert "the sleepy converter did not finish" in convert["reason"] and 3 <= convert["seconds"] < 10
    assert [s["status"] for s in survivor["stages"]] == ["passed", "passed", "passed"]
    assert report["verdicts"] == {"sleepy:convert": "error", "tflite": "passed"}
    assert not (out / "sleepy-convert").exists() and not list(out.glob(".staging*"))
    pids = hang_pids(record)
    assert len(pids) == 2 and all_gone(pids)  # the model service and the child it started


def test_a_hanging_check_and_benchmark_fail_their_targets_only(models, tmp_path):
    record = tmp_path / "hang-pids.txt"
    out = tmp_path / "out"
    config = tmp_path / "edgeport.toml"
    config.write_text(
        f'model = "{models["multi"]}"\n'
        'targets = ["sleepy:check", "sleepy:bench", "tflite"]\n'
        "[stage_timeout]\ncheck = 3\nbench = 3\n"
        "[bench]\nwarmup_runs = 1\nmin_runs = 100000000\nmin_seconds = 0.05\nmax_seconds = 1\n"
        "[target.tflite]\nmax_p99_ms = 0.000001\nmax_p50_ms = 1000\n"
    )
    started = time.monotonic()
    result = run_cli(
        "convert",
        "--config",
        config,
        "-o",
        out,
        "--no-baseline",
        "--no-history",
        env={**PLUGIN_ENV, "EDGEPORT_FAKE_HANG_PIDS": str(record)},
    )
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 120
    report = json.loads((out / "report.json").read_text())
    by_name = {t["name"]: {s["stage"]: s for s in t["stages"]} for t in report["targets"]}
    check = by_name["sleepy:check"]["check"]
    assert check["status"] == "failed" and check["reason"].startswith("check timed out after 3 s")
    assert by_name["sleepy:check"]["bench"]["status"] == "skipped"
    assert by_name["sleepy:bench"]["check"]["status"] == "passed"
    bench = by_name["sleepy:bench"]["bench"]
    assert bench["status"] == "failed" and bench["reason"].startswith("bench timed out after 3 s")
    # the survivor: min_runs cannot be met in max_seconds, so its run is flagged and its p99 is not gated
    survivor = next(t for t in report["targets"] if t["name"] == "tflite")
    assert [s["status"] for s in survivor["stages"]] == ["passed", "passed", "passed"]
    assert survivor["latency"]["truncated"] is True and survivor["latency"]["min_runs"] == 100000000
    assert "max_p99_ms not applicable" in by_name["tflite"]["bench"]["reason"]
    assert any("cut at max_seconds" in note for note in survivor["notes"])
    assert "cut at max_seconds" in (out / "summary.md").read_text()
    pids = hang_pids(record)
    assert len(pids) == 4 and all_gone(pids)  # two runtime processes and the children they started
