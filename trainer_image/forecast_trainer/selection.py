"""Which candidate ships: the selection rule (pure).

Every candidate has a CV error on the same folds (lower is better). With ``margin`` the
relative improvement a challenger needs (``--improvement-margin``, default 2 %, the same rule
as tuned-vs-default Prophet parameters):

1. The best naive baseline is the better of seasonal-naive and last-value on CV (scored even
   when ``--models`` leaves them out).
2. A model *qualifies* only if it beats that baseline by the margin:
   ``error <= naive_error * (1 - margin)``. Chance wins of a few percent on noisy series do not
   count, and nothing worse on CV than the best naive baseline can ship.
3. Among qualifying models the lowest CV error wins, except that the product's last winning
   family (warm start) stays while the best one does not beat it by the margin either.
4. If no model qualifies, the best naive baseline ships (it is the honest forecast).
5. If ``--models`` allows no naive baseline and nothing qualifies, the best allowed candidate
   ships with ``beats_baseline: false`` and a warning.

``beats_naive`` is true when the shipped model is not itself a naive baseline and its CV error
is below the best naive baseline's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from forecast_trainer.families import NAIVE


@dataclass(frozen=True)
class Selection:
    family: str | None  # None: no candidate could be scored
    error: float | None
    naive_family: str | None
    naive_error: float | None
    beats_naive: bool | None
    beats_baseline: bool | None
    reason: str
    qualified: list[str] = field(default_factory=list)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def select(
    errors: Mapping[str, float | None],
    allowed: Sequence[str],
    margin: float,
    incumbent: str | None = None,
) -> Selection:
    """Apply the rule in the module doc to CV ``errors`` per family (None = failed)."""
    scored = {f: float(e) for f, e in errors.items() if _finite(e)}  # type: ignore[arg-type]
    naive = {f: e for f, e in scored.items() if f in NAIVE}
    naive_family = min(naive, key=lambda f: (naive[f], NAIVE.index(f))) if naive else None
    naive_error = naive[naive_family] if naive_family else None
    candidates = {f: e for f, e in scored.items() if f in allowed}
    if not candidates:
        return Selection(None, None, naive_family, naive_error, None, None, "no candidate could be scored on CV")
    bar = naive_error * (1 - margin) if naive_error is not None else math.inf
    qualified = sorted((f for f, e in candidates.items() if f not in NAIVE and e <= bar), key=candidates.__getitem__)
    if qualified:
        best = qualified[0]
        reason = f"lowest CV error among models that beat the best naive baseline by {margin:.0%}"
        if incumbent in qualified and incumbent != best and candidates[best] > candidates[incumbent] * (1 - margin):
            best = incumbent
            reason = f"last winner kept: {qualified[0]} does not beat it by {margin:.0%}"
        chosen = best
    else:
        allowed_naive = {f: e for f, e in candidates.items() if f in NAIVE}
        if allowed_naive:
            chosen = min(allowed_naive, key=lambda f: (allowed_naive[f], NAIVE.index(f)))
            reason = f"no model beats the best naive baseline by {margin:.0%}"
        else:
            chosen = min(candidates, key=candidates.__getitem__)
            reason = "lowest CV error among the allowed families (no naive baseline allowed)"
    error = candidates[chosen]
    return Selection(
        family=chosen,
        error=error,
        naive_family=naive_family,
        naive_error=naive_error,
        beats_naive=None if naive_error is None else (chosen not in NAIVE and error < naive_error),
        beats_baseline=None if naive_error is None else error <= naive_error,
        reason=reason,
        qualified=qualified,
    )
