"""Replay the naive-blend weight rule offline on a real_data_bench run (prints a table; not a test).

The trainer ships its winner combined with the best naive baseline (trainer_image/forecast_trainer/
blend.py: ``naive_weight = mse_model / (mse_model + mse_naive)``, Bates & Granger's weights for
uncorrelated errors). This asks what other weights would have scored on the hidden horizon,
without training again: from a run with ``BENCH_CANDIDATES=1`` (every candidate's fold forecasts
and the folds' actuals are dumped), the model's own forecast is recovered from the shipped one
(``(yhat - w * naive) / (1 - w)``; the naive baseline's forecast is recomputed from the history)
and recombined with each rule's weight:

  shipped            what the trainer shipped
  replayed           the trainer's rule recomputed (must equal ``shipped``: checks the replay)
  model alone        weight 0
  half               half the trainer's weight
  covariance         Bates & Granger's weight with the errors' covariance, clipped to [0, 1]:
                     ``(mse_m - c) / (mse_m + mse_n - 2 c)``, ``c`` = mean(e_m * e_n)

Daily series only (a weekly season of 7 for the seasonal-naive baseline). Per set (tuning,
held-out, fresh): median and mean sMAPE and the share worse than seasonal-naive.

  BENCH_CANDIDATES=1 .venv/bin/python bench/real_data_bench.py --groups all \\
      --methods trainer,seasonal-naive --out /tmp/rdb
  .venv/bin/python bench/blend_replay.py /tmp/rdb
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from real_data_bench import FRESH, HOLDOUT, REPO, TUNING, smape

sys.path.insert(0, str(REPO / "trainer_image"))
from forecast_trainer.families.naive import LastValue, SeasonalNaive

HORIZON = 30
SEASON = 7
Rule = Callable[[np.ndarray, np.ndarray, float], float]


def simple_weight(em: np.ndarray, en: np.ndarray) -> float:
    a, b = float(np.mean(em**2)), float(np.mean(en**2))
    return a / (a + b) if a + b > 0 else 0.0


def covariance_weight(em: np.ndarray, en: np.ndarray) -> float:
    a, b, c = float(np.mean(em**2)), float(np.mean(en**2)), float(np.mean(em * en))
    den = a + b - 2 * c
    return float(np.clip((a - c) / den, 0.0, 1.0)) if den > 0 else 0.0


RULES: dict[str, Rule | None] = {
    "shipped": None,
    "replayed": lambda em, en, w: simple_weight(em, en),
    "model alone": lambda em, en, w: 0.0,
    "half": lambda em, en, w: 0.5 * simple_weight(em, en),
    "covariance": lambda em, en, w: covariance_weight(em, en),
}


def naive_forecast(history: np.ndarray, family: str) -> np.ndarray:
    """The trainer's own naive baseline fitted on the history (families/naive.py)."""
    baseline = SeasonalNaive() if family == SeasonalNaive.name else LastValue()
    return np.asarray(baseline.fit(history, SEASON).predict(HORIZON).mean, dtype=float)


def fold_errors(info: dict[str, Any], family: str) -> np.ndarray:
    pairs = zip(info["fold_actuals"], info["fold_predictions"][family], strict=True)
    return np.concatenate([np.asarray(a, float) - np.asarray(p, float)[: len(a)] for a, p in pairs])


def replay(info: dict[str, Any], values: np.ndarray, rule: Rule | None) -> tuple[np.ndarray, float]:
    """The forecast under ``rule`` and its naive weight."""
    yhat = np.asarray(info["yhat"], float)[:HORIZON]
    weight = float(info.get("naive_weight") or 0.0)
    family, naive = str(info["family"]), str(info.get("naive_family"))
    dumped = info.get("fold_predictions", {})
    if rule is None or weight <= 0 or family not in dumped or naive not in dumped:
        return yhat, weight
    history = values[:-HORIZON]
    naive_yhat = naive_forecast(history, naive)
    model = (yhat - weight * naive_yhat) / (1 - weight)
    em, en = fold_errors(info, family), fold_errors(info, naive)
    keep = np.isfinite(em) & np.isfinite(en)
    new_weight = rule(em[keep], en[keep], weight)
    out = np.clip((1 - new_weight) * model + new_weight * naive_yhat, 0.0, None)
    out[yhat == 0] = 0.0  # closed days
    return out, new_weight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the --out folder of a BENCH_CANDIDATES=1 real_data_bench run")
    args = parser.parse_args()
    series = {s["key"]: s for s in json.loads((args.out / "series.json").read_text())}
    trainer = json.loads((args.out / "trainer.json").read_text())["series"]
    snaive = json.loads((args.out / "seasonal-naive.json").read_text())["series"]
    sets = {"tuning": TUNING, "held-out": HOLDOUT, "fresh": FRESH}
    print("| set | rule | series | median sMAPE | mean sMAPE | worse than s-naive | by > 10 % | mean naive weight |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, groups in sets.items():
        keys = [k for k in trainer if series[k]["group"] in groups and series[k]["frequency"] == "D"]
        if not keys:
            continue
        for rule_name, rule in RULES.items():
            errors, naive_errors, weights = [], [], []
            for key in keys:
                values = np.asarray(series[key]["values"], float)
                actual = values[-HORIZON:]
                forecast, weight = replay(trainer[key], values, rule)
                errors.append(smape(actual, forecast))
                naive_errors.append(smape(actual, np.asarray(snaive[key]["yhat"], float)[:HORIZON]))
                weights.append(weight)
            e, n = np.array(errors), np.array(naive_errors)
            print(
                f"| {name} | {rule_name} | {len(keys)} | {np.median(e):.2f} | {e.mean():.2f} | "
                f"{np.mean(e > n + 1e-9):.1%} | {np.mean(e > 1.1 * n):.1%} | {np.mean(weights):.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
