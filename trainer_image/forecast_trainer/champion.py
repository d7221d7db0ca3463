"""Champion/challenger: a newly trained model replaces the product's champion only when it is better.

The rule (docs/mlflow.md, "Champion and challenger"):

1. Re-score the champion on THIS run's folds. Its recipe is its stored model document (family,
   specification, blend weight, ensemble members): refitted on each fold's training data, exactly
   as the new model was, and scored on the same test windows with the same metric. Both models
   have then been scored on the same rolling-origin windows; fold 0 is the most recent one.
2. ``d_k = champion_k - challenger_k`` per fold (positive: the challenger is better there).
   The *fold noise* is the sample standard deviation of ``d_1..d_K`` (0 with one fold): how much
   the gap between the two models moves from one window to the next.
3. Promote when the challenger beats the champion on the most recent window by more than that
   noise, and by at least ``margin`` (``--improvement-margin``, relative to the champion's error
   there):  ``d_0 > max(noise, margin * champion_0)``.  Otherwise the champion stays.
4. No champion yet: the new model is the first champion. A pinned champion (database flag, the
   TrainingJob's pin annotation, or a ``champion`` alias moved by hand in the MLflow registry)
   is never replaced automatically. A champion that cannot be re-scored on the current data
   (its family fails on every fold) is replaced: it could not forecast this history either.

``rescore`` is CPU work (Prophet champions fit once per fold); ``decide`` is pure.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FIRST, PROMOTED, KEPT = "first", "promoted", "kept"
OUTCOMES = (FIRST, PROMOTED, KEPT)


@dataclass(frozen=True)
class Decision:
    outcome: str  # first | promoted | kept
    champion_model_id: int | None  # the champion the challenger was compared with (None: first)
    reason: str
    pinned: bool = False
    challenger_error: float | None = None  # both on the most recent window (fold 0)
    champion_error: float | None = None
    noise: float | None = None
    threshold: float | None = None

    @property
    def promotes(self) -> bool:
        return self.outcome in (FIRST, PROMOTED)

    def as_dict(self) -> dict[str, Any]:
        return {k: (_round(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def fold_noise(differences: list[float]) -> float:
    """Sample standard deviation of the per-fold differences (0 with fewer than two folds)."""
    finite = [d for d in differences if math.isfinite(d)]
    return statistics.stdev(finite) if len(finite) >= 2 else 0.0


def decide(
    challenger_folds: list[float],
    champion_folds: list[float] | None,
    champion_model_id: int | None,
    margin: float,
    pinned: bool = False,
    pinned_by: str = "",
) -> Decision:
    """The champion/challenger decision for one product (see the module doc)."""
    if champion_model_id is None:
        return Decision(FIRST, None, "no champion yet: the first model is the champion")
    if pinned:
        return Decision(KEPT, champion_model_id, f"champion {champion_model_id} is pinned ({pinned_by})", pinned=True)
    if not challenger_folds or not math.isfinite(challenger_folds[0]):
        return Decision(KEPT, champion_model_id, "the new model has no CV error on the most recent window")
    if not champion_folds or len(champion_folds) != len(challenger_folds) or not math.isfinite(champion_folds[0]):
        return Decision(
            PROMOTED,
            champion_model_id,
            f"champion {champion_model_id} could not be re-scored on the current folds",
            challenger_error=challenger_folds[0],
        )
    differences = [a - b for a, b in zip(champion_folds, challenger_folds, strict=True)]
    noise = fold_noise(differences)
    threshold = max(noise, margin * abs(champion_folds[0]))
    gain = differences[0]
    if gain > threshold:
        outcome = PROMOTED
        why = f"beats champion {champion_model_id} on the most recent window by {gain:.4g} > {threshold:.4g}"
    else:
        outcome = KEPT
        why = (
            f"does not beat champion {champion_model_id} on the most recent window by more than "
            f"{threshold:.4g} (gain {gain:.4g})"
        )
    return Decision(
        outcome,
        champion_model_id,
        why,
        challenger_error=challenger_folds[0],
        champion_error=champion_folds[0],
        noise=noise,
        threshold=threshold,
    )


# --------------------------------------------------------------------------- re-scoring


def recipe(model_json: str, params: dict[str, Any]) -> dict[str, Any]:
    """The champion's stored model document (a Prophet model stored before the envelope: its params)."""
    from forecast_trainer.families import PROPHET
    from forecast_trainer.forecaster import FORMAT

    doc = json.loads(model_json)
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return dict(doc)
    own = {k: v for k, v in params.items() if k not in ("family", "naive_blend")}
    return {"family": PROPHET, "spec": own}


def rescore(plan: Any, doc: dict[str, Any], candidates: dict[str, Any], structure: Any, metric: str) -> list[float]:
    """The champion's error on each of ``plan``'s folds (most recent first); [] when it cannot be scored."""
    from forecast_trainer.scoring import score

    try:
        predictions = _fold_predictions(plan, doc, candidates, structure, metric)
        blend = doc.get("blend")
        if blend:
            weight = float(blend["naive_weight"])
            naive = _fold_predictions(plan, blend["naive"], candidates, structure, metric)
            predictions = [(1 - weight) * m + weight * n for m, n in zip(predictions, naive, strict=True)]
    except Exception:  # the champion's family cannot fit the current history (see the module doc)
        return []
    errors = [score(metric, plan.y[f.train_end : f.test_end], p) for f, p in zip(plan.folds, predictions, strict=True)]
    return [float(e) for e in errors]


def _fold_predictions(
    plan: Any, doc: dict[str, Any], candidates: dict[str, Any], structure: Any, metric: str
) -> list[np.ndarray]:
    from forecast_trainer.families import ENSEMBLE, NAIVE, PROPHET

    family = str(doc["family"])
    if family == ENSEMBLE:
        members = [_fold_predictions(plan, m, candidates, structure, metric) for m in doc["state"]["members"]]
        return [np.mean([m[i] for m in members], axis=0) for i in range(len(plan.folds))]
    if family in NAIVE:  # no parameters: this run scored exactly the champion's model on these folds
        found = candidates.get(family)
        if found is not None and found.fold_predictions is not None:
            return list(found.fold_predictions)
        return _plain(plan, family, None)
    if family == PROPHET:
        return _prophet(plan, dict(doc.get("spec") or {}), structure, metric)
    return _plain(plan, family, dict(doc.get("spec") or {}), int(doc.get("season") or 0))


def _prophet(plan: Any, params: dict[str, Any], structure: Any, metric: str) -> list[np.ndarray]:
    from forecast_trainer.tune import CrossValidator

    validator = CrossValidator(plan.frame, plan.folds, structure, metric, plan.frequency, plan.fold_closed)
    validator.errors(params)
    predictions = validator.fold_predictions(params)
    if predictions is None:
        raise ValueError("Prophet champion not scored on every fold")
    return predictions


def _plain(plan: Any, family: str, spec: dict[str, Any] | None, season_of_spec: int = 0) -> list[np.ndarray]:
    """A plain-series family with the champion's specification, re-estimated on each fold."""
    from forecast_trainer.candidates import MAX_HISTORY, fold_window
    from forecast_trainer.cv import expand, open_count, open_series
    from forecast_trainer.families.registry import family as family_impl

    impl = family_impl(family)
    out = []
    for index in range(len(plan.folds)):
        closed = plan.fold_closed[index]
        train_ds, train_y, test_ds, _ = fold_window(plan, index, MAX_HISTORY[plan.frequency])
        values, season = open_series(train_ds, train_y, closed, plan.frequency)
        model = impl.fit(values, season, spec if spec and season == season_of_spec else None)
        yhat = expand(model.predict(open_count(test_ds, closed)).mean, test_ds, closed)
        if not np.isfinite(yhat).all():
            raise ValueError("non-finite forecast")
        out.append(yhat)
    return out
