"""Parse the trainer's termination message (JSON, at most 4096 bytes) from a terminated container."""

from __future__ import annotations

import base64
import json
import math
import re
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
    uncertain: bool | None = None  # CV gain over naive within fold noise (the trainer's uncertainty figure)
    relative_width: float | None = None  # first-level interval width over the forecast level
    trials: int = 0
    seconds: float | None = None
    model_id: str | None = None
    checksum: str | None = None
    reason: str | None = None
    message: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    champion: str | None = None  # first | promoted | kept (docs/mlflow.md)
    tracking: str | None = None  # logged | skipped | off


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
            uncertain=entry.get("uncertain") if isinstance(entry.get("uncertain"), bool) else None,
            relative_width=_num(entry.get("width")),
            trials=int(entry.get("trials") or 0),
            seconds=_num(entry.get("seconds")),
            model_id=_opt_str(entry.get("model_id")),
            checksum=_opt_str(entry.get("checksum")),
            reason=_opt_str(entry.get("reason")),
            message=_opt_str(entry.get("message")),
            warnings=tuple(str(w) for w in warnings if isinstance(w, str)),
            champion=_opt_str(entry.get("champion")),
            tracking=_opt_str(entry.get("tracking")),
        )
    return None


@dataclass(frozen=True)
class UnchangedAnswer:
    """What the unchanged check's termination message says, read defensively."""

    unchanged: frozenset[int] | None
    """Indexes (over the sorted product ids) of the products to skip; None: skip none, train all."""
    truncated: bool = False
    """No form of the answer fitted in the message: nothing is skipped here, every product's pod
    checks itself."""
    problem: str = ""
    """Why ``unchanged`` is None (no message, not JSON, an error, an answer that does not add up)."""


_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def _strict_ranges(text: str, total: int) -> frozenset[int]:
    """``"0-3,7"`` -> indexes, each checked against ``total`` BEFORE a range is expanded (a huge
    range in a corrupt message must not allocate); ValueError on anything else."""
    out: set[int] = set()
    for part in text.split(",") if text else []:
        match = _RANGE.fullmatch(part)
        if match is None:
            raise ValueError(f"bad index range {part!r}")
        start, end = int(match[1]), int(match[2] or match[1])
        if start > end or end >= total:
            raise ValueError(f"index range {part!r} outside 0..{total - 1}")
        out.update(range(start, end + 1))
    return frozenset(out)


def _strict_bitmap(text: str, total: int) -> frozenset[int]:
    """The trainer's ``unchanged_bitmap`` (base64, bit i%8 of byte i//8): exactly ceil(total/8)
    bytes, no bit set at or past ``total``; ValueError on anything else."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != (total + 7) // 8:
        raise ValueError(f"bitmap of {len(raw)} bytes for {total} products")
    out = frozenset(i for i in range(len(raw) * 8) if raw[i // 8] >> (i % 8) & 1)
    if out and max(out) >= total:
        raise ValueError("bitmap has bits past the last product")
    return out


def _unchanged_indexes(doc: dict[str, Any], total: int) -> frozenset[int]:
    """The unchanged indexes in whichever form the message gives them (ValueError when they do
    not add up: a form that is absent, malformed, out of range, or disagrees with ``changed``)."""
    ranges = doc.get("unchanged")
    if not isinstance(ranges, str):
        raise ValueError("no unchanged ranges")
    if not doc.get("truncated"):
        found = _strict_ranges(ranges, total)
    elif isinstance(doc.get("changed_indexes"), str):
        found = frozenset(range(total)) - _strict_ranges(doc["changed_indexes"], total)
    elif isinstance(doc.get("unchanged_bitmap"), str):
        found = _strict_bitmap(doc["unchanged_bitmap"], total)
    else:
        return frozenset()  # too many products for any form: skip none here, every pod checks itself
    changed = doc.get("changed")
    if isinstance(changed, bool) or not isinstance(changed, int) or total - changed != len(found):
        raise ValueError(f"{len(found)} unchanged of {total} does not match changed={changed!r}")
    return found


def parse_unchanged(message: str | None, total: int, products_sha256: str) -> UnchangedAnswer:
    """The answer of ``forecast-trainer unchanged`` for ``total`` products (sorted ids) whose list
    has the digest ``products_sha256`` (builders.products_digest).

    Errs on training: anything not a complete, consistent answer for exactly this list (a message
    cut short, a check of another product list — proved by the digest of the list the check read,
    which it echoes, not by the count —, an index out of range, counts that do not add up) skips
    nothing, so no changed product is ever skipped by mistake; the product pods still skip
    themselves one by one (TRAINER_SKIP_UNCHANGED)."""
    if not message:
        return UnchangedAnswer(None, problem="no termination message")
    try:
        doc = json.loads(message)
    except ValueError:
        return UnchangedAnswer(None, problem=message[:300])
    if not isinstance(doc, dict):
        return UnchangedAnswer(None, problem=message[:300])
    if doc.get("kind") != "unchanged" or doc.get("order") != "sorted" or doc.get("exit_code") not in (0, None):
        return UnchangedAnswer(None, problem=str(doc.get("message") or message)[:300])
    forms = ("changed_indexes", "unchanged_bitmap")
    truncated = bool(doc.get("truncated")) and not any(isinstance(doc.get(k), str) for k in forms)
    checked = doc.get("checked")
    if isinstance(checked, bool) or checked != total:
        return UnchangedAnswer(None, truncated, f"checked {checked!r} products, expected {total}")
    echoed = doc.get("products_sha256")
    if echoed != products_sha256:
        why = "names no product list (an older trainer image)" if echoed is None else "answered another product list"
        return UnchangedAnswer(None, truncated, f"the check {why}: products_sha256 {echoed!r}, not {products_sha256!r}")
    try:
        return UnchangedAnswer(_unchanged_indexes(doc, total), truncated)
    except ValueError as exc:
        return UnchangedAnswer(None, truncated, str(exc)[:300])
