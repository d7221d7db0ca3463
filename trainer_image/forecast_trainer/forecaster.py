"""The shipped model: fit the winning family on the full history, forecast, and store it as JSON.

Every model is stored as one JSON document (never pickle), identified by the SHA-256 of its
text and verified on every load (``load``):

  {"format": "forecast-trainer-model", "version": 1, "family": "ets", "spec": {...},
   "frequency": "D", "history_end": "2024-05-31", "closed": {"weekdays": ["Sat"], ...},
   "interval": {"level": 80, "empirical": null | {"low": q10, "high": q90}},
   "libraries": {"statsforecast": "2.1.1"}, "state": {...}}

With ``"blend": {"naive_weight": w, "naive": {...}}`` the forecast is ``(1 - w)`` times the
family's plus ``w`` times that naive model's (blend.py), bounds alike.

``state`` is the family's own: Prophet's ``model_to_json`` text (``prophet``), statsforecast's
fitted model through codec.py, a naive model's last season, or the members of an ensemble
(each a document like this one, without the outer fields). Intervals are the family's own 80 %
interval; families without one (Croston-type) get an empirical one, the 10th and 90th
percentiles of their CV errors added to the forecast. Forecasts and bounds are never negative
and are 0 on closed days. A model stored before this format (Prophet JSON alone) still loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecast_trainer import model as models
from forecast_trainer.candidates import MAX_HISTORY, Candidate, residuals
from forecast_trainer.closed_days import ClosedDays
from forecast_trainer.cv import FoldPlan, expand, open_count, open_series
from forecast_trainer.errors import ModelIntegrityError
from forecast_trainer.families import ENSEMBLE, PROPHET, STATSFORECAST
from forecast_trainer.families.base import INTERVAL_LEVEL
from forecast_trainer.families.registry import family as family_impl
from forecast_trainer.intervals import DEFAULT_LEVELS, Calibration, bands, level_name, level_probs, quantile_name

FORMAT = "forecast-trainer-model"
VERSION = 1


@dataclass
class Shipped:
    family: str
    spec: dict[str, Any]
    forecast: Any  # DataFrame ds, yhat, yhat_lower, yhat_upper
    fitted: Any  # in-sample fit per history row (plot), or None
    model_json: str
    checksum: str
    members: list[str] = field(default_factory=list)


@dataclass
class _Part:
    """One fitted family on the future dates: mean/lower/upper arrays and its stored document."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    doc: dict[str, Any]
    fitted: Any = None


def _empirical(errors: np.ndarray) -> dict[str, float] | None:
    if len(errors) < 5:
        return None
    low, high = np.quantile(errors, [0.1, 0.9])
    return {"low": float(min(low, 0.0)), "high": float(max(high, 0.0))}


def _bounds(mean: np.ndarray, empirical: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    if empirical is None:
        return mean.copy(), mean.copy()
    return mean + empirical["low"], mean + empirical["high"]


def _fit_prophet(
    plan: FoldPlan, params: dict[str, Any], structure: models.Structure, future: Any, fitted: bool, own_interval: bool
) -> _Part:
    """Prophet on the full history; its own simulated interval only when no CV calibration replaces it."""
    frame = plan.frame
    if plan.closed:
        frame = frame.copy()
        frame.loc[plan.closed.mask(frame["ds"]), "y"] = np.nan
    final = models.fit(frame, params, structure, uncertainty=own_interval)
    out = models.forecast(final, plan.ds.iloc[-1], len(future), plan.frequency)
    zero = plan.closed.mask(out["ds"])
    arrays = [out[c].to_numpy(dtype=float) for c in ("yhat", "yhat_lower", "yhat_upper")]
    for values in arrays:
        values[zero] = 0.0
    in_sample = models.fitted_history(final, plan.ds) if fitted else None
    doc = {"family": PROPHET, "spec": models.effective_params(params), "state": {"prophet_json": models.to_json(final)}}
    return _Part(arrays[0], arrays[1], arrays[2], doc, in_sample)


def _fit_plain(plan: FoldPlan, name: str, candidate: Candidate | None, future: Any) -> _Part:
    impl = family_impl(name)
    cap = MAX_HISTORY[plan.frequency]
    values, season = open_series(plan.ds.iloc[-cap:], plan.y[-cap:], plan.closed, plan.frequency)
    # The specification the CV scored (same season), re-estimated on the latest history.
    spec = candidate.spec if candidate is not None and candidate.spec_season == season else None
    try:
        fitted_model = impl.fit(values, season, spec or None)
    except Exception:
        if not spec:
            raise
        fitted_model = impl.fit(values, season, None)  # the specification does not fit the latest data: search
    prediction = fitted_model.predict(open_count(future, plan.closed))
    mean = expand(prediction.mean, future, plan.closed)
    empirical = None
    if prediction.lower is None or prediction.upper is None:
        empirical = _empirical(residuals(plan, candidate)) if candidate is not None else None
        lower, upper = _bounds(prediction.mean, empirical)
    else:
        lower, upper = prediction.lower, prediction.upper
    doc = {
        "family": name,
        "spec": fitted_model.spec,
        "season": season,
        "interval": {"level": INTERVAL_LEVEL, "empirical": empirical},
        "state": fitted_model.state(),
    }
    return _Part(mean, expand(lower, future, plan.closed), expand(upper, future, plan.closed), doc)


def ship(
    plan: FoldPlan,
    family: str,
    candidates: dict[str, Candidate],
    prophet_params: dict[str, Any] | None,
    structure: models.Structure,
    horizon: int,
    *,
    fitted: bool = False,
    blend: tuple[str, float] | None = None,
    bands_spec: BandSpec | None = None,
) -> Shipped:
    """Fit ``family`` (an ensemble: each member) on the full history and forecast ``horizon`` periods.

    ``blend`` = (naive family, its weight): the forecast is combined with that naive baseline's
    (blend.py); the document keeps the naive model and its weight next to the family's own state.
    ``bands_spec``: the levels, quantiles and CV calibration of the bands (intervals.py); without
    one, the family's own 80 % interval as before.
    """
    bands_spec = bands_spec or BandSpec()
    future = models.future_dates(plan.ds.iloc[-1], horizon, plan.frequency)

    def part(name: str) -> _Part:
        if name == PROPHET:
            return _fit_prophet(plan, prophet_params or {}, structure, future, fitted, bands_spec.calibration is None)
        return _fit_plain(plan, name, candidates.get(name), future)

    members = list(candidates[ENSEMBLE].members) if family == ENSEMBLE else []
    if members:
        parts = [part(m) for m in members]
        mean = np.mean([p.mean for p in parts], axis=0)
        lower = np.mean([p.lower for p in parts], axis=0)
        upper = np.mean([p.upper for p in parts], axis=0)
        spec: dict[str, Any] = {"members": members, "combination": "mean"}
        state: dict[str, Any] = {"members": [p.doc for p in parts]}
        in_sample = next((p.fitted for p in parts if p.fitted is not None), None)
        body: dict[str, Any] = {"family": ENSEMBLE, "spec": spec, "state": state}
    else:
        single = part(family)
        mean, lower, upper, in_sample, body = single.mean, single.lower, single.upper, single.fitted, single.doc
        spec = body["spec"]
    if blend is not None and blend[1] > 0:
        naive_name, weight = blend
        naive = part(naive_name)
        own = (mean, lower, upper)
        mean, lower, upper = ((1 - weight) * a + weight * b for a, b in zip(own, _arrays(naive), strict=True))
        body = {**body, "blend": {"naive_weight": weight, "naive": naive.doc}}
    import pandas as pd

    forecast = forecast_frame(future, mean, lower, upper, bands_spec, plan.closed.mask(future))
    document = {
        "format": FORMAT,
        "version": VERSION,
        **body,
        **bands_spec.as_dict(),
        "frequency": plan.frequency,
        "history_end": str(pd.Timestamp(plan.ds.iloc[-1]).date()),
        "closed": plan.closed.as_dict(),
        "libraries": _libraries(family, members),
    }
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    return Shipped(family, spec, forecast, in_sample, text, models.checksum(text), members)


@dataclass(frozen=True)
class BandSpec:
    """Which bands a forecast carries and their CV calibration (None: the family's own interval)."""

    levels: tuple[float, ...] = DEFAULT_LEVELS
    quantiles: tuple[float, ...] = ()
    calibration: Calibration | None = None

    def as_dict(self) -> dict[str, Any]:
        """The stored model's fields, so a loaded model gives the same bands."""
        return {
            "levels": list(self.levels),
            "quantiles": list(self.quantiles),
            "calibration": self.calibration.as_dict() if self.calibration is not None else None,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> BandSpec:
        return cls(
            tuple(float(v) for v in doc.get("levels") or DEFAULT_LEVELS),
            tuple(float(v) for v in doc.get("quantiles") or ()),
            Calibration.from_dict(doc.get("calibration")),
        )


def forecast_frame(future: Any, mean: Any, lower: Any, upper: Any, spec: BandSpec, closed: Any) -> Any:
    """DataFrame ds, yhat, yhat_lower, yhat_upper, yhat_lower_<L>/yhat_upper_<L> per level, q<Q> per quantile.

    ``yhat_lower``/``yhat_upper`` are the first level's bounds (the family's own interval when
    no calibration exists or a step has too few residuals); ``attrs`` names the levels and
    quantiles for the store. Everything is >= 0 and 0 on closed days.
    """
    import pandas as pd

    yhat = np.clip(np.asarray(mean, dtype=float), 0.0, None)
    own_lower = np.minimum(np.clip(np.asarray(lower, dtype=float), 0.0, None), yhat)
    own_upper = np.maximum(np.clip(np.asarray(upper, dtype=float), 0.0, None), yhat)
    columns: dict[str, Any] = {"ds": future, "yhat": yhat, "yhat_lower": own_lower, "yhat_upper": own_upper}
    nan = np.full(len(yhat), np.nan)
    calibrated = bands(yhat, spec.calibration, closed) if spec.calibration is not None else {}
    for index, level in enumerate(spec.levels):
        low_p, high_p = level_probs(level)
        low = np.minimum(calibrated.get(low_p, nan), yhat)
        high = np.maximum(calibrated.get(high_p, nan), yhat)
        if index == 0:  # the compatible columns: calibrated where possible, else the family's own
            columns["yhat_lower"] = np.where(np.isfinite(low), low, own_lower)
            columns["yhat_upper"] = np.where(np.isfinite(high), high, own_upper)
            low, high = columns["yhat_lower"], columns["yhat_upper"]
        columns[f"yhat_lower_{level_name(level)}"] = low
        columns[f"yhat_upper_{level_name(level)}"] = high
    for q in spec.quantiles:
        columns[quantile_name(q)] = calibrated.get(round(q, 6), nan)
    frame = pd.DataFrame(columns)
    frame.attrs["levels"] = list(spec.levels)
    frame.attrs["quantiles"] = list(spec.quantiles)
    return frame


def _arrays(part: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return part.mean, part.lower, part.upper


def _libraries(family: str, members: list[str]) -> dict[str, str]:
    from forecast_trainer.lean import statsforecast_version

    names = set(members or [family])
    out: dict[str, str] = {}
    if PROPHET in names:
        out["prophet"] = models.prophet_version()
    if names & set(STATSFORECAST):
        out["statsforecast"] = statsforecast_version()
    return out


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A stored model, checksum-verified, that forecasts again without refitting."""

    family: str
    spec: dict[str, Any]
    frequency: str
    history_end: Any  # Timestamp
    closed: ClosedDays
    document: dict[str, Any]

    def forecast(self, periods: int) -> Any:
        """``forecast_frame`` for ``periods`` after the history (the stored calibration's bands)."""

        future = models.future_dates(self.history_end, periods, self.frequency)
        mean, lower, upper = _predict_doc(self.document, future, self.closed, self.frequency)
        spec = BandSpec.from_document(self.document)
        return forecast_frame(future, mean, lower, upper, spec, self.closed.mask(future))


def _predict_doc(doc: dict[str, Any], future: Any, closed: ClosedDays, frequency: str) -> tuple[Any, Any, Any]:
    own = _predict_family(doc, future, closed, frequency)
    blend = doc.get("blend")
    if not blend:
        return own
    weight = float(blend["naive_weight"])
    naive = _predict_family(blend["naive"], future, closed, frequency)
    return tuple((1 - weight) * np.asarray(a) + weight * np.asarray(b) for a, b in zip(own, naive, strict=True))  # type: ignore[return-value]


def _predict_family(doc: dict[str, Any], future: Any, closed: ClosedDays, frequency: str) -> tuple[Any, Any, Any]:
    family = doc["family"]
    if family == ENSEMBLE:
        parts = [_predict_family(m, future, closed, frequency) for m in doc["state"]["members"]]
        return tuple(np.mean([p[i] for p in parts], axis=0) for i in range(3))
    if family == PROPHET:
        import pandas as pd

        fitted = prophet_from_json(doc["state"]["prophet_json"])
        out = fitted.predict(pd.DataFrame({"ds": future}))
        columns = ("yhat", "yhat_lower", "yhat_upper") if "yhat_lower" in out else ("yhat", "yhat", "yhat")
        arrays = [np.clip(out[c].to_numpy(dtype=float), 0.0, None) for c in columns]
        zero = closed.mask(future)
        for values in arrays:
            values[zero] = 0.0
        return arrays[0], arrays[1], arrays[2]
    model = family_impl(family).restore(doc["spec"], doc["state"])
    prediction = model.predict(open_count(future, closed))
    if prediction.lower is None or prediction.upper is None:
        lower, upper = _bounds(prediction.mean, (doc.get("interval") or {}).get("empirical"))
    else:
        lower, upper = prediction.lower, prediction.upper
    return expand(prediction.mean, future, closed), expand(lower, future, closed), expand(upper, future, closed)


def prophet_from_json(text: str) -> Any:
    from forecast_trainer.logs import quiet_libraries

    quiet_libraries()
    from prophet.serialize import model_from_json

    return model_from_json(text)


def verify(model_json: str, expected_checksum: str) -> None:
    actual = models.checksum(model_json)
    if actual != (expected_checksum or "").strip().lower():
        raise ModelIntegrityError(
            f"model checksum mismatch (stored {str(expected_checksum)[:16]}..., computed {actual[:16]}...); "
            "refusing to load a modified model"
        )


def load(model_json: str, expected_checksum: str) -> LoadedModel:
    """A stored model of any family after verifying its SHA-256 (ModelIntegrityError on mismatch)."""
    import pandas as pd

    verify(model_json, expected_checksum)
    doc = json.loads(model_json)
    if doc.get("format") != FORMAT:  # a Prophet model stored before the envelope existed
        fitted = prophet_from_json(model_json)
        end = pd.Timestamp(fitted.history["ds"].iloc[-1])
        frequency = "D"
        legacy = {"family": PROPHET, "spec": {}, "state": {"prophet_json": model_json}}
        return LoadedModel(PROPHET, {}, frequency, end, ClosedDays(), legacy)
    if int(doc.get("version", 0)) > VERSION:
        raise ModelIntegrityError(f"model format version {doc.get('version')} is newer than this trainer knows")
    return LoadedModel(
        family=str(doc["family"]),
        spec=dict(doc.get("spec") or {}),
        frequency=str(doc["frequency"]),
        history_end=pd.Timestamp(doc["history_end"]),
        closed=ClosedDays.from_dict(doc.get("closed")),
        document=doc,
    )
