"""Every model family: fit, forecast with intervals, and a JSON round trip verified by checksum."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import forecaster
from forecast_trainer import model as models
from forecast_trainer.candidates import combine, from_folds, score_family
from forecast_trainer.cv import plan_folds
from forecast_trainer.errors import ModelIntegrityError
from forecast_trainer.families import ENSEMBLE, FAMILIES, INTERMITTENT, PROPHET, to_models
from forecast_trainer.families.codec import decode, encode
from forecast_trainer.families.registry import family as family_impl

PLAIN = [f for f in FAMILIES if f not in (PROPHET, ENSEMBLE)]
HORIZON = 14


def intermittent_frame(days: int = 240, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(days) < 0.55, 0.0, rng.poisson(4, days) + 1.0)
    return pd.DataFrame({"ds": pd.date_range("2023-01-01", periods=days, freq="D"), "y": y})


def frame_for(name: str) -> pd.DataFrame:
    return intermittent_frame() if name in INTERMITTENT else daily_frame(240, seed=5)


def scored(frame: pd.DataFrame, names: list[str]) -> tuple:
    plan = plan_folds(frame, "D", HORIZON, 2)
    candidates = {n: score_family(plan, n, "smape") for n in names}
    return plan, candidates


@pytest.mark.parametrize("name", PLAIN)
def test_family_fits_and_forecasts_with_an_interval(name: str) -> None:
    y = frame_for(name)["y"].to_numpy(dtype=float)
    model = family_impl(name).fit(y, 7)
    prediction = model.predict(HORIZON)
    assert prediction.mean.shape == (HORIZON,) and np.isfinite(prediction.mean).all()
    if name in INTERMITTENT:
        assert prediction.lower is None  # empirical interval, added by the forecaster
    else:
        assert prediction.lower is not None and prediction.upper is not None
        assert (prediction.lower <= prediction.mean + 1e-9).all() and (prediction.mean <= prediction.upper + 1e-9).all()


@pytest.mark.parametrize("name", PLAIN)
def test_family_state_is_json_and_restores_the_same_forecast(name: str) -> None:
    impl = family_impl(name)
    model = impl.fit(frame_for(name)["y"].to_numpy(dtype=float), 7)
    text = json.dumps(model.state(), allow_nan=False)  # strict JSON, no pickle
    restored = impl.restore(model.spec, json.loads(text))
    assert np.allclose(restored.predict(HORIZON).mean, model.predict(HORIZON).mean)


@pytest.mark.parametrize("name", PLAIN)
def test_family_scores_on_every_fold_and_reuses_its_specification(name: str) -> None:
    plan, candidates = scored(frame_for(name), [name])
    candidate = candidates[name]
    assert candidate.ok, candidate.message
    assert len(candidate.fold_errors) == len(plan.folds) == 2
    assert all(len(p) == HORIZON for p in candidate.fold_predictions)


@pytest.mark.parametrize("name", [*PLAIN, PROPHET, ENSEMBLE])
def test_shipped_model_round_trips_through_json_with_its_checksum(name: str) -> None:
    frame = frame_for(name)
    plain = [n for n in PLAIN if n in INTERMITTENT] if name in INTERMITTENT else ["ets", "theta", "seasonal_naive"]
    plan, candidates = scored(frame, sorted({*plain, *([name] if name in PLAIN else [])}))
    if name in (PROPHET, ENSEMBLE):
        structure = models.structure_for(frame["ds"], "D")
        candidates[PROPHET] = from_folds(plan, PROPHET, "smape", [np.full(HORIZON, 50.0)] * len(plan.folds))
        candidates[ENSEMBLE] = combine(plan, candidates, "smape")
    else:
        structure = models.structure_for(frame["ds"], "D")
    shipped = forecaster.ship(plan, name, candidates, {}, structure, HORIZON)
    out = shipped.forecast
    bands = ["yhat_lower_80", "yhat_upper_80"]  # the default level, the same as yhat_lower/yhat_upper
    assert list(out.columns) == ["ds", "yhat", "yhat_lower", "yhat_upper", *bands] and len(out) == HORIZON
    assert (out["yhat_lower"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper"]).all()
    assert (out[["yhat", "yhat_lower", "yhat_upper"]] >= 0).all().all()
    assert (out["yhat_upper"] > out["yhat_lower"]).any(), "every family has a non-trivial interval"
    doc = json.loads(shipped.model_json)
    assert doc["format"] == forecaster.FORMAT and doc["family"] == name
    loaded = forecaster.load(shipped.model_json, shipped.checksum)
    assert loaded.family == name
    again = loaded.forecast(HORIZON)
    assert (again["ds"] == out["ds"]).all()
    assert np.allclose(again["yhat"], out["yhat"], rtol=1e-6, atol=1e-6)
    if name != PROPHET and name != ENSEMBLE:  # Prophet's intervals are sampled
        assert np.allclose(again["yhat_lower"], out["yhat_lower"], atol=1e-6)


def test_a_tampered_model_is_refused() -> None:
    frame = daily_frame(120, seed=2)
    plan, candidates = scored(frame, ["ets", "seasonal_naive"])
    shipped = forecaster.ship(plan, "ets", candidates, {}, models.structure_for(frame["ds"], "D"), HORIZON)
    tampered = shipped.model_json.replace('"family":"ets"', '"family":"theta"')
    assert tampered != shipped.model_json
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        forecaster.load(tampered, shipped.checksum)


def test_a_prophet_model_stored_before_the_envelope_still_loads() -> None:
    frame = daily_frame(90, seed=4)
    fitted = models.fit(frame, None, models.structure_for(frame["ds"], "D"))
    text = models.to_json(fitted)
    loaded = forecaster.load(text, models.checksum(text))
    assert loaded.family == PROPHET and len(loaded.forecast(7)) == 7


def test_codec_round_trips_arrays_tuples_named_tuples_and_non_finite_numbers() -> None:
    from collections import namedtuple

    Fit = namedtuple("Fit", ["a", "b"])
    value = {
        "x": np.array([[1.0, np.nan], [np.inf, -np.inf]]),
        "t": (1, 2.5, "s"),
        "nt": Fit(np.int64(3), np.float64(0.5)),
        "$odd": None,
        "f": float("nan"),
        "i": np.arange(3),
    }
    back = decode(json.loads(json.dumps(encode(value), allow_nan=False)))
    assert np.array_equal(back["x"], value["x"], equal_nan=True) and back["x"].dtype == np.float64
    assert back["t"] == (1, 2.5, "s") and back["nt"].a == 3 and back["nt"].b == 0.5
    assert back["$odd"] is None and np.isnan(back["f"]) and back["i"].tolist() == [0, 1, 2]
    with pytest.raises(TypeError):
        encode({"o": object()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", FAMILIES),
        ("all", FAMILIES),
        ("Prophet", ("prophet",)),
        ("prophet, ets,naive", ("prophet", "ets", "seasonal_naive", "last_value")),
        ("intermittent", ("croston_sba", "tsb", "adida")),
        ("seasonal-naive,ensemble", ("seasonal_naive", "ensemble")),
    ],
)
def test_models_option_accepts_names_and_groups(text: str, expected: tuple[str, ...]) -> None:
    assert to_models(text) == expected


@pytest.mark.parametrize("text", ["lstm", "ensemble", ",", "prophet,xgboost"])
def test_models_option_refuses_unknown_or_empty_lists(text: str) -> None:
    with pytest.raises(ValueError):
        to_models(text)
