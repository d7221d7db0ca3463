"""Pure status arithmetic: index ranges, counts, conditions, results summary, progress."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from trainingjob_operator import histogram
from trainingjob_operator.api import (
    ChampionCounts,
    Condition,
    HistogramBucket,
    ProductFailure,
    ResultsSummary,
    TrackingCounts,
)
from trainingjob_operator.reasons import Reason

MAX_FAILURES = 20
CONDITION_TYPES = ("Running", "Complete", "Failed", "Suspended", "Ready", "Reconciling", "Stalled")
OPTIONAL_CONDITION_TYPES = ("Tracked",)  # only with spec.tracking.mlflow
"""The conditions of a TrainingJob, in the order status lists them."""
TRIAL_MODE = "TrialMode"
"""Only on a TrainingJob in trial mode (configMap data, no output): True, reason NothingStored.
Listed after the others."""

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


def histogram_counts(buckets: Sequence[HistogramBucket]) -> dict[int, int]:
    return {histogram.bucket_of_bound(b.errors_up_to): b.products for b in buckets}


def histogram_buckets(counts: Mapping[int, int]) -> list[HistogramBucket]:
    return [HistogramBucket(errors_up_to=histogram.bound_text(i), products=n) for i, n in sorted(counts.items())]


def _median_text(counts: Mapping[int, int]) -> str | None:
    value = histogram.median(counts)
    return None if value is None else histogram.decimal_text(value)


def add_result(
    results: ResultsSummary | None,
    metric: str,
    error: float | None,
    baseline_error: float | None,
    beats_baseline: bool | None,
    tuned: bool,
    family: str | None = None,
    beats_naive: bool | None = None,
    uncertain: bool | None = None,
    champion: str | None = None,
    tracking: str | None = None,
) -> ResultsSummary:
    """Fold one trained product's report into the summary."""
    r = (results or ResultsSummary(metric=metric)).model_copy(deep=True)
    if champion in ("promoted", "kept", "first"):
        r.champions = r.champions or ChampionCounts()
        setattr(r.champions, champion, getattr(r.champions, champion) + 1)
    if tracking in ("logged", "skipped"):
        r.tracking = r.tracking or TrackingCounts()
        setattr(r.tracking, tracking, getattr(r.tracking, tracking) + 1)
    r.metric = metric
    r.trained += 1
    r.beat_naive += int(bool(beats_naive))
    r.uncertain += int(bool(uncertain))
    if family:
        r.models = dict(sorted({**r.models, family: r.models.get(family, 0) + 1}.items()))
    r.tuned += int(bool(tuned))
    r.beat_baseline += int(bool(beats_baseline))
    if error is not None and math.isfinite(error):
        error_sum = float(r.error_sum) + error
        r.error_sum = histogram.fixed_text(error_sum)
        counts = histogram.add(histogram_counts(r.error_histogram), error)
        r.error_histogram = histogram_buckets(counts)
        r.median_error = _median_text(counts)
        r.mean_error = histogram.decimal_text(error_sum / sum(counts.values()))
    if baseline_error is not None and math.isfinite(baseline_error):
        baseline = histogram.add(histogram_counts(r.baseline_histogram), baseline_error)
        r.baseline_histogram = histogram_buckets(baseline)
        r.median_baseline_error = _median_text(baseline)
    return r


# ---------------------------------------------------------------- conditions


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: bool,
    reason: Reason,
    message: str,
    now: str,
    generation: int,
) -> list[Condition]:
    """Upsert a condition; lastTransitionTime changes only when the status flips. ``reason`` is from
    the one vocabulary (reasons.py); ``observedGeneration`` is the generation this pass acted on."""
    wanted = "True" if status else "False"
    previous = get_condition(conditions, type_)
    unchanged = previous is not None and previous.status == wanted and previous.last_transition_time
    updated = Condition(
        type=type_,
        status=wanted,
        reason=str(reason),  # a StrEnum; str() also serves the baseline of bench/reconcile_bench.py
        message=message,
        last_transition_time=previous.last_transition_time if unchanged and previous else now,
        observed_generation=generation,
    )
    out = [c for c in conditions if c.type != type_] + [updated]
    order = {t: i for i, t in enumerate((*CONDITION_TYPES, *OPTIONAL_CONDITION_TYPES))}
    return sorted(out, key=lambda c: order.get(c.type, len(order)))


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def progress_text(succeeded: int, failed: int, total: int) -> str:
    return f"{succeeded + failed}/{total}"
