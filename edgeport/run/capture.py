"""Capture what native converters print (C++ logs on fd 2, Python warnings) so it lands in the report."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class Captured:
    def __init__(self):
        self.lines: list[str] = []

    def warnings(self, limit: int = 50) -> tuple[str, ...]:
        keep = [line for line in self.lines if line.strip() and _is_worth_reporting(line)]
        unique = list(dict.fromkeys(keep))
        return tuple(unique[:limit])


_NOISE = (
    "cpu_feature_guard",
    "To enable the following instructions",
    "absl::InitializeLog",
    "cudart_stub",
    "Could not find cuda drivers",
    "oneDNN custom operations",
    "TF_ENABLE_ONEDNN_OPTS",
    "tf.lite.Interpreter is deprecated",
    "fully_quantize: ",
    "Created TensorFlow Lite XNNPACK delegate",
)


def _is_worth_reporting(line: str) -> bool:
    return not any(noise in line for noise in _NOISE)


@contextlib.contextmanager
def capture_output() -> Iterator[Captured]:
    """Redirect fds 1 and 2, Python warnings and logging into a buffer for the duration."""
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler = logging.StreamHandler(stream=_LineSink(captured))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            root.removeHandler(handler)
            sink.seek(0)
            captured.lines.extend(sink.read().decode("utf-8", "replace").splitlines())
            captured.lines.extend(" ".join(f"{w.category.__name__}: {w.message}".split()) for w in caught)


class _LineSink:
    def __init__(self, captured: Captured):
        self._captured = captured

    def write(self, text: str) -> None:
        self._captured.lines.extend(line for line in text.splitlines() if line.strip())

    def flush(self) -> None:
        pass
