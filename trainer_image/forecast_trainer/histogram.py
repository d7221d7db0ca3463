"""The error histogram's buckets: the trainer's copy of the operator's rule (pure).

The shard report (report.py, v2) sends CV errors as bucket counts the operator adds into
status.results; both sides must put a value in the same bucket. This is the rule of
``trainingjob_operator/histogram.py`` (BASE 1e-4, GROWTH 1.25, 115 buckets); a unit test
imports both packages and checks that they agree.
"""

from __future__ import annotations

import math

BASE = 1e-4
GROWTH = 1.25
BUCKETS = 115


def bucket_of(value: float) -> int:
    """Bucket ``i`` holds ``(BASE * GROWTH**(i-1), BASE * GROWTH**i]``; bucket 0 everything up to BASE."""
    if value <= BASE:
        return 0
    i = math.ceil(math.log(value / BASE, GROWTH) - 1e-9)
    return min(max(i, 0), BUCKETS - 1)


def fixed_text(value: float, decimals: int = 6) -> str:
    """An accumulator as text with a fixed number of decimals (``error_sum``)."""
    return f"{value:.{decimals}f}"
