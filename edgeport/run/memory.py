"""The memory budget of a run (`--max-memory`): no edgeport process tree may hold more than it.

Every wait for a worker (run/isolation.Worker) watches the resident memory of the worker and every process
below it (VmRSS from /proc, summed: shared pages count in each process that maps them, so the figure errs
high); past the budget the tree is stopped and the stage fails with `MemoryBudgetExceeded`, naming the stage
and the peak, before the kernel's OOM killer picks a process of its own. The default is what the machine has
(MemTotal) minus a margin for everything else on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeport.errors import EdgeportError
from edgeport.report.wording import size

DEFAULT_MARGIN_FRACTION = 0.1  # of MemTotal, left to the rest of the machine by default
MIN_MARGIN_BYTES = 1 << 30


class MemoryBudgetExceeded(EdgeportError):
    """A worker's process tree went past --max-memory and was stopped (the message names the stage and what it
    held)."""


@dataclass(frozen=True)
class MemoryBudget:
    limit_bytes: int
    source: str  # how it was set: "--max-memory 8GB", or the default's arithmetic

    def describe(self) -> str:
        return f"{size(self.limit_bytes)} ({self.source})"


def machine_memory_bytes() -> int | None:
    """MemTotal from /proc/meminfo; None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget() -> MemoryBudget | None:
    total = machine_memory_bytes()
    if total is None:
        return None
    margin = max(MIN_MARGIN_BYTES, int(total * DEFAULT_MARGIN_FRACTION))
    return MemoryBudget(total - margin, f"default: the machine's {size(total)} minus {size(margin)}")


def resident_bytes(pid: int) -> int:
    """VmRSS of one process, 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0
