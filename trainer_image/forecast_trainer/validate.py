"""Data validation and normalisation of one product's raw history, before anything is fitted.

Rules (each failure is a DataInvalid with a CamelCase reason and a one-line message naming
the product; the product is skipped and nothing is written for it):

- values that are not numbers (or are infinite)          -> NonNumericValues
- timestamps that cannot be parsed (or are empty)        -> UnparseableDates
- no usable rows                                         -> NoData
- any negative value                                     -> NegativeValues
- fewer than 30 observed periods (warning below 90)      -> TooFewPoints
- more than 90 % zeros (warning above 70 %)              -> MostlyZeros
- all values equal                                       -> NoVariance

Normalisation (each leaves a warning on the product):
- timestamps are converted to UTC and made timezone-naive (mixed zones are warned about);
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
_TZ_SUFFIX = re.compile(r"(Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class Rules:
    frequency: str = "D"
    fill_missing: str = "zero"
    min_points: int = 30
    warn_points: int = 90
    max_zero_share: float = 0.9
    warn_zero_share: float = 0.7


@dataclass
class Prepared:
    """A product's history on a regular grid: ``frame`` has ds (naive UTC) and y (float)."""

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


def _timezone_mix(raw: Any) -> bool:
    """True when the timestamps carry different UTC offsets, or some have one and some not."""
    import datetime as dt

    offsets: set[str] = set()
    naive = 0
    for value in raw:
        if isinstance(value, str):
            match = _TZ_SUFFIX.search(value.strip()) if re.search(r"\d[T ]\d", value) else None
            if match:
                suffix = match.group(1).upper().replace(":", "")
                offsets.add("+0000" if suffix in ("Z", "+00", "-00", "-0000") else suffix)
            else:
                naive += 1
        elif isinstance(value, dt.datetime):
            if value.tzinfo is None:
                naive += 1
            else:
                offsets.add(str(value.utcoffset()))
        if len(offsets) > 1 or (offsets and naive):
            return True
    return False


def parse_dates(product: str, raw: Any) -> tuple[Any, list[str]]:
    """Timezone-naive UTC timestamps for ``raw``; DataInvalid(UnparseableDates) if any fail."""
    import pandas as pd

    warnings: list[str] = []
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.to_datetime(raw, utc=True)
    else:
        obj = raw.astype(object)
        empty = obj.isna() | obj.map(lambda v: isinstance(v, str) and not v.strip())
        if _timezone_mix(obj[~empty]):
            warnings.append("timestamps in mixed time zones were normalised to UTC")
        strings = obj.map(lambda v: isinstance(v, str)).all()
        if strings:
            clean = obj.str.strip()
            parsed = pd.to_datetime(clean, utc=True, errors="coerce", format="ISO8601")
            retry = parsed.isna() & ~empty
            if retry.any():
                parsed[retry] = pd.to_datetime(clean[retry], utc=True, errors="coerce", format="mixed")
        else:
            parsed = pd.to_datetime(obj, utc=True, errors="coerce")
        bad = parsed.isna()
        if bad.any():
            examples = raw[bad]
            raise DataInvalid(
                f"product {product!r}: {int(bad.sum())} timestamp(s) cannot be parsed "
                f"(first: {_first(examples)!r})",
                reason="UnparseableDates",
            )
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None), warnings


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


def prepare(product: str, raw: Any, rules: Rules) -> Prepared:
    """Validate and normalise ``raw`` (columns ds, y) for ``product`` (see the module doc)."""
    import pandas as pd

    if raw is None or len(raw) == 0:
        raise DataInvalid(f"product {product!r}: no rows", reason="NoData")
    values = parse_values(product, raw["y"])
    ds, warnings = parse_dates(product, raw["ds"])
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
