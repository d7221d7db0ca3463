"""statsforecast families: AutoETS, AutoTheta, AutoARIMA, Croston SBA, TSB, ADIDA.

statsforecast (2.x, compiled core, no JIT) is imported on first use only, lean (lean.py).
With ``spec=None`` a family runs the library's automatic selection (information criteria over
ETS components, Theta variants, ARIMA orders) and records what it chose in ``spec``; with a
spec it re-estimates only the parameters of that specification, which is 10x cheaper: the
cross-validation selects once per product and re-uses the choice on the other folds.

Seasons: ETS takes seasons up to 24 (weekly data, season 52, is fitted without a seasonal
component); ARIMA's seasonal search is limited to seasons up to 12 with an approximate
(CSS) stepwise search over small orders, on at most ``ARIMA_MAX_HISTORY`` points.
Croston-type families (intermittent demand) have no interval of their own; the trainer gives
them an empirical one from their CV errors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecast_trainer.families import ADIDA, ARIMA, CROSTON_SBA, ETS, THETA, TSB
from forecast_trainer.families.base import INTERVAL_LEVEL, Prediction
from forecast_trainer.families.codec import decode, encode
from forecast_trainer.lean import statsforecast_models

ETS_MAX_SEASON = 24
ARIMA_MAX_SEASON = 12
ARIMA_SEARCH = {"approximation": True, "max_p": 3, "max_q": 3, "max_P": 1, "max_Q": 1, "nmodels": 30}
TSB_ALPHAS = (0.1, 0.1)  # alpha_d, alpha_p: statsforecast's documented example values


@dataclass
class StatsModel:
    family: str
    spec: dict[str, Any]
    model: Any  # the statsforecast model object, fitted (model_ set)
    native_intervals: bool

    def predict(self, h: int) -> Prediction:
        if self.native_intervals:
            out = self.model.predict(h=h, level=[INTERVAL_LEVEL])
            return Prediction(
                np.asarray(out["mean"], dtype=float),
                np.asarray(out[f"lo-{INTERVAL_LEVEL}"], dtype=float),
                np.asarray(out[f"hi-{INTERVAL_LEVEL}"], dtype=float),
            )
        return Prediction(np.asarray(self.model.predict(h=h)["mean"], dtype=float))

    def state(self) -> dict[str, Any]:
        return {"model_": encode(dict(self.model.model_))}  # all of it: the library's forecast reads most keys


class _StatsFamily:
    name = ""
    library = "statsforecast"
    native_intervals = True

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        raise NotImplementedError

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        return {}

    def fit(self, y: np.ndarray, season: int, spec: dict[str, Any] | None = None) -> StatsModel:
        values = np.ascontiguousarray(y, dtype=float)
        with warnings.catch_warnings():  # optimiser convergence chatter; a failed fit raises
            warnings.simplefilter("ignore")
            model = self.build(season, spec).fit(values)
        return StatsModel(self.name, spec or self.spec_of(model, season), model, self.native_intervals)

    def restore(self, spec: dict[str, Any], state: dict[str, Any]) -> StatsModel:
        model = self.build(int(spec.get("season_length", 1)), spec)
        model.model_ = decode(state["model_"])
        return StatsModel(self.name, spec, model, self.native_intervals)


class AutoEts(_StatsFamily):
    name = ETS

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        sm = statsforecast_models()
        if spec:
            return sm.AutoETS(season_length=int(spec["season_length"]), model=spec["model"], damped=spec["damped"])
        return sm.AutoETS(season_length=season if 1 < season <= ETS_MAX_SEASON else 1)

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        components = str(model.model_["components"])  # e.g. "MAdN" -> error M, trend A, season N, damped
        return {
            "model": components[:3],
            "damped": components[3] == "D" if len(components) > 3 else False,
            "season_length": int(model.season_length),
            "method": str(model.model_.get("method", "")),
        }


class AutoThetaFamily(_StatsFamily):
    name = THETA

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        sm = statsforecast_models()
        if spec:
            return sm.AutoTheta(
                season_length=int(spec["season_length"]),
                model=spec["model"],
                decomposition_type=spec["decomposition_type"],
            )
        return sm.AutoTheta(season_length=max(1, season))

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        return {
            "model": str(model.model_["modeltype"]),
            "decomposition_type": str(model.model_.get("decomposition_type", "multiplicative")),
            "season_length": int(model.season_length),
        }


class AutoArimaFamily(_StatsFamily):
    name = ARIMA

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        sm = statsforecast_models()
        if spec:
            return sm.ARIMA(
                order=tuple(spec["order"]),
                season_length=int(spec["season_length"]),
                seasonal_order=tuple(spec["seasonal_order"]),
                include_mean=bool(spec["include_mean"]),
                include_drift=bool(spec["include_drift"]),
            )
        return sm.AutoARIMA(season_length=season if 1 < season <= ARIMA_MAX_SEASON else 1, **ARIMA_SEARCH)

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        p, q, seasonal_p, seasonal_q, m, d, seasonal_d = (int(v) for v in model.model_["arma"])
        coef = model.model_.get("coef") or {}
        return {
            "order": [p, d, q],
            "seasonal_order": [seasonal_p, seasonal_d, seasonal_q],
            "season_length": max(1, m),
            "include_mean": "intercept" in coef,
            "include_drift": "drift" in coef,
        }


class _Intermittent(_StatsFamily):
    native_intervals = False

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        return {"season_length": 1}


class CrostonSba(_Intermittent):
    name = CROSTON_SBA

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        return statsforecast_models().CrostonSBA()


class Tsb(_Intermittent):
    name = TSB

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        alpha_d, alpha_p = TSB_ALPHAS
        return statsforecast_models().TSB(alpha_d=alpha_d, alpha_p=alpha_p)

    def spec_of(self, model: Any, season: int) -> dict[str, Any]:
        return {"season_length": 1, "alpha_d": TSB_ALPHAS[0], "alpha_p": TSB_ALPHAS[1]}


class Adida(_Intermittent):
    name = ADIDA

    def build(self, season: int, spec: dict[str, Any] | None) -> Any:
        return statsforecast_models().ADIDA()


FAMILIES: dict[str, _StatsFamily] = {
    f.name: f for f in (AutoEts(), AutoThetaFamily(), AutoArimaFamily(), CrostonSba(), Tsb(), Adida())
}
