"""--device end to end over a real sshd on loopback: the device rows' numbers, the folder and the ssh master
gone afterwards, and the error paths (an unknown host key, an unreachable device, a failing runner, a
password in the config). One convert run holds three devices (a good one, one whose host key is unknown, one
whose runner crashes) so the suite pays for one model load and conversion."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from conftest import DEVICE_PYTHON, ssh_processes
from sshd import write_ssh_config

from edgeport_testing import assert_one_line_error, quick_bench, run_cli

QUICK = ["--samples", "4", *quick_bench(), "--no-baseline", "--no-history"]


def device_table(name: str, loopback, workdir: Path, *, python: str = DEVICE_PYTHON, ssh_config=None) -> str:
    return (
        f'[device.{name}]\nssh = "edgeport-test-device"\npython = "{python}"\nworkdir = "{workdir}"\n'
        f'ssh_config = "{ssh_config or loopback.ssh_config}"\n'
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when this returns: nothing listens there


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "device-workdir"
    folder.mkdir()
    return folder


def test_each_artifact_is_checked_and_benchmarked_on_the_device_beside_the_host(
    loopback, tiny_model, tmp_path, workdir
):
    stranger = write_ssh_config(  # the same server, but its host key is not in this known_hosts
        tmp_path / "stranger_config", loopback.port, loopback.user, loopback.folder / "user_key", tmp_path / "empty"
    )
    (tmp_path / "empty").write_text("")
    crashing = tmp_path / "python"  # a third device's python: answers `facts`, then dies on the artifact
    crashing.write_text(f'#!/bin/sh\n[ "$2" = facts ] && exec {DEVICE_PYTHON} "$@"\necho "Bus error" >&2\nkill -9 $$\n')
    crashing.chmod(crashing.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "edgeport.toml"
    config.write_text(
        device_table("loop", loopback, workdir)
        + device_table("stranger", loopback, workdir, ssh_config=stranger)
        + device_table("crashing", loopback, workdir, python=str(crashing))
    )
    out = tmp_path / "out"
    result = run_cli("convert", tiny_model, "-t", "tflite", "-t", "onnx", "--config", config, "-o", out, *QUICK)
    assert result.returncode == 1, result.stderr  # the stranger's rows failed; the run went on
    report = json.loads((out / "report.json").read_text())
    assert report["verdicts"] == {"tflite": "passed", "onnx": "passed"}
    rows = {(row["target"], row["device"]): row for row in report["devices"]}
    assert set(rows) == {(t, d) for t in ("tflite", "onnx") for d in ("loop", "stranger", "crashing")}
    for target in report["targets"]:
        row = rows[(target["name"], "loop")]
        assert row["status"] == "passed", row["reason"]
        host = {o["name"]: o["cosine"] for o in target["accuracy"]["outputs"]}
        device = {o["name"]: o["cosine"] for o in row["accuracy"]["outputs"]}
        assert host.keys() == device.keys() == {"logits", "probs"}
        assert all(abs(host[name] - device[name]) < 1e-6 for name in host), (host, device)
        assert (
            row["latency"]["runs"] >= 5 and 0 < len(row["latency"]["run_ms"]) <= row["latency"]["runs"]
        )  # raw times kept
        assert row["latency"]["p50_ms"] > 0 and row["latency"]["peak_rss_mb"] > 10
        assert row["host_p50_ms"] == target["latency"]["p50_ms"]
        assert row["runtime_version"] == target["runtime_version"]
        assert row["facts"]["arch"] == os.uname().machine and row["facts"]["cores"] == os.cpu_count()
        assert row["facts"]["runtimes"]["litert"]["version"].startswith("ai-edge-litert ")
        stranger_row = rows[(target["name"], "stranger")]
        assert stranger_row["status"] == "failed" and "not reachable" in stranger_row["reason"]
        assert stranger_row["accuracy"] is None and stranger_row["latency"] is None
        crashed = rows[(target["name"], "crashing")]  # a failing runner fails its row only
        assert crashed["status"] == "failed" and crashed["facts"]["arch"] == os.uname().machine
        assert "check: the runner exited with 137 (killed by signal 9, out of memory?): Bus error" in crashed["reason"]
        assert "bench: the runner exited with 137" in crashed["reason"]
    said = [w for w in report["warnings"] if "stranger" in w]
    assert len(said) == 1, report["warnings"]  # an unreachable device is said once
    assert "host key of 127.0.0.1 is not known" in said[0] and f"ssh-keyscan -p {loopback.port} 127.0.0.1" in said[0]
    assert "connect once by hand" in said[0]
    assert list(workdir.iterdir()) == []  # every per-run folder is gone, the crashed runner's too
    assert ssh_processes() == []  # every ssh master closed
    summary = (out / "summary.md").read_text()
    assert "**On the device**" in summary and "| tflite | loop | pass |" in summary
    assert 'id="devices"' in (out / "report.html").read_text()
    assert "on the device" in result.stdout and "loop" in result.stdout
    assert (out / "logs" / "tflite--loop.log").is_file()


def test_doctor_probes_the_device(loopback, tmp_path, workdir):
    config = tmp_path / "edgeport.toml"
    config.write_text(device_table("loop", loopback, workdir))
    result = run_cli("doctor", "--device", "loop", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["what"]: row for row in json.loads(result.stdout)["rows"]}
    assert all(row["ok"] for row in rows.values()), rows
    assert rows["architecture"]["found"] == os.uname().machine and rows["cores"]["found"] == str(os.cpu_count())
    assert rows["onnxruntime"]["found"].startswith("onnxruntime ") and "writable" in rows["workdir"]["found"]
    table = run_cli("doctor", "--device", "loop", "--config", config)
    assert table.returncode == 0 and "the device can run" in table.stdout
    assert list(workdir.iterdir()) == [] and ssh_processes() == []


def test_doctor_says_why_a_device_cannot_be_reached(loopback, tmp_path):
    port = closed_port()
    result = run_cli("doctor", "--device", f"ssh://nobody@127.0.0.1:{port}", "--json")
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)["rows"]
    assert not row["ok"] and f"device 127.0.0.1:{port}" in row["found"] and "unreachable over ssh" in row["found"]
    assert ssh_processes() == []


def test_a_missing_runtime_or_python_is_said_by_doctor(loopback, tmp_path, workdir):
    from edgeport.device.config import Device
    from edgeport.device.doctor import healthy, probe

    shadow = tmp_path / "shadow" / "ai_edge_litert"  # on the device's PYTHONPATH: LiteRT does not import there
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no wheel for this board")\n')
    device = Device(
        "board",
        "edgeport-test-device",
        python=DEVICE_PYTHON,
        workdir=str(workdir),
        env={"PYTHONPATH": str(shadow.parent)},
        ssh_config=loopback.ssh_config,
    )
    rows = {row.what: row for row in probe(device)}
    assert not rows["litert"].ok and "no wheel for this board" in rows["litert"].found
    assert "pip install ai-edge-litert" in rows["litert"].found
    assert rows["onnxruntime"].ok and healthy(list(rows.values()))  # one runtime is enough
    no_python = Device("board", "edgeport-test-device", python="/nonexistent/python3", ssh_config=loopback.ssh_config)
    rows = {row.what: row for row in probe(no_python)}
    assert rows["ssh"].ok and rows["workdir"].ok and not rows["python"].ok
    assert "cannot run edgeport's runner" in rows["python"].found and not healthy(list(rows.values()))
    assert list(workdir.iterdir()) == [] and ssh_processes() == []


def test_a_password_in_the_config_is_refused(tmp_path, tiny_model):
    config = tmp_path / "edgeport.toml"
    config.write_text('[device.pi5]\nssh = "pi@pi5.local"\npassword = "raspberry"\n')
    result = run_cli("convert", tiny_model, "-t", "tflite", "--config", config, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "[device.pi5]: password is never read", "use an SSH key")
    assert not (tmp_path / "out").exists()


def test_an_unknown_device_name_is_one_line(tmp_path, tiny_model):
    config = tmp_path / "edgeport.toml"
    config.write_text('[device.pi5]\nssh = "pi@pi5.local"\n')
    result = run_cli("convert", tiny_model, "-t", "tflite", "--config", config, "--device", "pi4")
    assert_one_line_error(result, 2, "--device pi4: no [device.pi4]", "declared: pi5", "ssh://user@host")
