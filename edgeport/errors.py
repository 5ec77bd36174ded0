"""Errors and exit codes: the one place where a failure becomes a process exit status.

Every message is one line that says what is wrong, where, and what to do.
"""

from __future__ import annotations

import enum
import re
from typing import Any


class ExitCode(enum.IntEnum):
    OK = 0  # every target converted, every gate passed
    GATE_FAILED = 1  # an accuracy or latency gate failed (or a regression against a baseline)
    USAGE = 2  # the command line, the config or the data do not fit
    LOAD_OR_CONVERSION = 3  # the SavedModel could not be loaded, a conversion failed, or the report not written
    INFRASTRUCTURE = 4  # fleet: a model's task was lost with its worker or node on every attempt


_HEADERS = ("Graph execution error:", "in user code:")  # TensorFlow's first lines; the op's message comes later
_TF_NOISE = ("Detected at node ", "<stack traces unavailable>", "Node: ", "File ")
_EXCEPTION_LINE = re.compile(r"(?:\w+\.)*\w*(?:Error|Exception): \S")


def first_line(exc: BaseException, limit: int = 400) -> str:
    """The first non-empty line of an exception's message (its type name if it has none), at most `limit` long.

    TensorFlow's run-time errors open with a header line ("Graph execution error:") and put the op's message
    below the stack of where the op was defined; that message is kept: "Graph execution error at node ReadFile:
    /data/vocab.txt; No such file or directory"."""
    raw = [line.rstrip() for line in str(exc).splitlines() if line.strip()]
    if not raw:
        return type(exc).__name__[:limit]
    head = raw[0].strip()
    if head in _HEADERS and len(raw) > 1:
        return _tensorflow_line(head, raw[1:])[:limit]
    return head[:limit]


def _tensorflow_line(head: str, rest: list[str]) -> str:
    """The header with the op's message: the first line that is neither the stack nor TensorFlow's node notes."""
    detected = [line.split() for line in rest if line.startswith("Detected at node ")]
    node = detected[0][3] if detected and len(detected[0]) > 3 else ""
    if head == "in user code:":  # a function traced from Python: the exception's own line, indented in the stack
        message = next((line.strip() for line in rest if _EXCEPTION_LINE.match(line.strip())), "")
    else:  # the message sits at the left margin; the stack's lines and the [[{{node ...}}]] note are indented
        message = next(
            (line for line in rest if not line[0].isspace() and not line.startswith(_TF_NOISE)),
            "",
        )
        if re.fullmatch(r"\d+ root error\(s\) found\.", message):  # a v1 session: the first root error below
            message = next((line.strip() for line in rest[rest.index(message) + 1 :] if line[0].isspace()), message)
    where = f" at node {node}" if node else ""
    return f"{head[:-1]}{where}: {message}" if message else head


class EdgeportError(Exception):
    """Base of every error edgeport reports to a user as one line."""

    exit_code: ExitCode = ExitCode.LOAD_OR_CONVERSION

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep the class when crossing a process boundary
        return (type(self), (self.message,))


class UsageError(EdgeportError):
    exit_code = ExitCode.USAGE


class UntrustedModel(UsageError):
    """The pre-load scan found ops that touch files, writers, Python or unknown code, and no --trust-model."""

    def __init__(self, message: str, scan: Any = None):
        super().__init__(message)
        self.scan = scan  # the edgeport.model.scan.ScanResult

    def __reduce__(self):
        return (type(self), (self.message, self.scan))


class ModelLoadError(EdgeportError):
    exit_code = ExitCode.LOAD_OR_CONVERSION


class ConversionError(EdgeportError):
    exit_code = ExitCode.LOAD_OR_CONVERSION


class RuntimeFailure(EdgeportError):
    """The target runtime could not load or run an artifact."""

    exit_code = ExitCode.GATE_FAILED


class RuntimeUnavailable(EdgeportError):
    """The runtime is not installed here; the message holds the command that installs it."""

    exit_code = ExitCode.GATE_FAILED


class OutputError(EdgeportError):
    """The report could not be written into the output folder (a full disk); no partial report is left."""

    exit_code = ExitCode.LOAD_OR_CONVERSION


class WorkerDied(EdgeportError):
    """An isolated worker process was killed (signal) or exited without answering."""

    exit_code = ExitCode.LOAD_OR_CONVERSION


class StageTimedOut(EdgeportError):
    """A stage's worker did not answer within the stage's time limit; it was stopped with every process it
    started. The message reads `<stage> timed out after N s ...`."""

    exit_code = ExitCode.LOAD_OR_CONVERSION

    def __init__(self, message: str, stage: str = "", seconds: float = 0.0):
        super().__init__(message)
        self.stage = stage
        self.seconds = seconds

    def __reduce__(self):
        return (type(self), (self.message, self.stage, self.seconds))
