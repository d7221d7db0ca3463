"""Prophet models: construction from parameters, fitting, forecasting, JSON and checksums.

Models are serialised with Prophet's own ``model_to_json`` (never pickle) and identified by
the SHA-256 of that JSON text; ``load_model`` refuses a model whose checksum does not match.

Speed: Prophet hands Stan its data as Python lists, which cmdstanpy's JSON writer walks
element by element (about half of a small fit's time). ``_FastJsonBackend`` writes the same
data with the C JSON encoder and passes cmdstan the file paths; the numbers, the optimiser
and its settings are unchanged (a unit test checks the fitted parameters are identical).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from forecast_trainer.errors import ModelIntegrityError, TrainingFailed
from forecast_trainer.logs import quiet_libraries

# Prophet's defaults for the parameters the tuner searches (Prophet 1.x).
DEFAULT_PARAMS: dict[str, Any] = {
    "changepoint_prior_scale": 0.05,
    "seasonality_prior_scale": 10.0,
    "holidays_prior_scale": 10.0,
    "seasonality_mode": "additive",
    "changepoint_range": 0.8,
    "yearly_order": 10,  # Fourier order of the yearly seasonality (Prophet's default for yearly=True)
}
TUNABLE = tuple(DEFAULT_PARAMS)
FREQ_DAYS = {"D": 1.0, "W": 7.0, "MS": 30.4375}
INTERVAL_WIDTH = 0.8
UNCERTAINTY_SAMPLES = 1000


@dataclass(frozen=True)
class Structure:
    """What a product's model contains, fixed from its full history before any fold is fit.

    Prophet's 'auto' seasonalities look at the data they are given; a CV fold with less than
    two years would silently drop the yearly seasonality the final model has. Resolving them
    once keeps every fold and the final fit the same model.
    """

    yearly: bool
    weekly: bool
    country_holidays: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"yearly": self.yearly, "weekly": self.weekly, "country_holidays": self.country_holidays}


def structure_for(ds: Any, frequency: str, country_holidays: str | None = None) -> Structure:
    """Prophet's own 'auto' rules, applied to the whole history: yearly with >= 2 years of
    data; weekly for sub-weekly data spanning >= 2 weeks; never daily (data is daily or coarser)."""
    import pandas as pd

    span_days = (pd.Timestamp(ds.iloc[-1]) - pd.Timestamp(ds.iloc[0])).days
    return Structure(
        yearly=span_days >= 730, weekly=frequency == "D" and span_days >= 14, country_holidays=country_holidays
    )


def horizon_periods(horizon_days: int, frequency: str) -> int:
    """Periods covering ``horizon_days`` (30 days = 30 daily, 5 weekly, 1 monthly periods)."""
    return max(1, math.ceil(horizon_days / FREQ_DAYS[frequency] - 1e-9))


def effective_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Full parameter set: Prophet defaults overlaid with ``params``."""
    return {**DEFAULT_PARAMS, **(params or {})}


def import_prophet() -> Any:
    """The Prophet class, imported with its and cmdstanpy's log chatter silenced."""
    quiet_libraries()
    import logging

    from forecast_trainer.lean import matplotlib_absent

    with matplotlib_absent():  # Prophet's plotting helpers are never used (lean.py)
        from prophet import Prophet

    quiet_libraries()  # again: importing prophet sets its logger back to INFO
    logging.getLogger("cmdstanpy").disabled = True
    return Prophet


_backend_local = threading.local()
_X_JSON_CACHE: dict[tuple[Any, ...], str] = {}
_X_JSON_CACHE_SIZE = 8  # folds x seasonality modes of the product being tuned


def _x_json(X: Any) -> str:
    """JSON text of the feature matrix, cached by content (identical across trials of a fold)."""
    values = X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else X
    key = (values.shape, hashlib.blake2b(values.tobytes(), digest_size=16).digest())
    text = _X_JSON_CACHE.get(key)
    if text is None:
        text = json.dumps(values.tolist())
        if len(_X_JSON_CACHE) >= _X_JSON_CACHE_SIZE:
            _X_JSON_CACHE.pop(next(iter(_X_JSON_CACHE)))
        _X_JSON_CACHE[key] = text
    return text


def _fast_backend() -> Any:
    """A cmdstanpy backend that writes Stan's JSON inputs with the C encoder (one per thread)."""
    backend = getattr(_backend_local, "backend", None)
    if backend is None:
        from prophet.models import CmdStanPyBackend

        class _FastJsonBackend(CmdStanPyBackend):
            def fit(self, stan_init: Any, stan_data: Any, **kwargs: Any) -> Any:
                if "init" in kwargs:  # Prophet's own handling of custom inits, before we write them
                    stan_init = self.sanitize_custom_inits(stan_init, kwargs.pop("init"))
                features = stan_data["X"]
                inits, data = self.prepare_data(stan_init, {**stan_data, "X": features.iloc[:0]})
                data.pop("X")
                body = json.dumps(data, default=_json_number)
                text = body[:-1] + (", " if data else "") + '"X": ' + _x_json(features) + "}"
                with tempfile.TemporaryDirectory(prefix="ft-stan-") as tmp:
                    data_path = os.path.join(tmp, "data.json")
                    init_path = os.path.join(tmp, "inits.json")
                    with open(data_path, "w", encoding="utf-8") as fh:
                        fh.write(text)
                    with open(init_path, "w", encoding="utf-8") as fh:
                        fh.write(json.dumps(inits, default=_json_number))
                    return super().fit(stan_init, stan_data, data=data_path, inits=init_path, **kwargs)

        backend = _FastJsonBackend()
        _backend_local.backend = backend
    return backend


def _json_number(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_cv_class: Any = None


def _cv_prophet_class() -> Any:
    """Prophet with its seasonal feature matrices memoised per (dates, seasonalities, mode).

    Used only for cross-validation fits, where every trial rebuilds the same Fourier features
    for the same fold dates (a third of a small fit's time). Only the prior scales change
    between trials, and those are recomputed. Models with holidays or extra regressors bypass
    the cache. A unit test checks forecasts equal stock Prophet's.
    """
    global _cv_class
    if _cv_class is None:
        prophet_cls = import_prophet()

        class CvProphet(prophet_cls):  # type: ignore[misc, valid-type]
            feature_cache: dict[tuple[Any, ...], Any] | None = None

            def make_all_seasonality_features(self, df: Any) -> Any:
                cache = self.feature_cache
                if cache is None or self.holidays is not None or self.country_holidays or self.extra_regressors:
                    return super().make_all_seasonality_features(df)
                dates = df["ds"].to_numpy()
                layout = tuple(
                    (name, p["period"], p["fourier_order"], p["mode"], p["condition_name"])
                    for name, p in self.seasonalities.items()
                )
                key = (len(dates), hashlib.blake2b(dates.tobytes(), digest_size=16).digest(), layout)
                hit = cache.get(key)
                if hit is None:
                    hit = super().make_all_seasonality_features(df)
                    cache[key] = hit
                features, _, component_cols, modes = hit
                priors: list[float] = []
                for props in self.seasonalities.values():
                    priors.extend([props["prior_scale"]] * (2 * props["fourier_order"]))
                return features, priors or [1.0], component_cols.copy(), copy.deepcopy(modes)

            def predict_yhat(self, ds: Any) -> Any:
                """``predict(...)["yhat"]`` without the component frame (same arithmetic as
                Prophet's predict_trend and predict_seasonal_components, MAP fits only)."""
                import numpy as np
                import pandas as pd

                df = self.setup_dataframe(pd.DataFrame({"ds": pd.Series(ds).reset_index(drop=True)}))
                trend = np.asarray(self.predict_trend(df), dtype=float)
                features, _, component_cols, _ = self.make_all_seasonality_features(df)
                x = features.to_numpy()
                beta = self.params["beta"]
                additive = np.nanmean(x @ (beta * component_cols["additive_terms"].to_numpy()).T, axis=1)
                multiplicative = np.nanmean(x @ (beta * component_cols["multiplicative_terms"].to_numpy()).T, axis=1)
                return trend * (1 + multiplicative) + additive * self.y_scale

        _cv_class = CvProphet
    return _cv_class


def build(
    params: dict[str, Any] | None,
    structure: Structure,
    *,
    uncertainty: bool,
    feature_cache: dict[tuple[Any, ...], Any] | None = None,
) -> Any:
    """An unfitted Prophet with ``params`` (Prophet defaults for anything missing).

    With ``feature_cache`` (cross-validation only) the memoising subclass is used.
    """
    prophet_cls = import_prophet() if feature_cache is None else _cv_prophet_class()
    p = effective_params(params)
    model = prophet_cls(
        growth="linear",
        yearly_seasonality=int(p["yearly_order"]) if structure.yearly else False,
        weekly_seasonality=structure.weekly,
        daily_seasonality=False,
        changepoint_prior_scale=float(p["changepoint_prior_scale"]),
        seasonality_prior_scale=float(p["seasonality_prior_scale"]),
        holidays_prior_scale=float(p["holidays_prior_scale"]),
        seasonality_mode=str(p["seasonality_mode"]),
        changepoint_range=float(p["changepoint_range"]),
        interval_width=INTERVAL_WIDTH,
        uncertainty_samples=UNCERTAINTY_SAMPLES if uncertainty else 0,
    )
    if structure.country_holidays:
        model.add_country_holidays(country_name=structure.country_holidays)
    if feature_cache is not None:
        model.feature_cache = feature_cache
    model.stan_backend = _fast_backend()
    return model


def fit(
    frame: Any,
    params: dict[str, Any] | None,
    structure: Structure,
    *,
    uncertainty: bool = False,
    feature_cache: dict[tuple[Any, ...], Any] | None = None,
    init: dict[str, Any] | None = None,
    algorithm: str | None = None,
) -> Any:
    """Fit (MAP, no MCMC) on ``frame`` (ds, y); Stan failures become TrainingFailed.

    ``init`` starts Stan's optimiser from earlier parameters (a warm start on the same fold).
    ``algorithm`` overrides Prophet's choice (Newton below 100 points, which can take seconds
    on small monthly series; L-BFGS reaches the same optimum in milliseconds and Prophet
    still falls back to Newton if it fails).
    """
    model = build(params, structure, uncertainty=uncertainty, feature_cache=feature_cache)
    kwargs: dict[str, Any] = {}
    if init is not None:
        kwargs["init"] = init
    if algorithm is not None:
        kwargs["algorithm"] = algorithm
    try:
        model.fit(frame, **kwargs)
    except (RuntimeError, ValueError) as exc:
        raise TrainingFailed(f"Prophet fit failed: {exc}") from exc
    return model


def stan_init(model: Any) -> dict[str, Any]:
    """A fitted model's MAP parameters in the shape Prophet accepts as ``init``."""
    import numpy as np

    params = model.params
    return {
        "k": float(np.ravel(params["k"])[0]),
        "m": float(np.ravel(params["m"])[0]),
        "sigma_obs": float(np.ravel(params["sigma_obs"])[0]),
        "delta": np.asarray(params["delta"], dtype=float).reshape(-1),
        "beta": np.asarray(params["beta"], dtype=float).reshape(-1),
    }


def predict_yhat(model: Any, ds: Any) -> Any:
    """Point forecasts at ``ds``, clipped at 0 (sales are never negative)."""
    import numpy as np
    import pandas as pd

    if getattr(model, "feature_cache", None) is not None and not model.uncertainty_samples:
        # A cross-validation fit (memoising subclass): yhat alone, a third of predict's time.
        return np.clip(np.asarray(model.predict_yhat(ds), dtype=float), 0.0, None)
    out = model.predict(pd.DataFrame({"ds": ds}))
    return np.clip(out["yhat"].to_numpy(dtype=float), 0.0, None)


def future_dates(last: Any, periods: int, frequency: str) -> Any:
    import pandas as pd

    if frequency == "MS":
        offset: Any = pd.offsets.MonthBegin(1)
    elif frequency == "W":
        offset = pd.Timedelta(days=7)
    else:
        offset = pd.Timedelta(days=1)
    return pd.date_range(pd.Timestamp(last) + offset, periods=periods, freq=offset)


def forecast(model: Any, last: Any, periods: int, frequency: str) -> Any:
    """DataFrame ds, yhat, yhat_lower, yhat_upper for ``periods`` after ``last`` (clipped at 0).

    A model fitted without uncertainty samples has no interval of its own: its bounds are yhat.
    """
    import pandas as pd

    ds = future_dates(last, periods, frequency)
    out = model.predict(pd.DataFrame({"ds": ds}))
    if "yhat_lower" not in out:
        out = out.assign(yhat_lower=out["yhat"], yhat_upper=out["yhat"])
    frame = out[["ds", "yhat", "yhat_lower", "yhat_upper"]].copy()
    for column in ("yhat", "yhat_lower", "yhat_upper"):
        frame[column] = frame[column].clip(lower=0.0)
    return frame.reset_index(drop=True)


def fitted_history(model: Any, ds: Any) -> Any:
    """In-sample yhat (no intervals: cheap) for the plot."""
    saved = model.uncertainty_samples
    model.uncertainty_samples = 0
    try:
        return predict_yhat(model, ds)
    finally:
        model.uncertainty_samples = saved


def to_json(model: Any) -> str:
    quiet_libraries()
    from prophet.serialize import model_to_json

    return str(model_to_json(model))


def checksum(model_json: str) -> str:
    return hashlib.sha256(model_json.encode("utf-8")).hexdigest()


def load_model(model_json: str, expected_checksum: str) -> Any:
    """Deserialise a model after verifying its SHA-256; ModelIntegrityError on mismatch."""
    actual = checksum(model_json)
    if actual != (expected_checksum or "").strip().lower():
        raise ModelIntegrityError(
            f"model checksum mismatch (stored {str(expected_checksum)[:16]}..., computed {actual[:16]}...); "
            "refusing to load a modified model"
        )
    quiet_libraries()
    from prophet.serialize import model_from_json

    return model_from_json(model_json)


@functools.cache
def prophet_version() -> str:
    """The installed Prophet's version (from its metadata: no import of Prophet itself; read once
    per process: every stored model records it, and a shard stores hundreds)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("prophet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
