"""The selection rule, alone (table-driven) and end to end on series whose right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer.classify import classify
from forecast_trainer.config import TrainConfig
from forecast_trainer.families import FAMILIES, NAIVE
from forecast_trainer.selection import select
from forecast_trainer.training import train_product
from forecast_trainer.validate import Prepared

ALL = FAMILIES


@pytest.mark.parametrize(
    ("case", "errors", "allowed", "incumbent", "family", "beats_naive"),
    [
        (
            "naive is best",
            {"seasonal_naive": 10.0, "last_value": 12.0, "ets": 11.0},
            ALL,
            None,
            "seasonal_naive",
            False,
        ),
        (
            "a model within the margin of naive does not count",
            {"seasonal_naive": 10.0, "ets": 9.9},
            ALL,
            None,
            "seasonal_naive",
            False,
        ),
        (
            "a model clearly better than naive wins",
            {"seasonal_naive": 10.0, "ets": 9.0, "theta": 9.5},
            ALL,
            None,
            "ets",
            True,
        ),
        (
            "the best naive is the bar, not seasonal-naive",
            {"seasonal_naive": 20.0, "last_value": 10.0, "ets": 15.0},
            ALL,
            None,
            "last_value",
            False,
        ),
        (
            "the last winner stays unless clearly beaten",
            {"seasonal_naive": 10.0, "ets": 8.0, "prophet": 8.1},
            ALL,
            "prophet",
            "prophet",
            True,
        ),
        (
            "a clearly better model replaces the last winner",
            {"seasonal_naive": 10.0, "ets": 7.0, "prophet": 8.0},
            ALL,
            "prophet",
            "ets",
            True,
        ),
        (
            "failed candidates are ignored",
            {"seasonal_naive": 10.0, "ets": None, "arima": float("nan")},
            ALL,
            None,
            "seasonal_naive",
            False,
        ),
        (
            "families outside --models are not shipped",
            {"seasonal_naive": 10.0, "ets": 5.0, "prophet": 9.0},
            ("prophet", "seasonal_naive", "last_value"),
            None,
            "prophet",
            True,
        ),
    ],
)
def test_selection_rule(case, errors, allowed, incumbent, family, beats_naive) -> None:
    chosen = select(errors, allowed, 0.02, incumbent)
    assert chosen.family == family, case
    assert chosen.beats_naive is beats_naive, case
    assert chosen.beats_baseline is True, case  # never worse on CV than the best naive baseline


def test_without_an_allowed_naive_the_best_allowed_ships_and_is_flagged() -> None:
    chosen = select({"seasonal_naive": 10.0, "last_value": 11.0, "prophet": 14.0}, ("prophet",), 0.02)
    assert chosen.family == "prophet" and chosen.beats_baseline is False and chosen.beats_naive is False
    assert chosen.naive_family == "seasonal_naive" and chosen.naive_error == 10.0


def test_nothing_scored_selects_nothing() -> None:
    assert select({"ets": None}, ALL, 0.02).family is None


def prepared(frame: pd.DataFrame) -> Prepared:
    return Prepared("p", frame, len(frame), float((frame["y"] == 0).mean()), "D")


def train(frame: pd.DataFrame, **options):
    cfg = TrainConfig(data_csv="-", horizon_days=14, folds=3, trials=0, **options)
    return train_product(prepared(frame), cfg, 0, None, classify(frame["y"], "D"))


def random_walk_with_a_level_shift(days: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = 60 + np.cumsum(rng.normal(0, 4, days))
    y[-60:] += 50
    return pd.DataFrame({"ds": pd.date_range("2023-01-01", periods=days), "y": np.maximum(y, 1).round()})


def test_picks_naive_on_a_level_shift_series() -> None:
    trained = train(random_walk_with_a_level_shift())
    assert trained.family in NAIVE, {k: c.error for k, c in trained.candidates.items()}
    assert trained.selection.beats_naive is False and trained.selection.beats_baseline is True
    assert trained.candidates["prophet"].error > trained.selection.error  # Prophet's defaults miss the shift


def test_picks_a_seasonal_model_on_a_clearly_seasonal_series() -> None:
    trained = train(daily_frame(300, seed=0, level=80))
    assert trained.family not in NAIVE and trained.selection.beats_naive is True
    assert trained.selection.error < 0.9 * trained.candidates["seasonal_naive"].error


@pytest.mark.parametrize("family", ["prophet", "ets", "theta", "arima", "seasonal_naive", "last_value", "ensemble"])
def test_keeps_zeros_on_closed_weekdays_for_every_family(family: str) -> None:
    frame = daily_frame(200, seed=3, level=60)
    frame.loc[frame["ds"].dt.dayofweek == 5, "y"] = 0.0  # closed on Saturdays
    models = (family, "ets", "theta") if family == "ensemble" else (family,)
    trained = train(frame, models=models)
    assert trained.family == family and trained.closed.weekdays == (5,)
    out = trained.forecast
    saturday = out["ds"].dt.dayofweek == 5
    assert (out.loc[saturday, ["yhat", "yhat_lower", "yhat_upper"]] == 0).all().all()
    assert (out.loc[~saturday, "yhat"] > 0).all()


def test_croston_type_families_compete_only_for_intermittent_products() -> None:
    rng = np.random.default_rng(5)
    y = np.where(rng.random(240) < 0.6, 0.0, rng.poisson(3, 240) + 1.0)
    frame = pd.DataFrame({"ds": pd.date_range("2023-01-01", periods=240), "y": y})
    intermittent = train(frame, models=("croston_sba", "tsb", "adida", "seasonal_naive", "last_value"))
    assert {"croston_sba", "tsb", "adida"} <= set(intermittent.candidates)
    regular = train(daily_frame(200, seed=1), models=("croston_sba", "seasonal_naive", "last_value"))
    assert "croston_sba" not in regular.candidates and regular.family in NAIVE


def test_a_winner_that_cannot_be_fitted_on_the_full_history_gives_way_to_the_next_best(monkeypatch) -> None:
    from forecast_trainer import forecaster

    real_ship = forecaster.ship
    frame = daily_frame(200, seed=0, level=80)
    first = train(frame, models=("ets", "theta", "seasonal_naive", "last_value"))

    def ship(plan, family, *args, **kwargs):
        if family == first.family:
            raise ValueError("math domain error")
        return real_ship(plan, family, *args, **kwargs)

    monkeypatch.setattr(forecaster, "ship", ship)
    again = train(frame, models=("ets", "theta", "seasonal_naive", "last_value"))
    assert again.family != first.family and again.family in ("ets", "theta", "seasonal_naive", "last_value")
    assert any("failed to fit the full history" in w for w in again.warnings)


@pytest.mark.parametrize(
    ("name", "models", "last_value_competes"),
    [
        ("intermittent", FAMILIES, False),  # one day's count of intermittent demand is no forecast
        ("intermittent", ("ets", "last_value"), True),  # seasonal-naive not allowed: last value stays the bar
        ("low", FAMILIES, True),
        ("high", FAMILIES, True),
    ],
)
def test_last_value_competes_for_intermittent_products_only_without_seasonal_naive(
    name: str, models: tuple[str, ...], last_value_competes: bool
) -> None:
    from forecast_trainer.classify import ProductClass
    from forecast_trainer.training import candidate_families

    allowed = candidate_families(models, ProductClass(name, 1.0, 1.0, 0.5))
    assert ("last_value" in allowed) is last_value_competes


def test_an_intermittent_product_is_measured_against_seasonal_naive_not_last_value() -> None:
    rng = np.random.default_rng(21)
    days = 300
    y = (rng.binomial(1, 0.3, days) * (1 + rng.poisson(2, days))).astype(float)
    y[[days - 31, days - 61, days - 91]] = 0.0  # the day before each CV fold sold nothing: last value 0 wins CV
    frame = pd.DataFrame({"ds": pd.date_range("2023-01-01", periods=days, freq="D"), "y": y})
    product_class = classify(frame["y"], "D")
    assert product_class.name == "intermittent"
    cfg = TrainConfig(models=("croston_sba", "tsb", "seasonal_naive", "last_value", "ets"))
    prepared = Prepared("p", frame, days, float((y == 0).mean()), "D")
    trained = train_product(prepared, cfg, 0, None, product_class)
    lv, sn = trained.candidates["last_value"].error, trained.candidates["seasonal_naive"].error
    assert lv is not None and sn is not None and lv < sn  # it would have been the bar and shipped before
    assert trained.selection is not None and trained.selection.naive_family == "seasonal_naive"
    assert trained.family != "last_value" and "last_value" in trained.candidates  # still scored and reported
