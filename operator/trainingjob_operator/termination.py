"""Parse the trainer's termination message (JSON, at most 4096 bytes) from a terminated container."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProductReport:
    """One product's entry of the trainer's termination message."""

    product: str
    status: str
    metric: str | None = None
    error: float | None = None
    default_error: float | None = None
    baseline_error: float | None = None
    beats_baseline: bool | None = None
    tuned: bool = False
    family: str | None = None
    beats_naive: bool | None = None
    trials: int = 0
    seconds: float | None = None
    model_id: str | None = None
    checksum: str | None = None
    reason: str | None = None
    message: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_report(message: str | None, product: str) -> ProductReport | None:
    """The entry for ``product`` in a termination message, or None when absent or unparseable.

    Unparseable text (e.g. a crash before the trainer wrote its message) is not an error:
    the operator then falls back to the Job's own failure reason and the exit code.
    """
    if not message:
        return None
    try:
        doc = json.loads(message)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    for entry in doc.get("products") or []:
        if not isinstance(entry, dict) or entry.get("product") != product:
            continue
        warnings = entry.get("warnings") or []
        return ProductReport(
            product=product,
            status=str(entry.get("status") or "unknown"),
            metric=_opt_str(entry.get("metric")),
            error=_num(entry.get("error")),
            default_error=_num(entry.get("default_error")),
            baseline_error=_num(entry.get("baseline_error")),
            beats_baseline=entry.get("beats_baseline") if isinstance(entry.get("beats_baseline"), bool) else None,
            tuned=bool(entry.get("tuned")),
            family=_opt_str(entry.get("family")),
            beats_naive=entry.get("beats_naive") if isinstance(entry.get("beats_naive"), bool) else None,
            trials=int(entry.get("trials") or 0),
            seconds=_num(entry.get("seconds")),
            model_id=_opt_str(entry.get("model_id")),
            checksum=_opt_str(entry.get("checksum")),
            reason=_opt_str(entry.get("reason")),
            message=_opt_str(entry.get("message")),
            warnings=tuple(str(w) for w in warnings if isinstance(w, str)),
        )
    return None


def parse_unchanged(message: str | None) -> tuple[str | None, bool, str]:
    """(unchanged index ranges over the sorted ids, truncated, error message) from the termination
    message of ``forecast-trainer unchanged``; ranges None when absent or unreadable."""
    if not message:
        return None, False, "no termination message"
    try:
        doc = json.loads(message)
    except ValueError:
        return None, False, message[:300]
    if not isinstance(doc, dict) or doc.get("kind") != "unchanged" or doc.get("order") != "sorted":
        return None, False, str(doc.get("message") or message)[:300] if isinstance(doc, dict) else message[:300]
    ranges = doc.get("unchanged")
    return (ranges if isinstance(ranges, str) else None), bool(doc.get("truncated")), ""
