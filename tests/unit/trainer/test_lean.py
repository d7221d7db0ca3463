"""Lean imports (lean.py), in a fresh interpreter: what Prophet and statsforecast leave out, and
that everything they need (and anything else asked for later) still works."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.unit.trainer.helpers import REPO, clean_env

CODE = r"""
import json, sys
from forecast_trainer.lean import keep_pyarrow_out, statsforecast_models
keep_pyarrow_out()
from forecast_trainer.model import import_prophet
import_prophet()
after_prophet = "matplotlib" in sys.modules
sm = statsforecast_models()
import numpy as np
y = 50 + 10 * np.sin(np.arange(200) * 2 * np.pi / 7) + np.random.default_rng(0).normal(0, 1, 200)
arima = sm.AutoARIMA(season_length=7).forecast(y=y, h=7)["mean"]  # kpss, OLS through the stand-in
mstl = sm.MSTL(season_length=7).forecast(y=y, h=7)["mean"]  # STL through the stand-in
left_out = ("statsmodels.genmod", "statsmodels.datasets", "statsmodels.discrete", "matplotlib")
heavy = sorted({m for m in sys.modules if m.startswith(left_out)})
import statsmodels.api  # anything else: the real module, on demand
glm = statsmodels.api.GLM.__module__
from forecast_trainer.plot import plot_forecast  # matplotlib is importable again for the PNG
import matplotlib
print(json.dumps({"after_prophet": after_prophet, "heavy": heavy, "finite": bool(np.isfinite([*arima, *mstl]).all()),
                  "glm": glm, "matplotlib": matplotlib.__name__}))
"""


def test_prophet_without_pyplot_and_statsforecast_without_all_of_statsmodels() -> None:
    env = clean_env({"PYTHONPATH": str(REPO / "trainer_image")})
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["after_prophet"] is False and result["heavy"] == [] and result["finite"] is True
    assert result["glm"].startswith("statsmodels.genmod") and result["matplotlib"] == "matplotlib"
