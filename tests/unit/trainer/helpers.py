"""Shared helpers of the trainer tests (unit and integration)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]


def daily_frame(days: int = 200, level: float = 50.0, seed: int = 0, start: str = "2023-01-01") -> pd.DataFrame:
    """A regular daily series with weekly seasonality, a trend and noise (ds, y floats)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekly = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.35, 1.2])
    ds = pd.date_range(start, periods=days, freq="D")
    mean = level * (1 + 0.001 * t) * weekly[ds.dayofweek.to_numpy()]
    y = np.maximum(0, mean + rng.normal(0, level * 0.08, days)).round()
    return pd.DataFrame({"ds": ds, "y": y.astype(float)})


def raw_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a CSV source would hand it over: strings."""
    return pd.DataFrame({"ds": frame["ds"].dt.strftime("%Y-%m-%d"), "y": frame["y"].map(lambda v: f"{v:g}")})


def write_csv(
    path: Path, rows: Iterable[tuple[Any, Any, Any]], header: tuple[str, ...] = ("product_id", "ds", "y")
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def product_rows(product: str, frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return [(product, d.strftime("%Y-%m-%d"), f"{v:g}") for d, v in zip(frame["ds"], frame["y"], strict=True)]


def date_rows(product: str, values: list[Any], start: date = date(2023, 1, 1)) -> list[tuple[str, str, Any]]:
    return [(product, (start + timedelta(days=i)).isoformat(), v) for i, v in enumerate(values)]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any TRAINER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    env.setdefault("MPLBACKEND", "Agg")
    env.update(extra or {})
    return env


def run_cli(
    args: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> Run:
    """``python -m forecast_trainer <args>`` in a subprocess (the package from this checkout)."""
    full_env = clean_env(env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "trainer_image"), full_env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "forecast_trainer", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


FAST = ["--trials", "2", "--folds", "1", "--horizon-days", "14"]
