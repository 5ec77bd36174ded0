"""Run every benchmark script in turn (`make bench`); each prints a Markdown table to paste into README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = ["bench_tflite.py", "bench_onnx.py", "bench_tfjs.py"]


def main() -> int:
    here = Path(__file__).parent
    failed = 0
    for script in SCRIPTS:
        print(f"\n## {script}\n", flush=True)
        failed |= subprocess.call([sys.executable, str(here / script)])
    return failed


if __name__ == "__main__":
    sys.exit(main())
