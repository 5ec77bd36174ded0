"""`edgeport doctor --device NAME`: log in, make (and remove) a folder in the workdir, run the runner's `facts`,
and say in one table what the device is and which runtimes its python can import."""

from __future__ import annotations

from dataclasses import dataclass

from edgeport.device.config import Device
from edgeport.device.remote import RemoteRun
from edgeport.device.runner import DISTRIBUTIONS, RUNTIMES
from edgeport.device.ssh import DeviceUnreachable, RemoteFailed
from edgeport.report import wording

PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Probe:
    """One row of the table: what was looked at, whether it is fine, what was found (or what to do)."""

    what: str
    ok: bool
    found: str


def probe(device: Device, timeout: float = PROBE_TIMEOUT_S) -> list[Probe]:
    """Every row; an unreachable device is one row (ssh) that says why."""
    rows = [Probe("ssh", False, "")]
    remote = RemoteRun(device)
    try:
        try:
            remote.start(timeout)
        except DeviceUnreachable as exc:
            return [Probe("ssh", False, exc.message)]
        except RemoteFailed as exc:
            writable = remote.folder is not None
            return [
                Probe("ssh", True, f"logged in to {device.destination}"),
                Probe("workdir", writable, device.workdir if writable else exc.message),
                *([Probe("python", False, exc.message)] if writable else []),
            ]
        facts = remote.facts
        rows = [
            Probe("ssh", True, f"logged in to {device.destination} (one multiplexed connection)"),
            Probe("architecture", True, str(facts.get("arch"))),
            Probe("cpu", True, str(facts.get("cpu"))),
            Probe("cores", True, str(facts.get("cores"))),
            Probe("memory", True, wording.size(facts.get("memory_bytes"))),
            Probe("os", True, f"{facts.get('os')} (kernel {facts.get('kernel')})"),
            Probe("python", True, f"{device.python}: Python {facts.get('python')}, numpy {facts.get('numpy')}"),
        ]
        for runtime in RUNTIMES:
            said = facts.get("runtimes", {}).get(runtime, {})
            found = said.get("version") or (
                f"not importable ({said.get('error', '?')}); there: {device.python} -m pip install "
                f"{DISTRIBUTIONS[runtime]}"
            )
            rows.append(Probe(runtime, bool(said.get("version")), found))
        rows.append(Probe("workdir", True, f"{device.workdir} writable ({remote.folder}, removed)"))
    finally:
        remote.close()
    return rows


def healthy(rows: list[Probe]) -> bool:
    """Logged in, python and the workdir work, and at least one runtime is there."""
    by_name = {row.what: row.ok for row in rows}
    runtimes = any(by_name.get(runtime, False) for runtime in RUNTIMES)
    return by_name.get("ssh", False) and by_name.get("workdir", False) and by_name.get("python", False) and runtimes
