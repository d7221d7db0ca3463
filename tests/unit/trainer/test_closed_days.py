"""Closed weekdays, dates and holidays: detected from history, forecast as 0 by every family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer.closed_days import ClosedDays, detect
from forecast_trainer.cv import expand, open_count, open_series


def closed_saturdays(days: int = 200, seed: int = 0) -> pd.DataFrame:
    frame = daily_frame(days, seed=seed)
    frame.loc[frame["ds"].dt.dayofweek == 5, "y"] = 0.0
    return frame


def test_a_weekday_that_is_always_zero_is_closed() -> None:
    frame = closed_saturdays()
    closed = detect(frame["ds"], frame["y"], "D")
    assert closed.weekdays == (5,) and closed.as_dict()["weekdays"] == ["Sat"]


def test_a_weekday_closed_long_ago_but_open_recently_is_open() -> None:
    frame = closed_saturdays(200)
    recent = frame["ds"] >= frame["ds"].iloc[-7 * 8]
    frame.loc[recent & (frame["ds"].dt.dayofweek == 5), "y"] = 40.0
    assert detect(frame["ds"], frame["y"], "D").weekdays == ()


def test_random_zeros_of_an_intermittent_series_are_not_closed_days() -> None:
    rng = np.random.default_rng(1)
    found = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = np.where(rng.random(730) < 0.5, 0.0, 3.0)
        ds = pd.date_range("2022-01-01", periods=730, freq="D")
        found.append(detect(ds, y, "D"))
    assert sum(bool(c) for c in found) <= 1


def test_a_date_closed_every_year_is_closed() -> None:
    frame = daily_frame(3 * 365, seed=3, start="2021-01-01")
    frame.loc[frame["ds"].dt.strftime("%m-%d").isin(["12-25", "01-01"]), "y"] = 0.0
    closed = detect(frame["ds"], frame["y"], "D")
    assert set(closed.dates) == {"12-25", "01-01"} and closed.weekdays == ()


def test_a_holiday_closed_every_year_is_closed_with_a_country() -> None:
    frame = daily_frame(3 * 365, seed=4, start="2021-01-01")
    easter_monday = pd.to_datetime(["2021-04-05", "2022-04-18", "2023-04-10"])
    frame.loc[frame["ds"].isin(easter_monday), "y"] = 0.0
    closed = detect(frame["ds"], frame["y"], "D", country="DE")
    assert closed.holidays == ("Ostermontag",) or "Easter Monday" in closed.holidays
    assert closed.mask(pd.to_datetime(["2024-04-01", "2024-04-02"])).tolist() == [True, False]
    assert detect(frame["ds"], frame["y"], "D").holidays == ()  # no country: no holiday calendar


def test_weekly_and_monthly_series_have_no_closed_days() -> None:
    ds = pd.date_range("2020-01-05", periods=100, freq="7D")
    assert not detect(ds, np.zeros(100), "W")


@pytest.mark.parametrize("weekdays", [(), (5,), (5, 6)])
def test_open_series_drops_closed_weekdays_and_expand_puts_zeros_back(weekdays: tuple[int, ...]) -> None:
    closed = ClosedDays(weekdays=weekdays)
    frame = daily_frame(70, seed=2)
    values, season = open_series(frame["ds"], frame["y"].to_numpy(), closed, "D")
    assert season == 7 - len(weekdays) and len(values) == 70 - 10 * len(weekdays)
    future = pd.date_range("2024-01-01", periods=14, freq="D")
    out = expand(np.arange(1.0, open_count(future, closed) + 1), future, closed)
    assert (out[np.isin(future.dayofweek, weekdays)] == 0).all() and (
        out[~np.isin(future.dayofweek, weekdays)] > 0
    ).all()


def test_closed_days_round_trip_through_their_dict() -> None:
    closed = ClosedDays(weekdays=(0, 6), dates=("12-25",), holidays=("Christmas Day",), country="US")
    assert ClosedDays.from_dict(closed.as_dict()) == closed
