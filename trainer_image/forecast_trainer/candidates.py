"""Score every candidate family on the same folds; build the top-k combination.

Each plain-series family (naive, statsforecast) forecasts every fold's test window from that
fold's training data (its open days, at most ``MAX_HISTORY`` periods, see cv.py), and is
scored with the run's metric on the same days as Prophet. The specification (ETS components,
Theta variant, ARIMA orders) is chosen by the family's own automatic search on the *oldest*
fold and re-used (parameters re-estimated) on the more recent ones: no fold's choice has seen
its test window, at a tenth of the cost of a search per fold.

A candidate that fails on any fold (or forecasts a non-finite number) is out of the running
and reported as ``failed``. ``combine`` averages the fold forecasts of the ``ENSEMBLE_SIZE``
best models (by CV error; the naive baselines are not members) into one more candidate,
``ensemble``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecast_trainer.cv import FoldPlan, expand, open_count, open_series
from forecast_trainer.errors import one_line
from forecast_trainer.families import ENSEMBLE, NAIVE
from forecast_trainer.families.registry import family as family_impl
from forecast_trainer.intervals import residual_matrix
from forecast_trainer.scoring import score

# Most history a plain-series family fits on, in periods: a year of days is plenty for weekly
# patterns and keeps AutoARIMA/AutoETS fast; coarser series use (almost) all of it.
MAX_HISTORY = {"D": 365, "W": 10 * 52, "MS": 50 * 12}
ENSEMBLE_SIZE = 3


@dataclass
class Candidate:
    family: str
    error: float | None = None  # mean of fold errors; None = failed
    fold_errors: list[float] = field(default_factory=list)
    fold_predictions: list[np.ndarray] | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    spec_season: int = 0  # the season length ``spec`` was chosen for
    members: list[str] = field(default_factory=list)  # ensemble only
    message: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is not None and math.isfinite(self.error)

    def summary(self) -> dict[str, Any]:
        """What the stored model and metrics.json keep per candidate."""
        out: dict[str, Any] = {
            "error": _round(self.error),
            "fold_errors": [_round(e) for e in self.fold_errors],
            "status": "ok" if self.ok else "failed",
            "seconds": round(self.seconds, 3),
        }
        if self.spec:
            out["spec"] = self.spec
        if self.members:
            out["members"] = self.members
        if self.message:
            out["message"] = self.message
        return out


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def fold_window(plan: FoldPlan, index: int, max_history: int) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """(train ds, train y, test ds, test y) of fold ``index`` (training capped to ``max_history``)."""
    fold = plan.folds[index]
    start = max(0, fold.train_end - max_history)
    y = plan.y
    ds = plan.ds
    return (
        ds.iloc[start : fold.train_end],
        y[start : fold.train_end],
        ds.iloc[fold.train_end : fold.test_end],
        y[fold.train_end : fold.test_end],
    )


def score_family(plan: FoldPlan, name: str, metric: str) -> Candidate:
    """Cross-validate one plain-series family on ``plan``'s folds (see the module doc)."""
    started = time.process_time()
    candidate = Candidate(family=name)
    impl = family_impl(name)
    cap = MAX_HISTORY[plan.frequency]
    spec: dict[str, Any] | None = None
    spec_season = 0
    predictions: dict[int, np.ndarray] = {}
    errors: dict[int, float] = {}
    try:
        for index in reversed(range(len(plan.folds))):  # oldest first: it chooses the specification
            closed = plan.fold_closed[index]
            train_ds, train_y, test_ds, test_y = fold_window(plan, index, cap)
            values, season = open_series(train_ds, train_y, closed, plan.frequency)
            model = impl.fit(values, season, spec if season == spec_season else None)
            if spec is None:
                spec, spec_season = model.spec, season
            yhat = expand(model.predict(open_count(test_ds, closed)).mean, test_ds, closed)
            if not np.isfinite(yhat).all():
                raise ValueError("non-finite forecast")
            predictions[index] = yhat
            errors[index] = score(metric, test_y, yhat)
    except Exception as exc:  # a family that cannot fit this series is out, not the product
        candidate.message = one_line(f"{type(exc).__name__}: {exc}", 200)
        candidate.seconds = time.process_time() - started
        return candidate
    candidate.fold_errors = [errors[i] for i in range(len(plan.folds))]
    candidate.fold_predictions = [predictions[i] for i in range(len(plan.folds))]
    candidate.error = _mean(candidate.fold_errors)
    candidate.spec = spec or {}
    candidate.spec_season = spec_season
    candidate.seconds = time.process_time() - started
    return candidate


def from_folds(plan: FoldPlan, name: str, metric: str, predictions: list[np.ndarray] | None, **extra: Any) -> Candidate:
    """A candidate from fold forecasts made elsewhere (Prophet's tuning, the ensemble)."""
    if predictions is None or len(predictions) != len(plan.folds):
        return Candidate(family=name, message="no forecast for every fold", **extra)
    errors = [score(metric, plan.y[f.train_end : f.test_end], p) for f, p in zip(plan.folds, predictions, strict=True)]
    return Candidate(family=name, error=_mean(errors), fold_errors=errors, fold_predictions=predictions, **extra)


def combine(plan: FoldPlan, candidates: dict[str, Candidate], metric: str, size: int = ENSEMBLE_SIZE) -> Candidate:
    """The mean of the ``size`` best models' fold forecasts (at least two), as a candidate.

    The naive baselines are not members: they are the bar the combination must clear.
    """
    ranked = sorted(
        (
            c
            for c in candidates.values()
            if c.ok and c.family not in (ENSEMBLE, *NAIVE) and c.fold_predictions is not None
        ),
        key=lambda c: (float(c.error or math.inf), c.family),
    )[:size]
    if len(ranked) < 2:
        return Candidate(family=ENSEMBLE, message="fewer than two candidates to combine")
    predictions = [
        np.mean([c.fold_predictions[i] for c in ranked if c.fold_predictions is not None], axis=0)
        for i in range(len(plan.folds))
    ]
    return from_folds(plan, ENSEMBLE, metric, predictions, members=[c.family for c in ranked])


def residuals(plan: FoldPlan, candidate: Candidate) -> np.ndarray:
    """Actual minus forecast over every fold's open days (for empirical intervals)."""
    if candidate.fold_predictions is None:
        return np.array([])
    out = []
    for index, (fold, yhat) in enumerate(zip(plan.folds, candidate.fold_predictions, strict=True)):
        actual = plan.y[fold.train_end : fold.test_end]
        open_days = ~plan.fold_closed[index].mask(plan.ds.iloc[fold.train_end : fold.test_end])
        keep = open_days & np.isfinite(actual)
        out.append(actual[keep] - yhat[keep])
    return np.concatenate(out) if out else np.array([])


def residual_steps(plan: FoldPlan, candidate: Candidate) -> np.ndarray:
    """Folds x horizon steps of actual minus ``candidate``'s fold forecast (NaN on closed days)."""
    if candidate.fold_predictions is None or not plan.folds:
        return np.empty((0, plan.horizon))
    actuals, opens = [], []
    for index, fold in enumerate(plan.folds):
        actuals.append(plan.y[fold.train_end : fold.test_end])
        opens.append(~plan.fold_closed[index].mask(plan.ds.iloc[fold.train_end : fold.test_end]))
    return residual_matrix(actuals, candidate.fold_predictions, opens, plan.horizon)
