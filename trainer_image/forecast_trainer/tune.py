"""Hyper-parameter tuning: Optuna TPE over Prophet's priors, scored by rolling-origin CV.

- Folds: the last ``folds`` windows of ``horizon`` periods, most recent first; each is
  forecast from the history before it (capped at a few years for speed).
- Prophet's defaults, the seasonal-naive and the last-value baselines are scored on the same
  folds. The defaults enter the study as a finished trial, so TPE and the pruner know them.
- Warm start: the product's last best parameters are enqueued as the first trial.
- Each trial reports its running mean after every fold; the percentile pruner stops trials
  that are not in the best third after a fold (most trials lose on the first fold).
- The study stops early when PATIENCE trials in a row found nothing better (the budget is a
  maximum): on series where Prophet's defaults are already good, more trials only fit noise.
- Selection: the best trial is kept only if its CV error beats the defaults' by the
  improvement margin (relative); otherwise the defaults stay. So the chosen model is never
  worse than the defaults on CV, and chance wins on noisy series do not displace them.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import numpy as np

from forecast_trainer import model as models
from forecast_trainer.scoring import SEASON, finite_or_inf, last_value, score, seasonal_naive

P = ParamSpec("P")

# Most history a CV fold trains on, in periods (the final model always uses all of it). Two
# years of days keep the yearly seasonality identifiable (Prophet's own threshold) and halve
# Stan's time per fit against three years; coarser series are cheap to fit in full.
MAX_CV_HISTORY = {"D": 730, "W": 10 * 52, "MS": 50 * 12}
SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "changepoint_prior_scale": (0.001, 0.5),
    "seasonality_prior_scale": (0.01, 10.0),
    "holidays_prior_scale": (0.01, 10.0),
    "changepoint_range": (0.8, 0.95),
}
MODES = ("additive", "multiplicative")
# Stop after this many trials in a row without a better CV error (after the random startup).
# Issue 19/20: with 10 (and 8 random startup trials) a 3-year daily product ran 18-30 trials,
# about 34 Prophet fits and three quarters of its CPU; 5 and 5 halve the fits (bench/real_data_bench.py).
PATIENCE = 5
MAX_STARTUP = 5
MIN_GAIN = 0.001  # "better" = at least 0.1 % lower than the best so far


@dataclass(frozen=True)
class Fold:
    train_end: int  # index of the first test point
    test_end: int  # one past the last test point


def make_folds(n: int, horizon: int, folds: int, min_train: int) -> list[Fold]:
    """Up to ``folds`` consecutive test windows of ``horizon`` at the end, most recent first."""
    out: list[Fold] = []
    for i in range(folds):
        test_end = n - i * horizon
        train_end = test_end - horizon
        if train_end < min_train:
            break
        out.append(Fold(train_end, test_end))
    return out


@dataclass
class TuneResult:
    params: dict[str, Any]  # chosen tunable params ({} = Prophet defaults)
    tuned: bool
    error: float | None
    default_error: float | None
    seasonal_naive_error: float | None
    last_value_error: float | None
    fold_errors: list[float] = field(default_factory=list)
    folds: int = 0
    trials: int = 0
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    best_trial_params: dict[str, Any] | None = None
    best_trial_error: float | None = None
    warm_started: bool = False
    first_trial_params: dict[str, Any] | None = None
    timed_out: bool = False
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)
    fold_predictions: list[Any] | None = None  # the chosen parameters' forecast of every fold
    seconds: float = 0.0

    @property
    def baseline_error(self) -> float | None:
        return self.seasonal_naive_error

    @property
    def beats_baseline(self) -> bool | None:
        if self.error is None:
            return None
        best_baseline = min(finite_or_inf(self.seasonal_naive_error), finite_or_inf(self.last_value_error))
        return finite_or_inf(self.error) <= best_baseline


class CrossValidator:
    """Scores parameter sets on fixed rolling-origin folds of one product.

    ``fold_closed`` (one closed-days set per fold, see closed_days.py): closed days are missing
    values in the fold's training data and forecast as 0 in its test window. Every fold's
    forecast is kept per parameter set (``predictions``) for combinations and intervals.
    """

    def __init__(
        self,
        frame: Any,
        folds: list[Fold],
        structure: models.Structure,
        metric: str,
        frequency: str,
        fold_closed: list[Any] | None = None,
    ) -> None:
        self.frame = frame.reset_index(drop=True)
        self.folds = folds
        self.structure = structure
        self.metric = metric
        self.frequency = frequency
        self.max_history = MAX_CV_HISTORY[frequency]
        self.y = self.frame["y"].to_numpy(dtype=float)
        self.feature_cache: dict[tuple[Any, ...], Any] = {}
        self.inits: dict[int, dict[str, Any]] = {}
        self.fold_closed = fold_closed or [None] * len(folds)
        self.predictions: dict[str, dict[int, np.ndarray]] = {}

    def _train(self, index: int) -> Any:
        fold = self.folds[index]
        start = max(0, fold.train_end - self.max_history)
        train = self.frame.iloc[start : fold.train_end]
        closed = self.fold_closed[index]
        if closed:
            train = train.copy()
            train.loc[closed.mask(train["ds"]), "y"] = np.nan
        return train

    def fold_error(self, params: dict[str, Any] | None, index: int) -> float:
        fold = self.folds[index]
        fitted = models.fit(
            self._train(index),
            params,
            self.structure,
            feature_cache=self.feature_cache,
            init=self.inits.get(index),
            algorithm="LBFGS",
        )
        if index not in self.inits:
            # Later trials on this fold start Stan from this solution: same optimum, fewer steps.
            self.inits[index] = models.stan_init(fitted)
        test = self.frame.iloc[fold.train_end : fold.test_end]
        yhat = models.predict_yhat(fitted, test["ds"])
        closed = self.fold_closed[index]
        if closed:
            yhat[closed.mask(test["ds"])] = 0.0
        self.predictions.setdefault(params_key(params), {})[index] = yhat
        return score(self.metric, test["y"].to_numpy(dtype=float), yhat)

    def errors(self, params: dict[str, Any] | None) -> list[float]:
        return [self.fold_error(params, i) for i in range(len(self.folds))]

    def fold_predictions(self, params: dict[str, Any] | None) -> list[np.ndarray] | None:
        """Every fold's forecast of ``params``, or None when some fold was not run (pruned)."""
        got = self.predictions.get(params_key(params), {})
        return [got[i] for i in range(len(self.folds))] if len(got) == len(self.folds) else None

    def baseline_errors(self) -> tuple[float, float]:
        season = SEASON[self.frequency]
        naive, last = [], []
        for fold in self.folds:
            history = self.y[max(0, fold.train_end - self.max_history) : fold.train_end]
            actual = self.y[fold.train_end : fold.test_end]
            naive.append(score(self.metric, actual, seasonal_naive(history, len(actual), season)))
            last.append(score(self.metric, actual, last_value(history, len(actual))))
        return _mean(naive), _mean(last)


def params_key(params: dict[str, Any] | None) -> str:
    """A stable key for a parameter set (None and {} are Prophet's defaults)."""
    return json.dumps(params or {}, sort_keys=True, default=str)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _distributions(structure: models.Structure) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out: dict[str, Any] = {}
    for name, (low, high) in SEARCH_SPACE.items():
        if name == "holidays_prior_scale" and not structure.country_holidays:
            continue
        out[name] = FloatDistribution(low, high, log=name != "changepoint_range")
    out["seasonality_mode"] = CategoricalDistribution(MODES)
    return out


def clip_to_space(params: dict[str, Any], structure: models.Structure) -> dict[str, Any]:
    """Keep only searchable keys, clipped into their ranges (for warm starts from older runs)."""
    out: dict[str, Any] = {}
    for name in _distributions(structure):
        value = params.get(name)
        if name == "seasonality_mode":
            if value in MODES:
                out[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            low, high = SEARCH_SPACE[name]
            out[name] = min(high, max(low, float(value)))
    return out


def _suggest(trial: Any, structure: models.Structure) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dist in _distributions(structure).items():
        if name == "seasonality_mode":
            params[name] = trial.suggest_categorical(name, list(MODES))
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return params


def _timed(fn: Callable[P, TuneResult]) -> Callable[P, TuneResult]:
    """Record the wall seconds of a tuning in its result, whichever way it returns."""

    @functools.wraps(fn)
    def timed(*args: P.args, **kwargs: P.kwargs) -> TuneResult:
        started = time.monotonic()
        result = fn(*args, **kwargs)
        result.seconds = time.monotonic() - started
        return result

    return timed


@dataclass(frozen=True)
class _Search:
    """What one tuning's steps share: the budget and stopping rules, the CV, the defaults' score."""

    budget: int
    margin: float
    seed: int
    structure: models.Structure
    fold_list: list[Fold]
    cv: CrossValidator
    default_folds: list[float]
    default_error: float
    on_trial: Callable[[int, int], None] | None

    @property
    def startup(self) -> int:
        """Random trials before TPE models the search space (also the pruner's and patience's start)."""
        return min(MAX_STARTUP, max(3, self.budget // 4))


@_timed
def tune(
    frame: Any,
    *,
    frequency: str,
    horizon: int,
    folds: int,
    metric: str,
    budget: int,
    margin: float,
    seed: int,
    structure: models.Structure,
    timeout: float | None = None,
    warm_params: dict[str, Any] | None = None,
    min_train: int = 30,
    on_trial: Callable[[int, int], None] | None = None,
    fold_list: list[Fold] | None = None,
    fold_closed: list[Any] | None = None,
) -> TuneResult:
    """Choose Prophet parameters for ``frame`` (regular ds, y); see the module doc.

    ``fold_list``/``fold_closed`` (from cv.plan_folds) score on folds shared with the other
    families, with each fold's closed days; by default the folds are made here.
    """
    started = time.monotonic()
    # 1. Folds (shared with the other families when given).
    if fold_list is None:
        fold_list = make_folds(len(frame), horizon, folds, max(min_train, SEASON[frequency]))
    if not fold_list:
        return _too_short(horizon)
    # 2. The baselines and Prophet's defaults on those folds: the result when nothing beats them.
    cv = CrossValidator(frame, fold_list, structure, metric, frequency, fold_closed)
    result, default_folds = _score_defaults(cv, folds)
    if budget <= 0:
        return result
    # 3. The search: Optuna with the defaults as a finished trial and the warm start first.
    remaining = None if timeout is None else timeout - (time.monotonic() - started)
    if remaining is not None and remaining <= 0:
        return _timed_out_before_start(result)
    search = _Search(budget, margin, seed, structure, fold_list, cv, default_folds, _mean(default_folds), on_trial)
    study = _study(search, result, warm_params)
    study.optimize(
        _objective(search),
        n_trials=budget,
        timeout=remaining,
        catch=(Exception,),
        callbacks=[_patience(search, result)],
    )
    # 4. Count the trials, then keep the best only if it beats the defaults by the margin.
    _count_trials(study, search, result)
    _keep_best_if_better(study, search, result)
    return result


def _too_short(horizon: int) -> TuneResult:
    return TuneResult(
        params={},
        tuned=False,
        error=None,
        default_error=None,
        seasonal_naive_error=None,
        last_value_error=None,
        warnings=[f"history too short for cross-validation with a {horizon}-period horizon; Prophet defaults used"],
    )


def _score_defaults(cv: CrossValidator, folds: int) -> tuple[TuneResult, list[float]]:
    """The result with Prophet's defaults (and the baselines' CV errors), and the defaults' fold errors."""
    naive_error, last_error = cv.baseline_errors()
    default_folds = cv.errors(None)
    default_error = _mean(default_folds)
    result = TuneResult(
        params={},
        tuned=False,
        error=_clean(default_error),
        default_error=_clean(default_error),
        seasonal_naive_error=_clean(naive_error),
        last_value_error=_clean(last_error),
        fold_errors=[float(e) for e in default_folds],
        folds=len(cv.folds),
        fold_predictions=cv.fold_predictions(None),
    )
    if len(cv.folds) < folds:
        result.warnings.append(f"history allows only {len(cv.folds)} of {folds} CV folds")
    return result, default_folds


def _timed_out_before_start(result: TuneResult) -> TuneResult:
    result.timed_out = True
    result.warnings.append("tuning timed out before the first trial; Prophet defaults used")
    return result


def _study(search: _Search, result: TuneResult, warm_params: dict[str, Any] | None) -> Any:
    """A TPE study that knows the defaults' score (a finished trial) and tries the warm start first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup, multivariate=True),
        pruner=optuna.pruners.PercentilePruner(33.0, n_startup_trials=3, n_warmup_steps=0),
    )
    defaults = clip_to_space(models.DEFAULT_PARAMS, search.structure)
    running = np.cumsum(search.default_folds) / np.arange(1, len(search.default_folds) + 1)
    study.add_trial(
        optuna.trial.create_trial(
            params=defaults,
            distributions=_distributions(search.structure),
            value=finite_or_inf(search.default_error),
            intermediate_values={i: finite_or_inf(float(v)) for i, v in enumerate(running)},
            user_attrs={"defaults": True},
        )
    )
    if warm_params:
        start = clip_to_space(warm_params, search.structure)
        if start and start != defaults:
            study.enqueue_trial(start, user_attrs={"warm_start": True})
            result.warm_started = True
    return study


def _objective(search: _Search) -> Callable[[Any], float]:
    """A trial's mean CV error, reported after every fold so the pruner can stop it early."""
    import optuna

    def objective(trial: Any) -> float:
        params = _suggest(trial, search.structure)
        errors: list[float] = []
        for index in range(len(search.fold_list)):
            errors.append(finite_or_inf(search.cv.fold_error(params, index)))
            trial.report(sum(errors) / len(errors), index)
            if index + 1 < len(search.fold_list) and trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("fold_errors", errors)
        return sum(errors) / len(errors)

    return objective


def _patience(search: _Search, result: TuneResult) -> Callable[[Any, Any], None]:
    """A study callback: progress, and stop after PATIENCE trials in a row without a better error."""
    import optuna

    done, best_so_far, since_best = 0, finite_or_inf(search.default_error), 0

    def callback(study: Any, trial: Any) -> None:
        nonlocal done, best_so_far, since_best
        done += 1
        if search.on_trial is not None:
            search.on_trial(done, search.budget)
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        if value is not None and value < best_so_far * (1 - MIN_GAIN):
            best_so_far, since_best = value, 0
        else:
            since_best += 1
        if done >= search.startup + PATIENCE and since_best >= PATIENCE:
            result.stopped_early = True
            study.stop()

    return callback


def _own_trials(study: Any) -> list[Any]:
    return [t for t in study.trials if not t.user_attrs.get("defaults")]


def _complete(trials: list[Any]) -> list[Any]:
    import optuna

    done = optuna.trial.TrialState.COMPLETE
    return [t for t in trials if t.state == done and t.value is not None and math.isfinite(t.value)]


def _count_trials(study: Any, search: _Search, result: TuneResult) -> None:
    """Trial counts, the first trial's parameters and the warnings about timeouts and failures."""
    import optuna

    own = _own_trials(study)
    states = optuna.trial.TrialState
    result.trials = len(own)
    result.completed = len(_complete(own))
    result.pruned = sum(1 for t in own if t.state == states.PRUNED)
    result.failed = sum(1 for t in own if t.state == states.FAIL)
    if own:
        result.first_trial_params = dict(own[0].params)
    if len(own) < search.budget and not result.stopped_early:
        result.timed_out = True
        result.warnings.append(f"tuning stopped by the timeout after {len(own)} of {search.budget} trials")
    if result.failed:
        result.warnings.append(f"{result.failed} trial(s) failed to fit")


def _keep_best_if_better(study: Any, search: _Search, result: TuneResult) -> None:
    """The best trial replaces the defaults only when it beats them on CV by the margin."""
    complete = _complete(_own_trials(study))
    if not complete:
        return
    best = min(complete, key=lambda t: float(t.value or math.inf))
    result.best_trial_params = dict(best.params)
    result.best_trial_error = float(best.value or math.inf)
    default_error = finite_or_inf(search.default_error)
    if default_error > 0 and result.best_trial_error <= default_error * (1 - search.margin):
        result.params = dict(best.params)
        result.tuned = True
        result.error = _clean(result.best_trial_error)
        result.fold_errors = [float(v) for v in best.user_attrs.get("fold_errors", [])]
        result.fold_predictions = search.cv.fold_predictions(result.params)
