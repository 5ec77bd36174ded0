"""The one budget gate: max_/min_ budgets on measurements, both numbers in every line."""

from __future__ import annotations

from edgeport.checks.budgets import budget_failures, unmeasured


def test_exceeded_budgets_only_with_both_numbers_and_the_limits_name():
    measured = {"arena_bytes": 81920, "flash_bytes": 10, "size_bytes": 4032, "litert_equal_share": 0.5}
    budgets = {
        "max_arena_bytes": 65536.0,
        "max_flash_bytes": 2048,
        "max_size_bytes": 1024.0,
        "min_litert_equal_share": 0.9,
        "max_p50_ms": 1.0,
    }
    assert budget_failures(measured, budgets, skip=("max_p50_ms",)) == [
        "arena 81,920 B > RAM limit 65,536 B",
        "size 4,032 B > size limit 1,024 B",
        "litert_equal_share 0.5 < minimum 0.9",
    ]


def test_budgets_without_a_measurement_are_named_not_judged():
    budgets = {"max_arena_bytes": 1024, "max_p50_ms": 1.0, "max_typo_bytes": 5}
    assert budget_failures({"size_bytes": 10}, budgets) == []
    assert unmeasured({"size_bytes": 10}, budgets, skip=("max_p50_ms",)) == ["max_arena_bytes", "max_typo_bytes"]
