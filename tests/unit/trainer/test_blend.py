"""Shrinking the winner toward the best naive baseline (blend.py): weights, CV, shipped document."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import forecaster
from forecast_trainer import model as models
from forecast_trainer.blend import combined, naive_weight
from forecast_trainer.candidates import from_folds, score_family
from forecast_trainer.classify import classify
from forecast_trainer.config import TrainConfig
from forecast_trainer.cv import plan_folds
from forecast_trainer.families import NAIVE
from forecast_trainer.training import train_product
from forecast_trainer.validate import Prepared

HORIZON = 14


def plan_with_errors(model_offset: float, naive_offset: float):
    """A plan and two candidates whose fold forecasts miss every actual by a constant."""
    frame = daily_frame(200, seed=2, level=60)
    plan = plan_folds(frame, "D", HORIZON, 3)
    actual = [plan.y[f.train_end : f.test_end] for f in plan.folds]
    model = from_folds(plan, "ets", "smape", [a + model_offset for a in actual])
    naive = from_folds(plan, "seasonal_naive", "smape", [a - naive_offset for a in actual])
    return plan, model, naive


@pytest.mark.parametrize(
    ("model_offset", "naive_offset", "weight"),
    [
        (1.0, 2.0, 0.2),  # model's MSE a quarter of naive's: 1 / (1 + 4)
        (3.0, 3.0, 0.5),  # equally good on CV: half each
        (0.0, 5.0, 0.0),  # a perfect model keeps all the weight
        (4.0, 2.0, 0.8),
    ],
)
def test_naive_weight_is_the_models_share_of_the_cv_squared_errors(model_offset, naive_offset, weight) -> None:
    plan, model, naive = plan_with_errors(model_offset, naive_offset)
    assert naive_weight(plan, model, naive) == pytest.approx(weight, abs=1e-4)


def test_the_combination_is_scored_on_the_same_folds() -> None:
    plan, model, naive = plan_with_errors(2.0, 2.0)  # +2 and -2 cancel at weight 0.5
    mix = combined(plan, model, naive, 0.5, "mae")
    assert mix.ok and mix.error == pytest.approx(0.0) and len(mix.fold_errors) == len(plan.folds)
    assert mix.family == "ets"  # the family is still the winner's


def test_a_failed_candidate_gets_no_weight() -> None:
    plan, model, naive = plan_with_errors(1.0, 1.0)
    model.fold_predictions = None
    assert naive_weight(plan, model, naive) == 0.0


def train(frame: pd.DataFrame, **options):
    cfg = TrainConfig(data_csv="-", horizon_days=HORIZON, folds=3, trials=0, **options)
    prepared = Prepared("p", frame, len(frame), float((frame["y"] == 0).mean()), "D")
    return train_product(prepared, cfg, 0, None, classify(frame["y"], "D"))


def test_a_clearly_seasonal_series_keeps_most_weight_on_the_model_and_reports_the_mix() -> None:
    trained = train(daily_frame(300, seed=0, level=80))
    assert trained.family not in NAIVE and trained.blend is not None
    assert trained.blend.naive == "seasonal_naive" and 0 < trained.blend.naive_weight < 0.5
    s = trained.selection
    assert s.error == trained.blend.candidate.error and s.error < s.naive_error and s.beats_naive is True
    assert trained.params["naive_blend"] == {"naive": "seasonal_naive", "naive_weight": trained.blend.naive_weight}
    assert "combined with seasonal_naive" in s.reason


def test_the_stored_document_keeps_the_naive_part_and_forecasts_the_same_again() -> None:
    trained = train(daily_frame(300, seed=0, level=80), models=("ets", "seasonal_naive", "last_value"))
    doc = json.loads(trained.model_json)
    assert doc["family"] == "ets" and doc["blend"]["naive"]["family"] == "seasonal_naive"
    assert doc["blend"]["naive_weight"] == trained.blend.naive_weight
    again = forecaster.load(trained.model_json, trained.checksum).forecast(HORIZON)
    for column in ("yhat", "yhat_lower", "yhat_upper"):
        assert np.allclose(again[column], trained.forecast[column], atol=1e-6), column


def test_the_shipped_forecast_is_the_weighted_mean_of_the_two_fits() -> None:
    frame = daily_frame(240, seed=5)
    plan = plan_folds(frame, "D", HORIZON, 2)
    candidates = {n: score_family(plan, n, "smape") for n in ("ets", "seasonal_naive")}
    structure = models.structure_for(frame["ds"], "D")
    alone = forecaster.ship(plan, "ets", candidates, {}, structure, HORIZON).forecast["yhat"].to_numpy()
    naive = forecaster.ship(plan, "seasonal_naive", candidates, {}, structure, HORIZON).forecast["yhat"].to_numpy()
    mixed = forecaster.ship(plan, "ets", candidates, {}, structure, HORIZON, blend=("seasonal_naive", 0.25))
    assert np.allclose(mixed.forecast["yhat"].to_numpy(), 0.75 * alone + 0.25 * naive)


def test_no_blend_when_models_leave_the_naive_baselines_out() -> None:
    trained = train(daily_frame(300, seed=0, level=80), models=("ets", "theta"))
    assert trained.family in ("ets", "theta") and trained.blend is None
    assert "blend" not in json.loads(trained.model_json) and "naive_blend" not in trained.params


def test_a_level_shift_series_stays_on_the_naive_baseline_unblended() -> None:
    rng = np.random.default_rng(0)
    y = 60 + np.cumsum(rng.normal(0, 4, 300))
    y[-60:] += 50
    frame = pd.DataFrame({"ds": pd.date_range("2023-01-01", periods=300), "y": np.maximum(y, 1).round()})
    trained = train(frame)
    assert trained.family in NAIVE and trained.blend is None
    assert "blend" not in json.loads(trained.model_json)
