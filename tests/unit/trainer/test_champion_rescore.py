"""Re-scoring a stored champion on this run's folds (champion.rescore): same windows, same metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import model as models
from forecast_trainer.candidates import score_family
from forecast_trainer.champion import recipe, rescore
from forecast_trainer.cv import plan_folds
from forecast_trainer.forecaster import FORMAT


@pytest.fixture(scope="module")
def plan():
    return plan_folds(daily_frame(220, seed=4), "D", 14, 3)


@pytest.fixture(scope="module")
def naive(plan):
    return {name: score_family(plan, name, "smape") for name in ("seasonal_naive", "last_value")}


def test_a_naive_champion_scores_exactly_as_this_run_scored_it(plan, naive) -> None:
    doc = {"format": FORMAT, "family": "seasonal_naive", "spec": {}}
    assert rescore(plan, doc, naive, None, "smape") == pytest.approx(naive["seasonal_naive"].fold_errors)


def test_an_ets_champion_keeps_its_specification_and_is_refitted_per_fold(plan, naive) -> None:
    ets = score_family(plan, "ets", "smape")
    doc = {"format": FORMAT, "family": "ets", "spec": ets.spec, "season": ets.spec_season}
    errors = rescore(plan, doc, naive, None, "smape")
    assert len(errors) == len(plan.folds) and all(math.isfinite(e) for e in errors)
    assert errors == pytest.approx(ets.fold_errors, rel=1e-6)  # the spec chosen on the oldest fold, re-estimated


def test_a_blended_champion_mixes_with_this_runs_naive_forecasts(plan, naive) -> None:
    ets = score_family(plan, "ets", "smape")
    own = {"format": FORMAT, "family": "ets", "spec": ets.spec, "season": ets.spec_season}
    alone = rescore(plan, own, naive, None, "smape")
    blended = {**own, "blend": {"naive_weight": 1.0, "naive": {"family": "seasonal_naive", "spec": {}}}}
    assert rescore(plan, blended, naive, None, "smape") == pytest.approx(naive["seasonal_naive"].fold_errors)
    half = {**own, "blend": {"naive_weight": 0.5, "naive": {"family": "seasonal_naive", "spec": {}}}}
    assert rescore(plan, half, naive, None, "smape") != pytest.approx(alone)


def test_a_prophet_champion_from_before_the_envelope_is_scored_with_its_params(plan, naive) -> None:
    structure = models.structure_for(plan.ds, "D")
    params = {"family": "prophet", "changepoint_prior_scale": 0.05, "seasonality_mode": "additive"}
    doc = recipe(json.dumps({"some": "legacy prophet json"}), params)
    assert doc == {"family": "prophet", "spec": {"changepoint_prior_scale": 0.05, "seasonality_mode": "additive"}}
    errors = rescore(plan, doc, naive, structure, "smape")
    assert len(errors) == 3 and all(np.isfinite(errors))


def test_a_champion_that_cannot_be_fitted_cannot_be_scored(plan, naive) -> None:
    assert rescore(plan, {"format": FORMAT, "family": "no-such-family", "spec": {}}, naive, None, "smape") == []
