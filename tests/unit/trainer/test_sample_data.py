from __future__ import annotations

import csv
from datetime import date

import pandas as pd
import pytest

from forecast_trainer.errors import DataInvalid
from forecast_trainer.sample_data import BAD_PRODUCTS, product_id, rows, series, traits, write_csv
from forecast_trainer.validate import Rules, prepare

START = date(2022, 1, 1)


def test_product_ids_are_stable_and_bakery_like() -> None:
    assert product_id(0) == "bakery-croissant-001"
    assert product_id(1) == "bakery-baguette-001"
    assert product_id(20) == "bakery-croissant-002"
    assert len({product_id(i) for i in range(500)}) == 500


def test_deterministic_for_a_seed_and_independent_of_product_count() -> None:
    a = list(rows(3, 100, seed=5, start=START))
    b = list(rows(3, 100, seed=5, start=START))
    c = list(rows(8, 100, seed=5, start=START))
    d = list(rows(3, 100, seed=6, start=START))
    assert a == b
    assert c[:300] == a
    assert a != d


def test_series_has_holidays_weekly_pattern_intermittency_and_shifts() -> None:
    dates, values = series(0, 730, seed=1, start=START)
    frame = pd.DataFrame({"ds": pd.to_datetime(dates), "y": values})
    assert (frame["y"] >= 0).all() and (frame["y"] == frame["y"].round()).all()
    closed = frame[frame["ds"].dt.strftime("%m-%d").isin(["12-25", "01-01"])]
    assert (closed["y"] == 0).all() and len(closed) >= 3
    by_weekday = frame.groupby(frame["ds"].dt.dayofweek)["y"].mean()
    assert by_weekday[5] > by_weekday[1] * 1.2  # Saturdays sell more than Tuesdays
    intermittent = next(i for i in range(20) if traits(i).intermittent)
    _, sparse = series(intermittent, 365, seed=1, start=START)
    assert 0.2 < sum(v == 0 for v in sparse) / 365 < 0.9
    shifted = next(i for i in range(20) if traits(i).level_shift)
    _, shifted_values = series(shifted, 730, seed=1, start=START)
    early, late = pd.Series(shifted_values[100:400]).mean(), pd.Series(shifted_values[-60:]).mean()
    assert abs(late / early - 1) > 0.15


def test_bad_products_fail_validation_for_the_intended_reasons() -> None:
    data = pd.DataFrame(list(rows(0, 120, seed=1, start=START, bad=True)), columns=["product_id", "ds", "y"])
    reasons = {}
    for name in BAD_PRODUCTS:
        group = data[data["product_id"] == name]
        with pytest.raises(DataInvalid) as info:
            prepare(name, pd.DataFrame({"ds": group["ds"].astype(str), "y": group["y"].astype(str)}), Rules())
        reasons[name] = info.value.reason
    assert reasons == {
        "bad-too-short-001": "TooFewPoints",
        "bad-all-zero-001": "MostlyZeros",
        "bad-negative-001": "NegativeValues",
        "bad-constant-001": "NoVariance",
    }


def test_csv_is_long_format(tmp_path) -> None:
    path = tmp_path / "sales.csv"
    count = write_csv(str(path), rows(2, 50, seed=1, start=START))
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["product_id", "ds", "y"]
    assert count == 100 == len(lines) - 1
    assert lines[1][:2] == ["bakery-croissant-001", "2022-01-01"]
