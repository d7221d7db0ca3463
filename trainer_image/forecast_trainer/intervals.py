"""Calibrated prediction intervals and quantiles from cross-validation residuals (pure).

Every family's forecast gets its bands the same way, whatever the family (its own interval,
Prophet's simulation or a blend's mix of them is not used): split-conformal on the CV folds,
per horizon step.

1. Residuals: on each CV fold, actual minus the *shipped* forecast (the winner, its blend with
   a naive baseline, or the ensemble: exactly what ships) at horizon step ``h`` (1..H); closed
   days and missing actuals are left out.
2. Per step ``h``, the residuals of a neighbourhood of steps (``WINDOW`` steps centred on ``h``,
   shifted at the ends; every weekday once or twice) on every fold: three 30-day folds give 45
   residuals per step, enough for a 95 % interval, while errors that grow with the horizon
   still widen the band.
3. The band at probability ``p`` is the forecast plus the conformal quantile of those
   residuals: the ``ceil((n + 1) p)``-th smallest for ``p >= 0.5``, the ``floor((n + 1) p)``-th
   for ``p < 0.5`` (the finite-sample rule of split-conformal prediction: with exchangeable
   errors the band covers at least ``p`` of the time). Signed residuals keep skew: a product
   that sells in bursts gets a long upper tail and a short lower one.
   Beyond the 10 % and 90 % bands (a 95 % interval, a 0.975 quantile) the rank of a few
   dozen residuals is too noisy: the 95 % edge would be the largest or second largest of 45
   misses, so one odd day in the CV months sets the band (on 29 real series of the benchmark's
   tuning set: MSIS95 9.7 against 7.97 for AutoETS's own intervals). Tail bands are therefore
   extrapolated from the stable ones: the distance between the 0.9 band and the median band,
   times ``z(p) / z(0.9)`` (the normal quantile ratio, 1.53 for 0.975), and the same below
   (location-scale extrapolation; with the same residuals: MSIS95 6.5, coverage 0.93). Skew
   stays (the upper and lower distances are measured apart); a heavy-tailed product's 95 %
   band covers a little less than 95 % (unit test: t(3) noise, about 0.93).
4. A central interval at level ``L`` % is the pair of bands at ``(1 - L/100) / 2`` and
   ``(1 + L/100) / 2``; a quantile forecast ``q`` is the band at ``q``. Bands are never
   negative (nothing sells below zero, so a quantile of demand is at least 0: for an
   intermittent product the 0.5 quantile is often 0) and 0 on closed days, and never cross.

``Calibration`` holds the per-step offsets of every probability asked for; it is stored in the
model JSON, so a loaded model gives the same bands again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TAIL_ANCHORS = (0.1, 0.9)  # bands beyond these are extrapolated from them (see the module doc, step 3)
WINDOW = 15  # steps pooled per horizon step (centred; one to two of every weekday)
MIN_RESIDUALS = 10  # fewer in a step's neighbourhood: no calibrated band (NaN)
DEFAULT_LEVELS: tuple[int, ...] = (80,)


def level_probs(level: float) -> tuple[float, float]:
    """The lower and upper band probabilities of a central ``level`` % interval."""
    tail = (1.0 - level / 100.0) / 2.0
    return round(tail, 6), round(1.0 - tail, 6)


def probabilities(levels: Sequence[float], quantiles: Sequence[float]) -> tuple[float, ...]:
    """Every band probability the levels and quantiles need, ascending, without repeats."""
    probs = {p for level in levels for p in level_probs(level)} | {round(float(q), 6) for q in quantiles}
    return tuple(sorted(probs))


def conformal_offset(residuals: np.ndarray, p: float) -> float:
    """The split-conformal quantile of ``residuals`` at probability ``p`` (see the module doc)."""
    values = np.sort(residuals[np.isfinite(residuals)])
    n = len(values)
    if n == 0:
        return math.nan
    rank = min(n, math.ceil((n + 1) * p)) if p >= 0.5 else max(1, math.floor((n + 1) * p))
    return float(values[rank - 1])


def step_window(step: int, horizon: int, width: int = WINDOW) -> slice:
    """The steps pooled for ``step`` (0-based): ``width`` steps centred on it, shifted at the ends."""
    if horizon <= width:
        return slice(0, horizon)
    start = min(max(0, step - width // 2), horizon - width)
    return slice(start, start + width)


def residual_matrix(
    actuals: Sequence[np.ndarray], predictions: Sequence[np.ndarray], open_masks: Sequence[np.ndarray], horizon: int
) -> np.ndarray:
    """Folds x steps of actual minus forecast; NaN where closed, missing or beyond a fold's length."""
    out = np.full((len(actuals), horizon), np.nan)
    for row, (actual, yhat, is_open) in enumerate(zip(actuals, predictions, open_masks, strict=True)):
        n = min(horizon, len(actual), len(yhat))
        diff = np.asarray(actual[:n], dtype=float) - np.asarray(yhat[:n], dtype=float)
        diff[~np.asarray(is_open[:n], dtype=bool)] = np.nan
        out[row, :n] = diff
    return out


@dataclass(frozen=True)
class Calibration:
    """Per-step offsets (added to the forecast) at each band probability; see the module doc."""

    probs: tuple[float, ...]
    offsets: tuple[tuple[float, ...], ...]  # offsets[i][h]: probability probs[i], step h
    residuals: int  # how many residuals the calibration saw

    @property
    def horizon(self) -> int:
        return len(self.offsets[0]) if self.offsets else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "conformal-cv",
            "window": WINDOW,
            "tails": "normal-scaled beyond the 0.1 and 0.9 bands",
            "residuals": self.residuals,
            "probs": list(self.probs),
            "offsets": [[_round(v) for v in row] for row in self.offsets],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Calibration | None:
        if not doc or not doc.get("probs"):
            return None
        offsets = tuple(tuple(math.nan if v is None else float(v) for v in row) for row in doc["offsets"])
        return cls(tuple(float(p) for p in doc["probs"]), offsets, int(doc.get("residuals", 0)))

    def offset(self, p: float, periods: int) -> np.ndarray:
        """The offsets at probability ``p`` for ``periods`` steps (the last step's beyond the horizon)."""
        row = np.asarray(self.offsets[self.probs.index(round(float(p), 6))], dtype=float)
        if periods <= len(row):
            return row[:periods]
        return np.concatenate([row, np.full(periods - len(row), row[-1] if len(row) else math.nan)])


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def calibrate(residuals: np.ndarray, probs: Sequence[float], window: int = WINDOW) -> Calibration | None:
    """The offsets per step from a folds x steps residual matrix (conformal, tails extrapolated:
    see the module doc); None without residuals."""
    finite = int(np.isfinite(residuals).sum())
    if residuals.size == 0 or finite == 0:
        return None
    horizon = residuals.shape[1]
    rows = []
    for p in probs:
        row = []
        for step in range(horizon):
            pooled = residuals[:, step_window(step, horizon, window)].ravel()
            pooled = pooled[np.isfinite(pooled)]
            row.append(step_offset(pooled, p) if len(pooled) >= MIN_RESIDUALS else math.nan)
        rows.append(tuple(row))
    return Calibration(tuple(round(float(p), 6) for p in probs), tuple(rows), finite)


def step_offset(pooled: np.ndarray, p: float) -> float:
    """One step's offset at ``p``: conformal within the tail anchors, extrapolated beyond them."""
    low, high = TAIL_ANCHORS
    if low <= p <= high:
        return conformal_offset(pooled, p)
    anchor = high if p > high else low
    median = conformal_offset(pooled, 0.5)
    return median + (conformal_offset(pooled, anchor) - median) * _normal_quantile(p) / _normal_quantile(anchor)


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def bands(mean: np.ndarray, calibration: Calibration, closed: np.ndarray | None = None) -> dict[float, np.ndarray]:
    """The forecast at each calibrated probability: never negative, 0 on closed days, never crossing."""
    base = np.clip(np.asarray(mean, dtype=float), 0.0, None)
    out: dict[float, np.ndarray] = {}
    previous: np.ndarray | None = None
    for p in calibration.probs:  # ascending: each band at least the one below it
        band = np.clip(base + calibration.offset(p, len(base)), 0.0, None)
        if previous is not None:
            band = np.where(np.isfinite(band) & np.isfinite(previous), np.maximum(band, previous), band)
        if closed is not None:
            band[np.asarray(closed, dtype=bool)] = 0.0
        out[p] = band
        previous = band
    return out


def level_name(level: float) -> str:
    """Column suffix of a level: 80 -> '80', 97.5 -> '97_5'."""
    return f"{level:g}".replace(".", "_")


def quantile_name(q: float) -> str:
    """Column name of a quantile forecast: 0.5 -> 'q50', 0.975 -> 'q97_5'."""
    return "q" + f"{q * 100:g}".replace(".", "_")


# --------------------------------------------------------------------------- uncertainty figure


@dataclass(frozen=True)
class Uncertainty:
    """Where the model is unsure, per product (docs/trainer.md, "Uncertainty").

    ``relative_width``: mean width of the first-level interval over the mean forecast on open
    days (0.5 = the 80 % band spans half the forecast level); None when the forecast is 0.
    ``cv_gain``: mean relative CV gain of the shipped forecast over the best naive baseline per
    fold (0.1 = 10 % lower error); ``gain_noise``: the standard error of that mean over the
    folds. ``uncertain``: the gain does not exceed its noise (including every product on which
    a naive baseline ships, and those without CV).
    """

    level: float
    relative_width: float | None
    cv_gain: float | None
    gain_noise: float | None
    uncertain: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "relative_width": _round(self.relative_width) if self.relative_width is not None else None,
            "cv_gain": _round(self.cv_gain) if self.cv_gain is not None else None,
            "gain_noise": _round(self.gain_noise) if self.gain_noise is not None else None,
            "uncertain": self.uncertain,
        }


def relative_width(yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, closed: np.ndarray | None) -> float | None:
    keep = np.isfinite(lower) & np.isfinite(upper)
    if closed is not None:
        keep &= ~np.asarray(closed, dtype=bool)
    level = float(np.mean(yhat[keep])) if keep.any() else 0.0
    if level <= 0:
        return None
    return float(np.mean(upper[keep] - lower[keep]) / level)


def cv_gain(model_folds: Sequence[float], naive_folds: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean relative gain per fold, its standard error) of a model over a naive baseline."""
    pairs = [(m, n) for m, n in zip(model_folds, naive_folds, strict=False) if math.isfinite(m + n) and n > 0]
    if not pairs:
        return None, None
    gains = np.array([(n - m) / n for m, n in pairs])
    noise = float(gains.std(ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else math.inf
    return float(gains.mean()), noise


def uncertainty(
    level: float, width: float | None, gain: float | None, noise: float | None, shipped_naive: bool
) -> Uncertainty:
    certain = not shipped_naive and gain is not None and noise is not None and gain > 0 and gain > noise
    return Uncertainty(level, width, gain, None if noise is None or not math.isfinite(noise) else noise, not certain)
