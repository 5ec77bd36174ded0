"""Packaging: the wheel carries edgeport, edgeport.converters and edgeport.targets; the CLI starts light."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_core_converters_targets_and_entry_points(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("edgeport-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("edgeport/pipeline.py", "edgeport/converters/tflite.py", "edgeport/converters/tflite_builtin_ops.txt",
                   "edgeport/targets/litert.py", "edgeport/converters/onnx.py", "edgeport/converters/tfjs/__init__.py",
                   "edgeport/converters/tflm.py", "edgeport/targets/onnxruntime.py", "edgeport/targets/tfjs_node.py",
                   "edgeport/targets/tflm.py", "edgeport/targets/tfjs/runner.js", "edgeport/targets/tfjs/package-lock.json"):
        assert module in names, module
    assert not any(name.startswith(("converters/", "targets/", "tests/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tflite = edgeport.converters.tflite:TFLiteConverter" in text
    assert "litert = edgeport.targets.litert:LiteRTRuntime" in text


def test_help_is_instant_no_heavy_imports():
    code = ("import sys; from edgeport.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'numpy', 'onnxruntime', 'ai_edge_litert', 'rich') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
