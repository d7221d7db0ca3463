"""Parse the termination messages of shard mode (issue 19 contract): a shard pod's report (``kind:
shard``, v 2) and the discovery pod's (``kind: discover``). Read defensively: anything that does not
add up is no report (None), and the operator falls back to the pod's exit and the Job's condition."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from trainingjob_operator import histogram

_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
OUTCOMES = ("trained", "skipped", "locked", "failed")


@dataclass(frozen=True)
class ShardResults:
    """The shard's ``results``: the same figures as status.results, summed over its trained products."""

    metric: str = "smape"
    trained: int = 0
    tuned: int = 0
    beat_baseline: int = 0
    beat_naive: int = 0
    uncertain: int = 0
    models: dict[str, int] = field(default_factory=dict)
    error_sum: float = 0.0
    errors: dict[int, int] = field(default_factory=dict)
    baseline_errors: dict[int, int] = field(default_factory=dict)
    champions: dict[str, int] = field(default_factory=dict)
    tracking: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardError:
    product: str
    reason: str
    message: str


@dataclass(frozen=True)
class ShardReport:
    """What a shard pod finished: outcomes by position 0..n-1 inside its shard."""

    shard: int
    size: int
    n: int
    done: int
    trained: frozenset[int]
    skipped: frozenset[int]
    locked: frozenset[int]
    failed: frozenset[int]
    errors: dict[int, ShardError] = field(default_factory=dict)
    errors_omitted: int = 0
    results: ShardResults | None = None

    @property
    def outcomes(self) -> frozenset[int]:
        return self.trained | self.skipped | self.locked | self.failed


@dataclass(frozen=True)
class DiscoverReport:
    count: int
    products_sha256: str
    snapshot: bool


def positions(text: Any, n: int) -> frozenset[int]:
    """``"0-3,7"`` -> positions, each checked against ``n`` before a range is expanded; ValueError."""
    if not isinstance(text, str):
        raise ValueError("ranges must be text")
    out: set[int] = set()
    for part in text.split(",") if text else []:
        match = _RANGE.fullmatch(part)
        if match is None:
            raise ValueError(f"bad range {part!r}")
        start, end = int(match[1]), int(match[2] or match[1])
        if start > end or end >= n:
            raise ValueError(f"range {part!r} outside 0..{n - 1}")
        out.update(range(start, end + 1))
    return frozenset(out)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _counts(value: Any, bucketed: bool = False) -> dict[Any, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("counts must be an object")
    out: dict[Any, int] = {}
    for k, v in value.items():
        key: Any = int(k) if bucketed else str(k)
        if bucketed and not 0 <= key < histogram.BUCKETS:
            raise ValueError(f"bucket {k!r} out of range")
        out[key] = _count(v)
    return out


def _results(doc: Any) -> ShardResults | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ValueError("results must be an object")
    error_sum = float(doc.get("error_sum") or 0)
    if not math.isfinite(error_sum):
        raise ValueError("error_sum is not finite")
    return ShardResults(
        metric=str(doc.get("metric") or "smape"),
        trained=_count(doc.get("trained", 0)),
        tuned=_count(doc.get("tuned", 0)),
        beat_baseline=_count(doc.get("beat_baseline", 0)),
        beat_naive=_count(doc.get("beat_naive", 0)),
        uncertain=_count(doc.get("uncertain", 0)),
        models=_counts(doc.get("models")),
        error_sum=error_sum,
        errors=_counts(doc.get("errors"), bucketed=True),
        baseline_errors=_counts(doc.get("baseline_errors"), bucketed=True),
        champions=_counts(doc.get("champions")),
        tracking=_counts(doc.get("tracking")),
    )


def _errors(items: Any, failed: frozenset[int]) -> dict[int, ShardError]:
    out: dict[int, ShardError] = {}
    for item in items or []:
        if not isinstance(item, list) or len(item) != 4:
            raise ValueError("errors entries are [pos, product, reason, message]")
        pos = _count(item[0])
        if pos not in failed:
            raise ValueError(f"error for position {pos}, which is not failed")
        out[pos] = ShardError(str(item[1]), str(item[2]) or "TrainerError", str(item[3]))
    return out


def parse_shard_report(message: str | None, shard: int, size: int) -> ShardReport | None:
    """The report of shard ``shard`` (of size ``size``), or None when absent or inconsistent (another
    shard's, outcomes overlapping or past ``done``, counts that do not add up)."""
    if not message:
        return None
    try:
        doc = json.loads(message)
        if not isinstance(doc, dict) or doc.get("v") != 2 or doc.get("kind") != "shard":
            return None
        if doc.get("shard") != shard or doc.get("size") != size:
            return None
        n, done = _count(doc.get("n")), _count(doc.get("done"))
        if n > size or done > n:
            return None
        sets = {k: positions(doc.get(k, ""), n) for k in OUTCOMES}
        union: set[int] = set()
        for found in sets.values():
            if union & found:
                return None  # a position with two outcomes
            union |= found
        if union != set(range(done)):
            return None  # positions are processed in order: 0..done-1 have an outcome, no other
        return ShardReport(
            shard=shard,
            size=size,
            n=n,
            done=done,
            trained=sets["trained"],
            skipped=sets["skipped"],
            locked=sets["locked"],
            failed=sets["failed"],
            errors=_errors(doc.get("errors"), sets["failed"]),
            errors_omitted=_count(doc.get("errors_omitted", 0)),
            results=_results(doc.get("results")),
        )
    except (ValueError, TypeError):
        return None


def parse_discover_report(message: str | None) -> DiscoverReport | None:
    """``{"v": 1, "kind": "discover", "count": N, "products_sha256": hex, "snapshot": bool}`` or None."""
    if not message:
        return None
    try:
        doc = json.loads(message)
        if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("kind") != "discover":
            return None
        digest = doc.get("products_sha256")
        snapshot = doc.get("snapshot")
        if not isinstance(digest, str) or not _SHA256.match(digest) or not isinstance(snapshot, bool):
            return None
        return DiscoverReport(_count(doc.get("count")), digest, snapshot)
    except (ValueError, TypeError):
        return None
