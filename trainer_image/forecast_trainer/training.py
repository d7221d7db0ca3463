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
6. The winner is fitted on the full history and forecasts the horizon (forecaster.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer.candidates import Candidate, combine, from_folds, score_family
from forecast_trainer.config import TrainConfig
from forecast_trainer.errors import TrainingFailed, one_line
from forecast_trainer.families import (
    ENSEMBLE,
    FAMILIES,
    INTERMITTENT,
    NAIVE,
    PROPHET,
    SEASONAL_NAIVE,
)
from forecast_trainer.selection import Selection, select
from forecast_trainer.validate import Prepared


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

    @property
    def seasonal_naive_error(self) -> float | None:
        c = self.candidates.get(SEASONAL_NAIVE)
        return c.error if c is not None and c.ok else None


def candidate_families(models: tuple[str, ...], product_class: Any) -> tuple[str, ...]:
    """The families that compete for this product (Croston-type only for intermittent ones)."""
    intermittent = getattr(product_class, "name", None) == "intermittent"
    return tuple(f for f in models if intermittent or f not in INTERMITTENT)


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
    from forecast_trainer import model as models
    from forecast_trainer.cv import plan_folds
    from forecast_trainer.forecaster import ship

    frame = prepared.frame
    horizon = models.horizon_periods(cfg.horizon_days, cfg.frequency)
    structure = models.structure_for(frame["ds"], cfg.frequency, cfg.country_holidays)
    allowed = candidate_families(tuple(getattr(cfg, "models", FAMILIES)), product_class)
    warnings: list[str] = []

    # 1. Folds and closed days, shared by every family.
    plan = plan_folds(frame, cfg.frequency, horizon, cfg.folds, cfg.country_holidays)
    # 2. Plain-series families; the naive baselines always.
    plain = [f for f in FAMILIES if f in NAIVE or (f in allowed and f not in (PROPHET, ENSEMBLE))]
    candidates = {name: score_family(plan, name, cfg.metric) for name in plain}
    # 3. Prophet, tuned on the same folds.
    tuning = _tune_prophet(plan, cfg, budget, warm_params, structure, on_trial) if PROPHET in allowed else None
    if tuning is not None:
        candidates[PROPHET] = from_folds(
            plan,
            PROPHET,
            cfg.metric,
            tuning.fold_predictions,
            spec=models.effective_params(tuning.params),
            seconds=tuning.seconds,
        )
        warnings.extend(tuning.warnings)
    # 4. The combination of the best few.
    if ENSEMBLE in allowed:
        candidates[ENSEMBLE] = combine(plan, {k: v for k, v in candidates.items() if k in allowed}, cfg.metric)
    # 5. Selection.
    selection = select({k: c.error for k, c in candidates.items()}, allowed, cfg.improvement_margin, warm_family)
    family = selection.family or _fallback(allowed)
    if selection.family is None:
        warnings.append(f"no candidate could be scored on CV; {family} fitted without a CV check")
    elif selection.beats_baseline is False:
        warnings.append(
            f"a naive baseline beats the shipped model on CV ({selection.naive_family} "
            f"{_short(selection.naive_error)}, {family} {_short(selection.error)}); --models allows no naive baseline"
        )
    failed = sorted(k for k, c in candidates.items() if not c.ok and plan.folds and k != ENSEMBLE)
    if failed:
        warnings.append(f"candidate(s) failed on CV: {', '.join(failed)}")
    # 6. Fit the winner on the full history and forecast (the next best if it cannot be fitted).
    shipped = None
    for choice in _ship_order(family, selection, candidates, allowed):
        try:
            shipped = ship(
                plan,
                choice,
                candidates,
                tuning.params if tuning is not None else None,
                structure,
                horizon,
                fitted=bool(cfg.output_dir),
            )
        except Exception as exc:  # a family whose final fit fails gives way to the next best
            warnings.append(f"{choice} failed to fit the full history ({one_line(str(exc), 120)}); next best used")
            continue
        family = choice
        break
    if shipped is None:
        raise TrainingFailed("no candidate model could be fitted on the full history")
    return Trained(
        params={"family": family, **shipped.spec},
        tuning=tuning if tuning is not None else _no_tuning(),
        product_class=product_class,
        structure=structure,
        model_json=shipped.model_json,
        checksum=shipped.checksum,
        forecast=shipped.forecast,
        fitted=shipped.fitted,
        horizon=horizon,
        family=family,
        selection=selection,
        candidates=candidates,
        closed=plan.closed,
        warnings=warnings,
    )


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
    shipped = trained.candidates.get(trained.family)
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
            "last_winner": warm_family,
            "allowed": list(candidate_families(tuple(getattr(cfg, "models", FAMILIES)), trained.product_class)),
        },
        "candidates": {k: c.summary() for k, c in trained.candidates.items()},
        "closed_days": trained.closed.as_dict() if trained.closed is not None else None,
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
