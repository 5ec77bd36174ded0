"""Packaging: the wheel is edgeport as users install it. Built, installed non-editable into a fresh venv, set up
with `edgeport setup` and used from a folder outside the checkout; and the CLI starts light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TREES = {"edgeport": "edgeport", "converters": "edgeport/converters", "targets": "edgeport/targets"}
PACKAGE_DATA = ("*.txt", "*.json", "*.js", "*.html")
FOUR_TARGETS = ("tflite", "onnx", "tfjs", "tflm")


def expected_files() -> set[str]:
    """Every module and data file of the three source trees, as the wheel must name it."""
    names = set()
    for tree, prefix in SOURCE_TREES.items():
        root = ROOT / tree
        for pattern in ("*.py", *PACKAGE_DATA):
            for path in root.rglob(pattern):
                if "node_modules" not in path.parts and "__pycache__" not in path.parts:
                    names.add(f"{prefix}/{path.relative_to(root).as_posix()}")
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a clean copy of the sources, so no stale build/ folder can add or hide a file."""
    folder, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", *SOURCE_TREES):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__", "node_modules")} if (ROOT / name).is_dir() else {}),
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(folder.glob("edgeport-*.whl"))


def test_wheel_holds_every_module_and_data_file_and_the_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected_files() - names)
    assert not missing, missing
    extra = sorted(name for name in names - expected_files() if ".dist-info/" not in name)
    assert not extra, extra
    assert "edgeport/formats/tfjs/package-lock.json" in names and "edgeport/targets/tfjs/runner.js" in names
    assert not any(name.startswith(("converters/", "targets/", "tests/")) or "node_modules" in name for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tflite = edgeport.converters.tflite.converter:TFLiteConverter" in text
    assert "litert = edgeport.targets.litert.runtime:LiteRTRuntime" in text


def test_installed_wheel_sets_up_and_converts_four_targets_outside_the_checkout(wheel, models, tmp_path):
    venv, home, work = tmp_path / "venv", tmp_path / "edgeport-home", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, edgeport = venv / "bin" / "python", venv / "bin" / "edgeport"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{wheel}[onnx,tflm]"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("EDGEPORT_", "PYTHON"))}
    environment |= {"EDGEPORT_HOME": str(home), "PATH": f"{venv / 'bin'}:{environment['PATH']}"}

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(edgeport), *args],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    located = subprocess.run(
        [str(python), "-c", "import edgeport, edgeport.targets; print(edgeport.__file__)"],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert str(venv) in located.stdout and str(ROOT) not in located.stdout, located.stdout + located.stderr
    targets = [arg for name in FOUR_TARGETS for arg in ("--target", name)]
    assert run("doctor", *targets).returncode == 1  # the TF.js packages are not in the fresh EDGEPORT_HOME yet
    setup = run("setup", *targets)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "installed  @tensorflow/tfjs" in setup.stdout and "verified against the lockfile" in setup.stdout
    assert (home / "tfjs").is_dir() and not list((venv / "lib").rglob("node_modules"))
    again = run("setup", *targets)
    assert again.returncode == 0
    assert all(line.strip().startswith("present") for line in again.stdout.splitlines()), again.stdout
    doctor = run("doctor", "--json", *targets)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert all(row["available"] for row in json.loads(doctor.stdout)["plugins"] if row["wanted"])

    done = run(
        "convert",
        str(models["cnn"]),
        *[arg for name in FOUR_TARGETS for arg in ("-t", name)],
        "-o",
        "out",
        "--min-runs",
        "5",
        "--min-seconds",
        "0.2",
        "--no-history",
        "--json",
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["verdicts"] == dict.fromkeys(FOUR_TARGETS, "passed")
    for name, main in (
        ("tflite", "model.tflite"),
        ("onnx", "model.onnx"),
        ("tfjs", "model.json"),
        ("tflm", "model_data.cc"),
    ):
        assert (work / "out" / name / main).is_file()


def test_help_is_instant_no_heavy_imports():
    code = (
        "import sys; from edgeport.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'numpy', 'onnxruntime', 'ai_edge_litert', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
