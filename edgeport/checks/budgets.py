"""The one budget gate: `max_<measurement>` / `min_<measurement>` against a target's measurements.

Measurements come from the converter (`Artifact.measurements`: a TFLM model's arena and flash) and the
runtime (`Runtime.measure`), plus the artifact's size; budgets from the user's config and from a converter's
options (a board profile). Each failure is one line with both numbers: `arena 81,920 B > RAM limit 65,536 B`.
Latency budgets (`max_p50_ms`...) are gated on the benchmark's statistics instead and are skipped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LIMIT_NAMES = {"arena_bytes": "RAM limit", "flash_bytes": "flash limit", "size_bytes": "size limit"}


def budget_failures(
    measurements: Mapping[str, object], budgets: Mapping[str, int | float], skip: Iterable[str] = ()
) -> list[str]:
    """One line per budget a measurement misses; budgets without a numeric measurement are not judged here."""
    skipped = set(skip)
    lines = []
    for budget, limit in budgets.items():
        bound, _, key = budget.partition("_")
        value = measurements.get(key)
        if budget in skipped or bound not in ("max", "min") or not _is_number(value):
            continue
        if (bound == "max" and value <= limit) or (bound == "min" and value >= limit):  # type: ignore[operator]
            continue
        unit = " B" if key.endswith("_bytes") else ""
        name = key.removesuffix("_bytes")
        limit_name = LIMIT_NAMES.get(key, "budget") if bound == "max" else "minimum"
        lines.append(
            f"{name} {_number(value)}{unit} {'>' if bound == 'max' else '<'} {limit_name} "  # type: ignore[arg-type]
            f"{_number(limit)}{unit}"
        )
    return lines


def unmeasured(
    measurements: Mapping[str, object], budgets: Mapping[str, int | float], skip: Iterable[str] = ()
) -> list[str]:
    """Budgets whose measurement this target does not have (a typo, or a runtime that does not measure it)."""
    skipped = set(skip)
    return [budget for budget in budgets if budget not in skipped and budget.partition("_")[2] not in measurements]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: int | float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.4g}"
