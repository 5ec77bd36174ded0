"""`edgeport setup` and `edgeport doctor` against this machine's real installs, and their error paths."""

from __future__ import annotations

import json
import os
import shutil

from edgeport.cli.setup import run_setup
from edgeport.formats.tfjs import packages
from edgeport.formats.tfjs.install import InstallFailed, install_packages
from edgeport.run.requirements import PYTHON, extra_specifiers, python_package
from edgeport_testing import run_cli


def lines_of(result) -> list[str]:
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def test_setup_check_finds_everything_make_test_installed():
    result = run_cli("setup", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith("present") for line in lines_of(result)), result.stdout
    assert any("@tensorflow/tfjs" in line for line in lines_of(result))


def test_doctor_lists_every_converter_and_runtime_with_versions():
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {(row["kind"], row["name"]): row for row in json.loads(result.stdout)["plugins"]}
    for kind, name in [
        ("converter", "tflite"),
        ("converter", "onnx"),
        ("converter", "tfjs"),
        ("converter", "tflm"),
        ("runtime", "litert"),
        ("runtime", "onnxruntime"),
        ("runtime", "tfjs-node"),
        ("runtime", "tfjs-browser"),
        ("runtime", "tflm"),
    ]:
        assert rows[(kind, name)]["available"] and rows[(kind, name)]["version"], (kind, name)
    assert "tflite-micro" in rows[("converter", "tflm")]["version"]


def test_a_fresh_home_lacks_the_tfjs_packages_and_says_the_fix(tmp_path):
    env = {"EDGEPORT_HOME": str(tmp_path / "home")}
    check = run_cli("setup", "--check", "--target", "tfjs", env=env)
    assert check.returncode == 1
    assert any(line.startswith("missing") and "edgeport setup --target tfjs" in line for line in lines_of(check))
    assert not (tmp_path / "home").exists()  # --check installs nothing
    doctor = run_cli("doctor", "--json", "--target", "tfjs", env=env)
    assert doctor.returncode == 1
    rows = {row["name"]: row for row in json.loads(doctor.stdout)["plugins"] if row["kind"] == "runtime"}
    assert not rows["tfjs-node"]["available"] and rows["tfjs-node"]["fix"] == "edgeport setup --target tfjs-node"
    assert rows["litert"]["available"] and not rows["litert"]["wanted"]
    assert run_cli("doctor", "--target", "tflite", env=env).returncode == 0  # tflite needs nothing of that


def test_unknown_target_is_a_usage_error_in_one_line():
    for command in ("setup", "doctor"):
        result = run_cli(command, "--target", "tensorrt")
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "unknown target 'tensorrt'" in result.stderr


def test_npm_failing_leaves_no_half_installed_project(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_HOME", str(tmp_path / "home"))
    failing = tmp_path / "npm"
    failing.write_text("#!/bin/sh\necho 'npm ERR! network unreachable' >&2\nexit 1\n")
    failing.chmod(0o755)
    try:
        install_packages(str(failing))
    except InstallFailed as exc:
        assert "npm ci failed (npm ERR! network unreachable)" in str(exc)
    else:
        raise AssertionError("a failing npm must fail the install")
    assert not packages.project_dir().exists() and not list(packages.project_dir().parent.iterdir())


def test_installed_packages_are_checked_against_the_lockfile(tmp_path):
    assert packages.lock_mismatches() == []
    copy = tmp_path / "node_modules"
    shutil.copytree(packages.node_modules(), copy, symlinks=True)
    installed = json.loads((copy / ".package-lock.json").read_text())
    installed["packages"]["node_modules/@tensorflow/tfjs-core"]["version"] = "4.21.0"
    (copy / ".package-lock.json").write_text(json.dumps(installed))
    assert packages.lock_mismatches(copy) == ["@tensorflow/tfjs-core 4.21.0 does not match the lockfile's 4.22.0"]
    (copy / ".package-lock.json").unlink()
    assert "not installed by npm ci" in packages.lock_mismatches(copy)[0]


def test_a_system_requirement_as_non_root_prints_the_command(monkeypatch):
    monkeypatch.setenv("EDGEPORT_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    printed: list[str] = []
    code = run_setup(["tfjs@tfjs-browser"], check_only=False, echo=printed.append)
    assert code == 1
    assert any(
        line.strip().startswith("missing  chromium") and "sudo apt-get install -y chromium" in line for line in printed
    ), printed


def test_an_install_that_does_not_make_the_requirement_present_is_a_failure(monkeypatch):
    """apt really installs chromium here (as root), but an override pointing elsewhere still hides it."""
    monkeypatch.setenv("EDGEPORT_CHROMIUM", "/nonexistent/chromium")
    printed: list[str] = []
    assert run_setup(["tfjs@tfjs-browser"], check_only=False, echo=printed.append) == 1
    if os.geteuid() == 0:
        assert any(line.strip().startswith("failed  chromium") and "still not found" in line for line in printed)
    else:
        assert any(line.strip().startswith("missing  chromium") for line in printed), printed


def test_python_requirements_come_from_edgeports_own_extras():
    assert any(spec.startswith("tflite-micro") for spec in extra_specifiers("tflm"))
    requirement = python_package("onnxruntime", extra="onnx")
    assert requirement.kind == PYTHON and requirement.present and requirement.fix == "pip install 'edgeport[onnx]'"
    assert requirement.install and requirement.install[0].startswith("onnxruntime")
    missing = python_package("no-such-distribution", extra="onnx")
    assert not missing.present and missing.install == ("no-such-distribution",)
