"""Devices a run checks and benchmarks on: `[device.NAME]` tables of edgeport.toml, or `ssh://user@host[:port]`.

    [device.pi5]
    ssh = "pi@pi5.local"          # what you would type after `ssh`: user@host or a Host of your ~/.ssh/config
    port = 22                     # optional; else ssh's own (your ssh config's Port)
    python = "python3"            # the device's python, with numpy and the runtimes (ai-edge-litert, onnxruntime)
    workdir = "/tmp"              # where the per-run folder is made (mktemp -d), removed afterwards
    threads = 4                   # runtime threads there (default: the run's --threads)
    env = { OMP_NUM_THREADS = "4" }
    ssh_config = "ssh_config"     # optional: an ssh config file (ssh -F), relative to edgeport.toml

A password is never read from a config: ssh runs with BatchMode=yes (keys, your agent, your ssh config).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeport.errors import UsageError

KEYS: dict[str, type] = {
    "ssh": str,
    "port": int,
    "python": str,
    "workdir": str,
    "threads": int,
    "env": dict,
    "ssh_config": str,
}
SECRETS = ("password", "passphrase", "pass")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Device:
    name: str  # how the report names it (the table's name, or host[:port] of an ssh:// URL)
    destination: str  # user@host or an ssh config Host
    port: int | None = None
    python: str = "python3"
    workdir: str = "/tmp"
    threads: int | None = None  # None: the run's --threads
    env: Mapping[str, str] = field(default_factory=dict)
    ssh_config: Path | None = None  # ssh -F FILE

    @property
    def host(self) -> str:
        return self.destination.rpartition("@")[2]

    def describe(self) -> str:
        return f"{self.name} ({self.destination}{f':{self.port}' if self.port else ''})"


def check_device_tables(tables: Any, where: str) -> None:
    """The config's [device.*] tables, checked when the config is read (a password: exit 2, one line)."""
    if not isinstance(tables, Mapping):
        raise UsageError(f'{where}: device must be tables, [device.NAME] with ssh = "user@host"')
    for name, table in tables.items():
        device_from_table(str(name), table, Path("."), where)


def device_from_table(name: str, table: Any, base: Path, where: str = "config") -> Device:
    here = f"{where} [device.{name}]"
    if not NAME.match(name):
        raise UsageError(f"{here}: a device name is letters, digits, '.', '_' and '-' (at most 64)")
    if not isinstance(table, Mapping):
        raise UsageError(f'{here}: must be a table with ssh = "user@host"')
    for key, value in table.items():
        if key.lower() in SECRETS:
            raise UsageError(
                f"{here}: {key} is never read from a config; use an SSH key (ssh-copy-id, your ssh-agent or "
                "IdentityFile in ~/.ssh/config) and remove the key"
            )
        if key not in KEYS:
            raise UsageError(f"{here}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        expected = KEYS[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"{here}: {key} must be a {expected.__name__}, got {type(value).__name__}")
    if "ssh" not in table or not str(table["ssh"]).strip():
        raise UsageError(f'{here}: no ssh destination; add ssh = "user@host" (or a Host of your ssh config)')
    env = dict(table.get("env", {}))
    for key, value in env.items():
        if not ENV_NAME.match(str(key)) or not isinstance(value, str | int | float):
            raise UsageError(f'{here}: env {key!r}: a variable name and a string value, e.g. OMP_NUM_THREADS = "4"')
    ssh_config = None
    if table.get("ssh_config"):
        ssh_config = Path(str(table["ssh_config"])).expanduser()
        ssh_config = ssh_config if ssh_config.is_absolute() else base / ssh_config
    return Device(
        name=name,
        destination=_destination(str(table["ssh"]).strip(), here),
        port=_port(table.get("port"), here),
        python=str(table.get("python", "python3")),
        workdir=str(table.get("workdir", "/tmp")),
        threads=_threads(table.get("threads"), here),
        env={str(k): str(v) for k, v in env.items()},
        ssh_config=ssh_config,
    )


def device_from_url(text: str) -> Device:
    """`ssh://[user@]host[:port]`: a device named host[:port], with the defaults."""
    parts = urlsplit(text)
    where = f"--device {text}"
    if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        raise UsageError(f"{where}: expected ssh://user@host or ssh://user@host:PORT")
    if parts.password is not None:
        raise UsageError(f"{where}: a password is never taken; use an SSH key (ssh-copy-id) or your ssh-agent")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{where}: the port is not a number from 1 to 65535") from None
    destination = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
    name = f"{parts.hostname}:{port}" if port else parts.hostname
    return Device(name=name, destination=_destination(destination, where), port=_port(port, where))


def resolve_devices(
    flags: Iterable[str], tables: Mapping[str, Any] | None, base: Path, where: str = "config"
) -> tuple[Device, ...]:
    """--device NAME|ssh://... (repeatable); without any, every [device.*] the config declares."""
    tables = dict(tables or {})
    names = list(dict.fromkeys(flags)) or list(tables)
    devices: list[Device] = []
    for name in names:
        if name.startswith("ssh://"):
            devices.append(device_from_url(name))
        elif name in tables:
            devices.append(device_from_table(name, tables[name], base, where))
        else:
            declared = f" (declared: {', '.join(tables)})" if tables else ""
            raise UsageError(
                f"--device {name}: no [device.{name}] in the config{declared}; declare it in edgeport.toml "
                '(ssh = "user@host") or pass --device ssh://user@host[:port]'
            )
    seen: set[str] = set()
    for device in devices:
        if device.name in seen:
            raise UsageError(f"--device {device.name}: named twice; each device is checked once per run")
        seen.add(device.name)
    return tuple(devices)


def _destination(text: str, where: str) -> str:
    if text.startswith("-") or any(c.isspace() for c in text) or not text:
        raise UsageError(f"{where}: ssh destination {text!r} is not user@host")
    return text


def _port(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(f"{where}: port {value!r} is not a port number from 1 to 65535")
    return value


def _threads(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise UsageError(f"{where}: threads {value!r}: runtime threads must be a whole number from 1 to 4096")
    return value
