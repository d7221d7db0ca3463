"""Pure status arithmetic: index ranges, counts, conditions, results summary, progress."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from trainingjob_operator.api import Condition, ProductFailure, ResultsSummary

MAX_FAILURES = 20
CONDITION_TYPES = ("Running", "Complete", "Failed", "Suspended", "Stalled")

# Error histogram: bucket i holds errors in (BASE * GROWTH**(i-1), BASE * GROWTH**i]; bucket 0 holds
# everything up to BASE. Geometric from 1e-4 to ~1e7 (sMAPE in percent, MAE/RMSE in sales units all
# fit), fine enough that the median estimate is within one bucket (±12 %). Stored sparse: {"i": count}.
HISTOGRAM_BASE = 1e-4
HISTOGRAM_GROWTH = 1.25
HISTOGRAM_BUCKETS = 115


# ---------------------------------------------------------------- index ranges


def compress_indexes(indexes: Iterable[int]) -> str:
    """``{0,1,2,3,7}`` -> ``"0-3,7"`` (the format of an Indexed Job's completedIndexes)."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_indexes(text: str | None) -> set[int]:
    """``"0-3,7"`` -> ``{0,1,2,3,7}``; raises ValueError on malformed text."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            start, end = int(lo), int(hi)
            if end < start or start < 0:
                raise ValueError(f"bad index range {part!r}")
            out.update(range(start, end + 1))
        else:
            value = int(part)
            if value < 0:
                raise ValueError(f"bad index {part!r}")
            out.add(value)
    return out


# ---------------------------------------------------------------- failures


def max_failed_allowed(max_failed: int | str | None, total: int) -> int | None:
    """The number of failed products tolerated, or None for no limit."""
    if max_failed is None:
        return None
    if isinstance(max_failed, int):
        return max_failed
    text = max_failed.strip()
    if text.endswith("%"):
        return math.floor(total * int(text[:-1]) / 100)
    return int(text)


def add_failure(failures: Sequence[ProductFailure], failure: ProductFailure) -> list[ProductFailure]:
    """Keep the most recent ``MAX_FAILURES`` failures, newest last, one entry per product."""
    kept = [f for f in failures if f.product != failure.product]
    kept.append(failure)
    return kept[-MAX_FAILURES:]


# ---------------------------------------------------------------- results


def bucket_upper(i: int) -> float:
    return HISTOGRAM_BASE * HISTOGRAM_GROWTH**i


def _bucket(value: float) -> int:
    if value <= HISTOGRAM_BASE:
        return 0
    i = math.ceil(math.log(value / HISTOGRAM_BASE, HISTOGRAM_GROWTH) - 1e-9)
    return min(max(i, 0), HISTOGRAM_BUCKETS - 1)


def _add_to_histogram(hist: Mapping[str, int], value: float) -> dict[str, int]:
    out = dict(hist)
    key = str(_bucket(value))
    out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def histogram_median(hist: Mapping[str, int]) -> float | None:
    """Median estimated from the bucket counts (geometric middle of the median's bucket)."""
    total = sum(hist.values())
    if total == 0:
        return None
    half = (total + 1) / 2
    running = 0
    for key, count in sorted(hist.items(), key=lambda kv: int(kv[0])):
        running += count
        if running >= half:
            i = int(key)
            hi = bucket_upper(i)
            return round(hi / math.sqrt(HISTOGRAM_GROWTH) if i > 0 else hi / 2, 6)
    return None  # pragma: no cover - unreachable


def add_result(
    results: ResultsSummary | None,
    metric: str,
    error: float | None,
    baseline_error: float | None,
    beats_baseline: bool | None,
    tuned: bool,
    family: str | None = None,
    beats_naive: bool | None = None,
) -> ResultsSummary:
    """Fold one trained product's report into the summary."""
    r = (results or ResultsSummary(metric=metric)).model_copy(deep=True)
    r.metric = metric
    r.trained += 1
    r.beat_naive += int(bool(beats_naive))
    if family:
        r.models = dict(sorted({**r.models, family: r.models.get(family, 0) + 1}.items()))
    r.tuned += int(bool(tuned))
    r.beat_baseline += int(bool(beats_baseline))
    if error is not None and math.isfinite(error):
        r.error_sum = round(r.error_sum + error, 9)
        r.error_histogram = _add_to_histogram(r.error_histogram, error)
        r.median_error = histogram_median(r.error_histogram)
        counted = sum(r.error_histogram.values())
        r.mean_error = round(r.error_sum / counted, 6)
    if baseline_error is not None and math.isfinite(baseline_error):
        r.baseline_histogram = _add_to_histogram(r.baseline_histogram, baseline_error)
        r.median_baseline_error = histogram_median(r.baseline_histogram)
    return r


# ---------------------------------------------------------------- conditions


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> list[Condition]:
    """Upsert a condition; lastTransitionTime changes only when the status flips."""
    wanted = "True" if status else "False"
    previous = get_condition(conditions, type_)
    unchanged = previous is not None and previous.status == wanted and previous.last_transition_time
    updated = Condition(
        type=type_,
        status=wanted,
        reason=reason,
        message=message,
        last_transition_time=previous.last_transition_time if unchanged and previous else now,
        observed_generation=generation,
    )
    out = [c for c in conditions if c.type != type_] + [updated]
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: order.get(c.type, len(order)))


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def progress_text(succeeded: int, failed: int, total: int) -> str:
    return f"{succeeded + failed}/{total}"
