"""Summaries of latency samples (seconds) and ratios between them."""

from __future__ import annotations

import math
import statistics
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 1]."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(samples: list[float], *, failures: int = 0) -> dict[str, Any]:
    """n, p50, p90, p99, min, max, mean (seconds) and the samples themselves."""
    return {
        "n": len(samples),
        "failures": failures,
        "p50": percentile(samples, 0.50),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "min": min(samples) if samples else math.nan,
        "max": max(samples) if samples else math.nan,
        "mean": statistics.fmean(samples) if samples else math.nan,
        "samples": samples,
    }


def ratio(numerator: float, denominator: float) -> float:
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def ratios(slow: dict[str, Any], fast: dict[str, Any]) -> dict[str, float]:
    """How many times `fast` beats `slow` at p50 and p99 (> 1: fast is faster)."""
    return {"p50": ratio(slow["p50"], fast["p50"]), "p99": ratio(slow["p99"], fast["p99"])}


def fmt_seconds(value: float) -> str:
    """A latency in the unit that reads best."""
    if math.isnan(value):
        return "n/a"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1e3:.0f} ms"
    if value >= 0.001:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2f}x"
