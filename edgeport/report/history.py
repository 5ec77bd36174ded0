"""Run history: every `convert` run's summary, one row per target, in a local SQLite database.

Concurrent runs may share one database: WAL journal (readers never block the writer), a busy timeout
(writers wait for each other instead of failing) and one IMMEDIATE transaction per run (a run's rows
appear all together or not at all). The SavedModel's own latency is kept as the row `savedmodel`, so a
trend can tell a slower machine from a slower artifact.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import UsageError

HOME_ENV = "EDGEPORT_HOME"  # as run/npm_lock: edgeport's per-user folder, when set (report/ imports no run/)


def default_history() -> Path:
    """One history per user, wherever the command runs: $EDGEPORT_HOME/history.db, else
    $XDG_DATA_HOME/edgeport/history.db, else ~/.local/share/edgeport/history.db."""
    import os

    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser() / "history.db"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "edgeport" / "history.db"


DEFAULT_HISTORY = default_history()
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
BASELINE_ROW = "savedmodel"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,           -- the report's time (UTC, ISO 8601)
    model TEXT NOT NULL,             -- absolute SavedModel path
    output TEXT,                     -- the run's output folder
    exit_code INTEGER NOT NULL,
    cpu TEXT,
    edgeport_version TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    target TEXT NOT NULL,
    verdict TEXT NOT NULL,           -- passed | failed | error | reference (the SavedModel row)
    size_bytes INTEGER,
    worst_cosine REAL,
    top1_agreement REAL,
    p50_ms REAL,
    p90_ms REAL,
    p50_ci_low REAL,                 -- the p50's 95 % interval (NULL: too few runs, or an older edgeport)
    p50_ci_high REAL,
    PRIMARY KEY (run_id, target)
);
CREATE INDEX IF NOT EXISTS results_by_target ON results (target);
CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, created);
"""


@dataclass(frozen=True)
class HistoryRow:
    run_id: int
    created: str
    model: str
    target: str
    verdict: str
    size_bytes: int | None
    worst_cosine: float | None
    top1_agreement: float | None
    p50_ms: float | None
    p90_ms: float | None
    exit_code: int
    output: str | None
    p50_ci_low: float | None = None
    p50_ci_high: float | None = None

    @property
    def p50_interval(self) -> tuple[float, float] | None:
        if self.p50_ci_low is None or self.p50_ci_high is None:
            return None
        return self.p50_ci_low, self.p50_ci_high


INTERVAL_COLUMNS = ("p50_ci_low", "p50_ci_high")  # added to a history written before them (same schema version)


def check_history(path: Path) -> None:
    """Refuse (UsageError, one line, nothing written) a history that is no edgeport history: a directory, a file
    that is not SQLite, a damaged database (a valid header over garbage pages), another schema. Read-only: a
    file that fails is left exactly as it was. A path that does not exist yet is fine (it is created)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise UsageError(f"history {path} is a directory; pass --history with a database file (or --no-history)")
        if not path.exists():
            return
    except OSError as exc:  # a name too long, a loop of symlinks: no file could ever be there
        raise UsageError(f"history {path}: {exc.strerror}; pass --history with another path") from None
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    there = {sidecar for sidecar in sidecars if sidecar.exists()}
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(
            f"cannot open the history database {path} ({exc}); pass --history with a readable path"
        ) from None
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        problems, version = [str(exc)], SCHEMA_VERSION
    finally:
        connection.close()
    if problems != ["ok"] or version not in (0, SCHEMA_VERSION):
        for sidecar in set(sidecars) - there:  # what SQLite's read-only open of a WAL file added: nothing stays
            sidecar.unlink(missing_ok=True)
    if problems != ["ok"]:
        raise UsageError(
            f"{path} is not an edgeport history database, or a damaged one ({problems[0]}); move it away, or pass "
            "--history with another path (or --no-history)"
        )
    if version not in (0, SCHEMA_VERSION):
        raise UsageError(
            f"{path}: history schema {version}, this edgeport reads and writes {SCHEMA_VERSION}; pass --history with "
            "another path"
        )


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the history database, ready for concurrent use; a file that is not a sound
    edgeport history is refused before anything is written to it (check_history)."""
    path = Path(path)
    check_history(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(
            f"cannot open the history database {path} ({exc}); pass --history with a writable path"
        ) from None
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _retry(lambda: connection.execute("PRAGMA journal_mode = WAL"))
        connection.execute("PRAGMA synchronous = NORMAL")
        _retry(lambda: _create_schema(connection))
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise UsageError(
            f"{path} is not an edgeport history database ({exc}); pass --history with another path"
        ) from None
    return connection


def _create_schema(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        have = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
        for column in INTERVAL_COLUMNS:
            if column not in have:
                connection.execute(f"ALTER TABLE results ADD COLUMN {column} REAL")
        return
    if version not in (0, SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"history schema {version}, this edgeport writes {SCHEMA_VERSION}")
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _retry(action, attempts: int = 20):
    """Retry what SQLite refuses with 'locked'/'busy' beyond its own busy handler (e.g. journal mode changes)."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None


def summary_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target (and the SavedModel baseline) from a report dict (`Report.to_dict()` / report.json)."""
    rows = []
    baseline = report.get("baseline")
    if baseline:
        rows.append(
            {
                "target": BASELINE_ROW,
                "verdict": "reference",
                "size_bytes": report["model"].get("size_bytes"),
                "worst_cosine": None,
                "top1_agreement": None,
                "p50_ms": baseline["p50_ms"],
                "p90_ms": baseline["p90_ms"],
                **_interval_columns(baseline),
            }
        )
    verdicts = report.get("verdicts", {})
    for target in report["targets"]:
        outputs = (target.get("accuracy") or {}).get("outputs", [])
        cosines = [float(o["cosine"]) for o in outputs]
        top1 = [o["top1_agreement"] for o in outputs if o.get("top1_agreement") is not None]
        latency = target.get("latency") or {}
        rows.append(
            {
                "target": target["name"],
                "verdict": verdicts.get(target["name"], _verdict(target)),
                "size_bytes": target.get("size_bytes"),
                "worst_cosine": min(cosines) if cosines else None,
                "top1_agreement": min(top1) if top1 else None,
                "p50_ms": latency.get("p50_ms"),
                "p90_ms": latency.get("p90_ms"),
                **_interval_columns(latency),
            }
        )
    return rows


def _interval_columns(latency: Mapping[str, Any]) -> dict[str, float | None]:
    interval = latency.get("p50_ci_ms")
    low, high = interval if isinstance(interval, list | tuple) and len(interval) == 2 else (None, None)
    return {"p50_ci_low": low, "p50_ci_high": high}


def _verdict(target: Mapping[str, Any]) -> str:
    statuses = {s["status"] for s in target.get("stages", [])}
    return "failed" if statuses & {"failed", "error"} else "passed"


def append_run(path: Path, report: Mapping[str, Any], *, output: Path | None = None) -> int:
    """Record one run (all its targets in one transaction); returns the run's id."""
    rows = summary_rows(report)
    model = str(Path(report["model"]["path"]).resolve())
    connection = connect(path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            cursor = connection.execute(
                "INSERT INTO runs (created, model, output, exit_code, cpu, edgeport_version) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    report.get("created") or _now(),
                    model,
                    str(Path(output).resolve()) if output else None,
                    int(report.get("exit_code", 0)),
                    report.get("machine", {}).get("cpu"),
                    report.get("edgeport_version"),
                ),
            )
            run_id = cursor.lastrowid
            if run_id is None:  # sqlite sets it on every INSERT
                raise sqlite3.DatabaseError("the INSERT into runs gave no row id")
            connection.executemany(
                "INSERT INTO results (run_id, target, verdict, size_bytes, worst_cosine, top1_agreement, p50_ms, "
                "p90_ms, p50_ci_low, p50_ci_high) VALUES (:run_id, :target, :verdict, :size_bytes, :worst_cosine, "
                ":top1_agreement, :p50_ms, :p90_ms, :p50_ci_low, :p50_ci_high)",
                [{**row, "run_id": run_id} for row in rows],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return int(run_id)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_history(
    path: Path, *, model: str | None = None, target: str | None = None, limit: int | None = None
) -> list[HistoryRow]:
    """Rows oldest first; `model` matches the absolute path or any part of it; `limit`: newest N runs."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no history at {path}; `edgeport convert` records one there (or pass --history PATH)")
    where, params = [], []
    if model:
        where.append("(r.model = ? OR instr(r.model, ?) > 0)")
        params += [str(Path(model).resolve()), model.rstrip("/")]
    if target:
        where.append("x.target = ?")
        params.append(target)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    query = (
        "SELECT r.id, r.created, r.model, x.target, x.verdict, x.size_bytes, x.worst_cosine, x.top1_agreement, "
        f"x.p50_ms, x.p90_ms, r.exit_code, r.output, x.p50_ci_low, x.p50_ci_high FROM results x JOIN runs r "
        f"ON r.id = x.run_id {clause} "
        "ORDER BY r.created, r.id, x.target"
    )
    connection = connect(path)
    try:
        rows = [HistoryRow(*row) for row in connection.execute(query, params)]
    except sqlite3.DatabaseError as exc:  # damage quick_check does not see (it skips index contents)
        raise UsageError(f"{path}: the history database is damaged ({exc}); move it away") from None
    finally:
        connection.close()
    if limit:
        newest = set(list(dict.fromkeys(row.run_id for row in rows))[-limit:])
        rows = [row for row in rows if row.run_id in newest]
    return rows


# ---- output -----------------------------------------------------------------------------------------------

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    scale = (high - low) or 1.0
    return "".join(" " if v is None else SPARKS[min(7, int((v - low) / scale * 7.999))] for v in values)


def history_json(rows: Sequence[HistoryRow]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"


def print_history(rows: Sequence[HistoryRow], console) -> None:
    """One table per (model, target): each run's size, accuracy and p50 with its 95 % interval ("[n/a]": too few
    runs, or recorded before intervals were), with the change from the run before."""
    from rich.markup import escape
    from rich.table import Table

    from edgeport.report import wording

    if not rows:
        console.print("no runs recorded for this selection", highlight=False)
        return
    groups: dict[tuple[str, str], list[HistoryRow]] = {}
    for row in rows:
        groups.setdefault((row.model, row.target), []).append(row)
    for (model, target), runs in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1] != BASELINE_ROW, item[0][1])
    ):
        table = Table(
            title=f"{escape(target)}  [dim]{escape(model)}[/]  p50 {sparkline([r.p50_ms for r in runs])}  "
            f"size {sparkline([r.size_bytes for r in runs])}",
            title_justify="left",
        )
        for column in ("run", "time (UTC)", "verdict", "size", "worst cosine", "top-1", "p50 [95 %]", "p50 change"):
            table.add_column(column, justify="right" if column not in ("time (UTC)", "verdict") else "left")
        previous = None
        for row in runs:
            change = ""
            if previous and previous.p50_ms and row.p50_ms:
                change = f"{row.p50_ms / previous.p50_ms - 1:+.1%}"
            color = {"passed": "green", "failed": "red", "error": "red"}.get(row.verdict, "dim")
            table.add_row(
                str(row.run_id),
                row.created.replace("+00:00", ""),
                f"[{color}]{row.verdict}[/]",
                wording.size(row.size_bytes),
                "–" if row.worst_cosine is None else f"{row.worst_cosine:.6f}",
                wording.percent(row.top1_agreement),
                wording.latency_interval(row.p50_ms, row.p50_interval),
                change,
            )
            previous = row
        console.print(table)


# ---- commands ---------------------------------------------------------------------------------------------


def record_run(path: Path | None, report: Mapping[str, Any], *, output: Path, console) -> int | None:
    """Append a finished run; a history that cannot be written is a warning, never a failed run."""
    path = Path(path) if path else DEFAULT_HISTORY
    try:
        return append_run(path, report, output=output)
    except (UsageError, sqlite3.Error, OSError) as exc:
        message = exc.message if isinstance(exc, UsageError) else f"{path}: {exc}"
        console.print(f"[yellow]warning:[/] run not recorded in the history: {message}", highlight=False)
        return None


def history_command(
    path: Path | None, *, model: str | None, target: str | None, last: int | None, as_json: bool
) -> None:
    from rich.console import Console

    rows = read_history(Path(path) if path else DEFAULT_HISTORY, model=model, target=target, limit=last)
    if as_json:
        print(history_json(rows), end="")
        return
    print_history(rows, Console() if Console().is_terminal else Console(width=150))
