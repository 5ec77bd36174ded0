"""One run's folder on one device: made with `mktemp -d` under the device's workdir, the runner copied into it
once, each target's artifact and samples into a subfolder; removed at the end whatever happened (a `trap` in
the remote shell for each target's subfolder, and `rm -rf` of the whole folder from the host in a `finally`).

Faults: each call is bounded on the device itself (its `timeout`, or a watchdog where it has none) before the
host's own limit; a lost connection (ConnectionLost) fails that call and the next one logs in again (the folder
is removed over the new login); a full workdir is said as such (`No space left on device`, or `df` when the
runner could not even write its exit status).
"""

from __future__ import annotations

import json
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.device.config import Device
from edgeport.device.ssh import (
    Connection,
    ConnectionLost,
    DeviceUnreachable,
    RemoteFailed,
    last_line,
    quote,
    tar_bytes,
    untar_bytes,
)

RUNNER = Path(__file__).with_name("runner.py")
TRANSFER_MARGIN_S = 60.0  # on top of a target's check and bench limits: copying the artifact there and back
KILL_AFTER_S = 5
RECONNECT_TIMEOUT_S = 30.0  # logging in again after a lost connection (the next target, removing the folder)
NO_SPACE = b"No space left on device"
LOW_SPACE_KIB = 64  # free space below this where the runner's results should have been: a full disk
STOPPED = 124  # the exit status of a call the device's watchdog stopped (as coreutils' `timeout` says it)


def guard(seconds: float) -> str:
    """Shell lines that bound a call on the device itself (the host's own limit comes later and kills only its ssh
    client): $T is the device's `timeout` for each step; a device without one gets a watchdog instead that, past
    `seconds`, sends SIGALRM to the call's process group (the runner and the script, whose trap cleans up and
    exits 124). `end_guard()` stops the watchdog."""
    watchdog = (
        f"(trap 'kill $s 2>/dev/null; exit 0' TERM; sleep {seconds:.0f} & s=$!; wait $s && kill -ALRM 0) "
        "</dev/null >/dev/null 2>&1 & W=$!"
    )
    return f"if command -v timeout >/dev/null 2>&1; then T='timeout -k {KILL_AFTER_S}'; else T=''; {watchdog}; fi"


def end_guard() -> str:
    return '[ -z "${W:-}" ] || kill "$W" 2>/dev/null'


@dataclass(frozen=True)
class TargetFiles:
    """What comes back from one target's run on the device: each result file by name."""

    files: dict[str, bytes]

    def rc(self, mode: str) -> tuple[int | None, int | None]:
        """(the runner's exit status, the seconds it ran), None where not known."""
        said = self.files.get(f"{mode}.rc", b"").decode("ascii", errors="replace").split()
        numbers = [int(word) if word.lstrip("-").isdigit() else None for word in said[:2]]
        return (numbers + [None, None])[0], (numbers + [None, None])[1]

    def log_tail(self, mode: str, lines: int = 2) -> str:
        text = self.files.get(f"{mode}.log", b"").decode("utf-8", errors="replace")
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " / ".join(kept[-lines:])[:400]


def workdir_expression(workdir: str) -> str:
    """The workdir as the remote shell reads it: `~` and `~/x` are $HOME, the rest quoted."""
    if workdir == "~":
        return '"$HOME"'
    if workdir.startswith("~/"):
        return '"$HOME"/' + quote(workdir[2:])
    return quote(workdir)


def in_sh(script: str) -> str:
    """A script for POSIX sh whatever the login shell is (fish, zsh...)."""
    return "sh -c " + quote(script)


class RemoteRun:
    """The device's per-run folder and the runner in it; `facts` is what the runner said of the device."""

    def __init__(self, device: Device):
        self.device = device
        self.connection = Connection(device)
        self.folder: str | None = None
        self.facts: dict[str, Any] = {}
        self.gone: str | None = None  # why logging in again after a lost connection failed: said once per row

    def start(self, limit: float) -> RemoteRun:
        """Log in, make the folder, copy the runner, read the device's facts. DeviceUnreachable when ssh
        cannot log in; RemoteFailed when the folder or the device's python does not work."""
        self.connection.open(limit)
        made = self.connection.run(
            in_sh(f"mktemp -d {workdir_expression(self.device.workdir)}/edgeport-run.XXXXXX"), limit, what="mktemp"
        )
        if made.returncode != 0:
            said = made.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise RemoteFailed(
                f"device {self.device.name}: cannot make a folder in workdir {self.device.workdir} "
                f"({said[-1] if said else f'exit {made.returncode}'}); set workdir to a writable folder"
            )
        self.folder = made.stdout.decode("utf-8", errors="replace").strip()
        if not self.folder.startswith("/") or "\n" in self.folder:
            raise RemoteFailed(f"device {self.device.name}: mktemp answered {self.folder!r}, not a folder")
        script = "\n".join(  # stopped on the device itself when its python hangs; the host's limit comes after
            [
                f"trap 'exit {STOPPED}' ALRM",
                guard(limit),
                f"cd {quote(self.folder)} && tar -xf - && ${{T:+$T {limit:.0f}}} {self._python()} runner.py facts",
                "r=$?",
                end_guard(),
                'exit "$r"',
            ]
        )
        done = self.connection.run(
            in_sh(script), limit + 2 * KILL_AFTER_S, stdin=tar_bytes({"runner.py": RUNNER}), what="the runner"
        )
        if done.returncode in (STOPPED, 137):
            raise RemoteFailed(
                f"device {self.device.name}: its python ({self.device.python}) did not answer within {limit:.0f} s "
                f"(hung, or far too slow); check `{self.device.python} -c 'import numpy'` there by hand"
            )
        if done.returncode != 0 and NO_SPACE in done.stderr:
            raise RemoteFailed(self._no_space("copying the runner", done.stderr))
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise RemoteFailed(
                f"device {self.device.name}: its python ({self.device.python}) cannot run edgeport's runner "
                f"({said[-1][:300] if said else f'exit {done.returncode}'}); it needs python 3.9+ and numpy "
                "(set python = in [device.NAME])"
            )
        try:
            self.facts = json.loads(done.stdout.decode("utf-8"))
        except ValueError:
            raise RemoteFailed(f"device {self.device.name}: the runner's facts were not JSON") from None
        return self

    def _python(self) -> str:
        env = " ".join(f"{k}={quote(v)}" for k, v in self.device.env.items())
        return (f"env {env} " if env else "") + " ".join(quote(part) for part in shlex.split(self.device.python))

    def run_target(
        self, slug: str, files: dict[str, Path | bytes], request: dict[str, Any], limits: dict[str, float]
    ) -> TargetFiles:
        """Copy `files` and the request into FOLDER/slug, run the runner for each mode in `limits` (check, bench:
        seconds) each in a fresh process under `timeout`, and bring back every result, log and exit status.
        The subfolder is removed by the remote shell's trap, whatever happens."""
        assert self.folder is not None
        self._reconnect(f"the runner ({slug})")
        target = f"{self.folder}/{slug}"
        steps = []
        on_device = sum(limits.values()) + 2 * KILL_AFTER_S * max(1, len(limits))  # the watchdog's, without `timeout`
        for mode, seconds in limits.items():
            limit = f"${{T:+$T {seconds:.0f}}} " if seconds > 0 else ""
            run = f"{limit}{self._python()} ../runner.py {mode} request.json"
            steps.append(f"s=$(date +%s); {run} >{mode}.log 2>&1; echo $? $(($(date +%s) - s)) >{mode}.rc")
        script = "\n".join(
            [
                f"d={quote(target)}",
                'mkdir "$d" || exit 90',
                "trap 'rm -rf \"$d\"' EXIT",
                "trap 'rm -rf \"$d\"; exit 129' HUP INT TERM",
                f"trap 'rm -rf \"$d\"; exit {STOPPED}' ALRM",
                'cd "$d" || exit 91',
                "tar -xf - || exit 92",
                guard(on_device),
                *steps,
                end_guard(),
                "tar -cf - *.npz *.log *.rc 2>/dev/null",
                "exit 0",
            ]
        )
        payload = tar_bytes({**files, "request.json": json.dumps(request).encode("utf-8")})
        seconds = sum(limits.values()) + TRANSFER_MARGIN_S
        what = f"the runner ({slug})"
        done = self.connection.run(in_sh(script), seconds, stdin=payload, what=what)
        if done.returncode == STOPPED:
            raise RemoteFailed(
                f"{what} on {self.device.name} ran past its time limit ({on_device:.0f} s) and was stopped on the "
                "device (it has no `timeout`); raise --stage-timeout check/bench if it is only slow"
            )
        if NO_SPACE in done.stderr:
            raise RemoteFailed(self._no_space(f"{what} copied the artifact or wrote its results", done.stderr))
        if done.returncode != 0:
            raise RemoteFailed(f"{what} on {self.device.name} failed: {last_line(done.stderr, done.returncode)}")
        try:
            found = TargetFiles(untar_bytes(done.stdout))
        except (tarfile.TarError, OSError) as exc:
            raise RemoteFailed(f"{what} on {self.device.name}: its results could not be read ({exc})") from None
        unsaid = [mode for mode in limits if found.rc(mode)[0] is None]
        if unsaid:  # the runner's exit status could not even be written: say why when it is a full disk
            free = self.free_kib()
            if free is not None and free < LOW_SPACE_KIB:
                raise RemoteFailed(self._no_space(f"{what} wrote its results", f"{free} KiB free".encode()))
        return found

    def free_kib(self) -> int | None:
        """Free space in the run's folder on the device (`df -Pk`), None when not known."""
        try:
            done = self.connection.run(in_sh(f"df -Pk {quote(self.folder or '.')}"), 30, what="df")
        except RemoteFailed:
            return None
        fields = done.stdout.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        words = fields[0].split() if fields else []
        return int(words[3]) if len(words) >= 4 and words[3].isdigit() else None

    def _no_space(self, what: str, said: bytes) -> str:
        lines = [line.strip() for line in said.decode("utf-8", errors="replace").splitlines() if line.strip()]
        detail = next((line for line in lines if NO_SPACE.decode() in line), lines[-1] if lines else "")
        return (
            f"device {self.device.name}: no space left in workdir {self.device.workdir} when {what} "
            f"({detail[:200]}); free space there (df -h {self.device.workdir}) or set workdir to a folder with room"
        )

    def _reconnect(self, what: str) -> None:
        """Log in again when an earlier call lost the connection; ConnectionLost (the same reason for every later
        row) when that fails."""
        if self.gone is not None:
            raise ConnectionLost(self.gone)
        if self.connection.master_alive():
            return
        self.connection.close()
        try:
            self.connection.open(RECONNECT_TIMEOUT_S)
        except DeviceUnreachable as exc:
            self.gone = (
                f"device {self.device.name}: connection lost earlier in this run and logging in again failed before "
                f"{what} ({exc.message})"
            )
            raise ConnectionLost(self.gone) from None

    def close(self) -> None:
        """Remove the folder from the host (also after a failure; logging in again if the connection was lost),
        then end the ssh master."""
        try:
            if self.folder is not None:
                try:
                    self._reconnect("removing the folder")
                    self.connection.run(in_sh(f"rm -rf {quote(self.folder)}"), 60, what="removing the folder")
                except (RemoteFailed, DeviceUnreachable):
                    pass
        finally:
            self.connection.close()

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
