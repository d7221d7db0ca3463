from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import model as models
from forecast_trainer.errors import ModelIntegrityError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return daily_frame(150, seed=3)


@pytest.fixture(scope="module")
def structure(frame: pd.DataFrame) -> models.Structure:
    return models.structure_for(frame["ds"], "D")


def test_structure_resolves_prophets_auto_rules() -> None:
    two_years = pd.Series(pd.date_range("2020-01-01", periods=731, freq="D"))
    assert models.structure_for(two_years, "D") == models.Structure(yearly=True, weekly=True)
    assert models.structure_for(two_years[:200], "D") == models.Structure(yearly=False, weekly=True)
    weekly = pd.Series(pd.date_range("2020-01-05", periods=120, freq="W-SUN"))
    assert models.structure_for(weekly, "W") == models.Structure(yearly=True, weekly=False)


@pytest.mark.parametrize(
    ("days", "freq", "periods"),
    [(30, "D", 30), (30, "W", 5), (28, "W", 4), (30, "MS", 1), (365, "MS", 12), (1, "W", 1)],
)
def test_horizon_periods(days: int, freq: str, periods: int) -> None:
    assert models.horizon_periods(days, freq) == periods


def test_fast_backend_gives_stocks_exact_fit(frame: pd.DataFrame, structure: models.Structure) -> None:
    prophet_cls = models.import_prophet()
    stock = prophet_cls(
        yearly_seasonality=False, weekly_seasonality=True, daily_seasonality=False, uncertainty_samples=0
    )
    stock.fit(frame)
    ours = models.fit(frame, None, structure)
    for key in ("k", "m", "delta", "beta", "sigma_obs"):
        assert np.allclose(stock.params[key], ours.params[key], rtol=1e-9, atol=1e-12), key


def test_cv_feature_cache_changes_nothing(frame: pd.DataFrame, structure: models.Structure) -> None:
    train, test = frame.iloc[:-14], frame.iloc[-14:]
    cache: dict = {}
    for params in ({"seasonality_mode": "multiplicative", "seasonality_prior_scale": 0.1}, {"changepoint_range": 0.9}):
        plain = models.predict_yhat(models.fit(train, params, structure), test["ds"])
        for _ in range(2):  # second round hits the cache
            cached = models.predict_yhat(models.fit(train, params, structure, feature_cache=cache), test["ds"])
            assert np.allclose(plain, cached, rtol=1e-9)
    assert cache


@pytest.mark.parametrize("holidays", [None, "US"])
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_cv_predict_equals_prophets_predict(frame: pd.DataFrame, mode: str, holidays: str | None) -> None:
    """The CV fits' yhat-only prediction is Prophet's own predict()["yhat"] (clipped at 0)."""
    structure = models.Structure(yearly=False, weekly=True, country_holidays=holidays)
    train, test = frame.iloc[:-21], frame.iloc[-21:]
    fitted = models.fit(train, {"seasonality_mode": mode, "changepoint_prior_scale": 0.3}, structure, feature_cache={})
    stock = np.clip(fitted.predict(pd.DataFrame({"ds": test["ds"]}))["yhat"].to_numpy(), 0.0, None)
    fast = models.predict_yhat(fitted, test["ds"])
    assert fast.shape == stock.shape and np.allclose(fast, stock, rtol=1e-12, atol=1e-9)
    assert not np.allclose(fast, fast.mean())  # a real forecast with a weekly shape, not a constant


def test_forecast_dates_bounds_and_clipping(frame: pd.DataFrame, structure: models.Structure) -> None:
    fitted = models.fit(frame, {"changepoint_prior_scale": 0.5}, structure, uncertainty=True)
    out = models.forecast(fitted, frame["ds"].iloc[-1], 14, "D")
    assert list(out.columns) == ["ds", "yhat", "yhat_lower", "yhat_upper"]
    assert out["ds"].iloc[0] == frame["ds"].iloc[-1] + pd.Timedelta(days=1) and len(out) == 14
    assert (out["yhat_lower"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper"]).all()
    assert (out[["yhat", "yhat_lower", "yhat_upper"]] >= 0).all().all()
    monthly = models.future_dates(pd.Timestamp("2023-05-01"), 3, "MS")
    assert [d.strftime("%Y-%m-%d") for d in monthly] == ["2023-06-01", "2023-07-01", "2023-08-01"]


def test_json_round_trip_with_checksum(frame: pd.DataFrame, structure: models.Structure) -> None:
    fitted = models.fit(frame, {"seasonality_mode": "multiplicative"}, structure)
    text = models.to_json(fitted)
    digest = models.checksum(text)
    assert len(digest) == 64 and json.loads(text)["seasonality_mode"] == "multiplicative"
    loaded = models.load_model(text, digest)
    future = pd.Series(pd.date_range(frame["ds"].iloc[-1] + pd.Timedelta(days=1), periods=7))
    assert np.allclose(models.predict_yhat(fitted, future), models.predict_yhat(loaded, future))


def test_checksum_mismatch_is_refused(frame: pd.DataFrame, structure: models.Structure) -> None:
    text = models.to_json(models.fit(frame, None, structure))
    digest = models.checksum(text)
    tampered = text.replace('"changepoint_prior_scale": 0.05', '"changepoint_prior_scale": 0.06')
    assert tampered != text
    with pytest.raises(ModelIntegrityError, match="checksum mismatch") as info:
        models.load_model(tampered, digest)
    assert info.value.reason == "ChecksumMismatch"
    with pytest.raises(ModelIntegrityError):
        models.load_model(text, "0" * 64)
