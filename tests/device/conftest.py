"""A real sshd on loopback as the device (the venv's python has numpy, ai_edge_litert and onnxruntime), and a
tiny SavedModel. sshd missing after `edgeport setup` is a failure, never a skip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sshd import LoopbackDevice, start_sshd

DEVICE_PYTHON = str(Path(sys.executable))


@pytest.fixture(scope="session")
def loopback(tmp_path_factory) -> LoopbackDevice:
    device = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield device
    device.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from edgeport_testing import save_multi_io

    return save_multi_io(tmp_path_factory.mktemp("device-model") / "multi")


def ssh_processes() -> list[str]:
    """Every process started with an edgeport control socket (the ssh masters and clients of a run)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "edgeport-ssh-" in command and "ControlPath" in command:
            found.append(f"{pid}: {command}")
    return found
