from __future__ import annotations

import math

import numpy as np
import pytest

from forecast_trainer.classify import BUDGETS, classify, trial_budget
from forecast_trainer.scoring import last_value, mae, mape, rmse, score, seasonal_naive, smape


@pytest.mark.parametrize(
    ("values", "frequency", "expected"),
    [
        ([50.0, 60.0, 40.0] * 20, "D", "high"),
        ([5.0, 6.0, 4.0] * 20, "D", "medium"),
        ([1.0, 2.0, 1.0] * 20, "D", "low"),
        ([0.0, 0.0, 3.0, 1.0] * 20, "D", "intermittent"),
        ([70.0, 80.0] * 30, "W", "medium"),  # 75 / week ~ 10.7 per day
        ([700.0, 800.0] * 30, "W", "high"),
        ([20.0, 30.0] * 30, "MS", "low"),
    ],
)
def test_classes(values: list[float], frequency: str, expected: str) -> None:
    assert classify(np.array(values), frequency).name == expected


def test_budgets_and_explicit_trials() -> None:
    assert BUDGETS == {"high": 30, "medium": 25, "low": 20, "intermittent": 15}
    high = classify(np.array([50.0] * 10 + [40.0] * 10), "D")
    assert trial_budget(high, None) == 30
    assert trial_budget(high, 0) == 0
    assert trial_budget(high, 7) == 7


def test_gaps_do_not_count() -> None:
    values = np.array([50.0, np.nan, 60.0, 55.0] * 10)
    assert classify(values, "D").zero_share == 0.0


def test_metrics() -> None:
    y, yhat = [10.0, 20.0, 0.0, np.nan], [12.0, 15.0, 0.0, 5.0]
    assert smape(y, yhat) == pytest.approx(100 * (2 * 2 / 22 + 2 * 5 / 35 + 0) / 3)
    assert mape(y, yhat) == pytest.approx(100 * (0.2 + 0.25) / 2)
    assert mae(y, yhat) == pytest.approx(7 / 3)
    assert rmse(y, yhat) == pytest.approx(math.sqrt((4 + 25) / 3))
    assert math.isnan(mape([0.0, 0.0], [1.0, 2.0]))
    assert score("smape", [1.0], [1.0]) == 0.0


def test_baselines() -> None:
    history = np.arange(1.0, 15.0)  # 1..14
    assert seasonal_naive(history, 10, 7).tolist() == [8, 9, 10, 11, 12, 13, 14, 8, 9, 10]
    assert seasonal_naive(history[:3], 4, 7).tolist() == [3, 3, 3, 3]  # too short: last value
    assert last_value(np.array([1.0, 2.0, np.nan]), 2).tolist() == [2.0, 2.0]
    assert seasonal_naive(np.array([1.0, np.nan, 3.0]), 3, 3).tolist() == [1.0, 1.0, 3.0]
