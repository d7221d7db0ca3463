"""Forecast error metrics (lower is better) and the naive baselines every model is compared with.

All metrics skip positions where the actual value is missing (NaN).
- smape: 100 * mean(2|y - yhat| / (|y| + |yhat|)), a 0/0 term counts as 0 (range 0..200);
- mape:  100 * mean(|y - yhat| / |y|) over non-zero actuals (NaN if every actual is zero);
- mae, rmse: in the units of y.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

SEASON = {"D": 7, "W": 52, "MS": 12}


def _pair(y: Any, yhat: Any) -> tuple[np.ndarray, np.ndarray]:
    actual = np.asarray(y, dtype=float)
    predicted = np.asarray(yhat, dtype=float)
    keep = ~np.isnan(actual) & ~np.isnan(predicted)
    return actual[keep], predicted[keep]


def smape(y: Any, yhat: Any) -> float:
    a, p = _pair(y, yhat)
    if not len(a):
        return math.nan
    denom = np.abs(a) + np.abs(p)
    terms = np.divide(2 * np.abs(a - p), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * terms.mean())


def mape(y: Any, yhat: Any) -> float:
    a, p = _pair(y, yhat)
    keep = a != 0
    if not keep.any():
        return math.nan
    return float(100 * np.mean(np.abs(a[keep] - p[keep]) / np.abs(a[keep])))


def mae(y: Any, yhat: Any) -> float:
    a, p = _pair(y, yhat)
    return float(np.mean(np.abs(a - p))) if len(a) else math.nan


def rmse(y: Any, yhat: Any) -> float:
    a, p = _pair(y, yhat)
    return float(np.sqrt(np.mean((a - p) ** 2))) if len(a) else math.nan


METRICS: dict[str, Callable[[Any, Any], float]] = {"smape": smape, "mape": mape, "mae": mae, "rmse": rmse}


def score(metric: str, y: Any, yhat: Any) -> float:
    return METRICS[metric](y, yhat)


def finite_or_inf(value: float | None) -> float:
    """For comparisons: NaN/None count as infinitely bad."""
    return value if value is not None and math.isfinite(value) else math.inf


def _filled(history: Any) -> np.ndarray:
    values = np.asarray(history, dtype=float)
    if np.isnan(values).any():
        idx = np.where(~np.isnan(values), np.arange(len(values)), 0)
        np.maximum.accumulate(idx, out=idx)
        values = values[idx]
    return values


def last_value(history: Any, horizon: int) -> np.ndarray:
    """Repeat the last observed value."""
    values = _filled(history)
    return np.full(horizon, values[-1] if len(values) else np.nan)


def seasonal_naive(history: Any, horizon: int, season: int) -> np.ndarray:
    """Repeat the last full season (e.g. the same weekday last week); last value if too short."""
    values = _filled(history)
    if len(values) < season:
        return last_value(values, horizon)
    last = values[-season:]
    return np.tile(last, horizon // season + 1)[:horizon]
