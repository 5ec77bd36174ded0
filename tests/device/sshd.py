"""A real OpenSSH server on loopback for the device tests: a random high port, a temp host key, a temp user key,
run as the current user (`sshd -D -e -f CONFIG`), and an ssh config file (ssh -F) that reaches it as a device."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
KEYGEN = shutil.which("ssh-keygen")


@dataclass
class LoopbackDevice:
    folder: Path
    port: int
    user: str
    process: subprocess.Popen
    ssh_config: Path  # Host edgeport-test-device -> 127.0.0.1:port, the user key, known_hosts with the host key
    known_hosts: Path
    host_key_line: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> None:
    assert KEYGEN, "ssh-keygen is missing: run `edgeport setup` (it installs openssh-client)"
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


def start_sshd(folder: Path, extra: tuple[str, ...] = ()) -> LoopbackDevice:
    """`extra`: more sshd_config lines (e.g. SetEnv PATH=... for a device without some tool)."""
    assert SSHD, "sshd is missing: `make test` installs it (make test-programs: openssh-server)"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    host_key, user_key = folder / "host_key", folder / "user_key"
    _keygen(host_key)
    _keygen(user_key)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "user_key.pub").read_text())
    user = getpass.getuser()
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                f"PidFile {folder / 'sshd.pid'}",
                "MaxSessions 20",
                "LogLevel ERROR",
                *extra,
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder (Debian)
    with open(folder / "sshd.log", "wb") as log:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    host_line = f"[127.0.0.1]:{port} " + " ".join((folder / "host_key.pub").read_text().split()[:2])
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(host_line + "\n")
    ssh_config = write_ssh_config(folder / "ssh_config", port, user, user_key, known_hosts)
    return LoopbackDevice(folder, port, user, process, ssh_config, known_hosts, host_line)


def write_ssh_config(path: Path, port: int, user: str, key: Path, known_hosts: Path, host: str = "127.0.0.1") -> Path:
    path.write_text(
        "\n".join(
            [
                "Host *",
                f"  HostName {host}",
                f"  Port {port}",
                f"  User {user}",
                f"  IdentityFile {key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {known_hosts}",
                "  GlobalKnownHostsFile /dev/null",
                "  LogLevel ERROR",
                "",
            ]
        )
    )
    return path
