"""Trainer benchmark on sample-data (prints tables; not a test).

Workload: ``sample-data`` with 20 products x 3 years of daily sales (seed 7). The final 30 days
of every product are held out; each method sees only the history before them. Side by side:

  defaults   Prophet() fitted once per product (what a user starts with)
  trainer    ``forecast-trainer train`` with automatic trials (the real CLI, one process for all
             products, pinned to one CPU core), writing model JSON, forecast CSV and plot
  grid       a hand-written 20-combination grid (changepoint_prior_scale x
             seasonality_prior_scale) scored with Prophet's own ``cross_validation`` on the same
             three 30-day folds, best combination refitted (also on one core)

Reported: per-product seconds (median / p95), peak RSS of the trainer process, start-up time
of ``forecast-trainer --help`` and of the first heavy import, and errors (sMAPE %) on CV and on
the held-out horizon against the defaults and the seasonal-naive baseline.
Targets (from the issue): median trainer product <= 5 s on one core, start-up <= 1.5 s, peak
RSS <= 200 MB, tuned <= defaults CV error on >= 90 % of products.

Usage: .venv/bin/python bench/trainer_bench.py [--products 20] [--days 1095] [--skip-grid]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

from forecast_trainer.logs import quiet_libraries  # noqa: E402

quiet_libraries()
warnings.filterwarnings("ignore")

HORIZON = 30
FOLDS = 3
GRID = list(itertools.product((0.001, 0.01, 0.05, 0.1, 0.5), (0.01, 0.1, 1.0, 10.0)))


def one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    denom = np.abs(y) + np.abs(yhat)
    safe = np.where(denom > 0, denom, 1.0)
    return float(100 * np.mean(np.where(denom > 0, 2 * np.abs(y - yhat) / safe, 0.0)))


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    out["PYTHONPATH"] = str(ROOT / "trainer_image")
    out["MPLBACKEND"] = "Agg"
    return out


def timed(cmd: list[str], repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def startup() -> dict[str, float]:
    exe = ROOT / ".venv" / "bin" / "forecast-trainer"
    help_cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "forecast_trainer", "--help"]
    heavy = "from forecast_trainer.model import import_prophet; import_prophet(); import optuna, asyncpg"
    return {
        "forecast-trainer --help": timed(help_cmd),
        "first import (prophet, optuna, pandas, asyncpg)": timed([sys.executable, "-c", heavy], repeat=3),
    }


def generate(products: int, days: int, seed: int) -> pd.DataFrame:
    from forecast_trainer.sample_data import rows

    frame = pd.DataFrame(list(rows(products, days, seed, date(2021, 1, 1))), columns=["product_id", "ds", "y"])
    frame["ds"] = pd.to_datetime(frame["ds"])
    return frame


def run_trainer(train_csv: Path, out: Path) -> tuple[dict, float, float]:
    """The real CLI on one core; returns (summary.json, wall seconds, peak RSS MB)."""
    term = out / "termination.json"
    cmd = [
        sys.executable,
        "-m",
        "forecast_trainer",
        "train",
        "--data-csv",
        str(train_csv),
        "--output-dir",
        str(out),
        "--horizon-days",
        str(HORIZON),
        "--folds",
        str(FOLDS),
        "--termination-log",
        str(term),
        "--log-format",
        "json",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env(), preexec_fn=one_core, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"trainer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return json.loads((out / "summary.json").read_text()), wall, peak


def cutoffs(train: pd.DataFrame) -> list[pd.Timestamp]:
    last = train["ds"].iloc[-1]
    return [last - pd.Timedelta(days=HORIZON * (i + 1)) for i in reversed(range(FOLDS))]


def defaults_run(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    from forecast_trainer.model import import_prophet

    started = time.perf_counter()
    model = import_prophet()()
    model.fit(train)
    forecast = model.predict(pd.DataFrame({"ds": test["ds"]}))
    return time.perf_counter() - started, smape(test["y"].to_numpy(), forecast["yhat"].to_numpy())


def grid_run(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float, float]:
    """What a user writes by hand, following Prophet's tuning recipe."""
    from prophet.diagnostics import cross_validation

    from forecast_trainer.model import import_prophet

    prophet_cls = import_prophet()
    started = time.perf_counter()
    best_error, best = np.inf, GRID[0]
    for cps, sps in GRID:
        model = prophet_cls(changepoint_prior_scale=cps, seasonality_prior_scale=sps, uncertainty_samples=0)
        model.fit(train)
        cv = cross_validation(model, horizon=f"{HORIZON} days", cutoffs=cutoffs(train), disable_tqdm=True)
        error = smape(cv["y"].to_numpy(), cv["yhat"].to_numpy())
        if error < best_error:
            best_error, best = error, (cps, sps)
    model = prophet_cls(changepoint_prior_scale=best[0], seasonality_prior_scale=best[1])
    model.fit(train)
    forecast = model.predict(pd.DataFrame({"ds": test["ds"]}))
    seconds = time.perf_counter() - started
    return seconds, best_error, smape(test["y"].to_numpy(), forecast["yhat"].to_numpy())


def main() -> int:
    parser = argparse.ArgumentParser(description="forecast-trainer benchmark on sample-data")
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()

    print(
        f"workload: sample-data {args.products} products x {args.days} days (seed {args.seed}); "
        f"last {HORIZON} days held out; {FOLDS} CV folds; one CPU core",
        file=sys.stderr,
    )
    boot = startup()
    data = generate(args.products, args.days, args.seed)
    products = list(dict.fromkeys(data["product_id"]))
    last_day = data["ds"].max() - pd.Timedelta(days=HORIZON)
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        train_csv = Path(tmp) / "train.csv"
        train_all = data[data["ds"] <= last_day]
        train_all.assign(ds=train_all["ds"].dt.strftime("%Y-%m-%d")).to_csv(train_csv, index=False)
        summary, trainer_wall, peak_rss = run_trainer(train_csv, Path(tmp) / "out")
        entries = {p["product"]: p for p in summary["products"]}
        one_core()
        rows = []
        for product in products:
            frame = data[data["product_id"] == product][["ds", "y"]].reset_index(drop=True)
            train, test = frame.iloc[:-HORIZON], frame.iloc[-HORIZON:]
            entry = entries[product]
            folder = Path(tmp) / "out" / entry["model_id"]
            trainer_fc = pd.read_csv(folder / "forecast.csv")["yhat"].to_numpy()
            naive = np.tile(train["y"].to_numpy()[-7:], HORIZON // 7 + 1)[:HORIZON]
            d_sec, d_hold = defaults_run(train, test)
            g_sec, g_cv, g_hold = (np.nan, np.nan, np.nan) if args.skip_grid else grid_run(train, test)
            rows.append(
                {
                    "product": product,
                    "class": entry["class"],
                    "trials": entry["trials"],
                    "tuned": "yes" if entry["tuned"] else "no",
                    "cv defaults": entry["default_error"],
                    "cv trainer": entry["error"],
                    "cv grid": g_cv,
                    "cv s-naive": entry["baseline_error"],
                    "hold defaults": d_hold,
                    "hold trainer": smape(test["y"].to_numpy(), trainer_fc),
                    "hold grid": g_hold,
                    "hold s-naive": smape(test["y"].to_numpy(), naive),
                    "sec defaults": d_sec,
                    "sec trainer": entry["seconds"],
                    "cpu trainer": entry["details"].get("cpu_seconds", np.nan),
                    "sec grid": g_sec,
                }
            )
            print(f"  {product:<28} done", file=sys.stderr)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print("\nPer product: sMAPE % on CV (3 x 30-day folds) and on the held-out final 30 days; seconds")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))

    def stats(column: str) -> str:
        values = [v for v in table[column] if not np.isnan(v)]
        return f"{statistics.median(values):6.2f} / {p95(values):6.2f}" if values else "   n/a"

    tuned_ok = int((table["cv trainer"] <= table["cv defaults"] + 1e-9).sum())
    hold_better = int((table["hold trainer"] < table["hold defaults"]).sum())
    median_trainer = statistics.median(table["sec trainer"])
    print("\nSummary")
    lines = [
        ("seconds per product, median / p95: defaults", stats("sec defaults"), ""),
        (
            "seconds per product, median / p95: trainer (auto trials)",
            stats("sec trainer"),
            "PASS" if median_trainer <= 5 else "FAIL (target <= 5 s)",
        ),
        ("CPU seconds per product, median / p95: trainer (incl. Stan)", stats("cpu trainer"), ""),
        ("seconds per product, median / p95: grid (20 combos)", stats("sec grid"), ""),
        ("trainer process wall time for all products (s)", f"{trainer_wall:.1f}", ""),
        ("peak RSS of the trainer process (MB)", f"{peak_rss:.0f}", "PASS" if peak_rss <= 200 else "FAIL (<= 200)"),
    ]
    for name, seconds in boot.items():
        lines.append(
            (
                f"start-up: {name} (s)",
                f"{seconds:.2f}",
                ("PASS" if seconds <= 1.5 else "FAIL (<= 1.5 s)") if "help" in name else "",
            )
        )
    lines += [
        (
            "products with trainer CV error <= defaults",
            f"{tuned_ok}/{len(table)}",
            "PASS" if tuned_ok >= 0.9 * len(table) else "FAIL (>= 90 %)",
        ),
        (
            "products whose tuned params were kept (beat defaults by the margin)",
            f"{int((table['tuned'] == 'yes').sum())}/{len(table)}",
            "",
        ),
        (
            "mean CV sMAPE: defaults / trainer / grid / s-naive",
            " / ".join(f"{table[c].mean():.2f}" for c in ("cv defaults", "cv trainer", "cv grid", "cv s-naive")),
            "",
        ),
        (
            "mean held-out sMAPE: defaults / trainer / grid / s-naive",
            " / ".join(
                f"{table[c].mean():.2f}" for c in ("hold defaults", "hold trainer", "hold grid", "hold s-naive")
            ),
            "",
        ),
        ("held-out: trainer better than defaults on", f"{hold_better}/{len(table)}", ""),
        (
            "held-out: trainer better than seasonal-naive on",
            f"{int((table['hold trainer'] < table['hold s-naive']).sum())}/{len(table)}",
            "",
        ),
    ]
    width = max(len(n) for n, _, _ in lines)
    for name, value, verdict in lines:
        print(f"  {name:<{width}}  {value:>28}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
