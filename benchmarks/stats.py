"""Pure statistics and number formatting of the benchmark figures (no I/O, unit-tested)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the runs; NaNs for no runs."""
    if not values:
        nan = float("nan")
        return nan, nan, nan
    return float(statistics.median(values)), float(min(values)), float(max(values))


def fmt_value(value: float, unit: str = "") -> str:
    """A figure for the table: thousands separators, sensible decimals, a dash for NaN."""
    if value != value:  # NaN
        return "\u2013"
    if unit == "\u00d7":
        if value < 1:
            return f"{value:.3f}\u00d7"
        return f"{value:,.1f}\u00d7" if value < 100 else f"{value:,.0f}\u00d7"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def fmt_range(values: Sequence[float], unit: str = "") -> str:
    """'min-max' of the runs (or a dash without runs, or the one value for a single run)."""
    if not values:
        return "\u2013"
    _, lo, hi = summary(values)
    if len(values) == 1:
        return fmt_value(lo, unit)
    return f"{fmt_value(lo, unit)}\u2013{fmt_value(hi, unit)}"


def ratio_runs(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Ratios ours/base: the median ratio first, then the extreme ones (for min-max)."""
    if not ours or not base or min(base) <= 0:
        return []
    med = summary(ours)[0] / summary(base)[0]
    return [med, min(ours) / max(base), max(ours) / min(base)]
