"""One run's folder on one device: made with `mktemp -d` under the device's workdir, the runner copied into it
once, each target's artifact and samples into a subfolder; removed at the end whatever happened (a `trap` in
the remote shell for each target's subfolder, and `rm -rf` of the whole folder from the host in a `finally`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.device.config import Device
from edgeport.device.ssh import Connection, DeviceUnreachable, RemoteFailed, quote, tar_bytes, untar_bytes

RUNNER = Path(__file__).with_name("runner.py")
TRANSFER_MARGIN_S = 60.0  # on top of a target's check and bench limits: copying the artifact there and back
KILL_AFTER_S = 5


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
        script = f"cd {quote(self.folder)} && tar -xf - && {self._python()} runner.py facts"
        done = self.connection.run(in_sh(script), limit, stdin=tar_bytes({"runner.py": RUNNER}), what="the runner")
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
        target = f"{self.folder}/{slug}"
        steps = []
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
                'cd "$d" || exit 91',
                "tar -xf - || exit 92",
                f"if command -v timeout >/dev/null 2>&1; then T='timeout -k {KILL_AFTER_S}'; else T=''; fi",
                *steps,
                "tar -cf - *.npz *.log *.rc 2>/dev/null",
                "exit 0",
            ]
        )
        payload = tar_bytes({**files, "request.json": json.dumps(request).encode("utf-8")})
        seconds = sum(limits.values()) + TRANSFER_MARGIN_S
        out = self.connection.check_output(in_sh(script), seconds, stdin=payload, what=f"the runner ({slug})")
        return TargetFiles(untar_bytes(out))

    def close(self) -> None:
        """Remove the folder from the host (also after a failure), then end the ssh master."""
        try:
            if self.folder is not None and self.connection.control_path.exists():
                try:
                    self.connection.run(in_sh(f"rm -rf {quote(self.folder)}"), 60, what="removing the folder")
                except (RemoteFailed, DeviceUnreachable):
                    pass
        finally:
            self.connection.close()

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
