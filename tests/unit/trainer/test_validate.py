from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame, raw_frame

from forecast_trainer.errors import DataInvalid
from forecast_trainer.validate import Rules, prepare


def raw(ds: list, y: list) -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.Series(ds, dtype=object), "y": pd.Series(y, dtype=object)})


def days(n: int, start: str = "2023-01-01") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=n, freq="D")]


def invalid(frame: pd.DataFrame, reason: str, rules: Rules | None = None, product: str = "p-1") -> str:
    with pytest.raises(DataInvalid) as info:
        prepare(product, frame, rules or Rules())
    assert info.value.reason == reason
    assert info.value.exit_code == 3
    assert "\n" not in info.value.message and product in info.value.message
    return info.value.message


def test_clean_series_passes_unchanged() -> None:
    frame = daily_frame(120)
    prepared = prepare("p", raw_frame(frame), Rules())
    assert prepared.warnings == []
    assert prepared.observed == 120
    assert prepared.frame["ds"].tolist() == frame["ds"].tolist()
    assert np.allclose(prepared.frame["y"], frame["y"])


def test_too_few_points_is_invalid_and_under_90_warns() -> None:
    message = invalid(raw(days(10), [str(i % 4 + 1) for i in range(10)]), "TooFewPoints")
    assert "only 10" in message
    invalid(raw(days(29), [str(i % 4 + 1) for i in range(29)]), "TooFewPoints")
    ok = prepare("p", raw(days(30), [str(i % 4 + 1) for i in range(30)]), Rules())
    assert any("only 30 data points" in w for w in ok.warnings)
    assert not any("data points" in w for w in prepare("p", raw_frame(daily_frame(90)), Rules()).warnings)


def test_mostly_zeros_is_invalid_above_90_percent_and_warns_above_70() -> None:
    values = ["0"] * 100
    for i in range(0, 100, 12):  # 9 sales days -> 91 % zeros
        values[i] = str(3 + i % 2)
    assert values.count("0") == 91
    invalid(raw(days(100), values), "MostlyZeros")
    values[50] = "2"  # exactly 90 % zeros is still allowed (with a warning)
    assert prepare("p", raw(days(100), values), Rules()).zero_share == pytest.approx(0.9)
    invalid(raw(days(60), ["0"] * 60), "MostlyZeros")  # all zero
    values = ["0"] * 100
    for i in range(0, 100, 4):
        values[i] = str(1 + i % 3)
    warned = prepare("p", raw(days(100), values), Rules())
    assert any("75% of values are zero" in w for w in warned.warnings)


def test_negative_values_are_invalid() -> None:
    values = [str(5 + i % 3) for i in range(60)]
    values[40] = "-2"
    message = invalid(raw(days(60), values), "NegativeValues")
    assert "-2" in message and "2023-02-10" in message


def test_no_variance_is_invalid() -> None:
    message = invalid(raw(days(60), ["7"] * 60), "NoVariance")
    assert "every value is 7" in message


@pytest.mark.parametrize("bad", ["abc", "1,5", "inf", "12kg"])
def test_non_numeric_values_are_invalid(bad: str) -> None:
    values = [str(5 + i % 3) for i in range(60)]
    values[3] = bad
    message = invalid(raw(days(60), values), "NonNumericValues")
    assert repr(bad) in message


@pytest.mark.parametrize("bad", ["yesterday", "2023-13-45", "", "31/31/2023"])
def test_unparseable_dates_are_invalid(bad: str) -> None:
    dates = days(60)
    dates[5] = bad
    invalid(raw(dates, [str(5 + i % 3) for i in range(60)]), "UnparseableDates")


def test_empty_frame_is_no_data() -> None:
    invalid(raw([], []), "NoData")
    invalid(raw(days(40), [""] * 40), "NoData")


def test_nans_are_ignored_with_a_warning_and_filled() -> None:
    values = [str(5 + i % 3) for i in range(60)]
    values[10] = ""
    values[11] = "NaN"
    prepared = prepare("p", raw(days(60), values), Rules(fill_missing="zero"))
    assert any("2 empty value(s) ignored" in w for w in prepared.warnings)
    assert any("2 missing period(s) filled with 0" in w for w in prepared.warnings)
    assert prepared.frame["y"].iloc[10] == 0 and len(prepared.frame) == 60


def test_fill_missing_modes() -> None:
    dates = days(60)
    values = [float(10 + i) for i in range(60)]
    del dates[20], values[20]
    for mode, expected in (("zero", 0.0), ("interpolate", 30.0), ("none", None)):
        prepared = prepare("p", raw(dates, [str(v) for v in values]), Rules(fill_missing=mode))
        got = prepared.frame["y"].iloc[20]
        assert math.isnan(got) if expected is None else got == expected, mode
        assert prepared.observed == 59


def test_duplicates_are_aggregated_with_a_warning() -> None:
    dates = days(60)
    values = [str(10 + i % 5) for i in range(60)]
    frame = raw([*dates, dates[3], dates[7]], [*values, values[3], "4"])  # one exact duplicate, one extra sale
    prepared = prepare("p", frame, Rules())
    assert any("1 exact duplicate row(s) dropped" in w for w in prepared.warnings)
    assert any("1 duplicate timestamp(s) aggregated" in w for w in prepared.warnings)
    assert prepared.frame["y"].iloc[3] == float(values[3])
    assert prepared.frame["y"].iloc[7] == float(values[7]) + 4


def test_mixed_time_zones_are_normalised_to_naive_utc() -> None:
    dates = [f"{d}T12:00:00" for d in days(60)]
    dates[0] = "2023-01-01T23:30:00-05:00"  # = 2023-01-02 04:30 UTC, the 2nd's sales
    dates[1] = "2023-01-02T10:00:00+00:00"
    dates[2] = "2023-01-03T09:00:00+02:00"
    values = [str(5 + i % 4) for i in range(60)]
    prepared = prepare("p", raw(dates, values), Rules())
    assert any("mixed time zones" in w for w in prepared.warnings)
    assert prepared.frame["ds"].dt.tz is None
    assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2023-01-02")
    assert prepared.frame["y"].iloc[0] == float(values[0]) + float(values[1])


def test_timezone_aware_python_datetimes_are_converted() -> None:
    ds = pd.date_range("2023-01-01 06:00", periods=40, freq="D", tz="Europe/Berlin").to_pydatetime().tolist()
    prepared = prepare("p", pd.DataFrame({"ds": ds, "y": [float(i % 5 + 1) for i in range(40)]}), Rules())
    assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2023-01-01")
    assert not any("time zones" in w for w in prepared.warnings)


def test_weekly_and_monthly_snapping() -> None:
    sundays = pd.date_range("2022-01-02", periods=40, freq="W-SUN")
    weekly = prepare(
        "p", raw([d.strftime("%Y-%m-%d") for d in sundays], [str(10 + i % 4) for i in range(40)]), Rules(frequency="W")
    )
    assert (weekly.frame["ds"].dt.dayofweek == 6).all() and len(weekly.frame) == 40
    mid_month = [f"{y}-{m:02d}-15" for y in (2020, 2021, 2022) for m in range(1, 13)]
    monthly = prepare("p", raw(mid_month, [str(100 + i) for i in range(36)]), Rules(frequency="MS"))
    assert (monthly.frame["ds"].dt.day == 1).all() and len(monthly.frame) == 36
