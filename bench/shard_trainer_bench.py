"""Shard-mode trainer benchmark (issue 19, points 3 and 5; prints a table; not a test).

A throw-away PostgreSQL of its own (hack/postgres.sh on a free port) holds ``sample-data`` sales
(``--days`` of daily history per product) and the models. ``forecast-trainer discover`` writes
the product list to run_products; then, for each shard size S (``--sizes``), on fresh products:

  shard     ONE ``forecast-trainer train`` process in shard mode (TRAINER_SHARD_SIZE=S, products
            from the snapshot) trains S products: what a shard pod runs
  baseline  today's one-product process (TRAINER_PRODUCT_ID), run once per product for
            min(S, --baseline-cap) products, in the same run

Per product: wall, trainer CPU (the process's own rusage: interpreter start, imports and all),
PostgreSQL CPU (postmaster + backends), and for the shard the *marginal* in-process CPU per
product, (CPU(S) - CPU(1)) / (S - 1): what one more product in a running process costs.
Processes run one at a time (``nice`` them: the machine is shared).

Usage:
  .venv/bin/python bench/shard_trainer_bench.py                       # seasonal_naive, 90 days, S = 1,10,100,500
  .venv/bin/python bench/shard_trainer_bench.py --models all --days 1095 --sizes 1,20 --baseline-cap 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "trainer_image")]

from pg_harness import PostgresServer  # noqa: E402

TRAINER = str(Path(sys.executable).parent / "forecast-trainer")
DATA = "shardbench"
RUN_UID = "5a1e0000-0000-4000-8000-000000000019"


@dataclass
class Measure:
    processes: int = 0
    products: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    db_cpu: float = 0.0
    trained: int = 0

    def per(self, value: float) -> float:
        return value / max(self.products, 1)


class Bench:
    def __init__(self, pg: PostgresServer, work: Path, models: str, trials: str) -> None:
        self.pg, self.work, self.models, self.trials = pg, work, models, trials
        self.count = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_") and k != "JOB_COMPLETION_INDEX"}
        env.update(
            {
                "TRAINER_DATA_DSN": self.pg.dsn,
                "TRAINER_DATA_TABLE": f"{DATA}.sales",
                "TRAINER_OUTPUT_SCHEMA": "models",
                "TRAINER_MODELS": self.models,
                "TRAINER_TRIALS": self.trials,
                "TRAINER_LOG_FORMAT": "json",
                "TRAINER_TRAININGJOB": "bench/shards",
                "MPLBACKEND": "Agg",
                **extra,
            }
        )
        return env

    def run(self, args: list[str], env: dict[str, str], m: Measure) -> dict[str, Any]:
        """One trainer process (a pod), measured into ``m``; returns its termination message."""
        self.count += 1
        term, log = self.work / f"term-{self.count}.json", self.work / f"log-{self.count}.txt"
        env = {**env, "TRAINER_TERMINATION_LOG": str(term)}
        db0, wall0 = self.pg.cpu_seconds(), time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(["nice", "-n", "10", TRAINER, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # nice execs the trainer: this is its own rusage
            except BaseException:  # Ctrl-C: no trainer outlives the bench (its server stops next)
                proc.kill()
                proc.wait()
                raise
        m.wall += time.monotonic() - wall0
        m.cpu += usage.ru_utime + usage.ru_stime
        time.sleep(0.3)  # let the server reap the process's backends
        m.db_cpu += self.pg.cpu_seconds() - db0
        m.processes += 1
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"forecast-trainer {' '.join(args)} exited {code}: {log.read_text()[-1500:]}")
        return json.loads(term.read_text())


def sample_data(pg: PostgresServer, products: int, days: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    subprocess.run(
        [
            TRAINER,
            "sample-data",
            "--products",
            str(products),
            "--days",
            str(days),
            "--dsn",
            pg.dsn,
            "--table",
            f"{DATA}.sales",
            "--log-format",
            "json",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=1800,
    )


def markdown(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ms(value: float) -> str:
    return f"{value * 1000:.0f}" if value < 10 else f"{value * 1000:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,100,500", help="shard sizes S, comma-separated")
    parser.add_argument("--days", type=int, default=90, help="days of daily history per product")
    parser.add_argument("--models", default="seasonal_naive", help="TRAINER_MODELS (the scale bench's cheapest)")
    parser.add_argument("--trials", default="auto", help="TRAINER_TRIALS")
    parser.add_argument("--baseline-cap", type=int, default=20, help="one-product processes per size, at most")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline_counts = [min(s, args.baseline_cap) for s in sizes]
    total = sum(sizes) + sum(baseline_counts)

    pg = PostgresServer()
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
            bench = Bench(pg, Path(tmp), args.models, args.trials)
            started = time.monotonic()
            sample_data(pg, total, args.days)
            setup = Measure()
            found = bench.run(["discover"], bench.env(TRAINER_RUN_KEY=f"{RUN_UID}/0"), setup)
            print(
                f"{total} products x {args.days} days in PostgreSQL {pg.port}; discover: {found['count']} products "
                f"in {setup.wall:.2f} s wall, {setup.cpu:.2f} s CPU (sample data written in "
                f"{time.monotonic() - started:.0f} s)",
                flush=True,
            )
            ids = [
                r[0]
                for r in pg.query(
                    f"SELECT product_id FROM models.run_products WHERE run_key = '{RUN_UID}' ORDER BY idx"
                )
            ]
            next_index = 0
            rows = [
                [
                    "S",
                    "shard wall ms/p",
                    "shard CPU ms/p",
                    "marginal CPU ms/p",
                    "shard DB CPU ms/p",
                    "n base",
                    "base wall ms/p",
                    "base CPU ms/p",
                    "base DB CPU ms/p",
                    "CPU x",
                ]
            ]
            shard_cpu: dict[int, float] = {}
            for size, base_n in zip(sizes, baseline_counts, strict=True):
                first, next_index = next_index, next_index + size
                shard = Measure(products=size)
                doc = bench.run(
                    ["train"],
                    bench.env(
                        TRAINER_RUN_KEY=f"{RUN_UID}/0",
                        TRAINER_SHARD_SIZE=str(size),
                        TRAINER_SHARD_INDEXES=f"{first}-{first + size - 1}",
                        TRAINER_PRODUCTS_FROM="snapshot",
                        TRAINER_PRODUCTS_SHA256=found["products_sha256"],
                        JOB_COMPLETION_INDEX="0",
                    ),
                    shard,
                )
                shard.trained = doc["results"]["trained"]
                if doc["done"] != size or doc["failed"]:
                    raise SystemExit(f"shard of {size}: {json.dumps(doc)[:1500]}")
                shard_cpu[size] = shard.cpu
                base = Measure(products=base_n)
                for product in ids[next_index : next_index + base_n]:
                    entry = bench.run(
                        ["train"], bench.env(TRAINER_PRODUCT_ID=product, TRAINER_RUN_KEY=f"{RUN_UID}/b"), base
                    )
                    base.trained += entry["counts"]["trained"]
                next_index += base_n
                smallest = min(shard_cpu)
                marginal = (shard.cpu - shard_cpu[smallest]) / (size - smallest) if size > smallest else float("nan")
                rows.append(
                    [
                        str(size),
                        ms(shard.per(shard.wall)),
                        ms(shard.per(shard.cpu)),
                        "-" if marginal != marginal else ms(marginal),
                        ms(shard.per(shard.db_cpu)),
                        str(base_n),
                        ms(base.per(base.wall)),
                        ms(base.per(base.cpu)),
                        ms(base.per(base.db_cpu)),
                        f"{base.per(base.cpu) / max(shard.per(shard.cpu), 1e-9):.1f}",
                    ]
                )
                print(
                    f"S={size}: {shard.trained}/{size} trained in {shard.wall:.1f} s; baseline "
                    f"{base.trained}/{base_n} in {base.wall:.1f} s",
                    flush=True,
                )
            print()
            print(f"models {args.models!r}, trials {args.trials}, {args.days} days of daily history per product")
            print(markdown(rows))
            print(
                "\nshard = one shard-mode process for S products; base = today's one-product process (min(S, cap) "
                "of them); marginal = (CPU(S) - CPU(smallest S)) / (S - smallest S), the in-process cost of one "
                "more product; CPU x = base CPU per product / shard CPU per product."
            )
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
