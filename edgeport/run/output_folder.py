"""The output folder tells the truth about one run: a lock, start-of-run hygiene, atomic swaps, cleanup after.

OUT holds `<slug>/` per target (each with the marker file `.edgeport-target`: edgeport made it), the report files
(report.json, junit.xml, summary.md, report.html; comparison.json with --baseline, <slug>.model-explorer.json with
--layers), `logs/`, and `.edgeport.lock`.

- `take`: the lock (`fcntl.flock` on `.edgeport.lock`, never deleted, holding the pid of its run; a second run is
  refused with exit 2 naming that pid), then the leftovers of killed runs go: `.staging-*`, `.trash-*` and report
  temp files; an old artifact renamed aside (`.old-<slug>-<pid>`) whose replacement never arrived goes back; logs/
  is emptied. Until `begin`, OUT still shows the previous run (its report, its artifacts).
- `begin` (before the first conversion): report.json becomes a "running" record (pid, start, model); the other
  report files go. A run killed from here on leaves that record: no finished report beside its artifacts.
- `install`: OUT/<slug> is replaced by rename (old -> `.old-<slug>-<pid>`, new -> `<slug>`, then the old is
  deleted): at every moment OUT/<slug> is a whole artifact. `discard`: a target whose conversion failed loses its
  old folder.
- `write_reports`: every report file to a temp file, then renamed into place; on failure (a full disk) no report
  file and no artifact of the run is left, and `OutputError` (exit 3) says so in one line.
- `finish`: target folders edgeport made that the report does not list go. `abandon` (Ctrl-C, or a crash before
  the report): every target folder edgeport made goes and report.json says "interrupted" (or "failed").

Only folders with the marker (or listed as a target folder by the previous report.json) are ever deleted; other
files in OUT are the user's and stay.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError, OutputError, UsageError, first_line
from edgeport.report.files import SCHEMA_VERSION, current_umask, write_files

LOCK_NAME = ".edgeport.lock"
MARKER = ".edgeport-target"  # in every target folder edgeport made
REPORT_FILES = ("report.json", "junit.xml", "summary.md", "report.html", "comparison.json")
PER_TARGET_REPORT = ".model-explorer.json"  # <slug>.model-explorer.json: a target's layer data (--layers)
STAGING, ASIDE, TRASH = ".staging-", ".old-", ".trash-"
UNFINISHED = ("running", "interrupted", "failed")  # report.json `status` of a run that wrote no report


def refuse_model_overlap(out: Path, model: Path, slugs: Iterable[str]) -> None:
    """-o must not be the SavedModel folder or inside it, nor the model sit where a target's artifact goes."""
    out_path, model_path = out.resolve(), model.resolve()
    if out_path == model_path or model_path in out_path.parents:
        where = "is the SavedModel folder" if out_path == model_path else "is inside the SavedModel folder"
        raise UsageError(
            f"output folder {out} {where} {model}: edgeport would write into the model; "
            "pass -o with a folder outside it"
        )
    if out_path in model_path.parents:
        top = model_path.relative_to(out_path).parts[0]
        if top in set(slugs) or top == "logs":
            raise UsageError(
                f"the SavedModel {model} is inside {out / top}, a folder edgeport replaces in {out}; "
                "pass another -o or move the model"
            )


def artifact_files(folder: Path) -> list[Path]:
    """The files of a target folder, without edgeport's marker."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not (p.name == MARKER and p.parent == folder))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _delete(path: Path) -> None:
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _remove(path: Path) -> None:
    """Delete a folder by renaming it aside first: a kill while deleting leaves a `.trash-*`, never half a target."""
    if not path.exists() and not path.is_symlink():
        return
    trash = path.with_name(f"{TRASH}{path.name}-{os.getpid()}")
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    _delete(trash)


def _write_failure(out: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or first_line(exc)
    hint = "free space and rerun" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix the folder and rerun"
    return OutputError(f"cannot write the report in {out}: {reason}; {hint}")


class OutputFolder:
    """One run's hold on OUT: from `take` (the lock) to `close`."""

    def __init__(self, out: Path, fd: int, protect: Path | None = None):
        self.out = out
        self._fd = fd
        self._protect = protect.resolve() if protect else None
        self._legacy: set[str] = set()  # target folders the previous report lists (made before markers)
        self._begun = self._reported = False
        self._record: dict[str, Any] = {}

    # ---- lock and recovery ----------------------------------------------------------------------------------

    @classmethod
    def take(cls, out: Path, protect: Path | None = None) -> OutputFolder:
        """Lock OUT (UsageError naming the holder's pid if another run has it) and clear what killed runs left."""
        path = out / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        except OSError as exc:
            raise UsageError(f"cannot create {path} ({exc.strerror}); pass -o with a folder you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(
                    f"{out} is in use by another edgeport run (pid {holder}); wait for it or pick another -o"
                ) from None
            raise UsageError(f"cannot lock {path} ({exc.strerror}); pass -o with a local folder") from None
        with contextlib.suppress(OSError):  # the pid is for the message of a run refused; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        folder = cls(out, fd, protect)
        try:
            folder._recover()
        except BaseException:
            folder.close()
            raise
        return folder

    @property
    def begun(self) -> bool:
        """Whether the run got as far as its first conversion (and so changed OUT)."""
        return self._begun

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock; the file stays (deleting it would race a run opening it)
            self._fd = -1

    def _recover(self) -> None:
        previous = self._read_report()
        unfinished = previous is not None and previous.get("status") in UNFINISHED
        if previous is not None and not unfinished:
            self._legacy = {
                t["folder"]
                for t in previous.get("targets", [])
                if isinstance(t, dict) and _plain_name(t.get("folder")) and (self.out / t["folder"]).is_dir()
            }
            for name in self._legacy:  # from now on a marker says so, whatever happens to this report.json
                marker = self.out / name / MARKER
                if not marker.exists():
                    with contextlib.suppress(OSError):
                        marker.write_text("edgeport target folder (listed by an earlier report)\n")
        for entry in sorted(self.out.iterdir()):
            name = entry.name
            if name.startswith((STAGING, TRASH)) and entry.is_dir():
                _delete(entry)
            elif name.startswith(ASIDE) and entry.is_dir():  # killed between the two renames of `install`
                slot = self.out / name[len(ASIDE) :].rpartition("-")[0]
                if slot.exists():
                    _delete(entry)
                else:
                    with contextlib.suppress(OSError):
                        os.rename(entry, slot)
            elif entry.is_file() and (
                name.startswith(".edgeport-write-test-")
                or any(name.startswith(f".{r}.") for r in REPORT_FILES)
                or (name.startswith(".") and f"{PER_TARGET_REPORT}." in name)
            ):
                entry.unlink(missing_ok=True)  # a temp file of an interrupted write
        if unfinished:  # the report files of a run that wrote no report describe nothing here
            self._remove_report_files()
        logs = self.out / "logs"
        if logs.is_dir():
            for log in logs.glob("*.log"):
                log.unlink(missing_ok=True)

    def _remove_report_files(self) -> None:
        """Every report file but report.json (the record of this run, or of one that wrote no report)."""
        for name in REPORT_FILES[1:]:
            (self.out / name).unlink(missing_ok=True)
        for file in self.out.glob(f"*{PER_TARGET_REPORT}"):
            if file.is_file() and not file.name.startswith("."):
                file.unlink(missing_ok=True)

    def _read_report(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.out / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _made_by_edgeport(self, entry: Path) -> bool:
        if not entry.is_dir() or entry.is_symlink() or entry.name == "logs" or entry.name.startswith("."):
            return False
        if self._protect is not None and (self._protect == entry.resolve() or entry.resolve() in self._protect.parents):
            return False  # never the folder the model sits in
        return (entry / MARKER).is_file() or entry.name in self._legacy

    # ---- the run ----------------------------------------------------------------------------------------------

    def begin(self, model: Path, targets: Iterable[str]) -> None:
        """Before the first conversion: report.json says a run is in progress; the old report files go."""
        self._record = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "message": (
                f"an edgeport run (pid {os.getpid()}) is converting into this folder, or was killed: "
                "nothing here is checked yet; a finished run replaces this file"
            ),
            "pid": os.getpid(),
            "started": _now(),
            "model": {"path": str(model)},
            "requested_targets": list(targets),
            "targets": [],
            "verdicts": {},
            "exit_code": None,
        }
        try:
            write_files(self.out, {"report.json": json.dumps(self._record, indent=2) + "\n"})
        except OSError as exc:
            raise _write_failure(self.out, exc) from None
        self._remove_report_files()
        self._begun = True

    def install(self, staging: Path, slug: str, target: str) -> Path:
        """Move a finished artifact folder to OUT/<slug>, replacing the old one by rename; ConversionError if not."""
        final = self.out / slug
        aside: Path | None = None
        try:
            (staging / MARKER).write_text(f"edgeport target {target}\n")
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it private; the artifact folder is not
            if final.exists() or final.is_symlink():
                aside = self.out / f"{ASIDE}{slug}-{os.getpid()}"
                os.rename(final, aside)
            try:
                os.rename(staging, final)
            except OSError:
                if aside is not None:
                    os.rename(aside, final)
                    aside = None
                raise
        except OSError as exc:
            raise ConversionError(f"{target}: cannot move the artifact into {final}: {exc.strerror}") from None
        if aside is not None:
            _delete(aside)
        return final

    def discard(self, slug: str) -> None:
        """A target whose conversion failed: its old artifact must not sit beside a report saying so."""
        _remove(self.out / slug)

    def write_reports(self, texts: Mapping[str, str]) -> None:
        """Write the report files as one batch; on failure leave no report and no artifact, raise OutputError."""
        try:
            write_files(self.out, texts)
        except OSError as exc:
            self._clear_run()
            (self.out / "report.json").unlink(missing_ok=True)
            self._reported = True  # nothing left to abandon
            raise _write_failure(self.out, exc) from None
        self._reported = True

    def finish(self, listed: Iterable[str]) -> None:
        """After the report: target folders of earlier runs that this report does not list go."""
        keep = set(listed)
        for entry in sorted(self.out.iterdir()):
            if entry.name not in keep and self._made_by_edgeport(entry):
                _remove(entry)

    def abandon(self, exc: BaseException) -> None:
        """The run stops between `begin` and its report: remove its artifacts, say so in report.json."""
        if not self._begun or self._reported:
            return
        self._clear_run()
        if isinstance(exc, KeyboardInterrupt):
            status, message = "interrupted", "interrupted before the report was written"
        else:
            status, message = "failed", f"stopped before the report was written: {first_line(exc)}"
        record = {
            **self._record,
            "status": status,
            "message": f"{message}; the run's artifacts were removed: rerun",
            "ended": _now(),
        }
        try:
            write_files(self.out, {"report.json": json.dumps(record, indent=2) + "\n"})
        except OSError:
            (self.out / "report.json").unlink(missing_ok=True)

    def _clear_run(self) -> None:
        for entry in sorted(self.out.iterdir()):
            if entry.name.startswith((STAGING, ASIDE, TRASH)) and entry.is_dir():
                _delete(entry)
            elif self._made_by_edgeport(entry):
                _remove(entry)


def _plain_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and value == Path(value).name
        and not value.startswith(".")
        and value not in ("logs", "..")
    )
