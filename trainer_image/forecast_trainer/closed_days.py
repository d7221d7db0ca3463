"""Closed days: weekdays, calendar dates and holidays that are always zero in recent history.

A shop closed on Saturdays sells nothing on Saturdays; every model that is not told so spreads
some demand onto them. Detected from the history alone (daily data only), then forecast as 0
by every family:

- closed weekday: the weekday was zero on each of its last ``RECENT_WEEKS`` (12) occurrences
  (at least ``MIN_WEEKS`` = 6 observed);
- closed date: a calendar date (e.g. 12-25) zero in every year of the history (>= 2 years);
- closed holiday (with ``--country-holidays``): a public holiday zero on each of its
  occurrences in the history (>= 2).

A zero pattern can also happen by chance on a series with many zeros, so a pattern counts only
when chance is an unlikely explanation: with ``p`` the share of zeros on the other (open) days
of the same span and ``k`` the pattern's occurrences, the expected number of such patterns by
chance, ``candidates * p**k``, must stay below ``MAX_CHANCE`` (1 %). E.g. 12 zero Saturdays are
"closed" while the other days are zero less than 58 % of the time.

How the families use it: Prophet fits with closed days as missing values; the plain-series
families drop closed weekdays (a shop open six days a week has a 6-day "week") and see closed
dates filled with the value one season earlier; every forecast is then set to 0 on closed days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RECENT_WEEKS = 12
MIN_WEEKS = 6
MAX_CHANCE = 0.01
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class ClosedDays:
    weekdays: tuple[int, ...] = ()  # 0 = Monday
    dates: tuple[str, ...] = ()  # "MM-DD"
    holidays: tuple[str, ...] = ()  # holiday names of ``country``
    country: str | None = None

    def __bool__(self) -> bool:
        return bool(self.weekdays or self.dates or self.holidays)

    def weekday_mask(self, ds: Any) -> np.ndarray:
        import pandas as pd

        index = pd.DatetimeIndex(ds)
        return np.isin(index.dayofweek, self.weekdays) if self.weekdays else np.zeros(len(index), dtype=bool)

    def date_mask(self, ds: Any) -> np.ndarray:
        """Closed calendar dates and holidays (not weekdays)."""
        import pandas as pd

        index = pd.DatetimeIndex(ds)
        mask = np.zeros(len(index), dtype=bool)
        if self.dates:
            mask |= np.isin(index.strftime("%m-%d"), self.dates)
        if self.holidays and self.country and len(index):
            names = holiday_names(index, self.country)
            mask |= np.array([bool(set(n) & set(self.holidays)) for n in names], dtype=bool)
        return mask

    def mask(self, ds: Any) -> np.ndarray:
        return self.weekday_mask(ds) | self.date_mask(ds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weekdays": [WEEKDAY_NAMES[d] for d in self.weekdays],
            "dates": list(self.dates),
            "holidays": list(self.holidays),
            "country": self.country,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> ClosedDays:
        doc = doc or {}
        return cls(
            weekdays=tuple(WEEKDAY_NAMES.index(d) for d in doc.get("weekdays") or []),
            dates=tuple(doc.get("dates") or []),
            holidays=tuple(doc.get("holidays") or []),
            country=doc.get("country"),
        )


def holiday_names(index: Any, country: str) -> list[list[str]]:
    """Per date of ``index``: the names of ``country``'s public holidays on it ([] if none)."""
    import holidays as holidays_lib

    calendar = holidays_lib.country_holidays(country, years=sorted(set(int(y) for y in index.year)))
    return [[n.strip() for n in str(calendar.get(d.date(), "")).split(";") if n.strip()] for d in index]


def _chance_ok(candidates: int, zero_share: float, occurrences: int) -> bool:
    return candidates * zero_share**occurrences < MAX_CHANCE


def detect(ds: Any, y: Any, frequency: str, country: str | None = None) -> ClosedDays:
    """The closed days of a regular series (``ds`` dates, ``y`` floats, NaN = missing)."""
    import pandas as pd

    if frequency != "D":
        return ClosedDays(country=country)
    index = pd.DatetimeIndex(ds)
    values = np.asarray(y, dtype=float)
    weekdays = _closed_weekdays(index, values)
    open_days = ~np.isin(index.dayofweek, weekdays)
    dates = _closed_dates(index, values, open_days)
    names = _closed_holidays(index, values, open_days, country) if country else ()
    return ClosedDays(weekdays=weekdays, dates=dates, holidays=names, country=country)


def _closed_weekdays(index: Any, values: np.ndarray) -> tuple[int, ...]:
    recent = slice(max(0, len(values) - 7 * RECENT_WEEKS), len(values))
    days, window = index[recent].dayofweek.to_numpy(), values[recent]
    observed = ~np.isnan(window)
    closed: list[int] = []
    for day in range(7):
        on_day = (days == day) & observed
        if on_day.sum() >= MIN_WEEKS and not window[on_day].any():
            closed.append(day)
    if not closed or len(closed) == 7:
        return ()
    others = observed & ~np.isin(days, closed)
    if not others.any():
        return ()
    zero_share = float((window[others] == 0).mean())
    occurrences = int(min(((days == d) & observed).sum() for d in closed))
    return tuple(closed) if _chance_ok(7, zero_share, occurrences) else ()


def _closed_dates(index: Any, values: np.ndarray, open_days: np.ndarray) -> tuple[str, ...]:
    import pandas as pd

    observed = ~np.isnan(values) & open_days
    if index[-1] - index[0] < pd.Timedelta(days=730) or not observed.any():
        return ()
    frame = pd.DataFrame({"md": index.strftime("%m-%d"), "y": values})[observed]
    frame = frame[frame["md"] != "02-29"]
    stats = frame.groupby("md")["y"].agg(["count", "max"])
    zero_share = float((frame["y"] == 0).mean())
    found = stats[(stats["count"] >= 2) & (stats["max"] == 0)]
    return tuple(
        md for md, row in found.iterrows() if _chance_ok(366, zero_share, int(row["count"]))
    )


def _closed_holidays(index: Any, values: np.ndarray, open_days: np.ndarray, country: str) -> tuple[str, ...]:
    observed = ~np.isnan(values) & open_days
    if not observed.any():
        return ()
    names = holiday_names(index, country)
    seen: dict[str, list[float]] = {}
    for day_names, value, ok in zip(names, values, observed, strict=True):
        if ok:
            for name in day_names:
                seen.setdefault(name, []).append(float(value))
    holiday_days = np.array([bool(n) for n in names])
    regular = observed & ~holiday_days
    zero_share = float((values[regular] == 0).mean()) if regular.any() else 1.0
    candidates = max(1, len(seen))
    return tuple(
        sorted(
            name
            for name, got in seen.items()
            if len(got) >= 2 and not any(got) and _chance_ok(candidates, zero_share, len(got))
        )
    )
