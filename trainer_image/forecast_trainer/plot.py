"""PNG plot of a product's history, in-sample fit, forecast and uncertainty band.

Drawn on raster.Canvas (lines, polygons, a 5x7 pixel font) and written as PNG with the
standard library: the image carries no matplotlib or imaging library (~95 MB with their
fonts and dependencies; docs/local-cluster.md, "Images"). Pure apart from writing ``path``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from forecast_trainer.raster import Canvas, Colour, Point, text_size

WIDTH, HEIGHT = 1000, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 46  # the plot area's margins, pixels
BLACK, GREY, GRID, WHITE = (0, 0, 0), (128, 128, 128), (225, 225, 225), (255, 255, 255)
BLUE, GREEN, ORANGE, RED = (0, 114, 178), (0, 158, 115), (213, 94, 0), (176, 0, 0)
DASHES = ((6, 4), (2, 3), (7, 3, 2, 3))  # quantile lines: dashed, dotted, dash-dot


def nice_ticks(low: float, high: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def _runs(points: Iterable[Point]) -> list[list[Point]]:
    """Split a polyline at missing values (NaN) into runs of finite points."""
    runs: list[list[Point]] = [[]]
    for x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _dashed(run: Sequence[Point], pattern: Sequence[int]) -> list[list[Point]]:
    """The drawn pieces of a polyline under a dash ``pattern`` (on, off, on, off... pixels)."""
    pieces: list[list[Point]] = []
    index, left, on = 0, float(pattern[0]), True
    current: list[Point] = [run[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(run):
        length, done = math.hypot(x1 - x0, y1 - y0), 0.0
        while length - done > left:
            done += left
            t = done / length
            point = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            if on:
                pieces.append([*current, point])
            current = [point]
            index = (index + 1) % len(pattern)
            left, on = float(pattern[index]), not on
        left -= length - done
        current.append((x1, y1))
    if on and len(current) > 1:
        pieces.append(current)
    return pieces


def _floats(values: Any) -> list[float]:
    return [float(v) if v is not None else math.nan for v in values]


def plot_forecast(path: str, history: Any, fitted: Any, forecast: Any, title: str, uncertain: bool = False) -> None:
    """Write ``path`` (PNG). ``history``: ds, y; ``fitted``: yhat per history row (or None);
    ``forecast``: forecaster.forecast_frame (every level's band, widest palest; quantiles as
    dashed lines). ``uncertain`` (intervals.Uncertainty) marks the plot in its title."""
    import pandas as pd

    from forecast_trainer.intervals import level_name, quantile_name

    days = pd.Timestamp("1970-01-01")
    hist_x = _floats((pd.to_datetime(history["ds"]) - days) / pd.Timedelta(days=1))
    fc_x = _floats((pd.to_datetime(forecast["ds"]) - days) / pd.Timedelta(days=1))
    series: list[tuple[str, list[float], list[float]]] = []  # (what, x, y), drawn in this order
    if fitted is not None:  # only Prophet has an in-sample fit worth drawing
        series.append(("fit", hist_x, _floats(fitted)))
    levels = sorted(forecast.attrs.get("levels") or [80.0], reverse=True)
    bands = []
    for level in levels:
        name = level_name(level)
        lower = _floats(forecast.get(f"yhat_lower_{name}", forecast["yhat_lower"]))
        upper = _floats(forecast.get(f"yhat_upper_{name}", forecast["yhat_upper"]))
        bands.append((level, lower, upper))
    quantiles = [(q, _floats(forecast[quantile_name(q)])) for q in forecast.attrs.get("quantiles") or []]
    hist_y, yhat = _floats(history["y"]), _floats(forecast["yhat"])

    ys = [v for v in (*hist_y, *yhat, *(v for s in series for v in s[2])) if math.isfinite(v)]
    ys += [v for _, lo, up in bands for v in (*lo, *up) if math.isfinite(v)]
    ys += [v for _, qs in quantiles for v in qs if math.isfinite(v)]
    xs = [v for v in (*hist_x, *fc_x) if math.isfinite(v)]
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (y1 - y0) * 0.05 or max(1.0, abs(y0) * 0.05)
    y0, y1 = y0 - pad, y1 + pad
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def px(x: float, y: float) -> Point:
        return LEFT + (x - x0) / (x1 - x0) * (right - LEFT), bottom - (y - y0) / (y1 - y0) * (bottom - TOP)

    canvas = Canvas(WIDTH, HEIGHT)
    for tick in nice_ticks(y0, y1):
        _, y = px(x0, tick)
        canvas.span(LEFT, right, round(y), GRID)
        canvas.text(LEFT - 5, y, _label(tick), BLACK, anchor="rm")
    for tick in nice_ticks(x0, x1, 8):
        x, _ = px(tick, y0)
        for y in range(TOP, bottom):
            canvas.blend(round(x), y, GRID)
        when = (days + pd.Timedelta(days=tick)).strftime("%Y-%m-%d")
        canvas.text(x, bottom + 6, when, BLACK, anchor="mt")
    canvas.rect(LEFT, TOP, right, bottom, BLACK, fill=False)
    canvas.text(14, (TOP + bottom) / 2, "units", BLACK, anchor="mm", vertical=True)

    # Bands: the widest first and palest; each blended onto what is drawn already.
    for i, (_, lower, upper) in enumerate(bands):
        alpha = 0.15 + 0.15 * i / max(1, len(bands) - 1) if len(bands) > 1 else 0.25
        pairs = [(x, lo, up) for x, lo, up in zip(fc_x, lower, upper, strict=True) if math.isfinite(x + lo + up)]
        if len(pairs) > 1:
            outline = [px(x, up) for x, _, up in pairs] + [px(x, lo) for x, lo, _ in reversed(pairs)]
            canvas.polygon(outline, BLUE, alpha)
    for x, y in zip(hist_x, hist_y, strict=True):
        if math.isfinite(x) and math.isfinite(y):
            canvas.disc(*px(x, y), 1.3, BLACK)
    for _, series_x, series_y in series:
        for run in _runs(zip(series_x, series_y, strict=True)):
            canvas.line([px(x, y) for x, y in run], BLUE)
    for i, (_, values) in enumerate(quantiles):
        for run in _runs(zip(fc_x, values, strict=True)):
            for piece in _dashed([px(x, y) for x, y in run], DASHES[i % len(DASHES)]):
                canvas.line(piece, GREEN, width=2)
    for run in _runs(zip(fc_x, yhat, strict=True)):
        canvas.line([px(x, y) for x, y in run], ORANGE, width=2)
    if fc_x and math.isfinite(fc_x[0]):
        start, _ = px(fc_x[0], y0)
        for piece in _dashed([(start, TOP), (start, bottom)], (2, 3)):
            canvas.line(piece, GREY)

    if uncertain:
        title = f"UNSURE (CV gain over naive within noise) - {title}"
    canvas.text(WIDTH / 2, TOP / 2, title, RED if uncertain else BLACK, anchor="mm")
    legend: list[tuple[str, Colour, str]] = [("history", BLACK, "dot")]
    legend += [("fit", BLUE, "line")] if series else []
    legend += [(f"{level:g}% interval", BLUE, "band") for level, _, _ in bands]
    legend += [(f"q{q:g}", GREEN, "dash") for q, _ in quantiles]
    legend += [("forecast", ORANGE, "line")]
    row = 12
    widest = max(text_size(text)[0] for text, _, _ in legend)
    canvas.rect(LEFT + 6, TOP + 6, LEFT + 6 + 34 + widest, TOP + 10 + row * len(legend), WHITE)
    canvas.rect(LEFT + 6, TOP + 6, LEFT + 6 + 34 + widest, TOP + 10 + row * len(legend), GREY, fill=False)
    for i, (text, colour, kind) in enumerate(legend):
        y = TOP + 8 + row * i + row / 2
        sx = LEFT + 12
        if kind == "dot":
            canvas.disc(sx + 9, y, 1.5, colour)
        elif kind == "band":
            canvas.polygon([(sx, y - 3.5), (sx + 19, y - 3.5), (sx + 19, y + 3.5), (sx, y + 3.5)], colour, 0.3)
        elif kind == "dash":
            for piece in _dashed([(sx, y), (sx + 18, y)], DASHES[0]):
                canvas.line(piece, colour, width=2)
        else:
            canvas.line([(sx, y), (sx + 18, y)], colour, width=2)
        canvas.text(sx + 24, y, text, BLACK, anchor="lm")
    with open(path, "wb") as fh:
        fh.write(canvas.png())
