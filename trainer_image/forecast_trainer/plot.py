"""PNG plot of a product's history, in-sample fit, forecast and uncertainty band.

Uses matplotlib's object API with the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

from typing import Any


def plot_forecast(path: str, history: Any, fitted: Any, forecast: Any, title: str) -> None:
    """Write ``path`` (PNG). ``history``: ds, y; ``fitted``: yhat per history row (or None);
    ``forecast``: ds, yhat, yhat_lower, yhat_upper."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(history["ds"], history["y"], ".", color="black", markersize=2.5, label="history")
    if fitted is not None:  # only Prophet has an in-sample fit worth drawing
        axes.plot(history["ds"], fitted, "-", color="#0072B2", linewidth=0.8, alpha=0.7, label="fit")
    axes.fill_between(
        forecast["ds"],
        forecast["yhat_lower"],
        forecast["yhat_upper"],
        color="#0072B2",
        alpha=0.25,
        linewidth=0,
        label="80% interval",
    )
    axes.plot(forecast["ds"], forecast["yhat"], "-", color="#D55E00", linewidth=1.5, label="forecast")
    axes.axvline(forecast["ds"].iloc[0], color="grey", linestyle=":", linewidth=1)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("units")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")
