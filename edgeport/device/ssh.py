"""The transport to a device: the user's own OpenSSH client, one multiplexed connection per device per run.

The master is started once (`ssh -f -N` with ControlMaster, a ControlPath in a private temp folder and a
ControlPersist idle limit as a safety net should edgeport itself be killed) and closed with `ssh -O exit`;
every command and every file goes over it (files as a tar stream on ssh's stdin, results as a tar stream on
its stdout). The user's ssh config, agent, ProxyJump and known hosts apply: edgeport adds BatchMode=yes (ssh
never prompts) and never turns host key checking off. Every call has a time limit.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from edgeport.device.config import Device
from edgeport.errors import EdgeportError

CONNECT_TIMEOUT_S = 10  # ssh's ConnectTimeout: a device that does not answer
CONTROL_PERSIST_S = 900  # the master's idle limit: it outlives no edgeport run by more than this
EXIT_TIMEOUT_S = 15


class DeviceUnreachable(EdgeportError):
    """ssh could not connect or log in; the message says why and what to do."""


class RemoteFailed(EdgeportError):
    """A command on the device failed or ran past its time limit."""


class ConnectionLost(RemoteFailed):
    """The ssh connection (the master) went away during or before a command: the device rebooted, lost power or
    network, or its sshd was stopped."""


def ssh_program() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise DeviceUnreachable("ssh is not installed here; run: apt-get install -y openssh-client")
    return found


class Connection:
    """An open, multiplexed ssh connection to one device. Use as a context manager: `close` ends the master."""

    def __init__(self, device: Device):
        self.device = device
        self._ssh = ssh_program()
        self._folder = Path(tempfile.mkdtemp(prefix="edgeport-ssh-"))  # 0700: the socket is ours alone
        self.control_path = self._folder / "c.sock"
        self._open = False

    # ---- the master ----------------------------------------------------------------------------------------

    def options(self) -> list[str]:
        device = self.device
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        options += ["-o", f"ControlPath={self.control_path}", "-o", "ServerAliveInterval=15"]
        if device.ssh_config is not None:
            options = ["-F", str(device.ssh_config), *options]
        if device.port is not None:
            options += ["-p", str(device.port)]
        return options

    def open(self, timeout: float) -> Connection:
        """Start the master (ssh logs in once); DeviceUnreachable with the reason ssh gave."""
        if self.device.ssh_config is not None and not self.device.ssh_config.is_file():
            raise DeviceUnreachable(f"device {self.device.name}: ssh_config {self.device.ssh_config} does not exist")
        self._folder.mkdir(mode=0o700, exist_ok=True)  # again after a lost connection's close
        log = self._folder / "master.log"
        command = [
            self._ssh,
            *self.options(),
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPersist={CONTROL_PERSIST_S}",
            "-f",
            "-N",
            "--",
            self.device.destination,
        ]
        with open(log, "wb") as errors:
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                self.close()
                raise DeviceUnreachable(
                    f"device {self.device.describe()}: ssh did not log in within {timeout:.0f} s"
                ) from None
        said = log.read_text(encoding="utf-8", errors="replace")
        if done.returncode != 0:
            resolved = self.resolved()
            self.close()
            raise DeviceUnreachable(explain_failure(self.device, said, address_of(self.device, resolved), resolved))
        self._open = True
        return self

    def address(self) -> tuple[str, int | None]:
        """(host name, port) as ssh resolves the destination through the user's config (`ssh -G`), for the
        messages: ssh-keyscan reads no ssh config."""
        return address_of(self.device, self.resolved())

    def resolved(self) -> dict[str, list[str]]:
        """ssh's configuration for the destination (`ssh -G`): each keyword's values, in order ({} if unknown)."""
        try:
            done = subprocess.run(
                [self._ssh, *self.options(), "-G", "--", self.device.destination],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=EXIT_TIMEOUT_S,
                check=False,
                text=True,
            )
        except subprocess.TimeoutExpired:
            return {}
        said: dict[str, list[str]] = {}
        for line in done.stdout.splitlines():
            key, space, value = line.partition(" ")
            if space:
                said.setdefault(key.lower(), []).append(value)
        return said

    def master_alive(self) -> bool:
        """The master still answers on its socket (`ssh -O check`)."""
        if not self._open or not self.control_path.exists():
            return False
        try:
            done = subprocess.run(
                [self._ssh, *self.options(), "-O", "check", "--", self.device.destination],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=EXIT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def lost(self, what: str, detail: str = "") -> ConnectionLost:
        """The one line for a connection that went away, with what was under way and what to do."""
        return ConnectionLost(
            f"device {self.device.describe()}: connection lost during {what}"
            f"{f' ({detail})' if detail else ''}; check that the device is on and its network up "
            f"({by_hand(self.device)} works), then run again"
        )

    def close(self) -> None:
        """End the master (`ssh -O exit`), then remove the private folder of its socket."""
        if self.control_path.exists():
            try:
                subprocess.run(
                    [self._ssh, *self.options(), "-O", "exit", "--", self.device.destination],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=EXIT_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 5
            while self.control_path.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        self._open = False
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- commands and files --------------------------------------------------------------------------------

    def run(
        self, script: str, timeout: float, *, stdin: bytes | None = None, what: str = "a command"
    ) -> subprocess.CompletedProcess[bytes]:
        """`script` by the device's shell, over the master (ControlMaster=no: never a second master). Raises
        RemoteFailed past `timeout`; ConnectionLost when the master is gone (before the call, or ssh's own exit
        status 255 with the master gone after it); else the exit status is the caller's to read."""
        if self._open and not self.control_path.exists():  # never a silent second login past a lost master
            raise self.lost(what, "the ssh connection had already closed")
        command = [self._ssh, *self.options(), "-o", "ControlMaster=no", "--", self.device.destination, script]
        try:
            done = subprocess.run(
                command,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            if self._open and not self.master_alive():
                raise self.lost(what, f"no answer within {timeout:.0f} s") from None
            raise RemoteFailed(
                f"{what} on {self.device.name} ran past its time limit ({timeout:.0f} s); the device may be "
                "overloaded or hung: raise --stage-timeout or check it by hand"
            ) from None
        if done.returncode == 255 and self._open and not self.master_alive():
            raise self.lost(what, f"ssh: {last_line(done.stderr, done.returncode)}")
        return done

    def check_output(
        self, script: str, timeout: float, *, stdin: bytes | None = None, what: str = "a command"
    ) -> bytes:
        done = self.run(script, timeout, stdin=stdin, what=what)
        if done.returncode != 0:
            raise RemoteFailed(f"{what} on {self.device.name} failed: {last_line(done.stderr, done.returncode)}")
        return done.stdout


def address_of(device: Device, resolved: Mapping[str, list[str]]) -> tuple[str, int | None]:
    """(host name, port) from `ssh -G`'s answer, else the device's own."""
    port = (resolved.get("port") or [""])[0]
    return (resolved.get("hostname") or [device.host])[0], int(port) if port.isdigit() else device.port


def by_hand(device: Device, program: str = "ssh") -> str:
    """The command the user would type to reach the device as edgeport does."""
    return " ".join(
        [
            program,
            *(["-F", str(device.ssh_config)] if device.ssh_config else []),
            *(["-p", str(device.port)] if device.port else []),
            device.destination,
        ]
    )


def identity_files(resolved: Mapping[str, list[str]]) -> tuple[list[str], bool]:
    """(the IdentityFiles ssh would offer, whether IdentitiesOnly is on) from `ssh -G`'s answer."""
    files = [os.path.expanduser(path) for path in resolved.get("identityfile", [])]
    return files, (resolved.get("identitiesonly") or ["no"])[0].lower() == "yes"


def explain_failure(
    device: Device,
    said: str,
    address: tuple[str, int | None] | None = None,
    resolved: Mapping[str, list[str]] | None = None,
) -> str:
    """ssh's failure as one line: what went wrong with which device, and what to do. `address`: the host name
    and port ssh resolved the destination to (ssh-keyscan reads no ssh config); `resolved`: `ssh -G`'s answer
    (which keys ssh offers)."""
    text = " ".join(line.strip() for line in said.splitlines() if line.strip() and not line.startswith("Warning:"))
    host, resolved_port = address or (device.host, device.port)
    keyscan = f"ssh-keyscan{f' -p {resolved_port}' if resolved_port and resolved_port != 22 else ''} {host}"
    manual = by_hand(device)
    where = f"device {device.describe()}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in said:
        return (
            f"{where}: the host key of {host} CHANGED since it was recorded in known_hosts; if the device was "
            f"reinstalled, remove the old key (ssh-keygen -R {host}) and connect once by hand: {manual}"
        )
    if "Host key verification failed" in said or "host key is known" in said:
        return (
            f"{where}: the host key of {host} is not known (Host key verification failed); check its fingerprint "
            f"and add it: {keyscan} >> ~/.ssh/known_hosts, or connect once by hand: {manual}"
        )
    if "Permission denied" in said or "Too many authentication failures" in said:
        files, only = identity_files(resolved or {})
        present = [path for path in files if "%" in path or os.path.isfile(path)]
        config = str(device.ssh_config) if device.ssh_config else "~/.ssh/config"
        if only and files and not present:
            return (
                f"{where}: ssh could not log in: IdentityFile {', '.join(files)} does not exist (IdentitiesOnly "
                f"yes, so no other key is tried); fix IdentityFile in {config}, or create that key (ssh-keygen -t "
                f"ed25519 -f {files[0]}) and copy it to the device ({by_hand(device, 'ssh-copy-id -i ' + files[0])})"
            )
        offered = f"; keys offered: {', '.join(present)}" if present and only else ""
        copy = by_hand(device, f"ssh-copy-id -i {present[0]}" if present and only else "ssh-copy-id")
        return (
            f"{where}: ssh could not log in, the device refused the key ({text[-200:]}{offered}); put your public "
            f"key on the device ({copy}) or load it in your ssh-agent; edgeport never asks for a password"
        )
    return f"{where}: unreachable over ssh ({text[-300:] or 'no answer'}); check that it is on and that {manual} works"


def last_line(stderr: bytes, code: int) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:400] if lines else f"exit {code}"


def tar_bytes(files: Mapping[str, Path | bytes]) -> bytes:
    """A tar stream of `files` (archive name -> a local file or its bytes) for `tar -xf -` on the device."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in files.items():
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def untar_bytes(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar stream from the device, by name (never written anywhere)."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                extracted = tar.extractfile(member)
                if extracted is not None:
                    found[os.path.basename(member.name)] = extracted.read()
    return found


def quote(text: str) -> str:
    return shlex.quote(text)
