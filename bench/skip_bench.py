"""Skipping unchanged products: the second nightly run, with and without skipping (prints a table; not a test).

    .venv/bin/python bench/skip_bench.py                     # 200 products x 3 years, automatic trials
    .venv/bin/python bench/skip_bench.py --products 40 --trials 2 --jobs 2   # a quick look

Trainer level, no cluster: every "pod" is a ``forecast-trainer`` process (the operator's trainer pod
runs exactly that, one product per pod), run ``--jobs`` at a time like a TrainingJob's parallelism.
One throw-away PostgreSQL of its own (hack/postgres.sh on a free port) holds the sales and the models.

1. ``sample-data``: N products x D days into ``sales`` (the trainer's deterministic bakery data).
2. First night: every product trained (``--jobs`` processes over the product list), models stored
   with their watermarks.
3. Next day: one more day of sales appended to 5 % of the products (every 20th).
4. The second night, three ways, each on its own copy of the first night's output schema:
   (a) without skipping: ``train`` in one process per product (what per-product pods cost today);
   (b) ``train --skip-unchanged`` in one process per product (each pod checks its own product);
   (c) ``unchanged`` once over all products (the operator's check pod), then ``train
       --skip-unchanged`` only for the changed ones.
   (b) and (c) must train exactly the changed products and skip the rest.

Figures per way: wall seconds; CPU seconds of the trainer processes (user + system, from the
children's rusage); CPU seconds of the PostgreSQL server (postmaster and its backends, from /proc
through psutil); products trained / skipped. Target (issue 12): the skipping run uses >= 10x less
CPU than the run without skipping.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "trainer_image")]

from forecast_trainer.watermark import parse_ranges  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402

TRAINER = str(Path(sys.executable).parent / "forecast-trainer")
DATA_SCHEMA = "skipbench"


@dataclass
class Way:
    name: str
    wall: float = 0.0
    trainer_cpu: float = 0.0
    db_cpu: float = 0.0
    processes: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    process_cpu: dict[str, list[float]] = field(default_factory=dict)  # status of a 1-product process -> CPU s

    @property
    def trained(self) -> list[str]:
        return sorted(p for p, s in self.statuses.items() if s == "trained")

    @property
    def skipped(self) -> list[str]:
        return sorted(p for p, s in self.statuses.items() if s == "skipped")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measured(way: Way, pg: PostgresServer) -> Iterator[None]:
    cpu0, db0, wall0 = children_cpu(), pg.cpu_seconds(), time.monotonic()
    yield
    way.wall = time.monotonic() - wall0
    way.trainer_cpu = children_cpu() - cpu0
    time.sleep(0.5)  # let the server reap the backends of the last processes
    way.db_cpu = pg.cpu_seconds() - db0


class Runner:
    def __init__(self, pg: PostgresServer, work: Path, trials: str, jobs: int) -> None:
        self.pg, self.work, self.trials, self.jobs = pg, work, trials, jobs
        self.count = 0

    def env(self, schema: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
        env.update(
            {
                "TRAINER_DATA_DSN": self.pg.dsn,
                "TRAINER_DATA_TABLE": f"{DATA_SCHEMA}.sales",
                "TRAINER_OUTPUT_SCHEMA": schema,
                "TRAINER_TRIALS": self.trials,
                "TRAINER_LOG_FORMAT": "json",
                "TRAINER_TRAININGJOB": "bench/nightly",
                "MPLBACKEND": "Agg",
                **extra,
            }
        )
        return env

    def run(self, args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
        """One trainer process (a pod); returns its termination message and its CPU seconds."""
        self.count += 1
        n = self.count
        term, log = self.work / f"term-{n}.json", self.work / f"log-{n}.txt"
        env = {**env, "TRAINER_TERMINATION_LOG": str(term)}
        with open(log, "w") as out:
            proc = subprocess.Popen([TRAINER, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = log.read_text()[-1500:]
            raise SystemExit(f"forecast-trainer {' '.join(args)} exited {proc.returncode}: {tail}")
        return json.loads(term.read_text()), usage.ru_utime + usage.ru_stime

    def pods(self, products: list[str], env: dict[str, str], way: Way) -> dict[str, str]:
        """One ``train`` process per product, ``jobs`` at a time; product -> status."""

        def one(product: str) -> tuple[str, str, float]:
            doc, cpu = self.run(["train"], {**env, "TRAINER_PRODUCT_ID": product})
            return product, doc["products"][0]["status"], cpu

        with ThreadPoolExecutor(self.jobs) as pool:
            done = list(pool.map(one, products))
        for _, status, cpu in done:
            way.process_cpu.setdefault(status, []).append(cpu)
        way.processes += len(products)
        return {product: status for product, status, _ in done}


OUTPUT_TABLES = ("forecast_models", "forecasts", "forecast_intervals", "forecast_quantiles", "forecast_champions")
"""Every table of the output schema (store.MIGRATIONS) but the version table, copied row by row."""


def copy_schema(pg: PostgresServer, source: str, target: str) -> None:
    """A copy of the first night's output (models with their ids, forecasts, bands, champions,
    schema version)."""
    tables = "".join(
        f"CREATE TABLE {target}.{t} (LIKE {source}.{t} INCLUDING ALL); "
        f"INSERT INTO {target}.{t} SELECT * FROM {source}.{t}; ANALYZE {target}.{t}; "
        for t in OUTPUT_TABLES
    )
    pg.query(
        timeout=600,
        sql=f"CREATE SCHEMA {target}; "
        f"CREATE TABLE {target}.forecast_trainer_schema_version AS TABLE {source}.forecast_trainer_schema_version; "
        + tables,
    )


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the first is the header) as a Markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def table(ways: list[Way], reference: Way) -> str:
    header = ("second night", "processes", "trained", "skipped", "wall s", "trainer CPU s", "DB CPU s", "CPU vs (a)")
    rows = [header]
    for w in ways:
        total = w.trainer_cpu + w.db_cpu
        ratio = (reference.trainer_cpu + reference.db_cpu) / total if total else float("inf")
        rows.append(
            (
                w.name,
                str(w.processes),
                str(len(w.trained)),
                str(len(w.skipped)),
                f"{w.wall:.1f}",
                f"{w.trainer_cpu:.1f}",
                f"{w.db_cpu:.1f}",
                "1x" if w is reference else f"{ratio:.0f}x less",
            )
        )
    return markdown_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--trials", default="auto", help="TRAINER_TRIALS of every run (default: automatic)")
    parser.add_argument("--jobs", type=int, default=2, help="trainer processes at a time (default 2)")
    parser.add_argument("--changed", type=float, default=0.05, help="share of products that get a new day")
    args = parser.parse_args()

    pg = PostgresServer(script_timeout=180)
    work = Path(tempfile.mkdtemp(prefix="skip-bench-"))
    try:
        pg.start()
        runner = Runner(pg, work, args.trials, args.jobs)
        started = time.monotonic()
        pg.query(timeout=600, sql=f"CREATE SCHEMA {DATA_SCHEMA}")
        subprocess.run(
            [
                *(TRAINER, "sample-data", "--products", str(args.products), "--days", str(args.days)),
                *("--dsn", pg.dsn, "--table", f"{DATA_SCHEMA}.sales", "--log-format", "json"),
            ],
            check=True,
            capture_output=True,
        )
        products = [
            r[0] for r in pg.query(timeout=600, sql=f"SELECT DISTINCT product_id FROM {DATA_SCHEMA}.sales ORDER BY 1")
        ]
        print(f"{len(products)} products x {args.days} days, trials {args.trials}, {args.jobs} processes at a time")

        # First night: everything trained, in --jobs processes over the product list.
        first = Way("first night")
        chunks = [products[i :: args.jobs] for i in range(args.jobs)]
        with measured(first, pg), ThreadPoolExecutor(args.jobs) as pool:
            env = runner.env("night1")
            docs = [
                d
                for d, _ in pool.map(
                    lambda c: runner.run(["train"], {**env, "TRAINER_PRODUCTS_JSON": json.dumps(c)}), chunks
                )
            ]
        trained = sum(d["counts"]["trained"] for d in docs)  # (entries beyond 4096 bytes are omitted)
        assert trained == len(products), [d["counts"] for d in docs]
        print(f"first night: {trained} trained in {first.wall:.0f} s, {first.trainer_cpu:.0f} CPU s")

        # Next day: a new day of sales for every 20th product.
        step = max(1, round(1 / args.changed))
        changed = products[::step]
        pg.query(
            timeout=600,
            sql=f"INSERT INTO {DATA_SCHEMA}.sales SELECT product_id, max(ds) + 1, round(avg(y)) "
            f"FROM {DATA_SCHEMA}.sales WHERE product_id IN ({', '.join(repr(p) for p in changed)}) GROUP BY product_id",
        )
        for schema in ("night2_a", "night2_b", "night2_c"):
            copy_schema(pg, "night1", schema)
        pg.query(timeout=600, sql=f"ANALYZE {DATA_SCHEMA}.sales")

        ways: list[Way] = []
        a = Way("(a) train, one process per product")
        with measured(a, pg):
            a.statuses = runner.pods(products, runner.env("night2_a"), a)
        ways.append(a)

        b = Way("(b) train --skip-unchanged, one process per product")
        with measured(b, pg):
            b.statuses = runner.pods(products, runner.env("night2_b", TRAINER_SKIP_UNCHANGED="true"), b)
        ways.append(b)

        c = Way("(c) unchanged once + train for the changed")
        products_file = work / "products.json"
        products_file.write_text(json.dumps(products))
        with measured(c, pg):
            plan, plan_cpu = runner.run(["unchanged"], runner.env("night2_c", TRAINER_PRODUCTS_FILE=str(products_file)))
            c.processes += 1
            c.process_cpu["check"] = [plan_cpu]
            ordered = sorted(products)
            if plan["truncated"]:
                todo = ordered  # the documented fallback: train (and skip in the pods) everything
                c.notes.append("unchanged ranges truncated: every product launched")
            else:
                unchanged = {ordered[i] for i in parse_ranges(plan["unchanged"])}
                todo = [p for p in products if p not in unchanged]
                c.statuses = {p: "skipped" for p in unchanged}
            c.statuses.update(runner.pods(todo, runner.env("night2_c", TRAINER_SKIP_UNCHANGED="true"), c))
            c.notes.append(
                f"the check pod: {plan['checked']} checked, {plan['changed']} changed in {plan['seconds']} s"
            )
        ways.append(c)

        for w in (b, c):
            if w.trained != sorted(changed) or len(w.skipped) != len(products) - len(changed):
                raise SystemExit(f"{w.name}: trained {w.trained}, expected {sorted(changed)}")
        assert len(a.trained) == len(products), a.statuses

        print()
        print(table(ways, a))
        print()
        print(f"changed products: {len(changed)} of {len(products)} (every {step}th got one more day)")
        for w in ways:
            for status, cpus in sorted(w.process_cpu.items()):
                mean = sum(cpus) / len(cpus)
                print(f"{w.name}: {len(cpus)} {status} process(es), {mean:.2f} CPU s each on average")
        for w in ways:
            for note in w.notes:
                print(f"{w.name}: {note}")
        print(f"bench total {time.monotonic() - started:.0f} s; data and logs in {work}")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
