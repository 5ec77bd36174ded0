"""The README's Python API pasted into a script runs (issue 23): workers start through edgeport's own entry point
(edgeport.run.worker_main), never by importing the caller's `__main__` again. Four callers, each converting a
tiny model to tflite with the check on, in a fresh interpreter: a script without an `if __name__ ==
"__main__"` guard (`python script.py`), the same script on stdin (`python - < script.py`), a Jupyter kernel
(ipykernel, driven by jupyter_client), and `python -c`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport_testing import save_tiny

SCRIPT = """\
import json
import edgeport

report = edgeport.convert({model!r}, targets=["tflite"], output={out!r}, bench=False, baseline=False)
metrics = report.target("tflite").accuracy.outputs[0]
print("RESULT " + json.dumps({{"exit_code": report.exit_code, "cosine": metrics.cosine,
    "max_abs_error": metrics.max_abs_error, "samples": report.target("tflite").accuracy.samples}}))
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("api-scripts") / "tiny", seed=5)


def script(model: Path, out: Path) -> str:
    return SCRIPT.format(model=str(model), out=str(out))


def result_of(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, output  # printed once: the script ran once, not again in a worker
    return json.loads(lines[0][len("RESULT ") :])


def assert_converted_and_checked(result: dict, out: Path) -> None:
    assert result["exit_code"] == 0
    assert result["cosine"] > 0.9999 and result["max_abs_error"] < 1e-4 and result["samples"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and [t["name"] for t in report["targets"]] == ["tflite"]
    assert (out / "tflite" / "model.tflite").is_file()


def run_python(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "in use by another edgeport run" not in done.stderr, done.stderr
    return done


def test_a_script_without_a_main_guard(model, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "convert_it.py").write_text(script(model, out))
    done = run_python(["convert_it.py"], cwd=tmp_path)
    assert_converted_and_checked(result_of(done.stdout), out)


def test_a_script_on_stdin(model, tmp_path):
    out = tmp_path / "out"
    done = run_python(["-"], cwd=tmp_path, stdin=script(model, out))
    assert_converted_and_checked(result_of(done.stdout), out)


def test_python_c(model, tmp_path):
    out = tmp_path / "out"
    done = run_python(["-c", script(model, out)], cwd=tmp_path)
    assert_converted_and_checked(result_of(done.stdout), out)


def test_a_jupyter_kernel(model, tmp_path):
    from jupyter_client.manager import start_new_kernel  # ipykernel is in [dev]: missing is a failure

    out = tmp_path / "out"
    code = script(model, out)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env={**os.environ})
    try:
        outputs: list[str] = []

        def keep(message) -> None:
            content = message["content"]
            if message["msg_type"] == "stream":
                outputs.append(content["text"])
            elif message["msg_type"] == "error":
                outputs.append("\n".join(content["traceback"]))

        reply = client.execute_interactive(code, timeout=600, output_hook=keep)
        assert reply["content"]["status"] == "ok", "".join(outputs)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert_converted_and_checked(result_of("".join(outputs)), out)
