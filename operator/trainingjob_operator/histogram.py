"""CV errors in status: decimal strings and a sparse geometric histogram (pure).

Kubernetes API conventions advise against floats in APIs (they do not round-trip exactly across
languages and encoders), so status carries numbers as decimal strings with a fixed number of
significant digits, never in exponent notation: ``"12.35"``, ``"0.003142"``, ``"12346"``.

Bucket ``i`` holds errors in ``(BASE * GROWTH**(i-1), BASE * GROWTH**i]``; bucket 0 everything up
to ``BASE``. Geometric from 1e-4 to ~1e7 (sMAPE in percent, MAE/RMSE in sales units all fit), fine
enough that the median estimate is within one bucket (±12 %). A bucket is shown by its upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BASE = 1e-4
GROWTH = 1.25
BUCKETS = 115
SIGNIFICANT_DIGITS = 4
BOUND_DIGITS = 4
"""Digits of a bucket's upper bound: adjacent bounds differ by 25 %, so they never print alike."""


def decimal_text(value: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    """``value`` with ``digits`` significant digits in plain decimal notation (no exponent)."""
    if value == 0 or not math.isfinite(value):
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - magnitude, 0)
    return f"{value:.{decimals}f}"


def fixed_text(value: float, decimals: int = 6) -> str:
    """``value`` with a fixed number of decimals (an accumulator kept exactly enough)."""
    return f"{value:.{decimals}f}"


def upper_bound(i: int) -> float:
    return BASE * GROWTH**i


def bucket_of(value: float) -> int:
    if value <= BASE:
        return 0
    i = math.ceil(math.log(value / BASE, GROWTH) - 1e-9)
    return min(max(i, 0), BUCKETS - 1)


def bound_text(i: int) -> str:
    return decimal_text(upper_bound(i), BOUND_DIGITS)


def bucket_of_bound(text: str) -> int:
    """The bucket whose upper bound printed as ``text`` (the nearest bound: printing rounds)."""
    value = float(text)
    if value <= BASE:
        return 0
    return min(max(round(math.log(value / BASE, GROWTH)), 0), BUCKETS - 1)


def add(counts: Mapping[int, int], value: float) -> dict[int, int]:
    out = dict(counts)
    i = bucket_of(value)
    out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def median(counts: Mapping[int, int]) -> float | None:
    """Median estimated from the bucket counts (geometric middle of the median's bucket)."""
    total = sum(counts.values())
    if total == 0:
        return None
    half = (total + 1) / 2
    running = 0
    for i, count in sorted(counts.items()):
        running += count
        if running >= half:
            hi = upper_bound(i)
            return hi / math.sqrt(GROWTH) if i > 0 else hi / 2
    return None  # pragma: no cover - unreachable


def from_legacy(sparse: Mapping[str, int]) -> dict[int, int]:
    """Counts from the earlier status format, a map ``{"<bucket index>": count}``."""
    return {int(k): int(v) for k, v in sparse.items()}
