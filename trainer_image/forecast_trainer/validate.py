"""Data validation and normalisation of one product's raw history, before anything is fitted.

Rules (each failure is a DataInvalid with a CamelCase reason and a one-line message naming
the product; the product is skipped and nothing is written for it):

- values that are not numbers (or are infinite)          -> NonNumericValues
- timestamps that cannot be parsed (or are empty)        -> UnparseableDates
- no usable rows                                         -> NoData
- a period's total above 1e15 (or overflowing to inf)    -> ValueTooLarge
- any negative value                                     -> NegativeValues
- fewer than 30 observed periods (warning below 90)      -> TooFewPoints
- more than 90 % zeros (warning above 70 %)              -> MostlyZeros
- all values equal                                       -> NoVariance

Normalisation (each leaves a warning on the product):
- timestamps become timezone-naive LOCAL wall time before they are cut to periods: a timestamp
  with a UTC offset keeps its own offset (``2024-03-01T00:00+02:00`` is 1 March), or, with a
  business time zone, is converted to that zone first; timestamps without an offset (and dates)
  are taken as they are (a mix of both is warned about);
- they are snapped to the frequency (day, week on the data's most common weekday, month start);
- exact duplicate rows are dropped, several rows in one period are summed;
- empty values (NaN) are dropped, then missing periods are filled per --fill-missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer.errors import DataInvalid

_MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none"}
# The UTC offset at the end of a timestamp string that has a time part ("...T10:00+02:00").
_OFFSET = re.compile(r"\d[T ]\d.*?(?P<offset>Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)$", re.IGNORECASE)
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class Rules:
    frequency: str = "D"
    fill_missing: str = "zero"
    min_points: int = 30
    warn_points: int = 90
    max_zero_share: float = 0.9
    warn_zero_share: float = 0.7
    max_value: float = 1e15  # a period's total above this is not a sales quantity (and overflows metrics)
    business_timezone: str | None = None  # IANA zone; None = each timestamp's own UTC offset


@dataclass
class Prepared:
    """A product's history on a regular grid: ``frame`` has ds (naive local time) and y (float)."""

    product: str
    frame: Any
    observed: int
    zero_share: float
    frequency: str
    warnings: list[str] = field(default_factory=list)


def _first(values: Any, limit: int = 40) -> str:
    text = str(values.iloc[0]) if len(values) else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_values(product: str, raw: Any) -> Any:
    """Floats for ``raw`` (NaN where empty); DataInvalid(NonNumericValues) for anything else."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.astype(float)
        bad = pd.Series(np.isinf(values.to_numpy()), index=raw.index)
    else:
        text = raw.astype(object).where(raw.notna(), None).map(lambda v: "" if v is None else str(v).strip())
        missing = text.str.lower().isin(_MISSING_TEXT)
        values = pd.to_numeric(text.where(~missing), errors="coerce").astype(float)
        bad = (values.isna() & ~missing) | pd.Series(np.isinf(values.to_numpy()), index=raw.index)
    if bad.any():
        examples = raw[bad]
        raise DataInvalid(
            f"product {product!r}: {int(bad.sum())} value(s) are not numbers (first: {_first(examples)!r})",
            reason="NonNumericValues",
        )
    return values


def _offset_text(text: str) -> Any:
    """The UTC offset at the end of a timestamp string as a Timedelta, or None if it has none."""
    import pandas as pd

    match = _OFFSET.search(text.strip())
    if match is None:
        return None
    raw = match.group("offset").upper().replace(":", "")
    if raw == "Z":
        return pd.Timedelta(0)
    sign = -1 if raw[0] == "-" else 1
    digits = raw[1:].ljust(6, "0")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6])
    return pd.Timedelta(seconds=sign * seconds)


def _offset_of(value: Any) -> Any:
    """The UTC offset a raw timestamp value carries (Timedelta), or None for naive values."""
    import datetime as dt

    import pandas as pd

    if isinstance(value, str):
        return _offset_text(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        offset = value.utcoffset()
        return None if offset is None else pd.Timedelta(offset)
    return None


def _offsets(values: Any, strings: bool) -> Any:
    """Per value, its UTC offset (Timedelta), NaT when it has none."""
    import pandas as pd

    if strings:
        known = {text: _offset_text(text) for text in values.unique()}
        offsets = values.map(known)
    else:
        offsets = values.map(_offset_of)
    return pd.to_timedelta(offsets.astype(object).where(offsets.notna(), None))


def _to_wall_time(instants: Any, offsets: Any, timezone: str | None) -> Any:
    """Naive local time: each instant in its own offset, or converted to ``timezone``.

    ``instants`` are UTC (values without an offset were read as UTC, so their UTC wall time
    is their own text); ``offsets`` is NaT for those, and they stay as they are.
    """
    import pandas as pd

    naive = instants.dt.tz_convert("UTC").dt.tz_localize(None)
    if timezone is None:
        return naive + offsets.fillna(pd.Timedelta(0))
    local = instants.dt.tz_convert(timezone).dt.tz_localize(None)
    return local.where(offsets.notna(), naive)


_PLAIN_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def parse_dates(product: str, raw: Any, timezone: str | None = None) -> tuple[Any, list[str]]:
    """Timezone-naive local timestamps for ``raw``; DataInvalid(UnparseableDates) if any fail.

    A timestamp with a UTC offset is taken in its own offset (local wall time), or converted to
    ``timezone`` when one is given; one without (and a date) is taken as it is.
    """
    import pandas as pd

    warnings: list[str] = []
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        if getattr(raw.dt, "tz", None) is None:
            return raw, warnings
        return raw.dt.tz_convert(timezone or raw.dt.tz).dt.tz_localize(None), warnings
    obj = raw.astype(object)
    empty = obj.isna() | obj.map(lambda v: isinstance(v, str) and not v.strip())
    strings = bool(obj.map(lambda v: isinstance(v, str)).all())
    if strings:
        values = obj.str.strip()
        if values.str.fullmatch(_PLAIN_DATE).all():
            # Plain dates (a PostgreSQL date column, most CSVs): no offset, nothing to convert;
            # a fifth of the general path's cost, which a shard pays per product.
            plain = pd.to_datetime(values, errors="coerce", format="%Y-%m-%d")
            if not plain.isna().any():
                return plain, warnings
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        retry = parsed.isna() & ~empty
        if retry.any():
            parsed[retry] = pd.to_datetime(values[retry], utc=True, errors="coerce", format="mixed")
    else:
        values = obj
        parsed = pd.to_datetime(obj, utc=True, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        examples = raw[bad]
        raise DataInvalid(
            f"product {product!r}: {int(bad.sum())} timestamp(s) cannot be parsed (first: {_first(examples)!r})",
            reason="UnparseableDates",
        )
    offsets = _offsets(values, strings)
    aware = int(offsets.notna().sum())
    if 0 < aware < len(offsets):
        taken = f"in {timezone}" if timezone else "as local time"
        warnings.append(
            f"timestamps mix {aware} with a UTC offset and {len(offsets) - aware} without; "
            f"those without were taken {taken}"
        )
    return _to_wall_time(parsed, offsets, timezone), warnings


def snap(ds: Any, frequency: str) -> tuple[Any, str]:
    """Timestamps snapped to their period start, and the pandas frequency of the grid."""
    if frequency == "MS":
        return ds.dt.to_period("M").dt.to_timestamp(), "MS"
    day = ds.dt.floor("D")
    if frequency == "W":
        anchor = int(day.dt.dayofweek.mode().iloc[0])
        back = (day.dt.dayofweek - anchor) % 7
        return day - back * _one_day(), f"W-{_WEEKDAYS[anchor]}"
    return day, "D"


def _one_day() -> Any:
    import pandas as pd

    return pd.Timedelta(days=1)


def check_magnitude(product: str, series: Any, rules: Rules) -> None:
    """DataInvalid(ValueTooLarge) when a period's total is infinite or above ``rules.max_value``.

    Summing several rows of one period can overflow to infinity even when every row is finite;
    such values are no sales quantities and would break fitting and the error metrics.
    """
    import numpy as np

    values = series.to_numpy(dtype=float)
    huge = ~np.isfinite(values) | (np.abs(values) > rules.max_value)
    if huge.any():
        first = int(np.argmax(huge))
        raise DataInvalid(
            f"product {product!r}: {int(huge.sum())} period total(s) are too large "
            f"(first {values[first]:g} at {series.index[first].date()}; the limit is {rules.max_value:g})",
            reason="ValueTooLarge",
        )


def prepare(product: str, raw: Any, rules: Rules) -> Prepared:
    """Validate and normalise ``raw`` (columns ds, y) for ``product`` (see the module doc)."""
    import pandas as pd

    if raw is None or len(raw) == 0:
        raise DataInvalid(f"product {product!r}: no rows", reason="NoData")
    values = parse_values(product, raw["y"])
    ds, warnings = parse_dates(product, raw["ds"], rules.business_timezone)
    frame = pd.DataFrame({"ds": ds.to_numpy(), "y": values.to_numpy()})

    nan_rows = int(frame["y"].isna().sum())
    if nan_rows:
        frame = frame[frame["y"].notna()]
        warnings.append(f"{nan_rows} empty value(s) ignored")
    if frame.empty:
        raise DataInvalid(f"product {product!r}: no rows with a value", reason="NoData")

    exact = int(frame.duplicated(["ds", "y"]).sum())
    if exact:
        frame = frame.drop_duplicates(["ds", "y"])
        warnings.append(f"{exact} exact duplicate row(s) dropped")
    snapped, grid_freq = snap(frame["ds"], rules.frequency)
    frame = frame.assign(ds=snapped)
    sizes = frame.groupby("ds")["y"].size()
    merged = int((sizes > 1).sum())
    if merged:
        warnings.append(f"{merged} duplicate timestamp(s) aggregated (values summed)")
    series = frame.groupby("ds")["y"].sum().sort_index()
    check_magnitude(product, series, rules)

    negative = series[series < 0]
    if len(negative):
        raise DataInvalid(
            f"product {product!r}: {len(negative)} negative value(s) (first {negative.iloc[0]:g} "
            f"at {negative.index[0].date()}); sales cannot be negative",
            reason="NegativeValues",
        )
    observed = len(series)
    if observed < rules.min_points:
        raise DataInvalid(
            f"product {product!r}: only {observed} data point(s), at least {rules.min_points} are needed",
            reason="TooFewPoints",
        )

    grid = pd.date_range(series.index[0], series.index[-1], freq=grid_freq)
    regular = series.reindex(grid)
    gaps = int(regular.isna().sum())
    if gaps:
        if rules.fill_missing == "zero":
            regular = regular.fillna(0.0)
            how = "filled with 0"
        elif rules.fill_missing == "interpolate":
            regular = regular.interpolate(method="time")
            how = "interpolated"
        else:
            how = "left as gaps"
        warnings.append(f"{gaps} missing period(s) {how}")

    known = regular.dropna()
    zero_share = float((known == 0).mean()) if len(known) else 1.0
    if zero_share > rules.max_zero_share:
        raise DataInvalid(
            f"product {product!r}: {zero_share:.0%} of values are zero (more than {rules.max_zero_share:.0%})",
            reason="MostlyZeros",
        )
    if known.nunique() <= 1:
        raise DataInvalid(
            f"product {product!r}: every value is {known.iloc[0]:g}; a constant has nothing to forecast",
            reason="NoVariance",
        )
    if zero_share > rules.warn_zero_share:
        warnings.append(f"{zero_share:.0%} of values are zero; forecasts of intermittent demand are rough")
    if observed < rules.warn_points:
        warnings.append(f"only {observed} data points; forecasts may be unreliable (90+ recommended)")

    out = pd.DataFrame({"ds": regular.index, "y": regular.to_numpy(dtype=float)})
    return Prepared(product, out, observed, zero_share, rules.frequency, warnings)
