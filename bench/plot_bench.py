"""The forecast PNG: the trainer's own raster (plot.py today) side by side with the matplotlib plot
it replaced (plot.py at git revision --baseline), on the same history and forecast.

  .venv/bin/python bench/plot_bench.py [--baseline c87ff4a] [--days 730] [--repeat 5]

Per implementation, each in a fresh interpreter with pandas already imported (as in the trainer):
the first plot including its imports (what a pod pays once), then the median of --repeat more
plots, and the PNG's size. matplotlib must be installed (the dev extra has it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUN = r"""
import json, statistics, sys, time
import numpy as np, pandas as pd
sys.path[:0] = [sys.argv[1], sys.argv[2]]
days, repeat, out = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = np.random.default_rng(0)
ds = pd.date_range("2024-01-01", periods=days, freq="D")
y = 50 + 10 * np.sin(np.arange(days) * 2 * np.pi / 7) + rng.normal(0, 3, days)
history = pd.DataFrame({"ds": ds, "y": y})
f_ds = pd.date_range(ds[-1] + pd.Timedelta(days=1), periods=28, freq="D")
mean = 50 + 10 * np.sin(np.arange(days, days + 28) * 2 * np.pi / 7)
forecast = pd.DataFrame({"ds": f_ds, "yhat": mean, "yhat_lower": mean - 6, "yhat_upper": mean + 6,
                         "yhat_lower_80": mean - 6, "yhat_upper_80": mean + 6, "yhat_lower_95": mean - 10,
                         "yhat_upper_95": mean + 10, "q10": mean - 5, "q90": mean + 5})
forecast.attrs.update(levels=[80.0, 95.0], quantiles=[0.1, 0.9])
t = time.perf_counter()
from plot import plot_forecast
plot_forecast(out, history, y + 0.5, forecast, "A-1: prophet")
first = time.perf_counter() - t
times = []
for _ in range(repeat):
    t = time.perf_counter()
    plot_forecast(out, history, y + 0.5, forecast, "A-1: prophet")
    times.append(time.perf_counter() - t)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib", "PIL", "fontTools", "kiwisolver"})
print(json.dumps({"first": first, "median": statistics.median(times), "imports": heavy}))
"""


def run(plot_dir: Path, days: int, repeat: int, out: Path) -> dict[str, object]:
    args = [str(plot_dir), str(REPO / "trainer_image"), str(days), str(repeat), str(out)]
    proc = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["png_kb"] = out.stat().st_size / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="c87ff4a", help="git revision whose plot.py uses matplotlib")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plot-bench-") as tmp:
        base, today = Path(tmp, "baseline"), Path(tmp, "today")
        for directory in (base, today):
            directory.mkdir()
        source = subprocess.run(
            ["git", "show", f"{args.baseline}:trainer_image/forecast_trainer/plot.py"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (base / "plot.py").write_text(source)
        (today / "plot.py").write_text((REPO / "trainer_image/forecast_trainer/plot.py").read_text())
        rows = [
            (f"matplotlib (plot.py at {args.baseline})", run(base, args.days, args.repeat, Path(tmp, "base.png"))),
            ("raster.py (plot.py today)", run(today, args.days, args.repeat, Path(tmp, "today.png"))),
        ]
    print(f"{args.days} days of history + 28 forecast days, two bands, two quantiles; {args.repeat} repeats\n")
    print("| plot | first plot incl. imports (s) | next plots, median (s) | PNG (KB) | heavy imports |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        heavy = ", ".join(r["imports"]) or "none"  # type: ignore[arg-type]
        print(f"| {name} | {r['first']:.2f} | {r['median']:.3f} | {r['png_kb']:.0f} | {heavy} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
