"""PNG plot of a product's history, in-sample fit, forecast and uncertainty band.

Uses matplotlib's object API with the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

from typing import Any


def plot_forecast(path: str, history: Any, fitted: Any, forecast: Any, title: str, uncertain: bool = False) -> None:
    """Write ``path`` (PNG). ``history``: ds, y; ``fitted``: yhat per history row (or None);
    ``forecast``: forecaster.forecast_frame (every level's band, widest palest; quantiles as
    dashed lines). ``uncertain`` (intervals.Uncertainty) marks the plot in its title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from forecast_trainer.intervals import level_name, quantile_name

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(history["ds"], history["y"], ".", color="black", markersize=2.5, label="history")
    if fitted is not None:  # only Prophet has an in-sample fit worth drawing
        axes.plot(history["ds"], fitted, "-", color="#0072B2", linewidth=0.8, alpha=0.7, label="fit")
    levels = sorted(forecast.attrs.get("levels") or [80.0], reverse=True)
    for i, level in enumerate(levels):
        name = level_name(level)
        lower = forecast.get(f"yhat_lower_{name}", forecast["yhat_lower"])
        upper = forecast.get(f"yhat_upper_{name}", forecast["yhat_upper"])
        axes.fill_between(
            forecast["ds"],
            lower,
            upper,
            color="#0072B2",
            alpha=0.15 + 0.15 * i / max(1, len(levels) - 1) if len(levels) > 1 else 0.25,
            linewidth=0,
            label=f"{level:g}% interval",
        )
    for i, q in enumerate(forecast.attrs.get("quantiles") or []):
        style = ("--", ":", "-.")[i % 3]
        axes.plot(forecast["ds"], forecast[quantile_name(q)], style, color="#009E73", linewidth=1.2, label=f"q{q:g}")
    axes.plot(forecast["ds"], forecast["yhat"], "-", color="#D55E00", linewidth=1.5, label="forecast")
    axes.axvline(forecast["ds"].iloc[0], color="grey", linestyle=":", linewidth=1)
    if uncertain:
        title = f"UNSURE (CV gain over naive within noise) - {title}"
    axes.set_title(title, fontsize=10, color="#B00000" if uncertain else "black")
    axes.set_ylabel("units")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")
