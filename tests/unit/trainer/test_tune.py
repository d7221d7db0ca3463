from __future__ import annotations

import pandas as pd
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import model as models
from forecast_trainer.tune import Fold, clip_to_space, make_folds, tune

COMMON = {"frequency": "D", "horizon": 14, "metric": "smape", "margin": 0.02, "seed": 42}


def run(frame: pd.DataFrame, **kwargs):
    structure = models.structure_for(frame["ds"], "D")
    options = {**COMMON, "folds": 2, "budget": 4, "structure": structure, **kwargs}
    return tune(frame, **options)


def test_folds_are_the_last_windows_most_recent_first() -> None:
    assert make_folds(100, 10, 3, 30) == [Fold(90, 100), Fold(80, 90), Fold(70, 80)]
    assert make_folds(50, 10, 3, 30) == [Fold(40, 50), Fold(30, 40)]
    assert make_folds(35, 10, 3, 30) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tuned_is_never_worse_than_defaults_on_cv(seed: int) -> None:
    frame = daily_frame(160, seed=seed, level=20 + 10 * seed)
    result = run(frame, budget=5)
    assert result.default_error is not None and result.error is not None
    assert result.error <= result.default_error
    if result.tuned:
        assert result.error <= result.default_error * (1 - 0.02)
        assert result.params == result.best_trial_params
    else:
        assert result.params == {}
    assert result.trials == 5 and result.completed + result.pruned + result.failed == 5
    assert result.seasonal_naive_error is not None and result.last_value_error is not None
    assert result.beats_baseline == (result.error <= min(result.seasonal_naive_error, result.last_value_error))


def test_margin_keeps_defaults_unless_clearly_better() -> None:
    frame = daily_frame(160, seed=9)
    result = run(frame, budget=4, margin=0.9)  # nothing beats the defaults by 90 %
    assert not result.tuned and result.error == result.default_error and result.params == {}


def test_warm_start_is_the_first_trial() -> None:
    frame = daily_frame(160, seed=4)
    warm = {
        "changepoint_prior_scale": 0.2,
        "seasonality_prior_scale": 3.0,
        "seasonality_mode": "multiplicative",
        "changepoint_range": 0.93,
        "unknown": 1,
    }
    result = run(frame, budget=2, warm_params=warm)
    assert result.warm_started
    assert result.first_trial_params == {k: v for k, v in warm.items() if k != "unknown"}


def test_warm_start_params_are_clipped_into_the_search_space() -> None:
    structure = models.Structure(yearly=False, weekly=True)
    clipped = clip_to_space(
        {"changepoint_prior_scale": 5.0, "changepoint_range": 0.5, "seasonality_mode": "x"}, structure
    )
    assert clipped == {"changepoint_prior_scale": 0.5, "changepoint_range": 0.8}


def test_zero_trials_means_defaults_only_but_still_scores() -> None:
    result = run(daily_frame(120, seed=5), budget=0)
    assert result.trials == 0 and not result.tuned and result.params == {}
    assert result.error == result.default_error is not None and result.folds == 2


def test_timeout_bounds_tuning() -> None:
    result = run(daily_frame(120, seed=6), budget=50, timeout=0.01)
    assert result.timed_out and result.trials < 50
    assert any("timeout" in w or "timed out" in w for w in result.warnings)


def test_too_short_for_cv_uses_defaults_with_a_warning() -> None:
    result = run(daily_frame(40, seed=7), horizon=30)
    assert result.folds == 0 and result.error is None and not result.tuned
    assert "too short for cross-validation" in result.warnings[0]


def test_same_seed_same_search() -> None:
    frame = daily_frame(120, seed=8)
    a, b = run(frame, budget=3), run(frame, budget=3)
    assert a.first_trial_params == b.first_trial_params and a.error == b.error


@pytest.mark.parametrize(("budget", "trials"), [(30, 10), (25, 10), (20, 10), (15, 8), (6, 6)])
def test_a_study_without_progress_stops_after_the_startup_and_patience(budget: int, trials: int) -> None:
    """Issues 19/20: 8 random startup trials and a patience of 10 ran 18 trials (~34 Prophet fits,
    three quarters of a product's CPU) on products where nothing beat Prophet's defaults."""
    import optuna

    from forecast_trainer.tune import TuneResult, _patience, _Search

    search = _Search(budget, 0.02, 42, models.Structure(yearly=False, weekly=True), [], None, [1.0], 1.0, None)  # type: ignore[arg-type]
    result = TuneResult(
        params={}, tuned=False, error=1.0, default_error=1.0, seasonal_naive_error=None, last_value_error=None
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(
        lambda trial: 1.0 + trial.suggest_float("x", 0.0, 1.0), n_trials=budget, callbacks=[_patience(search, result)]
    )
    assert len(study.trials) == trials
    assert result.stopped_early == (trials < budget)
