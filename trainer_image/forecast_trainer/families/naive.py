"""Seasonal-naive and last-value forecasts with their textbook prediction intervals (numpy only).

- seasonal_naive: y[t+h] = y[t+h-k*s]; residual sd from the seasonal differences,
  interval half-width z * sd * sqrt(k) with k = floor((h-1)/s) + 1;
- last_value: y[t+h] = y[t]; residual sd from the first differences, half-width z * sd * sqrt(h).
(Hyndman & Athanasopoulos, Forecasting: Principles and Practice, 5.5.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecast_trainer.families import LAST_VALUE, SEASONAL_NAIVE
from forecast_trainer.families.base import Z80, Prediction


def _sd(diffs: np.ndarray) -> float:
    diffs = diffs[np.isfinite(diffs)]
    return float(np.sqrt(np.mean(diffs**2))) if len(diffs) else 0.0


@dataclass
class NaiveModel:
    family: str
    last: list[float]  # the last season (seasonal naive) or the last value
    sigma: float
    season: int
    spec: dict[str, Any] = field(default_factory=dict)

    def predict(self, h: int) -> Prediction:
        steps = np.arange(1, h + 1)
        if self.family == SEASONAL_NAIVE and len(self.last) > 1:
            mean = np.tile(np.asarray(self.last, dtype=float), h // len(self.last) + 1)[:h]
            width = Z80 * self.sigma * np.sqrt((steps - 1) // len(self.last) + 1)
        else:
            mean = np.full(h, float(self.last[-1]))
            width = Z80 * self.sigma * np.sqrt(steps)
        return Prediction(mean, mean - width, mean + width)

    def state(self) -> dict[str, Any]:
        return {"last": list(self.last), "sigma": self.sigma, "season": self.season}


class SeasonalNaive:
    name = SEASONAL_NAIVE
    library = "numpy"

    def fit(self, y: np.ndarray, season: int, spec: dict[str, Any] | None = None) -> NaiveModel:
        values = np.asarray(y, dtype=float)
        if season < 2 or len(values) < season:  # too short for a season: the last value, under this name
            model = LastValue().fit(values, season)
            model.family = self.name
            return model
        sigma = _sd(values[season:] - values[:-season])
        return NaiveModel(self.name, [float(v) for v in values[-season:]], sigma, season)

    def restore(self, spec: dict[str, Any], state: dict[str, Any]) -> NaiveModel:
        return NaiveModel(self.name, [float(v) for v in state["last"]], float(state["sigma"]), int(state["season"]))


class LastValue:
    name = LAST_VALUE
    library = "numpy"

    def fit(self, y: np.ndarray, season: int, spec: dict[str, Any] | None = None) -> NaiveModel:
        values = np.asarray(y, dtype=float)
        sigma = _sd(np.diff(values)) if len(values) > 1 else 0.0
        last = float(values[-1]) if len(values) else math.nan
        return NaiveModel(self.name, [last], sigma, 1)

    def restore(self, spec: dict[str, Any], state: dict[str, Any]) -> NaiveModel:
        return NaiveModel(self.name, [float(v) for v in state["last"]], float(state["sigma"]), 1)
