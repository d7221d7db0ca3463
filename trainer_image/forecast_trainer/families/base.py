"""What every non-Prophet family provides: fit on a plain series, predict with intervals, state as JSON.

A family sees the product's *open-day* series (closed weekdays removed, see closed_days.py) as
a float array without gaps, and a season length. ``fit(y, season, spec)`` chooses a
specification itself when ``spec`` is None (e.g. AutoETS picks its components) and re-uses a
given one otherwise (cross-validation picks it once per product). A fitted model predicts the
mean and, where the family has them, its own 80 % interval; ``state()`` is what goes into the
stored model JSON, and ``restore(spec, state)`` gives back a model that predicts the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

INTERVAL_LEVEL = 80  # percent, the same as Prophet's interval_width
Z80 = 1.2815515655446004  # standard normal quantile for a central 80 % interval


@dataclass
class Prediction:
    mean: np.ndarray
    lower: np.ndarray | None = None  # None: the family has no interval of its own (empirical is used)
    upper: np.ndarray | None = None


class Fitted(Protocol):
    family: str
    spec: dict[str, Any]

    def predict(self, h: int) -> Prediction: ...

    def state(self) -> dict[str, Any]: ...


class Family(Protocol):
    name: str
    library: str

    def fit(self, y: np.ndarray, season: int, spec: dict[str, Any] | None = None) -> Fitted: ...

    def restore(self, spec: dict[str, Any], state: dict[str, Any]) -> Fitted: ...
