"""How every number a person reads is worded: byte sizes, speed ratios, durations, latencies, shares.

One function per kind of number, used by report.html, summary.md, the CLI, `compare`, `history`, the fleet's
files, the progress lines and every message that names a size. Imports nothing but the standard library, so
any module (plug-ins included) may use it.

Sizes are binary, as edgeport's size parser reads them (run/options.parse_size: 1 KB = 1024 bytes). A missing
value (None) is "–"; a value that cannot be compared (a time of 0) is said to be so, never worded as a ratio.
"""

from __future__ import annotations

import math

MISSING = "–"
SIZE_UNITS = (("KB", 1 << 10, 1), ("MB", 1 << 20, 1), ("GB", 1 << 30, 2), ("TB", 1 << 40, 2))
MICROSECONDS_BELOW_MS = 0.1  # under this, 3 decimals of ms keep fewer than 3 significant digits: µs instead


def _unknown(value: float | None) -> str | None:
    """The words for a value that is not a finite number, or None when it is one."""
    if value is None:
        return MISSING
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return None


def size(n_bytes: float | None) -> str:
    """44.6 KB, 28.0 MB, 1.07 GB, 0 B; "–" for None."""
    if (said := _unknown(n_bytes)) is not None:
        return said
    assert n_bytes is not None
    sign, value = ("-" if n_bytes < 0 else ""), abs(n_bytes)
    if round(value) < 1024:
        return f"{sign}{round(value)} B"
    for index, (unit, scale, digits) in enumerate(SIZE_UNITS):
        # the smallest unit whose rounded value stays under 1024 (1023.96 KB reads 1.0 MB, not 1024.0 KB)
        if round(value / scale, digits) < 1024 or index == len(SIZE_UNITS) - 1:
            return f"{sign}{value / scale:,.{digits}f} {unit}"
    raise AssertionError("unreachable")


def ratio(value: float | None, reference: float | None, *, than: str = "") -> str:
    """Two times worded as speed: "2.7x slower", "1.4x faster", "same speed" (equal to the shown precision).

    `value` is the time of what is described, `reference` the time it is compared with; `than` names the
    reference ("2.7x slower than the SavedModel", "same speed as the SavedModel"). A missing time is "–"; a
    time of zero or below (under the timer's resolution) or not finite gives no ratio, and says so.
    """
    suffix = f" than {than}" if than else ""
    if value is None or reference is None:
        return MISSING
    if not (math.isfinite(value) and math.isfinite(reference)) or value <= 0 or reference <= 0:
        zero = value == 0 or reference == 0
        return f"no speed ratio{' to ' + than if than else ''} ({'a time of 0' if zero else 'a time not measured'})"
    slower = value >= reference
    factor = value / reference if slower else reference / value
    shown = _factor(factor)
    if shown in ("1.0", "1"):
        return f"same speed{' as ' + than if than else ''}"
    return f"{shown}x {'slower' if slower else 'faster'}{suffix}"


def _factor(factor: float) -> str:
    """2.7, 12, 1,234: one decimal under 10, whole numbers above."""
    return f"{factor:.1f}" if round(factor, 1) < 10 else f"{factor:,.0f}"


def times(value: float | None, reference: float | None) -> str:
    """How many times the reference a non-time quantity is (a size): "0.31x", "2.5x"; "–" without both."""
    if value is None or reference is None or not (math.isfinite(value) and math.isfinite(reference)):
        return MISSING
    if reference == 0:
        return "no ratio (a reference of 0)"
    factor = value / reference
    return f"{factor:.2f}x" if factor < 10 else f"{factor:,.0f}x"


def duration(seconds: float | None) -> str:
    """Wall time: "412 ms" under a second, "3.2 s", "36 s", "1 min 06 s", "2 h 05 min", "3 d 04 h"."""
    if (said := _unknown(seconds)) is not None:
        return said
    assert seconds is not None
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds == 0:
        return "0 s"
    if round(seconds * 1000) < 1:
        return latency_ms(seconds * 1000)
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f} ms"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days:,} d {hours:02d} h"


def latency_ms(ms: float | None) -> str:
    """One inference's time: "0.412 ms", "33.720 ms", "1,234.500 ms"; µs where 3 decimals of ms would round the
    value away ("6 µs" for 0.006 ms, "45.6 µs")."""
    if (said := _unknown(ms)) is not None:
        return said
    assert ms is not None
    if 0 < abs(ms) < MICROSECONDS_BELOW_MS and round(abs(ms) * 1000, 1) < 100:
        return f"{ms * 1000:.3g} µs"
    return f"{ms:,.3f} ms"


def percent(fraction: float | None, digits: int = 1) -> str:
    """A share as a percentage: 0.97333 -> "97.3%" (digits=2: "97.33%")."""
    if (said := _unknown(fraction)) is not None:
        return said
    assert fraction is not None
    return f"{fraction:.{digits}%}"


def points(fraction: float | None, digits: int = 2) -> str:
    """A difference of two shares in percentage points: 0.0133 -> "1.33 pp"; never "-0.00 pp"."""
    if (said := _unknown(fraction)) is not None:
        return said
    assert fraction is not None
    value = round(fraction * 100, digits) + 0.0  # + 0.0: -0.0 reads 0
    return f"{value:.{digits}f} pp"


def latency_interval(ms: float | None, interval: tuple[float, float] | None) -> str:
    """A latency with its 95 % interval, both ends in the value's unit and decimals: "0.412 ms [0.405, 0.419]",
    "45.6 µs [44.9, 46.1]"; "[n/a]" where the runs were too few to bound it; "–" for no value."""
    said = latency_ms(ms)
    if ms is None or _unknown(ms) is not None:
        return said
    if interval is None:
        return f"{said} [n/a]"
    if said.endswith(" µs"):
        ends = [f"{end * 1000:.3g}" if math.isfinite(end) else str(_unknown(end)) for end in interval]
    else:
        ends = [f"{end:,.3f}" if math.isfinite(end) else str(_unknown(end)) for end in interval]
    return f"{said} [{ends[0]}, {ends[1]}]"


def load(value: float | None) -> str:
    """A load average (runnable processes): "1.52", "0.00"; "–" for None."""
    if (said := _unknown(value)) is not None:
        return said
    assert value is not None
    return f"{value:.2f}"


def p_value(p: float | None) -> str:
    """A test's p-value: "p = 0.50", "p = 0.032", "p = 0.004", "p < 0.001"; "–" for None."""
    if (said := _unknown(p)) is not None:
        return said
    assert p is not None
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if round(p, 2) >= 0.1 else f"p = {p:.3f}"
