"""The rolling-origin folds every candidate family is scored on, with each fold's closed days.

``plan_folds`` fixes the folds (the last ``folds`` windows of ``horizon`` periods, most recent
first, as tune.make_folds) and detects closed days from each fold's own training data (a fold
never learns from its test window), plus once from the full history for the final model.

``open_series``/``expand`` translate between a calendar series and the *open-day* series the
plain-series families fit: closed weekdays are dropped (a shop open six days a week has a
season of 6), closed dates are filled with the value one season earlier, and gaps (NaN) with
the last value before them; a forecast of the open days is spread back onto the calendar with
0 on every closed day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecast_trainer.closed_days import ClosedDays, detect
from forecast_trainer.scoring import SEASON
from forecast_trainer.tune import Fold, make_folds


@dataclass
class FoldPlan:
    frame: Any  # ds, y (regular grid, index 0..n-1)
    frequency: str
    horizon: int
    folds: list[Fold]  # most recent first
    fold_closed: list[ClosedDays]  # closed days seen by each fold's training data
    closed: ClosedDays  # closed days of the full history (the final model)

    @property
    def ds(self) -> Any:
        return self.frame["ds"]

    @property
    def y(self) -> np.ndarray:
        return self.frame["y"].to_numpy(dtype=float)


def plan_folds(
    frame: Any, frequency: str, horizon: int, folds: int, country: str | None = None, min_train: int = 30
) -> FoldPlan:
    frame = frame.reset_index(drop=True)
    fold_list = make_folds(len(frame), horizon, folds, max(min_train, SEASON[frequency]))
    y = frame["y"].to_numpy(dtype=float)
    fold_closed = [detect(frame["ds"].iloc[: f.train_end], y[: f.train_end], frequency, country) for f in fold_list]
    return FoldPlan(frame, frequency, horizon, fold_list, fold_closed, detect(frame["ds"], y, frequency, country))


def season_of(frequency: str, closed: ClosedDays) -> int:
    return SEASON[frequency] - len(closed.weekdays)


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    if not np.isnan(values).any():
        return values
    idx = np.where(~np.isnan(values), np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    filled = values[idx]
    first = np.flatnonzero(~np.isnan(filled))
    filled[np.isnan(filled)] = filled[first[0]] if len(first) else 0.0
    return filled


def open_series(ds: Any, y: np.ndarray, closed: ClosedDays, frequency: str) -> tuple[np.ndarray, int]:
    """(open-day values without gaps, their season length) for a calendar series."""
    season = season_of(frequency, closed)
    values = np.asarray(y, dtype=float).copy()
    if closed:
        dates = closed.date_mask(ds)
        values[dates] = np.nan  # filled below with the value one season earlier
        keep = ~closed.weekday_mask(ds)
        values = values[keep]
        for i in np.flatnonzero(np.isnan(values)):
            if i >= season and not np.isnan(values[i - season]):
                values[i] = values[i - season]
    return _fill_gaps(values), season


def open_count(future_ds: Any, closed: ClosedDays) -> int:
    """How many open-day forecasts cover ``future_ds`` (closed weekdays take none)."""
    return int((~closed.weekday_mask(future_ds)).sum())


def expand(values: np.ndarray, future_ds: Any, closed: ClosedDays) -> np.ndarray:
    """Open-day forecasts spread onto ``future_ds``: 0 on closed days, never negative."""
    out = np.zeros(len(future_ds), dtype=float)
    out[~closed.weekday_mask(future_ds)] = np.asarray(values, dtype=float)[: open_count(future_ds, closed)]
    if closed.dates or closed.holidays:
        out[closed.date_mask(future_ds)] = 0.0
    return np.clip(out, 0.0, None)  # NaN stays NaN: a broken forecast must fail its candidate
