"""The run history: real report rows in SQLite, 8 writer processes at once losing nothing, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from digits_runs import DIGITS_TARGETS, digits_report_once

from edgeport.cli.main import main
from edgeport.report.history import append_run, read_history, record_run, sparkline, summary_rows

WRITERS, RUNS_PER_WRITER = 8, 15


@pytest.fixture(scope="session")
def digits_report(digits, tmp_path_factory):
    return digits_report_once(digits, tmp_path_factory)


@pytest.fixture()
def report_dict(digits_report) -> dict:
    return json.loads((digits_report.out / "report.json").read_text())


def test_a_run_becomes_one_row_per_target_plus_the_savedmodel(report_dict, tmp_path):
    db = tmp_path / "h.db"
    run_id = append_run(db, report_dict, output=tmp_path)
    rows = read_history(db)
    assert [r.target for r in rows] == ["savedmodel", *DIGITS_TARGETS] and {r.run_id for r in rows} == {run_id}
    for row in rows[1:]:
        target = next(t for t in report_dict["targets"] if t["name"] == row.target)
        assert row.size_bytes == target["size_bytes"] and row.verdict == "passed"
        assert row.worst_cosine == pytest.approx(min(o["cosine"] for o in target["accuracy"]["outputs"]))
        assert row.top1_agreement == target["accuracy"]["outputs"][0]["top1_agreement"]
        assert row.p50_ms == target["latency"]["p50_ms"] and row.created == report_dict["created"]
    assert rows[0].p50_ms == report_dict["baseline"]["p50_ms"] and rows[0].verdict == "reference"
    assert rows[0].model == str(Path(report_dict["model"]["path"]).resolve())
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _write_runs(db: str, report: dict, writer: int) -> None:
    for run in range(RUNS_PER_WRITER):
        append_run(Path(db), {**report, "created": f"2030-01-01T00:{writer:02d}:{run:02d}+00:00"})


def test_eight_writer_processes_at_once_lose_no_rows(report_dict, tmp_path):
    db = tmp_path / "shared.db"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_runs, args=(str(db), report_dict, w)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    rows = read_history(db)
    per_run = 1 + len(DIGITS_TARGETS)
    assert len({r.run_id for r in rows}) == WRITERS * RUNS_PER_WRITER
    assert len(rows) == WRITERS * RUNS_PER_WRITER * per_run
    assert len({r.created for r in rows}) == WRITERS * RUNS_PER_WRITER, "every run's rows arrived together"
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_filters_and_last_runs(report_dict, tmp_path):
    db = tmp_path / "h.db"
    other = {**report_dict, "model": {**report_dict["model"], "path": str(tmp_path / "other_model")}}
    for report in (report_dict, other, report_dict):
        append_run(db, report)
    assert {r.model for r in read_history(db, model="other_model")} == {str(tmp_path / "other_model")}
    assert len({r.run_id for r in read_history(db, model=report_dict["model"]["path"])}) == 2
    assert {r.target for r in read_history(db, target="tflite:int8")} == {"tflite:int8"}
    assert {r.run_id for r in read_history(db, limit=2)} == {2, 3}
    result = CliRunner().invoke(main, ["history", "--history", str(db), "--last", "1", "--json"])
    assert {row["run_id"] for row in json.loads(result.output)} == {3}


def test_history_command_table_and_json(report_dict, tmp_path):
    db = tmp_path / "h.db"
    faster = json.loads(json.dumps(report_dict))
    for target in faster["targets"]:
        target["latency"]["p50_ms"] /= 2
    append_run(db, report_dict)
    append_run(db, faster)
    result = CliRunner().invoke(main, ["history", "--history", str(db), "-t", "tflite"])
    assert result.exit_code == 0, result.output
    assert "tflite" in result.output and "-50.0%" in result.output and "tflite:int8" not in result.output
    result = CliRunner().invoke(main, ["history", "--history", str(db), "--json"])
    rows = json.loads(result.output)
    assert len(rows) == 2 * (1 + len(DIGITS_TARGETS))
    columns = {"created", "model", "target", "size_bytes", "worst_cosine", "top1_agreement", "p50_ms", "verdict"}
    assert columns <= set(rows[0])


def test_history_errors(tmp_path, report_dict):
    result = CliRunner().invoke(main, ["history", "--history", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no history at" in result.output
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("not a database, just text " * 100)
    result = CliRunner().invoke(main, ["history", "--history", str(not_sqlite)])
    assert result.exit_code == 2 and "is not an edgeport history database" in result.output


def test_an_unwritable_history_warns_and_never_fails_the_run(report_dict, tmp_path):
    from io import StringIO

    from rich.console import Console

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    buffer = StringIO()
    assert record_run(blocker / "history.db", report_dict, output=tmp_path, console=Console(file=buffer)) is None
    assert "warning: run not recorded in the history" in buffer.getvalue()


def test_summary_rows_of_a_failed_conversion_and_sparkline(report_dict):
    failed = json.loads(json.dumps(report_dict))
    failed["targets"][0].update(
        accuracy=None,
        latency=None,
        size_bytes=None,
        stages=[{"stage": "convert", "status": "error", "seconds": 0, "reason": "x"}],
    )
    failed["verdicts"] = {}
    row = next(r for r in summary_rows(failed) if r["target"] == failed["targets"][0]["name"])
    assert row == {
        "target": row["target"],
        "verdict": "failed",
        "size_bytes": None,
        "worst_cosine": None,
        "top1_agreement": None,
        "p50_ms": None,
        "p90_ms": None,
        "p50_ci_low": None,
        "p50_ci_high": None,
    }
    assert sparkline([1.0, 2.0, None, 3.0]) == "▁▄ █"
