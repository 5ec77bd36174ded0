"""A real run shared by the report, regression and history tests (test_{html_report,regression,history}.py).

Not a conftest.py (tests/conftest.py is imported as `conftest` by other tests); each test module declares a
thin session fixture calling `digits_report_once`, and the run itself is cached here, so it happens once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

DIGITS_TARGETS = ("tflite", "tflite:int8")
MIN_RUNS, MIN_SECONDS = 20, 0.2


@dataclass(frozen=True)
class DigitsRun:
    model: Path
    holdout: Path
    calibration: Path
    out: Path
    report: object  # edgeport.report.Report


_CACHE: dict[str, DigitsRun] = {}


def digits_report_once(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> DigitsRun:
    """The digits example converted for tflite and tflite:int8 by the real pipeline (check, bench, baseline)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    import edgeport
    from edgeport.contracts import TimingProtocol

    out = tmp_path_factory.mktemp("digits-report")
    report = edgeport.convert(
        digits / "saved_model",
        targets=list(DIGITS_TARGETS),
        data=digits / "holdout.npz",
        calibration=digits / "calibration.npz",
        output=out,
        protocol=TimingProtocol(min_runs=MIN_RUNS, min_seconds=MIN_SECONDS),
    )
    _CACHE["run"] = DigitsRun(digits / "saved_model", digits / "holdout.npz", digits / "calibration.npz", out, report)
    return _CACHE["run"]


def digits_cli_args(run: DigitsRun, out: Path, *targets: str) -> list[str]:
    """The CLI equivalent of the digits_report run (same targets, samples and timing protocol)."""
    target_args = [arg for target in (targets or DIGITS_TARGETS) for arg in ("-t", target)]
    return [
        "convert",
        str(run.model),
        *target_args,
        "-o",
        str(out),
        "--data",
        str(run.holdout),
        "--calibration",
        str(run.calibration),
        "--min-runs",
        str(MIN_RUNS),
        "--min-seconds",
        str(MIN_SECONDS),
    ]
