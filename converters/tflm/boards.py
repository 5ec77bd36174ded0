"""Device budgets for microcontrollers: sizes like "256KB" and board profiles, as `max_<measurement>` budgets.

Independent of edgeport: errors are ValueError with a one-line message; the caller turns them into its
own error type. A budget is `max_<measurement>` in bytes (`max_arena_bytes`, `max_flash_bytes`). A figure no
public source gave is null in boards.json (and named in the board's `not_found`): no budget, never a guess.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

BOARDS_FILE = Path(__file__).with_name("boards.json")


def parse_size(value: str | int, *, what: str) -> int:
    """`256KB`, `1MB`, `1.5MB`, `65536`, `65536B` -> bytes (KB = 1024 bytes), with edgeport's one size parser."""
    from edgeport.errors import UsageError
    from edgeport.run.options import parse_size as parse_bytes

    try:
        size = parse_bytes(value, what)
    except UsageError:
        raise ValueError(f"{what} {value!r}: give a size such as 256KB, 1MB or a number of bytes") from None
    if size <= 0:
        raise ValueError(f"{what} {value!r}: a size must be more than 0 bytes")
    return size


@cache
def boards() -> dict[str, dict]:
    profiles = json.loads(BOARDS_FILE.read_text())
    return {name: profile for name, profile in profiles.items() if not name.startswith("_")}


def board_profile(name: str) -> dict:
    known = boards()
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key not in known:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(known)}")
    return known[key]


def device_budgets(*, board: str | None, ram_limit: str | int | None, flash_limit: str | int | None) -> dict[str, int]:
    """The budgets a board and explicit limits give; an explicit limit wins over the board's figure."""
    budgets: dict[str, int] = {}
    if board:
        profile = board_profile(board)
        figures = {"max_arena_bytes": profile.get("ram_bytes"), "max_flash_bytes": profile.get("flash_bytes")}
        budgets = {key: int(value) for key, value in figures.items() if value is not None}  # null: not found
    if ram_limit is not None:
        budgets["max_arena_bytes"] = parse_size(ram_limit, what="ram_limit")
    if flash_limit is not None:
        budgets["max_flash_bytes"] = parse_size(flash_limit, what="flash_limit")
    return budgets


def board_npu(name: str) -> str | None:
    """The Ethos-U generation a board carries (`ethos-u55`...), or None."""
    return board_profile(name).get("npu")
