"""edgeport: convert a TensorFlow SavedModel for the edge, check it on the real runtime, benchmark it.

import edgeport
report = edgeport.convert("saved_model", targets=["tflite", "tflite:int8"], data="holdout.npz")
report.exit_code, report.target("tflite:int8").accuracy
"""

from __future__ import annotations

__all__ = ["convert"]


def __getattr__(name: str):  # lazy: `import edgeport` and `edgeport --help` stay light
    if name == "convert":
        from edgeport.cli.api import convert

        return convert
    raise AttributeError(f"module 'edgeport' has no attribute {name!r}")
