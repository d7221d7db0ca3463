"""The forecast PNG (plot.py): drawn with Pillow, what it shows where, and without matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.unit.trainer.helpers import REPO, clean_env, daily_frame

from forecast_trainer.plot import (
    BLUE,
    GREEN,
    HEIGHT,
    LEFT,
    ORANGE,
    RED,
    RIGHT,
    WIDTH,
    _dashed,
    nice_ticks,
    plot_forecast,
)


def forecast_frame(history: pd.DataFrame, days: int = 28, quantiles: bool = True) -> pd.DataFrame:
    ds = pd.date_range(history["ds"].iloc[-1] + pd.Timedelta(days=1), periods=days, freq="D")
    mean = np.full(days, float(history["y"].mean()))
    frame = pd.DataFrame({"ds": ds, "yhat": mean})
    for level, half in (("80", 6.0), ("95", 10.0)):
        frame[f"yhat_lower_{level}"], frame[f"yhat_upper_{level}"] = mean - half, mean + half
    frame["yhat_lower"], frame["yhat_upper"] = frame["yhat_lower_80"], frame["yhat_upper_80"]
    frame.attrs["levels"] = [80.0, 95.0]
    if quantiles:
        frame["q10"], frame["q90"] = mean - 5, mean + 5
        frame.attrs["quantiles"] = [0.1, 0.9]
    return frame


def columns_with(image: Image.Image, colour: tuple[int, int, int]) -> list[int]:
    pixels = np.asarray(image.convert("RGB")).reshape(image.height, image.width, 3)
    return sorted(set(np.nonzero((pixels == colour).all(axis=2))[1].tolist()))


def test_history_fit_bands_and_forecast_land_where_their_dates_are(tmp_path: Path) -> None:
    history = daily_frame(days=120)
    forecast = forecast_frame(history)  # 28 of 148 days: the forecast is the right ~19 % of the plot
    path = tmp_path / "forecast.png"
    plot_forecast(str(path), history, history["y"] + 1, forecast, "A-1: prophet")
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    area = WIDTH - RIGHT - LEFT
    start = LEFT + area * 120 / 147  # the first forecast day's column
    orange = columns_with(image, ORANGE)  # the forecast line (and its legend swatch, left)
    assert [c for c in orange if c > LEFT + area / 2] and min(c for c in orange if c > LEFT + area / 2) >= start - 2
    green = [c for c in columns_with(image, GREEN) if c > LEFT + area / 2]  # quantile lines: forecast days only
    assert green and min(green) >= start - 2
    fit = [c for c in columns_with(image, BLUE) if c > LEFT + 200]  # the fit line: history days only
    assert fit and max(fit) <= start + 2
    # The bands: blue blended onto white, the 80 % band darker than the 95 % one around it.
    pixels = np.asarray(image.convert("RGB")).astype(int)
    column = pixels[:, int(start + (WIDTH - RIGHT - start) / 2)]
    tints = {tuple(p) for p in column if p[2] > p[0] + 20 and tuple(p) != BLUE}
    assert len(tints) >= 2, tints


def test_an_uncertain_plot_says_so_in_red_and_a_sure_one_has_no_red(tmp_path: Path) -> None:
    history = daily_frame(days=60)
    for uncertain in (True, False):
        path = tmp_path / f"{uncertain}.png"
        plot_forecast(str(path), history, None, forecast_frame(history, quantiles=False), "A-1", uncertain=uncertain)
        red = columns_with(Image.open(path), RED)
        assert bool(red) is uncertain


def test_missing_values_and_a_single_day_are_drawn_without_error(tmp_path: Path) -> None:
    history = daily_frame(days=30)
    history.loc[[3, 4, 17], "y"] = np.nan
    forecast = forecast_frame(history, days=1)
    forecast.loc[0, "yhat_upper_95"] = np.nan
    plot_forecast(str(tmp_path / "gaps.png"), history, None, forecast, "gaps")
    flat = pd.DataFrame({"ds": history["ds"], "y": 5.0})
    plot_forecast(str(tmp_path / "flat.png"), flat, None, forecast_frame(flat), "flat")
    assert Image.open(tmp_path / "gaps.png").size == Image.open(tmp_path / "flat.png").size == (WIDTH, HEIGHT)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0, 10, [0, 2, 4, 6, 8, 10]), (3.2, 47.9, [10, 20, 30, 40]), (-0.3, 0.3, [-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3])],
)
def test_nice_ticks(low: float, high: float, expected: list[float]) -> None:
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_dashes_cover_their_share_of_a_line() -> None:
    pieces = _dashed([(0.0, 0.0), (100.0, 0.0)], (6, 4))
    assert len(pieces) == 10
    assert sum(p[-1][0] - p[0][0] for p in pieces) == pytest.approx(60)


def test_the_plot_imports_no_matplotlib(tmp_path: Path) -> None:
    """The image has no matplotlib (docs/local-cluster.md, "Images"): drawing must not need it."""
    code = (
        "import json, sys, pandas as pd; sys.modules['matplotlib'] = None  # import matplotlib fails\n"
        "from forecast_trainer.plot import plot_forecast\n"
        "h = pd.DataFrame({'ds': pd.date_range('2024-01-01', periods=20), 'y': range(20)})\n"
        "f = pd.DataFrame({'ds': pd.date_range('2024-01-21', periods=5), 'yhat': 20.0, 'yhat_lower': 18.0,"
        " 'yhat_upper': 22.0})\n"
        "plot_forecast(sys.argv[1], h, None, f, 't')\n"
    )
    env = clean_env({"PYTHONPATH": str(REPO / "trainer_image")})
    out = tmp_path / "forecast.png"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(out).size == (WIDTH, HEIGHT)
