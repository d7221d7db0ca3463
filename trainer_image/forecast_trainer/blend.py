"""Shrink the chosen model toward the best naive baseline (pure; Bates & Granger weights).

Three 30-day CV windows cannot tell a model that is truly 10-20 % better than seasonal-naive
from one that was lucky on them, and a single new window often goes the other way (measured on
63 real series: the new trainer lost to seasonal-naive on 14, most of them with a CV gain below
25 %). Instead of a yes/no decision on noisy evidence, the shipped forecast combines the chosen
model with the best naive baseline, weighted by the inverse of their mean squared CV errors
(Bates & Granger 1969, the combination that minimises the expected squared error of two
unbiased forecasts with uncorrelated errors):

    naive_weight = mse_model / (mse_model + mse_naive)

A model that is much better on CV keeps nearly all the weight (mse 1/4 of naive's: 0.2 to
naive); one that is barely better gets about half. There is no tuning constant. The weights
come from the same folds as the selection, and the combination's own CV error (on those folds)
is what the product reports as its error.
"""

from __future__ import annotations

import math

import numpy as np

from forecast_trainer.candidates import Candidate
from forecast_trainer.cv import FoldPlan
from forecast_trainer.scoring import score


def _fold_mse(plan: FoldPlan, candidate: Candidate) -> float:
    if candidate.fold_predictions is None or not plan.folds:
        return math.nan
    squares = []
    for fold, yhat in zip(plan.folds, candidate.fold_predictions, strict=True):
        actual = plan.y[fold.train_end : fold.test_end]
        keep = np.isfinite(actual) & np.isfinite(yhat)
        squares.append((actual[keep] - yhat[keep]) ** 2)
    joined = np.concatenate(squares) if squares else np.array([])
    return float(joined.mean()) if len(joined) else math.nan


def naive_weight(plan: FoldPlan, model: Candidate, naive: Candidate) -> float:
    """The naive baseline's share of the combination (0 = the model alone); see the module doc."""
    mse_model, mse_naive = _fold_mse(plan, model), _fold_mse(plan, naive)
    if not (math.isfinite(mse_model) and math.isfinite(mse_naive)) or mse_model + mse_naive <= 0:
        return 0.0
    return round(mse_model / (mse_model + mse_naive), 4)


def combined(plan: FoldPlan, model: Candidate, naive: Candidate, weight: float, metric: str) -> Candidate:
    """The combination as a candidate: its fold forecasts and CV error on the same folds."""
    if model.fold_predictions is None or naive.fold_predictions is None:
        return Candidate(family=model.family, message="no fold forecasts to combine")
    predictions = [
        (1 - weight) * m + weight * n for m, n in zip(model.fold_predictions, naive.fold_predictions, strict=True)
    ]
    errors = [score(metric, plan.y[f.train_end : f.test_end], p) for f, p in zip(plan.folds, predictions, strict=True)]
    return Candidate(
        family=model.family,
        error=float(np.mean(errors)) if errors else math.nan,
        fold_errors=errors,
        fold_predictions=predictions,
        spec=model.spec,
        spec_season=model.spec_season,
        members=model.members,
    )
