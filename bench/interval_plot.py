"""The plot in docs/trainer.md: one real series, the trainer's calibrated bands, and the hidden month.

  .venv/bin/python bench/interval_plot.py [--series pizza-big_meat] [--out docs/intervals.png]

The series comes from the benchmark's tuning set (bench/real_data_bench.py); the last 30 days
are hidden from the trainer and drawn as crosses over its forecast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", default="pizza-big_meat")
    parser.add_argument("--out", default=str(REPO / "docs" / "intervals.png"))
    args = parser.parse_args()
    sys.path[:0] = [str(REPO / "trainer_image"), str(REPO / "bench")]
    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import real_data_bench as bench
    from forecast_trainer.classify import classify, trial_budget
    from forecast_trainer.config import TrainConfig
    from forecast_trainer.logs import quiet_libraries
    from forecast_trainer.training import train_product
    from forecast_trainer.validate import Rules, prepare

    quiet_libraries()
    series = next(s for g in bench.TUNING for s in bench.LOADERS[g]() if s.key == args.series)
    frame = series.frame()
    train, hidden = frame.iloc[: -series.horizon], frame.iloc[-series.horizon :]
    cfg = TrainConfig(interval_levels=(80.0, 95.0), quantiles=(0.5, 0.9), data_csv="-")
    raw = pd.DataFrame({"ds": train["ds"].dt.strftime("%Y-%m-%d"), "y": train["y"].map(repr)})
    prepared = prepare(series.key, raw, Rules(frequency="D", fill_missing=cfg.fill_missing))
    product_class = classify(prepared.frame["y"], "D")
    trained = train_product(prepared, cfg, trial_budget(product_class, None), None, product_class)
    out = trained.forecast
    actual = hidden["y"].to_numpy(dtype=float)
    inside = {
        level: float(np.mean((actual >= out[f"yhat_lower_{level}"]) & (actual <= out[f"yhat_upper_{level}"])))
        for level in (80, 95)
    }

    figure = Figure(figsize=(9, 3.4), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    recent = train.iloc[-90:]
    axes.plot(recent["ds"], recent["y"], ".-", color="black", markersize=3, linewidth=0.4, label="history")
    axes.fill_between(
        out["ds"],
        out["yhat_lower_95"],
        out["yhat_upper_95"],
        color="#0072B2",
        alpha=0.15,
        linewidth=0,
        label=f"95 % interval (covered {inside[95]:.0%})",
    )
    axes.fill_between(
        out["ds"],
        out["yhat_lower_80"],
        out["yhat_upper_80"],
        color="#0072B2",
        alpha=0.3,
        linewidth=0,
        label=f"80 % interval (covered {inside[80]:.0%})",
    )
    axes.plot(out["ds"], out["q90"], "--", color="#009E73", linewidth=1.2, label="0.9 quantile")
    axes.plot(out["ds"], out["yhat"], "-", color="#D55E00", linewidth=1.5, label=f"forecast ({trained.family})")
    axes.plot(hidden["ds"], actual, "x", color="black", markersize=5, label="actual (hidden)")
    unsure = trained.uncertainty
    note = "" if unsure is None else f"; relative width {unsure.relative_width:.2f}, uncertain: {unsure.uncertain}"
    axes.set_title(f"{series.description}: daily sales{note}", fontsize=9)
    axes.set_ylabel("units")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=7, ncol=2)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(args.out, format="png")
    print(f"{args.out}: coverage 80 % {inside[80]:.2f}, 95 % {inside[95]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
