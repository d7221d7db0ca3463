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


def test_each_timestamp_is_cut_in_its_own_offset() -> None:
    dates = [f"{d}T12:00:00" for d in days(60)]
    dates[0] = "2023-01-01T23:30:00-05:00"  # a late sale on the 1st in New York (04:30 UTC on the 2nd)
    dates[1] = "2023-01-02T10:00:00+00:00"
    dates[2] = "2023-01-03T00:30:00+02:00"  # just after midnight on the 3rd in Berlin (22:30 UTC on the 2nd)
    values = [str(5 + i % 4) for i in range(60)]
    prepared = prepare("p", raw(dates, values), Rules())
    assert prepared.frame["ds"].dt.tz is None
    assert prepared.frame["ds"].iloc[:3].tolist() == [pd.Timestamp(f"2023-01-0{i}") for i in (1, 2, 3)]
    assert prepared.frame["y"].iloc[:3].tolist() == [float(v) for v in values[:3]]
    assert any("timestamps mix 3 with a UTC offset and 57 without" in w for w in prepared.warnings)


def midnights(n: int, start: str, freq: str, offset: str) -> list[str]:
    return [f"{d:%Y-%m-%d}T00:00:00{offset}" for d in pd.date_range(start, periods=n, freq=freq)]


def test_local_midnight_east_of_utc_stays_on_its_day() -> None:
    """2024-03-01T00:00+02:00 is 22:00 UTC on 29 February: it is 1 March's sales all the same."""
    prepared = prepare(
        "p", raw(midnights(60, "2024-03-01", "D", "+02:00"), [str(5 + i % 4) for i in range(60)]), Rules()
    )
    assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01")
    assert prepared.frame["ds"].iloc[-1] == pd.Timestamp("2024-04-29") and len(prepared.frame) == 60
    assert prepared.warnings == ["only 60 data points; forecasts may be unreliable (90+ recommended)"]


def test_local_month_start_east_of_utc_stays_in_its_month() -> None:
    months = midnights(36, "2021-01-01", "MS", "+02:00")
    prepared = prepare("p", raw(months, [str(100 + i) for i in range(36)]), Rules(frequency="MS"))
    assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2021-01-01") and len(prepared.frame) == 36
    assert prepared.frame["y"].tolist() == [float(100 + i) for i in range(36)]  # no month got two values


def test_business_timezone_converts_before_cutting_days() -> None:
    utc_evenings = [f"{d:%Y-%m-%d}T23:30:00Z" for d in pd.date_range("2024-03-01", periods=60)]
    values = [str(5 + i % 4) for i in range(60)]
    as_is = prepare("p", raw(utc_evenings, values), Rules())
    berlin = prepare("p", raw(utc_evenings, values), Rules(business_timezone="Europe/Berlin"))
    new_york = prepare("p", raw(utc_evenings, values), Rules(business_timezone="America/New_York"))
    assert as_is.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01")
    assert berlin.frame["ds"].iloc[0] == pd.Timestamp("2024-03-02")  # 00:30 the next day in Berlin
    assert new_york.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01")
    east = prepare("p", raw(midnights(60, "2024-03-01", "D", "+02:00"), values), Rules(business_timezone="UTC"))
    assert east.frame["ds"].iloc[0] == pd.Timestamp("2024-02-29")  # asked for UTC days: that is what UTC says


def test_business_timezone_leaves_dates_and_naive_timestamps_alone() -> None:
    values = [str(5 + i % 4) for i in range(60)]
    for rules in (Rules(), Rules(business_timezone="Pacific/Kiritimati"), Rules(business_timezone="Etc/GMT+12")):
        prepared = prepare("p", raw(days(60, "2024-03-01"), values), rules)
        assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01"), rules


def test_timezone_aware_python_datetimes_keep_their_local_day() -> None:
    ds = pd.date_range("2023-03-20 00:15", periods=40, freq="D", tz="Europe/Berlin").to_pydatetime().tolist()
    frame = pd.DataFrame({"ds": pd.Series(ds, dtype=object), "y": [float(i % 5 + 1) for i in range(40)]})
    prepared = prepare("p", frame, Rules())  # across the DST change (+01:00 -> +02:00): no shifted day
    assert prepared.frame["ds"].iloc[0] == pd.Timestamp("2023-03-20") and len(prepared.frame) == 40
    assert not any("offset" in w for w in prepared.warnings)
    typed = pd.DataFrame({"ds": pd.Series(ds), "y": [float(i % 5 + 1) for i in range(40)]})  # datetime64[ns, tz]
    assert prepare("p", typed, Rules()).frame["ds"].iloc[0] == pd.Timestamp("2023-03-20")
    utc = prepare("p", typed, Rules(business_timezone="UTC"))
    assert utc.frame["ds"].iloc[0] == pd.Timestamp("2023-03-19")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["1.7e308", "1.6e308"], "two finite values overflow to inf when summed"),
        (["2e15"], "one value above the limit"),
        (["6e14", "7e14"], "a day's total above the limit"),
    ],
)
def test_values_too_large_or_overflowing_when_aggregated_are_invalid(extra: list[str], why: str) -> None:
    dates = days(60)
    values = [str(5 + i % 4) for i in range(60)]
    frame = raw([*dates, *[dates[7]] * len(extra)], [*values, *extra])
    message = invalid(frame, "ValueTooLarge")
    assert "2023-01-08" in message and "limit is 1e+15" in message, why


def test_values_at_the_limit_are_fine() -> None:
    values = [str(5e14 + i % 4) for i in range(60)]
    assert prepare("p", raw(days(60), values), Rules()).frame["y"].max() < 1e15


def test_weekly_and_monthly_snapping() -> None:
    sundays = pd.date_range("2022-01-02", periods=40, freq="W-SUN")
    weekly = prepare(
        "p", raw([d.strftime("%Y-%m-%d") for d in sundays], [str(10 + i % 4) for i in range(40)]), Rules(frequency="W")
    )
    assert (weekly.frame["ds"].dt.dayofweek == 6).all() and len(weekly.frame) == 40
    mid_month = [f"{y}-{m:02d}-15" for y in (2020, 2021, 2022) for m in range(1, 13)]
    monthly = prepare("p", raw(mid_month, [str(100 + i) for i in range(36)]), Rules(frequency="MS"))
    assert (monthly.frame["ds"].dt.day == 1).all() and len(monthly.frame) == 36


def test_plain_dates_take_the_fast_path_with_the_same_result() -> None:
    """Date-only strings skip the offset handling (shard mode pays parse_dates per product): the
    result equals the general path's for the same days written with a time."""
    import pandas as pd

    from forecast_trainer.errors import DataInvalid
    from forecast_trainer.validate import parse_dates

    days = [" 2024-02-28", "2024-02-29", "2024-03-01 ", "2023-12-31"]
    fast, warnings = parse_dates("p", pd.Series(days))
    general, _ = parse_dates("p", pd.Series([f"{d.strip()} 00:00:00" for d in days]))
    assert warnings == [] and fast.dtype == general.dtype and fast.tolist() == general.tolist()
    with pytest.raises(DataInvalid, match="cannot be parsed"):
        parse_dates("p", pd.Series(["2024-02-28", "2024-02-30"]))  # matches the pattern, is no date
