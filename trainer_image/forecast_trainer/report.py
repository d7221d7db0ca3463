"""Per-product results, the run's exit code, the termination message and the summary.

Exit code of a run (several products):
  4 if any product failed because a database stayed unreachable (retriable);
  1 else if any product failed unexpectedly;
  0 else if at least one product trained or was skipped as unchanged (--skip-unchanged; invalid
    and locked ones are reported and left out);
  5 else if any product was locked by another trainer (retry later; the rest were invalid);
  3 else (every product had invalid data, or there were none).

Termination message: compact JSON, at most 4096 bytes, always valid::

  {"v": 1, "exit_code": 0, "counts": {"trained": n, "invalid": n, "failed": n, "locked": n, "skipped": n},
   "models": {"<family>": n, ...}, "beat_naive": n, "uncertain": n,
   "products": [{"product", "status", "metric", "error", "default_error", "baseline_error",
                 "beats_baseline", "family", "beats_naive", "uncertain", "width", "tuned", "trials", "seconds",
                 "model_id", "checksum", "class", "reason", "message", "warnings", "champion", "tracking"}, ...],
   "omitted": n}

``models`` counts the trained products by winning family, ``beat_naive`` those whose model
beat the best naive baseline on CV and ``uncertain`` those whose CV gain over it is within the
fold-to-fold noise; all three cover every product of the run, also those whose entries had to
be dropped. Per product, ``uncertain`` is that flag and ``width`` the first-level interval's
width over the forecast level (intervals.py, "uncertainty figure").

When it does not fit, long strings are shortened first, then whole product entries are dropped
from the end; ``omitted`` counts them. Product ids are never shortened (the operator matches
entries by id).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer.errors import EXIT_DATA_INVALID, EXIT_INFRA, EXIT_LOCKED, EXIT_OK, EXIT_UNEXPECTED, one_line
from forecast_trainer.jsonutil import json_safe

LIMIT = 4096
TRAINED, INVALID, FAILED = "trained", "invalid", "failed"
LOCKED = "locked"  # another trainer holds the product's lock in the output database; not trained
SKIPPED = "skipped"  # --skip-unchanged: same data and options as its newest model; not trained (unchanged.py)
STATUSES = (TRAINED, INVALID, FAILED, LOCKED, SKIPPED)


@dataclass
class ProductResult:
    product: str
    status: str
    metric: str
    error: float | None = None
    default_error: float | None = None
    baseline_error: float | None = None
    beats_baseline: bool | None = None
    family: str | None = None  # the winning model family (families/__init__.py)
    beats_naive: bool | None = None  # the shipped model beat the best naive baseline on CV
    uncertain: bool | None = None  # CV gain over the best naive baseline within fold noise (intervals.py)
    relative_width: float | None = None  # first-level interval width over the forecast level
    tuned: bool = False
    trials: int = 0
    seconds: float = 0.0
    model_id: int | str | None = None
    checksum: str | None = None
    product_class: str | None = None
    reason: str | None = None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)
    infra: bool = False  # a failure a retry may fix (exit 4)
    champion: str | None = None  # first | promoted | kept (champion.py); None: not decided
    tracking: str | None = None  # logged | skipped | off (tracking.py); None: not trained
    details: dict[str, Any] = field(default_factory=dict)  # extra detail for summary.json


def exit_code(results: list[ProductResult], run_error_code: int | None = None) -> int:
    """The process exit code for a run's results (see the module doc)."""
    if any(r.status == FAILED and r.infra for r in results):
        return EXIT_INFRA
    if any(r.status == FAILED for r in results):
        return EXIT_UNEXPECTED
    if any(r.status in (TRAINED, SKIPPED) for r in results):
        return EXIT_OK
    if any(r.status == LOCKED for r in results):
        return EXIT_LOCKED
    if run_error_code is not None:
        return run_error_code
    return EXIT_DATA_INVALID


def _num(value: float | None, digits: int = 4) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def entry(result: ProductResult) -> dict[str, Any]:
    """A product's termination-message entry, keys in the documented order."""
    return {
        "product": result.product,
        "status": result.status,
        "metric": result.metric,
        "error": _num(result.error),
        "default_error": _num(result.default_error),
        "baseline_error": _num(result.baseline_error),
        "beats_baseline": result.beats_baseline,
        "family": result.family,
        "beats_naive": result.beats_naive,
        "uncertain": result.uncertain,
        "width": _num(result.relative_width, 3),
        "tuned": bool(result.tuned),
        "trials": int(result.trials),
        "seconds": _num(result.seconds, 2) or 0.0,
        "model_id": result.model_id,
        "checksum": result.checksum,
        "class": result.product_class,
        "reason": result.reason,
        "message": one_line(result.message) if result.message else None,
        "warnings": [one_line(w) for w in result.warnings],
        "champion": result.champion,
        "tracking": result.tracking,
    }


def uncertain_count(results: list[ProductResult]) -> int:
    """Trained products whose CV gain over naive is within fold noise (every product of the run)."""
    return sum(1 for r in results if r.status == TRAINED and r.uncertain)


def family_counts(results: list[ProductResult]) -> tuple[dict[str, int], int]:
    """(trained products per winning family, how many of them beat the best naive baseline on CV)."""
    families: dict[str, int] = {}
    for r in results:
        if r.status == TRAINED and r.family:
            families[r.family] = families.get(r.family, 0) + 1
    return dict(sorted(families.items())), sum(1 for r in results if r.status == TRAINED and r.beats_naive)


def _shorten(item: dict[str, Any], message: int, warnings: int, warning_len: int) -> dict[str, Any]:
    out = dict(item)
    if out["message"]:
        out["message"] = one_line(out["message"], message)
    out["warnings"] = [one_line(w, warning_len) for w in out["warnings"][:warnings]]
    return out


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def largest_prefix(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in 0..n with ``fits(k)``, for a ``fits`` true up to some k and false after it
    (``fits(0)`` is assumed): a binary search, ~log2(n) renderings."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def termination_message(results: list[ProductResult], code: int, limit: int = LIMIT) -> str:
    """The termination message for ``results`` (at most ``limit`` UTF-8 bytes, valid JSON)."""
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    families, beat_naive = family_counts(results)
    entries = [entry(r) for r in results]

    def render(items: list[dict[str, Any]]) -> str:
        return _dump(
            {
                "v": 1,
                "exit_code": code,
                "counts": counts,
                "models": families,
                "beat_naive": beat_naive,
                "uncertain": uncertain_count(results),
                "products": items,
                "omitted": len(entries) - len(items),
            }
        )

    def fits(text: str) -> bool:
        return len(text.encode("utf-8")) <= limit

    text = render(entries)
    if fits(text):
        return text
    for message, warnings, warning_len in ((300, 5, 160), (160, 3, 100), (80, 1, 60), (60, 0, 0)):
        short = [_shorten(e, message, warnings, warning_len) for e in entries]
        text = render(short)
        if fits(text):
            return text

        def prefix_fits(k: int, items: list[dict[str, Any]] = short) -> bool:
            return fits(render(items[:k]))

        lo = largest_prefix(len(short), prefix_fits)  # the most leading entries that fit
        if lo > 0:
            return render(short[:lo])
    return render([])


def write_termination(path: str | None, text: str) -> bool:
    """Write the message; False (silently) when the path is not writable, e.g. outside a pod."""
    if not path:
        return False
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError:
        return False
    return True


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _versus_naive(r: ProductResult) -> str:
    """The shipped model against the best naive baseline on CV, for the summary table."""
    if r.beats_baseline is None:
        return "-"
    if r.beats_naive:
        return "better"
    if r.family in ("seasonal_naive", "last_value"):
        return "is naive"
    return "tie" if r.beats_baseline else "WORSE"


def summary_table(results: list[ProductResult], metric: str) -> str:
    """A plain-text table for people (stdout)."""
    header: tuple[str, ...] = ("product", "status", "class", "model", "trials", "tuned", metric, "default")
    header = (*header, "s-naive", "vs naive", "width", "unsure", "sec", "note")
    rows: list[tuple[str, ...]] = [header]
    for r in results:
        note = r.message or (r.warnings[0] if r.warnings else "")
        rows.append(
            (
                r.product if len(r.product) <= 40 else r.product[:37] + "...",
                r.status,
                r.product_class or "-",
                r.family or "-",
                str(r.trials),
                "yes" if r.tuned else "no",
                _fmt(r.error),
                _fmt(r.default_error),
                _fmt(r.baseline_error),
                _versus_naive(r),
                _fmt(r.relative_width),
                "UNSURE" if r.uncertain else ("-" if r.uncertain is None else "no"),
                f"{r.seconds:.1f}",
                one_line(note, 70),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary_document(results: list[ProductResult], code: int, extra: dict[str, Any]) -> dict[str, Any]:
    """The full (untruncated) run summary written to ``summary.json``."""
    items = []
    for r in results:
        item = entry(r)
        item["details"] = r.details
        items.append(item)
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    return {"v": 1, "exit_code": code, "counts": counts, **extra, "products": items}


def write_json_atomic(path: str, doc: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(json_safe(doc), fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the shard report (v2)

ERROR_MESSAGE = 120  # characters of a failed position's message in the shard report


def shard_reason(result: ProductResult) -> str:
    """The operator's Reason of a failed position (``errors``): invalid data is DataInvalid, an
    infrastructure failure InfrastructureUnavailable, anything else TrainerError. The trainer's
    own reason (TooFewPoints, ...) leads the message."""
    if result.status == INVALID:
        return "DataInvalid"
    if result.infra:
        return "InfrastructureUnavailable"
    return "TrainerError"


class ShardReport:
    """The v2 shard report, kept up to date one product at a time (docs/trainer.md, "The shard report").

    ``add`` is O(1) and ``message`` costs what the report holds (ranges, histogram buckets, the
    errors that fit), not the products so far: the message is rewritten after every product of
    shards of up to 10,000 products.
    """

    STATUS_KEYS = ("trained", "skipped", "locked", "failed")

    def __init__(self, shard: int, size: int, n: int, metric: str) -> None:
        from forecast_trainer import histogram

        self.histogram = histogram
        self.shard, self.size, self.n, self.metric = shard, size, n, metric
        self.results: list[ProductResult] = []
        self.runs: dict[str, list[list[int]]] = {k: [] for k in self.STATUS_KEYS}
        self.failed: list[tuple[int, ProductResult]] = []
        self.trained = self.tuned = self.beat_baseline = self.beat_naive = self.uncertain = 0
        self.models: dict[str, int] = {}
        self.errors: dict[int, int] = {}
        self.baseline: dict[int, int] = {}
        self.error_sum = 0.0
        self.champions = {"promoted": 0, "kept": 0, "first": 0}
        self.tracking = {"logged": 0, "skipped": 0}

    def add(self, result: ProductResult) -> None:
        """The outcome of the next position (positions are added in shard order)."""
        pos = len(self.results)
        self.results.append(result)
        key = result.status if result.status in (TRAINED, SKIPPED, LOCKED) else "failed"
        runs = self.runs[key]
        if runs and runs[-1][1] == pos - 1:
            runs[-1][1] = pos
        else:
            runs.append([pos, pos])
        if key == "failed":
            self.failed.append((pos, result))
        if result.status == TRAINED:
            self._aggregate(result)

    def _aggregate(self, r: ProductResult) -> None:
        self.trained += 1
        self.tuned += int(bool(r.tuned))
        self.beat_baseline += int(bool(r.beats_baseline))
        self.beat_naive += int(bool(r.beats_naive))
        self.uncertain += int(bool(r.uncertain))
        if r.family:
            self.models[r.family] = self.models.get(r.family, 0) + 1
        if r.error is not None and math.isfinite(r.error):
            self.error_sum += float(r.error)
            i = self.histogram.bucket_of(float(r.error))
            self.errors[i] = self.errors.get(i, 0) + 1
        if r.baseline_error is not None and math.isfinite(r.baseline_error):
            i = self.histogram.bucket_of(float(r.baseline_error))
            self.baseline[i] = self.baseline.get(i, 0) + 1
        if r.champion in self.champions:
            self.champions[r.champion] += 1
        if r.tracking in self.tracking:
            self.tracking[r.tracking] += 1

    def aggregates(self) -> dict[str, Any]:
        """``results``: what the operator adds into status.results, once per recorded index."""
        return {
            "metric": self.metric,
            "trained": self.trained,
            "tuned": self.tuned,
            "beat_baseline": self.beat_baseline,
            "beat_naive": self.beat_naive,
            "uncertain": self.uncertain,
            "models": dict(sorted(self.models.items())),
            "error_sum": self.histogram.fixed_text(self.error_sum),
            "errors": {str(i): c for i, c in sorted(self.errors.items())},
            "baseline_errors": {str(i): c for i, c in sorted(self.baseline.items())},
            "champions": dict(self.champions),
            "tracking": dict(self.tracking),
        }

    def message(self, limit: int = LIMIT, extra: dict[str, Any] | None = None) -> str:
        """The report, at most ``limit`` UTF-8 bytes and always valid JSON.

        Failed positions' ``errors`` entries are kept from the first while they fit (messages
        shortened first), the rest counted in ``errors_omitted``; product ids are never
        shortened. Should even the ranges and aggregates not fit (thousands of alternating
        outcomes), the report covers the longest prefix of positions that fits (``done`` < the
        positions finished): the positions after it have no outcome in the report, as if the
        pod had stopped there. ``extra`` (a shard-level error) is added to every form.
        """
        text = self._text(limit, extra or {})
        if text is not None:
            return text
        # the longest prefix whose report fits
        lo = largest_prefix(len(self.results), lambda k: self._prefix(k)._text(limit, extra or {}) is not None)
        return self._prefix(lo)._text(limit, extra or {}) or _dump({"v": 2, "kind": "shard", "done": 0})

    def _prefix(self, d: int) -> ShardReport:
        out = ShardReport(self.shard, self.size, self.n, self.metric)
        for r in self.results[:d]:
            out.add(r)
        return out

    def _text(self, limit: int, extra: dict[str, Any]) -> str | None:
        head = {
            "v": 2,
            "kind": "shard",
            "shard": self.shard,
            "size": self.size,
            "n": self.n,
            "done": len(self.results),
            **{k: ",".join(str(a) if a == b else f"{a}-{b}" for a, b in v) for k, v in self.runs.items()},
        }
        aggregates = self.aggregates()
        failed = self.failed

        def render(errors: list[list[Any]]) -> str:
            doc = {**head, "errors": errors, "errors_omitted": len(failed) - len(errors), "results": aggregates}
            return _dump({**doc, **extra})

        def fits(text: str) -> bool:
            return len(text.encode("utf-8")) <= limit

        if not fits(render([])):
            return None
        entries: list[list[Any]] = []
        for length in (ERROR_MESSAGE, 40):
            entries = [[pos, r.product, shard_reason(r), _short_message(r, length)] for pos, r in failed]
            text = render(entries)
            if fits(text):
                return text
        # the most leading entries (40-character messages) that fit
        return render(entries[: largest_prefix(len(entries), lambda k: fits(render(entries[:k])))])


def shard_message(shard: int, size: int, n: int, results: list[ProductResult], metric: str, limit: int = LIMIT) -> str:
    """The v2 shard report of ``results`` (``results[p]`` is position ``p``); see ShardReport."""
    built = ShardReport(shard, size, n, metric)
    for r in results:
        built.add(r)
    return built.message(limit)


def _short_message(result: ProductResult, length: int) -> str:
    if length <= 0:
        return ""
    text = result.message or ""
    if result.reason and not text.startswith(result.reason):
        text = f"{result.reason}: {text}" if text else result.reason
    return one_line(text, length)
