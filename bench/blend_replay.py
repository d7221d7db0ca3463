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

With ``--partner Theta`` (the run must include that method: its hidden-horizon forecast is read
from ``Theta.json``, its fold forecasts from the trainer's candidate dump), combining instead of
selecting, the issue 20 question left open in docs/trainer.md:

  partner alone      the partner's own forecast (the bench's method)
  model+partner      the model alone and the partner, half each
  model+partner B&G  the same with Bates & Granger's weights from their CV fold errors
  shipped+partner    what the trainer shipped (naive blend included) and the partner, half each
  three-way          the model, the naive baseline and the partner, weights the inverse of their
                     CV mean squared errors (the shipped rule with a third member)
  smooth: model+partner   model and partner half each where the product is not intermittent
                     (classify.py) and no naive baseline won; elsewhere what was shipped
  naive winner+partner    what was shipped and the partner half each where a naive baseline won
                     a product that is not intermittent; elsewhere what was shipped

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

from real_data_bench import FOURTH, FRESH, HOLDOUT, REPO, TUNING, smape

sys.path.insert(0, str(REPO / "trainer_image"))
from forecast_trainer.families.naive import LastValue, SeasonalNaive

HORIZON = 30
SEASON = 7
Rule = Callable[[np.ndarray, np.ndarray, float], float]
PARTNER_FAMILIES = {"Theta": "theta", "AutoETS": "ets", "AutoARIMA": "arima", "seasonal-naive": "seasonal_naive"}
"""A bench method's name -> the trainer's family whose CV fold forecasts stand for it."""
Forecaster = Callable[[dict[str, Any], np.ndarray, str], np.ndarray]
"""(the trainer's dump for a series, the series' values, its key) -> a forecast of the hidden days"""


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


def shipped(info: dict[str, Any]) -> np.ndarray:
    """The forecast the trainer shipped for the hidden days."""
    return np.asarray(info["yhat"], float)[:HORIZON]


def keep_closed(forecast: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """``forecast`` with the days the trainer forecast closed (0) kept at 0."""
    forecast[shipped(info) == 0] = 0.0
    return forecast


def replay(info: dict[str, Any], values: np.ndarray, rule: Rule | None) -> tuple[np.ndarray, float]:
    """The forecast under ``rule`` and its naive weight."""
    yhat = shipped(info)
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
    return keep_closed(np.clip((1 - new_weight) * model + new_weight * naive_yhat, 0.0, None), info), new_weight


def replayed(rule: Rule | None) -> Forecaster:
    return lambda info, values, key: replay(info, values, rule)[0]


def model_alone(info: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The chosen model's own forecast, the naive blend taken out."""
    return replay(info, values, RULES["model alone"])[0]


def partner_rules(partner: dict[str, Any], family: str) -> dict[str, Forecaster]:
    """Combining the model with ``partner`` (a method's hidden-horizon forecasts, by series key);
    the days the trainer forecast closed (0) stay closed."""

    def other(key: str) -> np.ndarray:
        return np.clip(np.asarray(partner[key]["yhat"], float)[:HORIZON], 0.0, None)

    def closed(rule: Forecaster) -> Forecaster:
        return lambda info, values, key: keep_closed(rule(info, values, key), info)

    def weighted(info: dict[str, Any], values: np.ndarray, key: str) -> np.ndarray:
        model, theirs = model_alone(info, values), other(key)
        dumped = info.get("fold_predictions", {})
        if str(info["family"]) not in dumped or family not in dumped or info["family"] == family:
            return 0.5 * (model + theirs)
        em, ep = fold_errors(info, str(info["family"])), fold_errors(info, family)
        keep = np.isfinite(em) & np.isfinite(ep)
        w = simple_weight(em[keep], ep[keep])  # the partner's share
        return (1 - w) * model + w * theirs

    def three_way(info: dict[str, Any], values: np.ndarray, key: str) -> np.ndarray:
        model, theirs = model_alone(info, values), other(key)
        dumped = info.get("fold_predictions", {})
        chosen, naive = str(info["family"]), str(info.get("naive_family"))
        if not {chosen, naive, family} <= set(dumped) or len({chosen, naive, family}) < 3:
            return weighted(info, values, key)
        errors = [fold_errors(info, f) for f in (chosen, naive, family)]
        keep = np.logical_and.reduce([np.isfinite(e) for e in errors])
        inverse = np.array([1.0 / max(float(np.mean(e[keep] ** 2)), 1e-12) for e in errors])
        w = inverse / inverse.sum()
        return w[0] * model + w[1] * naive_forecast(values[:-HORIZON], naive) + w[2] * theirs

    def smooth(info: dict[str, Any]) -> bool:
        return info.get("class") != "intermittent"

    def naive_won(info: dict[str, Any]) -> bool:
        return str(info["family"]) in (SeasonalNaive.name, LastValue.name)

    def by_class(info: dict[str, Any], values: np.ndarray, key: str) -> np.ndarray:
        if smooth(info) and not naive_won(info):
            return 0.5 * (model_alone(info, values) + other(key))
        return shipped(info)

    def hedged_naive(info: dict[str, Any], values: np.ndarray, key: str) -> np.ndarray:
        return 0.5 * (shipped(info) + other(key)) if smooth(info) and naive_won(info) else shipped(info)

    return {
        "partner alone": lambda info, values, key: other(key),
        "smooth: model+partner": closed(by_class),
        "naive winner+partner": closed(hedged_naive),
        "three-way": closed(three_way),
        "model+partner": closed(lambda info, values, key: 0.5 * (model_alone(info, values) + other(key))),
        "model+partner B&G": closed(weighted),
        "shipped+partner": closed(lambda info, values, key: 0.5 * (shipped(info) + other(key))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the --out folder of a BENCH_CANDIDATES=1 real_data_bench run")
    parser.add_argument("--partner", help="a method of the same run to combine the model with (e.g. Theta)")
    args = parser.parse_args()
    series = {s["key"]: s for s in json.loads((args.out / "series.json").read_text())}
    trainer = json.loads((args.out / "trainer.json").read_text())["series"]
    snaive = json.loads((args.out / "seasonal-naive.json").read_text())["series"]
    rules: dict[str, Forecaster] = {name: replayed(rule) for name, rule in RULES.items()}
    if args.partner:
        partner = json.loads((args.out / f"{args.partner}.json").read_text())["series"]
        rules.update(partner_rules(partner, PARTNER_FAMILIES.get(args.partner, args.partner)))
    sets = {"tuning": TUNING, "held-out": HOLDOUT, "fresh": FRESH, "fourth": FOURTH}
    print("| set | rule | series | median sMAPE | mean sMAPE | worse than s-naive | by > 10 % |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, groups in sets.items():
        keys = [k for k in trainer if series[k]["group"] in groups and series[k]["frequency"] == "D"]
        if not keys:
            continue
        for rule_name, forecast_of in rules.items():
            errors, naive_errors = [], []
            for key in keys:
                values = np.asarray(series[key]["values"], float)
                actual = values[-HORIZON:]
                errors.append(smape(actual, forecast_of(trainer[key], values, key)))
                naive_errors.append(smape(actual, np.asarray(snaive[key]["yhat"], float)[:HORIZON]))
            e, n = np.array(errors), np.array(naive_errors)
            print(
                f"| {name} | {rule_name} | {len(keys)} | {np.median(e):.2f} | {e.mean():.2f} | "
                f"{np.mean(e > n + 1e-9):.1%} | {np.mean(e > 1.1 * n):.1%} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
