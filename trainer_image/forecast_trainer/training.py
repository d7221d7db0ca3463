"""One product, CPU side: score every candidate family on the same folds, choose, fit, forecast.

No I/O here (runner.py loads, persists and reports). The steps of ``train_product``:

1. Folds and closed days (cv.plan_folds): the same rolling-origin windows for every family.
2. Plain-series families on those folds (candidates.py): the naive baselines always (they are
   the bar every model must clear), statsforecast families when ``--models`` allows them
   (Croston-type only for intermittent products).
3. Prophet tuned with Optuna on the same folds (tune.py), as before.
4. The combination of the best few candidates (``ensemble``).
5. Selection (selection.py): never worse on CV than the best naive baseline; a margin against
   chance wins; the last winning family stays unless clearly beaten.
6. A winner that is not itself naive is combined with the best naive baseline, weighted by
   their CV errors (blend.py), unless ``--models`` leaves the naive baselines out.
7. The winner is fitted on the full history and forecasts the horizon (forecaster.py), with
   interval and quantile bands calibrated on the CV residuals of exactly what ships
   (intervals.py).
8. The uncertainty figure: the interval's width relative to the forecast, and whether the CV
   gain over the best naive baseline exceeds its fold-to-fold noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from forecast_trainer.blend import combined, naive_weight
from forecast_trainer.candidates import Candidate, combine, from_folds, residual_steps, score_family
from forecast_trainer.config import TrainConfig
from forecast_trainer.errors import TrainingFailed, one_line
from forecast_trainer.families import (
    ENSEMBLE,
    FAMILIES,
    INTERMITTENT,
    LAST_VALUE,
    NAIVE,
    PROPHET,
    SEASONAL_NAIVE,
)
from forecast_trainer.intervals import DEFAULT_LEVELS, Uncertainty, cv_gain, relative_width, uncertainty
from forecast_trainer.selection import Selection, select
from forecast_trainer.validate import Prepared


@dataclass(frozen=True)
class Blend:
    """The winner combined with the best naive baseline (blend.py): weight and CV of the mix."""

    naive: str
    naive_weight: float
    candidate: Candidate  # the combination's fold forecasts and CV error
    model_error: float | None  # the winner's own CV error

    def as_dict(self) -> dict[str, Any]:
        return {
            "naive": self.naive,
            "naive_weight": self.naive_weight,
            "error": self.candidate.summary()["error"],
            "fold_errors": self.candidate.summary()["fold_errors"],
            "model_error": self.model_error,
        }


@dataclass
class Trained:
    """The CPU-side outcome for one product, before anything is persisted."""

    params: dict[str, Any]  # what the forecast_models.params column gets: family + its parameters
    tuning: Any  # tune.TuneResult (Prophet's search; empty when Prophet was not a candidate)
    product_class: Any  # classify.ProductClass
    structure: Any  # model.Structure
    model_json: str
    checksum: str
    forecast: Any
    fitted: Any
    horizon: int
    family: str = PROPHET
    selection: Selection | None = None
    candidates: dict[str, Candidate] = field(default_factory=dict)
    closed: Any = None  # closed_days.ClosedDays of the full history
    warnings: list[str] = field(default_factory=list)
    blend: Blend | None = None  # the shipped forecast's combination with a naive baseline
    uncertainty: Uncertainty | None = None  # where the model is unsure (intervals.py)
    plan: Any = None  # cv.FoldPlan: the folds every candidate was scored on (champion.py re-scores on them)

    @property
    def seasonal_naive_error(self) -> float | None:
        c = self.candidates.get(SEASONAL_NAIVE)
        return c.error if c is not None and c.ok else None


def candidate_families(models: tuple[str, ...], product_class: Any) -> tuple[str, ...]:
    """The families that compete for this product.

    Croston-type families only for intermittent products; and for those, not ``last_value``
    while seasonal-naive is allowed: the last value of intermittent demand is one day's count
    (0, or a burst), so three CV folds score three single draws, and it wins CV by chance
    (on the benchmark's intermittent pizza SKUs it shipped for 11 of 41 and lost the hidden
    month to seasonal-naive on 7 of them). It is still scored and reported
    (``metrics.cv.last_value_error``), but it is neither the bar nor a candidate.
    """
    intermittent = _intermittent(product_class)
    allowed = tuple(f for f in models if intermittent or f not in INTERMITTENT)
    if intermittent and SEASONAL_NAIVE in allowed:
        allowed = tuple(f for f in allowed if f != LAST_VALUE)
    return allowed


@dataclass
class _Product:
    """Per-product state of one ``train_product`` pass (its steps read and fill it)."""

    cfg: TrainConfig
    plan: Any  # cv.FoldPlan
    structure: Any  # model.Structure
    horizon: int
    allowed: tuple[str, ...]
    product_class: Any = None  # classify.ProductClass
    candidates: dict[str, Candidate] = field(default_factory=dict)
    tuning: Any = None  # tune.TuneResult, or None when Prophet is not a candidate
    warnings: list[str] = field(default_factory=list)


def train_product(
    prepared: Prepared,
    cfg: TrainConfig,
    budget: int,
    warm_params: dict[str, Any] | None,
    product_class: Any,
    on_trial: Callable[[int, int], None] | None = None,
    warm_family: str | None = None,
) -> Trained:
    """Choose, fit and forecast one validated product (see the module doc)."""
    # 1. Folds and closed days, shared by every family.
    run = _plan(prepared, cfg, product_class)
    # 2. Plain-series families; the naive baselines always.
    _score_plain(run)
    # 3. Prophet, tuned on the same folds.
    _score_prophet(run, budget, warm_params, on_trial)
    # 4. The combination of the best few.
    _score_ensemble(run)
    # 5. Selection.
    selection, family = _select(run, warm_family)
    # 6. Combine a winning model with the best naive baseline.
    blend = _blend(run.plan, selection, run.candidates, run.allowed, cfg.metric)
    selection = _with_blend(selection, blend)
    _note_failed(run)
    # 7. Fit the winner on the full history and forecast, with calibrated bands.
    family, blend, shipped, shipped_cv = _ship_first_that_fits(run, family, selection, blend)
    # 8. Where the model is unsure.
    unsure = _uncertainty(run, family, selection, shipped_cv, shipped.forecast)
    return Trained(
        params=_stored_params(family, shipped.spec, blend),
        tuning=run.tuning if run.tuning is not None else _no_tuning(),
        product_class=product_class,
        structure=run.structure,
        model_json=shipped.model_json,
        checksum=shipped.checksum,
        forecast=shipped.forecast,
        fitted=shipped.fitted,
        horizon=run.horizon,
        family=family,
        selection=selection,
        candidates=run.candidates,
        closed=run.plan.closed,
        warnings=run.warnings,
        blend=blend,
        uncertainty=unsure,
        plan=run.plan,
    )


def _intermittent(product_class: Any) -> bool:
    return getattr(product_class, "name", None) == "intermittent"


def _plan(prepared: Prepared, cfg: TrainConfig, product_class: Any) -> _Product:
    from forecast_trainer import model as models
    from forecast_trainer.cv import plan_folds

    frame = prepared.frame
    horizon = models.horizon_periods(cfg.horizon_days, cfg.frequency)
    return _Product(
        cfg=cfg,
        plan=plan_folds(frame, cfg.frequency, horizon, cfg.folds, cfg.country_holidays),
        structure=models.structure_for(frame["ds"], cfg.frequency, cfg.country_holidays),
        horizon=horizon,
        allowed=candidate_families(tuple(getattr(cfg, "models", FAMILIES)), product_class),
        product_class=product_class,
    )


def _score_plain(run: _Product) -> None:
    plain = [f for f in FAMILIES if f in NAIVE or (f in run.allowed and f not in (PROPHET, ENSEMBLE))]
    for name in plain:
        run.candidates[name] = score_family(run.plan, name, run.cfg.metric)


def _score_prophet(
    run: _Product, budget: int, warm_params: dict[str, Any] | None, on_trial: Callable[[int, int], None] | None
) -> None:
    if PROPHET not in run.allowed:
        return
    from forecast_trainer import model as models

    run.tuning = _tune_prophet(run.plan, run.cfg, budget, warm_params, run.structure, on_trial)
    run.candidates[PROPHET] = from_folds(
        run.plan,
        PROPHET,
        run.cfg.metric,
        run.tuning.fold_predictions,
        spec=models.effective_params(run.tuning.params),
        seconds=run.tuning.seconds,
    )
    run.warnings.extend(run.tuning.warnings)


def _score_ensemble(run: _Product) -> None:
    if ENSEMBLE in run.allowed:
        members = {k: v for k, v in run.candidates.items() if k in run.allowed}
        run.candidates[ENSEMBLE] = combine(run.plan, members, run.cfg.metric)


def _select(run: _Product, warm_family: str | None) -> tuple[Selection, str]:
    """The selection rule on every candidate's CV error, and the family to fit first."""
    # last_value left out for an intermittent product (candidate_families) is not its bar either.
    dropped = LAST_VALUE not in run.allowed and SEASONAL_NAIVE in run.allowed and _intermittent(run.product_class)
    errors = {k: c.error for k, c in run.candidates.items() if not (dropped and k == LAST_VALUE)}
    selection = select(errors, run.allowed, run.cfg.improvement_margin, warm_family)
    family = selection.family or _fallback(run.allowed)
    if selection.family is None:
        run.warnings.append(f"no candidate could be scored on CV; {family} fitted without a CV check")
    elif selection.beats_baseline is False:
        run.warnings.append(
            f"a naive baseline beats the shipped model on CV ({selection.naive_family} "
            f"{_short(selection.naive_error)}, {family} {_short(selection.error)}); --models allows no naive baseline"
        )
    return selection, family


def _with_blend(selection: Selection, blend: Blend | None) -> Selection:
    """The selection as shipped: with a blend, the combination's CV error and reason."""
    if blend is None:
        return selection
    return replace(
        selection,
        error=blend.candidate.error,
        beats_naive=selection.naive_error is not None and float(blend.candidate.error or 0) < selection.naive_error,
        reason=f"{selection.reason}; combined with {blend.naive} (weight {blend.naive_weight:.2f})",
    )


def _note_failed(run: _Product) -> None:
    failed = sorted(k for k, c in run.candidates.items() if not c.ok and run.plan.folds and k != ENSEMBLE)
    if failed:
        run.warnings.append(f"candidate(s) failed on CV: {', '.join(failed)}")


def _ship_first_that_fits(
    run: _Product, family: str, selection: Selection, blend: Blend | None
) -> tuple[str, Blend | None, Any, Candidate | None]:
    """(family, blend, forecaster.Shipped, its CV candidate): the winner, else the next best that fits."""
    from forecast_trainer.forecaster import ship

    for choice in _ship_order(family, selection, run.candidates, run.allowed):
        mix = blend if blend is not None and choice == selection.family else None
        cv = mix.candidate if mix is not None else run.candidates.get(choice)
        try:
            shipped = ship(
                run.plan,
                choice,
                run.candidates,
                run.tuning.params if run.tuning is not None else None,
                run.structure,
                run.horizon,
                fitted=bool(run.cfg.output_dir),
                blend=(mix.naive, mix.naive_weight) if mix is not None else None,
                bands_spec=_band_spec(run, cv),
            )
        except Exception as exc:  # a family whose final fit fails gives way to the next best
            run.warnings.append(f"{choice} failed to fit the full history ({one_line(str(exc), 120)}); next best used")
            continue
        return choice, mix, shipped, cv
    raise TrainingFailed("no candidate model could be fitted on the full history")


def _band_spec(run: _Product, cv: Candidate | None) -> Any:
    """Levels, quantiles and the conformal calibration on ``cv``'s fold residuals (intervals.py)."""
    from forecast_trainer.forecaster import BandSpec
    from forecast_trainer.intervals import calibrate, probabilities

    levels = tuple(getattr(run.cfg, "interval_levels", DEFAULT_LEVELS))
    quantiles = tuple(getattr(run.cfg, "quantiles", ()))
    calibration = None
    if cv is not None and cv.ok:
        calibration = calibrate(residual_steps(run.plan, cv), probabilities(levels, quantiles))
    if calibration is None and "intervals not calibrated" not in " ".join(run.warnings):
        run.warnings.append("intervals not calibrated (no CV residuals): the family's own 80 % interval is used")
    return BandSpec(levels, quantiles, calibration)


def _uncertainty(
    run: _Product, family: str, selection: Selection, shipped_cv: Candidate | None, forecast: Any
) -> Uncertainty:
    """The product's uncertainty figure (intervals.Uncertainty) from its forecast and CV folds."""
    closed = run.plan.closed.mask(forecast["ds"])
    width = relative_width(
        forecast["yhat"].to_numpy(dtype=float),
        forecast["yhat_lower"].to_numpy(dtype=float),
        forecast["yhat_upper"].to_numpy(dtype=float),
        closed,
    )
    naive = run.candidates.get(selection.naive_family or "")
    gain, noise = (None, None)
    if shipped_cv is not None and shipped_cv.ok and naive is not None and naive.ok:
        gain, noise = cv_gain(shipped_cv.fold_errors, naive.fold_errors)
    level = float(getattr(run.cfg, "interval_levels", DEFAULT_LEVELS)[0])
    return uncertainty(level, width, gain, noise, family in NAIVE)


def _stored_params(family: str, spec: dict[str, Any], blend: Blend | None) -> dict[str, Any]:
    params = {"family": family, **spec}
    if blend is not None:
        params["naive_blend"] = {"naive": blend.naive, "naive_weight": blend.naive_weight}
    return params


def _blend(
    plan: Any, selection: Selection, candidates: dict[str, Candidate], allowed: tuple[str, ...], metric: str
) -> Blend | None:
    """The winner combined with the best naive baseline (blend.py), or None.

    None when a naive baseline itself won, when ``--models`` leaves that baseline out, or when
    the combination would be worse on CV than the naive baseline alone (the winner, which
    qualified against it, then ships alone).
    """
    winner, naive = selection.family, selection.naive_family
    if winner is None or winner in NAIVE or naive is None or naive not in allowed:
        return None
    model, baseline = candidates.get(winner), candidates.get(naive)
    if model is None or baseline is None or not model.ok or not baseline.ok:
        return None
    weight = naive_weight(plan, model, baseline)
    if weight <= 0:
        return None
    mix = combined(plan, model, baseline, weight, metric)
    if not mix.ok or selection.naive_error is None or float(mix.error or 0) > selection.naive_error:
        return None
    return Blend(naive, weight, mix, model.error)


def _ship_order(
    family: str, selection: Selection, candidates: dict[str, Candidate], allowed: tuple[str, ...]
) -> list[str]:
    """The winner first, then the other qualifying models by CV error, then the best naive baselines."""
    ranked = sorted(
        (k for k, c in candidates.items() if c.ok and k in allowed), key=lambda k: float(candidates[k].error or 0)
    )
    qualified = [k for k in selection.qualified if k in ranked]
    naive = [k for k in ranked if k in NAIVE]
    order = [family, *qualified, *naive, *ranked]
    return list(dict.fromkeys(order))


def _tune_prophet(
    plan: Any,
    cfg: TrainConfig,
    budget: int,
    warm_params: dict[str, Any] | None,
    structure: Any,
    on_trial: Callable[[int, int], None] | None,
) -> Any:
    from forecast_trainer.tune import tune

    return tune(
        plan.frame,
        frequency=cfg.frequency,
        horizon=plan.horizon,
        folds=cfg.folds,
        metric=cfg.metric,
        budget=budget,
        margin=cfg.improvement_margin,
        seed=cfg.tuning_seed,
        structure=structure,
        timeout=cfg.timeout_seconds,
        warm_params=warm_params,
        on_trial=on_trial,
        fold_list=plan.folds,
        fold_closed=plan.fold_closed,
    )


def _no_tuning() -> Any:
    from forecast_trainer.tune import TuneResult

    return TuneResult(
        params={}, tuned=False, error=None, default_error=None, seasonal_naive_error=None, last_value_error=None
    )


def _fallback(allowed: tuple[str, ...]) -> str:
    """Without any CV score (history too short): Prophet's defaults, else the first allowed family."""
    if PROPHET in allowed:
        return PROPHET
    return next((f for f in allowed if f != ENSEMBLE), SEASONAL_NAIVE)


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def metrics_document(
    cfg: TrainConfig, prepared: Prepared, trained: Trained, warm_model_id: int | None, warm_family: str | None = None
) -> dict[str, Any]:
    """What goes into forecast_models.metrics (and metrics.json)."""
    t = trained.tuning
    s = trained.selection
    naive = {k: trained.candidates[k].error if k in trained.candidates else None for k in NAIVE}
    shipped = trained.blend.candidate if trained.blend is not None else trained.candidates.get(trained.family)
    return {
        "metric": cfg.metric,
        "family": trained.family,
        "cv": {
            "error": s.error if s else None,
            "default_error": t.default_error,
            "prophet_error": t.error,
            "seasonal_naive_error": naive[SEASONAL_NAIVE],
            "last_value_error": naive[NAIVE[1]],
            "best_naive_error": s.naive_error if s else None,
            "fold_errors": shipped.fold_errors if shipped is not None else [],
            "folds": len(trained.candidates[SEASONAL_NAIVE].fold_errors) if SEASONAL_NAIVE in trained.candidates else 0,
            "horizon_periods": trained.horizon,
        },
        "beats_baseline": s.beats_baseline if s else None,
        "beats_naive": s.beats_naive if s else None,
        "selection": {
            "family": trained.family,
            "reason": s.reason if s else None,
            "margin": cfg.improvement_margin,
            "best_naive": s.naive_family if s else None,
            "qualified": s.qualified if s else [],
            "blend": trained.blend.as_dict() if trained.blend is not None else None,
            "last_winner": warm_family,
            "allowed": list(candidate_families(tuple(getattr(cfg, "models", FAMILIES)), trained.product_class)),
        },
        "candidates": {k: c.summary() for k, c in trained.candidates.items()},
        "closed_days": trained.closed.as_dict() if trained.closed is not None else None,
        "uncertainty": trained.uncertainty.as_dict() if trained.uncertainty is not None else None,
        "intervals": _interval_summary(trained.model_json),
        "tuning": {
            "tuned": t.tuned,
            "params": t.params,
            "trials": t.trials,
            "completed": t.completed,
            "pruned": t.pruned,
            "failed": t.failed,
            "timed_out": t.timed_out,
            "stopped_early": t.stopped_early,
            "improvement_margin": cfg.improvement_margin,
            "best_trial_params": t.best_trial_params,
            "best_trial_error": t.best_trial_error,
            "warm_start": {"used": t.warm_started, "model_id": warm_model_id},
            "first_trial_params": t.first_trial_params,
            "seed": cfg.tuning_seed,
        },
        "class": {
            "name": trained.product_class.name,
            "per_day": trained.product_class.per_day,
            "adi": trained.product_class.adi,
            "zero_share": trained.product_class.zero_share,
        },
        "structure": trained.structure.as_dict(),
        "data": {
            "observed_points": prepared.observed,
            "periods": len(prepared.frame),
            "first": str(prepared.frame["ds"].iloc[0].date()),
            "last": str(prepared.frame["ds"].iloc[-1].date()),
            "frequency": cfg.frequency,
            "fill_missing": cfg.fill_missing,
        },
        "warnings": prepared.warnings + trained.warnings,
    }


def _interval_summary(model_json: str) -> dict[str, Any] | None:
    """Levels, quantiles and the calibration's size from the stored model (metrics.json)."""
    import json

    doc = json.loads(model_json)
    calibration = doc.get("calibration") or {}
    return {
        "levels": doc.get("levels"),
        "quantiles": doc.get("quantiles"),
        "method": calibration.get("method", "family's own interval"),
        "residuals": calibration.get("residuals", 0),
    }
