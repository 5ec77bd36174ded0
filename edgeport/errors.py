"""Errors and exit codes: the one place where a failure becomes a process exit status.

Every message is one line that says what is wrong, where, and what to do.
"""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    OK = 0  # every target converted, every gate passed
    GATE_FAILED = 1  # an accuracy or latency gate failed (or a regression against a baseline)
    USAGE = 2  # the command line, the config or the data do not fit
    LOAD_OR_CONVERSION = 3  # the SavedModel could not be loaded, a conversion failed, or the report not written
    INFRASTRUCTURE = 4  # fleet: a model's task was lost with its worker or node on every attempt


def first_line(exc: BaseException, limit: int = 400) -> str:
    """The first non-empty line of an exception's message (its type name if it has none), at most `limit` long."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


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
