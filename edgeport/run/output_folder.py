"""The output folder tells the truth about one run, and edgeport touches in it only what it can prove it made.

OUT holds `<slug>/` per target, the report files (report.json, junit.xml, summary.md, report.html; comparison.json
with --baseline, <slug>.model-explorer.json with --layers), `logs/`, `.edgeport.lock` and `.edgeport-manifest.json`.

What edgeport may touch (the one rule every deletion and write below goes through):
- OUT must be new, empty, or hold edgeport's manifest (`.edgeport-manifest.json`, written by edgeport). The manifest
  holds a random per-folder token, the top-level names edgeport claimed (each while it was absent, or already
  edgeport's), and `foreign`: what OUT held when `--force` let edgeport in beside the user's files. A folder of
  the user's that is not empty is refused (UsageError, exit 2), naming a few of its entries; with `--force`
  edgeport adds its own names beside them, and still refuses when one of them is taken.
- A target folder (and `logs/`) is edgeport's when it is a real folder whose `.edgeport-target` marker holds the
  manifest's token: another tool's report.json naming a folder, or a folder copied in from elsewhere, proves
  nothing. Folders renamed aside carry the marker; folders being deleted are first renamed to `.trash-<token
  prefix>-...`; `.staging-*` folders (made by the pipeline with mkdtemp) are edgeport's by name, unless foreign.
- No symlink inside OUT is followed: a symlink where edgeport writes (the lock, logs/, a report file, a target
  folder) is refused; its own files are opened with O_NOFOLLOW, new ones with O_EXCL; deletion is `unlink` or
  an fd-based `rmtree` of a real folder.
- `-o` of the file system root, the home folder, the SavedModel folder, a folder inside it, or a folder holding
  it is refused before anything is written.

The run:
- `take`: admits OUT (the rules above), locks it (`fcntl.flock` on `.edgeport.lock`, holding its run's pid; a
  second run is refused with exit 2 naming that pid), then clears what killed runs left: `.staging-*`, trash and
  report temp files; an old artifact renamed aside (`.old-<slug>-<pid>`) whose replacement never arrived goes
  back; logs/ is emptied of its `*.log`. Until `begin`, OUT still shows the previous run.
- `begin` (before the first conversion): report.json becomes a "running" record (pid, start, model); the other
  report files go. A run killed from here on leaves that record: no finished report beside its artifacts.
- `install`: OUT/<slug> is replaced by rename (old -> `.old-<slug>-<pid>`, new -> `<slug>`, then the old is
  deleted): at every moment OUT/<slug> is a whole artifact. `discard`: a target whose conversion failed loses its
  old folder.
- `write_reports`: every report file to a temp file, then renamed into place; on failure (a full disk) no report
  file and no artifact of the run is left, and `OutputError` (exit 3) says so in one line.
- `finish`: target folders edgeport made that the report does not list go. `abandon` (Ctrl-C, or a crash before
  the report): every target folder edgeport made goes and report.json says "interrupted" (or "failed").
- `remove_if_untouched`: a folder this run created and that holds nothing but edgeport's own files (after a
  usage refusal before any work) is removed.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from edgeport.errors import ConversionError, OutputError, UsageError, first_line
from edgeport.report.files import SCHEMA_VERSION, current_umask, write_files

LOCK_NAME = ".edgeport.lock"
MANIFEST = ".edgeport-manifest.json"  # edgeport's own files in OUT, and the folder's token
MARKER = ".edgeport-target"  # in every target folder edgeport made (and in logs/), holding the token
LOGS = "logs"
REPORT_FILES = ("report.json", "junit.xml", "summary.md", "report.html", "comparison.json")
PER_TARGET_REPORT = ".model-explorer.json"  # <slug>.model-explorer.json: a target's layer data (--layers)
STAGING, ASIDE, TRASH = ".staging-", ".old-", ".trash-"
WRITE_TEST = ".edgeport-write-test-"  # pipeline.prepare_output's probe (a NamedTemporaryFile)
UNFINISHED = ("running", "interrupted", "failed")  # report.json `status` of a run that wrote no report
MANIFEST_KIND = "edgeport output folder"
SHOWN = 3  # entries a refusal names
_TOKEN = re.compile(r"[0-9a-f]{32}")
_TEMP_SUFFIX = r"\.[a-z0-9_]{8}"  # what mkstemp and NamedTemporaryFile add to a prefix
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


# ---- where OUT may be -----------------------------------------------------------------------------------------


def refuse_unsafe_output(out: Path) -> None:
    """-o must not be the file system root or the home folder (edgeport would write among everything there)."""
    where = out.resolve()
    if where == Path(where.anchor):
        raise UsageError(f"output folder {out} is the file system root; pass -o with a folder of its own")
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        if where == Path.home().resolve() or out.expanduser().resolve() == Path.home().resolve():
            raise UsageError(f"output folder {out} is your home folder; pass -o with a folder of its own")


def refuse_model_overlap(out: Path, model: Path, slugs: Iterable[str] = ()) -> None:
    """-o must not be the SavedModel folder, inside it, or hold it (nor the root or the home folder)."""
    refuse_unsafe_output(out)
    out_path, model_path = out.resolve(), model.resolve()
    if out_path == model_path or model_path in out_path.parents:
        where = "is the SavedModel folder" if out_path == model_path else "is inside the SavedModel folder"
        raise UsageError(
            f"output folder {out} {where} {model}: edgeport would write into the model; "
            "pass -o with a folder outside it"
        )
    if out_path in model_path.parents:
        raise UsageError(
            f"output folder {out} holds the SavedModel folder {model}: edgeport would write beside the model; "
            "pass -o with a folder outside it"
        )


def artifact_files(folder: Path) -> list[Path]:
    """The files of a target folder, without edgeport's marker."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not (p.name == MARKER and p.parent == folder))


def edgeport_names(slugs: Iterable[str] = ()) -> set[str]:
    """The top-level file names a run writes into OUT (besides its target folders)."""
    return {LOCK_NAME, MANIFEST, LOGS, *REPORT_FILES, *(f"{slug}{PER_TARGET_REPORT}" for slug in slugs)}


# ---- the manifest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """OUT/.edgeport-manifest.json: the proof of what in OUT is edgeport's."""

    token: str  # random, per folder: in every `.edgeport-target` marker edgeport writes here
    names: frozenset[str]  # top-level names edgeport claimed (each absent then, or already its own)
    foreign: frozenset[str] = frozenset()  # what OUT held when edgeport was let in (--force): never touched

    @classmethod
    def new(cls, names: Iterable[str], foreign: Iterable[str] = ()) -> Manifest:
        return cls(secrets.token_hex(16), frozenset(names), frozenset(foreign))

    @classmethod
    def parse(cls, text: str) -> Manifest | None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
            return None
        token, names, foreign = data.get("token"), data.get("names"), data.get("foreign", [])
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        if not _name_list(names) or not _name_list(foreign):
            return None
        return cls(token, frozenset(names), frozenset(foreign))

    def text(self) -> str:
        return (
            json.dumps(
                {
                    "kind": MANIFEST_KIND,
                    "about": "written by edgeport: it deletes or replaces only what this file proves it made",
                    "token": self.token,
                    "names": sorted(self.names),
                    "foreign": sorted(self.foreign),
                },
                indent=2,
            )
            + "\n"
        )

    def claiming(self, names: Iterable[str]) -> Manifest:
        return Manifest(self.token, self.names | frozenset(names), self.foreign)


def read_manifest(out: Path) -> Manifest | None:
    """The manifest edgeport wrote into OUT, or None (none, a symlink, not edgeport's format)."""
    text = _read_plain(out / MANIFEST, 1 << 20)
    return Manifest.parse(text) if text is not None else None


def _write_manifest(out: Path, manifest: Manifest, *, exclusive: bool) -> bool:
    """Write the manifest by temp file and rename (`exclusive`: only if there is none yet; False if there was)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{MANIFEST}.", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(manifest.text())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        if not exclusive:
            os.replace(tmp, out / MANIFEST)
            return True
        try:
            os.link(tmp, out / MANIFEST, follow_symlinks=False)  # atomic, and never over an existing name
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            _create_exclusive(out / MANIFEST, manifest.text())
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---- admitting OUT --------------------------------------------------------------------------------------------


def claim_folder(
    out: Path,
    names: Collection[str],
    *,
    slugs: Collection[str] = (),
    folders: Collection[str] = (),
    force: bool = False,
) -> Manifest:
    """Make OUT edgeport's for `names` (top-level files it will write), `slugs` (its target folders) and `folders`
    (sub-folders that must be new or edgeport's own output folders), creating OUT and its manifest when new.

    UsageError (exit 2) when OUT is a folder of the user's that is not empty (unless `force`), or when any of
    those names is taken by something edgeport did not make or is a symlink (even with `force`)."""
    names = {*names, MANIFEST}
    with _folder_errors(out):
        if not out.is_dir():
            os.mkdir(out, 0o777)
        manifest = _admit(out, names, slugs, folders, force)
        claimed = manifest.claiming(names)
        if claimed != manifest:
            _write_manifest(out, claimed, exclusive=False)
        return claimed


def _admit(
    out: Path, names: Collection[str], slugs: Collection[str], folders: Collection[str], force: bool, again: bool = True
) -> Manifest:
    """The manifest OUT has, or a new one written now (OUT empty, or `force`); UsageError if edgeport may not."""
    manifest = read_manifest(out)
    if manifest is not None:
        _refuse_clashes(out, manifest, names, slugs, folders)
        return manifest
    present = sorted(os.listdir(out))
    if present and not force:
        raise UsageError(
            f"output folder {out} is not empty and edgeport did not make it (it holds {_listing(present)}); "
            "pass -o with a new or empty folder, or --force to add edgeport's files beside these"
        )
    _refuse_clashes(out, None, names, slugs, folders)
    manifest = Manifest.new(names, foreign=present)
    if _write_manifest(out, manifest, exclusive=True) or not again:
        return manifest
    return _admit(out, names, slugs, folders, force, again=False)  # another run wrote one meanwhile: read it


def _refuse_clashes(
    out: Path, manifest: Manifest | None, names: Collection[str], slugs: Collection[str], folders: Collection[str]
) -> None:
    taken = [
        *(f"{n}{why}" for n in sorted(names) if (why := _name_clash(out, manifest, n)) is not None),
        *(f"{s}/{why}" for s in sorted(slugs) if (why := _target_clash(out, manifest, s)) is not None),
        *(f"{f}/{why}" for f in sorted(folders) if (why := _folder_clash(out / f, f in names)) is not None),
    ]
    if taken:
        raise UsageError(
            f"output folder {out} holds {_listing(taken)}, which edgeport did not make and would write over; "
            "move them or pass another -o"
        )


def _name_clash(out: Path, manifest: Manifest | None, name: str) -> str | None:
    """Why edgeport may not write `name` in OUT (a suffix for the refusal), or None when it may."""
    info = _lstat(out / name)
    if info is None:
        return None
    if stat.S_ISLNK(info.st_mode):
        return " (a symlink)"
    if manifest is None or name not in manifest.names or name in manifest.foreign:
        return ""
    if name == LOGS:
        ours = stat.S_ISDIR(info.st_mode) and _marker_token(out / LOGS) == manifest.token
        return None if ours else ""
    if not stat.S_ISREG(info.st_mode):
        return " (not a file)"
    if info.st_nlink > 1:
        return " (a hard link)"
    return None


def _target_clash(out: Path, manifest: Manifest | None, slug: str) -> str | None:
    info = _lstat(out / slug)
    if info is None:
        return None
    if stat.S_ISLNK(info.st_mode):
        return " (a symlink)"
    if manifest is not None and _is_target_of(out / slug, manifest):
        return None
    return ""


def _folder_clash(folder: Path, also_a_file_name: bool) -> str | None:
    info = _lstat(folder)
    if info is None:
        return " (also a file edgeport writes)" if also_a_file_name else None
    if stat.S_ISLNK(info.st_mode):
        return " (a symlink)"
    if not stat.S_ISDIR(info.st_mode) or (os.listdir(folder) and read_manifest(folder) is None):
        return ""
    return None


def _is_target_of(folder: Path, manifest: Manifest) -> bool:
    """A target folder edgeport made in this OUT: a real folder whose marker holds the manifest's token."""
    return (
        not folder.name.startswith(".")
        and folder.name != LOGS
        and folder.name not in manifest.foreign
        and _is_real_dir(folder)
        and _marker_token(folder) == manifest.token
    )


@contextlib.contextmanager
def _folder_errors(out: Path):
    try:
        yield
    except OSError as exc:
        raise UsageError(
            f"cannot use output folder {out} ({exc.strerror or first_line(exc)}); pass -o with a folder you can write"
        ) from None


# ---- small file-system helpers that never follow a symlink ----------------------------------------------------


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _is_real_dir(path: Path) -> bool:
    info = _lstat(path)
    return info is not None and stat.S_ISDIR(info.st_mode)


def _is_plain_file(path: Path) -> bool:
    info = _lstat(path)
    return info is not None and stat.S_ISREG(info.st_mode)


def _read_plain(path: Path, limit: int) -> str | None:
    """A regular file's text (at most `limit` bytes), never through a symlink; None if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _create_exclusive(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666 & ~current_umask())
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _marker_text(what: str, token: str) -> str:
    return f"{what}\ntoken {token}\n"


def _marker_token(folder: Path) -> str | None:
    text = _read_plain(folder / MARKER, 4096) or ""
    tokens = [line[6:].strip() for line in text.splitlines() if line.startswith("token ")]
    return tokens[0] if tokens else None


def _unlink_own(path: Path) -> None:
    """Remove a file edgeport wrote (a symlink in its place goes as a link: its target is never touched)."""
    info = _lstat(path)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _rmtree(path: Path) -> None:
    """Delete a real folder (shutil's fd-based walk follows no symlink inside it); a symlink is never followed."""
    if _is_real_dir(path):
        shutil.rmtree(path, ignore_errors=True)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write_failure(out: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or first_line(exc)
    hint = "free space and rerun" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix the folder and rerun"
    return OutputError(f"cannot write the report in {out}: {reason}; {hint}")


def open_lock(out: Path) -> int:
    """`.edgeport.lock`, opened without following a symlink, locked; UsageError naming the holder if in use."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666 & ~current_umask())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symlink; edgeport follows no symlink in OUT: remove it") from None
        raise UsageError(f"cannot create {path} ({exc.strerror}); pass -o with a folder you can write") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise UsageError(f"{path} is not edgeport's lock file (a hard link or not a file); move it or pass another -o")
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
    return fd


class OutputFolder:
    """One run's hold on OUT: from `take` (the lock) to `close`."""

    def __init__(self, out: Path, fd: int, manifest: Manifest, protect: Path | None = None):
        self.out = out
        self._fd = fd
        self._manifest = manifest
        self._protect = protect.resolve() if protect else None
        self._begun = self._reported = False
        self._record: dict[str, Any] = {}

    # ---- lock and recovery ----------------------------------------------------------------------------------

    @classmethod
    def take(
        cls, out: Path, protect: Path | None = None, *, slugs: Collection[str] = (), force: bool = False
    ) -> OutputFolder:
        """Admit OUT (UsageError if it is the user's), lock it (UsageError naming the holder's pid if another run
        has it) and clear what killed runs left."""
        names = edgeport_names(slugs)
        with _folder_errors(out):
            manifest = _admit(out, names, slugs, (), force)
        fd = open_lock(out)
        folder = cls(out, fd, manifest, protect)
        try:
            with _folder_errors(out):
                folder._claim(names)  # under the lock: the manifest as the last run left it, plus this run's names
            with contextlib.suppress(OSError):  # the pid is for the message of a run refused; a full disk may refuse it
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            folder._recover()
        except BaseException:
            folder.close()
            raise
        return folder

    @property
    def begun(self) -> bool:
        """Whether the run got as far as its first conversion (and so changed OUT)."""
        return self._begun

    @property
    def token(self) -> str:
        return self._manifest.token

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock; the file stays (deleting it would race a run opening it)
            self._fd = -1

    def _claim(self, names: Iterable[str]) -> None:
        """Add names to the manifest before writing them; a name edgeport did not claim must not exist."""
        current = read_manifest(self.out) or self._manifest
        new = [n for n in names if n not in current.names]
        clashes = [n for n in new if _lstat(self.out / n) is not None]
        if clashes:
            raise UsageError(
                f"output folder {self.out} holds {_listing(sorted(clashes))}, which edgeport did not make and would "
                "write over; move them or pass another -o"
            )
        claimed = current.claiming(new)
        if claimed != current:
            _write_manifest(self.out, claimed, exclusive=False)
        self._manifest = claimed

    def _owned(self, name: str) -> bool:
        return name in self._manifest.names and name not in self._manifest.foreign

    def _recover(self) -> None:
        previous = self._read_report()
        unfinished = previous is not None and previous.get("status") in UNFINISHED
        temp_files = re.compile(
            "|".join(
                [re.escape(WRITE_TEST) + r"[a-z0-9_]{8}", re.escape(MANIFEST) + _TEMP_SUFFIX]
                + [re.escape(f".{name}") + _TEMP_SUFFIX for name in self._manifest.names]
            )
        )
        for name in sorted(os.listdir(self.out)):
            entry = self.out / name
            if name in self._manifest.foreign:
                continue
            if name.startswith(STAGING) or self._is_trash(name):
                _rmtree(entry)
            elif self._is_aside(entry):
                slot = self.out / name[len(ASIDE) :].rpartition("-")[0]  # killed between the two renames of install
                if _lstat(slot) is not None:
                    self._remove(entry)
                else:
                    with contextlib.suppress(OSError):
                        os.rename(entry, slot)
            elif temp_files.fullmatch(name) and _is_plain_file(entry):
                entry.unlink(missing_ok=True)  # a temp file of an interrupted write
        if unfinished:  # the report files of a run that wrote no report describe nothing here
            self._remove_report_files()
        self._reset_logs()

    def _reset_logs(self) -> None:
        """logs/ holds the latest run's logs: edgeport's own folder (its marker), emptied of its `*.log`."""
        logs = self.out / LOGS
        if _lstat(logs) is None:
            os.mkdir(logs, 0o777)
            _create_exclusive(logs / MARKER, _marker_text("edgeport logs", self.token))
            return
        if not (_is_real_dir(logs) and _marker_token(logs) == self.token):  # refused by _admit already
            return
        for entry in os.scandir(logs):
            if entry.name.endswith(".log") and not entry.is_dir(follow_symlinks=False):
                _unlink_own(Path(entry.path))

    def _is_aside(self, entry: Path) -> bool:
        """A target folder `install` renamed aside (`.old-<slug>-<pid>`), its marker still inside."""
        return entry.name.startswith(ASIDE) and _is_real_dir(entry) and _marker_token(entry) == self.token

    def _is_trash(self, name: str) -> bool:
        return name.startswith(f"{TRASH}{self.token[:12]}-")

    def _remove(self, path: Path) -> None:
        """Delete a folder of edgeport's by renaming it aside first: a kill while deleting leaves a trash folder
        (its name carries the token), never half a target."""
        if not _is_real_dir(path):
            return
        trash = path.with_name(f"{TRASH}{self.token[:12]}-{path.name}-{os.getpid()}")
        try:
            os.rename(path, trash)
        except OSError:
            trash = path
        _rmtree(trash)

    def _remove_report_files(self) -> None:
        """Every report file edgeport wrote but report.json (the record of this run, or of one that wrote none)."""
        for name in sorted(self._manifest.names):
            if (name in REPORT_FILES[1:] or name.endswith(PER_TARGET_REPORT)) and self._owned(name):
                _unlink_own(self.out / name)

    def _read_report(self) -> dict[str, Any] | None:
        if not self._owned("report.json"):
            return None
        try:
            data = json.loads(_read_plain(self.out / "report.json", 64 << 20) or "")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _made_by_edgeport(self, entry: Path) -> bool:
        if not _is_target_of(entry, self._manifest):
            return False
        resolved = entry.resolve()
        return self._protect is None or not (self._protect == resolved or resolved in self._protect.parents)

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
            self._write({"report.json": json.dumps(self._record, indent=2) + "\n"})
        except OSError as exc:
            raise _write_failure(self.out, exc) from None
        self._remove_report_files()
        self._begun = True

    def install(self, staging: Path, slug: str, target: str) -> Path:
        """Move a finished artifact folder to OUT/<slug>, replacing the old one by rename; ConversionError if not."""
        final = self.out / slug
        if _lstat(final) is not None and not self._made_by_edgeport(final):
            raise ConversionError(
                f"{target}: {final} is not a folder edgeport made, so the artifact was not moved there; "
                "move that folder and rerun"
            )
        aside: Path | None = None
        try:
            fd = os.open(staging / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666 & ~current_umask())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(_marker_text(f"edgeport target {target}", self.token))
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it private; the artifact folder is not
            if _lstat(final) is not None:
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
            self._remove(aside)
        return final

    def discard(self, slug: str) -> None:
        """A target whose conversion failed: its old artifact must not sit beside a report saying so."""
        if self._made_by_edgeport(self.out / slug):
            self._remove(self.out / slug)

    def write_reports(self, texts: Mapping[str, str]) -> None:
        """Write the report files as one batch; on failure leave no report and no artifact, raise OutputError."""
        try:
            self._write(texts)
        except OSError as exc:
            self._clear_run()
            if self._owned("report.json"):
                _unlink_own(self.out / "report.json")
            self._reported = True  # nothing left to abandon
            raise _write_failure(self.out, exc) from None
        self._reported = True

    def _write(self, texts: Mapping[str, str]) -> None:
        """Claim the names (UsageError if one is not edgeport's), then write them by temp file and rename."""
        self._claim(texts)
        write_files(self.out, texts)

    def finish(self, listed: Iterable[str]) -> None:
        """After the report: target folders of earlier runs that this report does not list go."""
        keep = set(listed)
        for name in sorted(os.listdir(self.out)):
            if name not in keep and self._made_by_edgeport(self.out / name):
                self._remove(self.out / name)

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
            self._write({"report.json": json.dumps(record, indent=2) + "\n"})
        except (OSError, UsageError):
            _unlink_own(self.out / "report.json")

    def remove_if_untouched(self) -> bool:
        """OUT, made by this run and refused before any work: removed when it holds nothing but edgeport's own
        files (lock, manifest, logs/ with its marker and logs); True if it went."""
        logs = self.out / LOGS
        with contextlib.suppress(OSError):
            if set(os.listdir(self.out)) - {LOCK_NAME, MANIFEST, LOGS}:
                return False
            if _lstat(logs) is not None:
                if not (_is_real_dir(logs) and _marker_token(logs) == self.token):
                    return False
                inside = os.listdir(logs)
                if any(not (n == MARKER or n.endswith(".log")) or not _is_plain_file(logs / n) for n in inside):
                    return False
                for name in inside:
                    os.unlink(logs / name)
                os.rmdir(logs)
            for name in (MANIFEST, LOCK_NAME):
                _unlink_own(self.out / name)
            os.rmdir(self.out)
            return True
        return False

    def _clear_run(self) -> None:
        for name in sorted(os.listdir(self.out)):
            entry = self.out / name
            if name in self._manifest.foreign:
                continue
            if name.startswith(STAGING) or self._is_trash(name) or self._is_aside(entry):
                _rmtree(entry)
            elif self._made_by_edgeport(entry):
                self._remove(entry)


def _name_list(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(_plain_name(name) for name in value)


def _plain_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value == Path(value).name and value not in (".", "..")
