"""Deterministic synthetic bakery sales: the demo data and the benchmark's workload.

Each product's series depends only on (seed, product index), so product 3 is the same whether
10 or 1000 products are generated. Ingredients:
- a base level (lognormal across products) and a gentle trend;
- weekly seasonality (weekends sell more; each product has its own profile);
- yearly seasonality (a summer or winter peak of product-specific size);
- holidays: Christmas Eve and New Year's Eve rush, Easter Saturday rush, closed on Christmas
  Day and New Year's Day (zero sales);
- overdispersed count noise (gamma-Poisson);
- every 7th product is intermittent (a low daily rate: many zero days);
- every 5th product has a level shift (+30..70 % or -30 %) in the last quarter of its history.
Product ids look like ``bakery-croissant-001`` and do not depend on the seed.

``--bad-products`` adds four products the validator must refuse (too short, all zero,
negative values, constant) for demos and tests.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from forecast_trainer.config import SampleDataConfig
from forecast_trainer.logs import get_logger

log = get_logger("sample_data")

ITEMS = (
    "croissant",
    "baguette",
    "sourdough",
    "brioche",
    "pain-au-chocolat",
    "cinnamon-roll",
    "rye-bread",
    "focaccia",
    "muffin",
    "scone",
    "bagel",
    "eclair",
    "macaron",
    "danish",
    "pretzel",
    "ciabatta",
    "donut",
    "cookie",
    "fruit-tart",
    "strudel",
)
BAD_PRODUCTS = ("bad-too-short-001", "bad-all-zero-001", "bad-negative-001", "bad-constant-001")


def product_id(index: int) -> str:
    """``bakery-<item>-<nnn>``: item cycles through ITEMS, nnn counts the cycles from 001."""
    return f"bakery-{ITEMS[index % len(ITEMS)]}-{index // len(ITEMS) + 1:03d}"


@dataclass(frozen=True)
class Traits:
    intermittent: bool
    level_shift: bool


def traits(index: int) -> Traits:
    return Traits(intermittent=index % 7 == 5, level_shift=index % 5 == 3)


def _holiday_factors(days: list[date]) -> Any:
    import numpy as np
    from dateutil.easter import easter

    factors = np.ones(len(days))
    easter_saturdays = {easter(y) - timedelta(days=1) for y in {d.year for d in days}}
    for i, d in enumerate(days):
        if (d.month, d.day) in ((12, 25), (1, 1)):
            factors[i] = 0.0
        elif (d.month, d.day) == (12, 24):
            factors[i] = 1.9
        elif (d.month, d.day) == (12, 31):
            factors[i] = 1.4
        elif d in easter_saturdays:
            factors[i] = 1.6
    return factors


def series(index: int, days: int, seed: int, start: date) -> tuple[list[date], list[float]]:
    """Daily sales of product ``index``."""
    import numpy as np

    rng = np.random.default_rng([seed, index])
    kind = traits(index)
    dates = [start + timedelta(days=i) for i in range(days)]
    t = np.arange(days, dtype=float)
    level = rng.lognormal(np.log(0.8), 0.3) if kind.intermittent else rng.lognormal(np.log(40.0), 0.8)
    trend = 1.0 + rng.normal(0.05, 0.08) * t / 365.25
    weekly_profile = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.35, 1.2]) * rng.normal(1.0, 0.05, 7)
    weekday = np.array([d.weekday() for d in dates])
    doy = np.array([d.timetuple().tm_yday for d in dates], dtype=float)
    amplitude = rng.uniform(0.05, 0.3)
    peak = rng.choice([15.0, 200.0])  # winter or summer product
    yearly = 1.0 + amplitude * np.cos(2 * np.pi * (doy - peak) / 365.25)
    mean = level * np.clip(trend, 0.2, None) * weekly_profile[weekday] * yearly * _holiday_factors(dates)
    if kind.level_shift and days > 60:
        at = int(days * rng.uniform(0.75, 0.9))
        mean[at:] *= rng.choice([rng.uniform(1.3, 1.7), 0.7])
    shape = 20.0  # gamma-Poisson: variance = mean + mean^2 / shape
    counts = rng.poisson(rng.gamma(shape, mean / shape))
    return dates, [float(v) for v in counts]


def bad_series(name: str, days: int, start: date) -> tuple[list[date], list[float]]:
    n = 10 if name == "bad-too-short-001" else max(days, 40)
    dates = [start + timedelta(days=i) for i in range(n)]
    if name == "bad-all-zero-001":
        values = [0.0] * n
    elif name == "bad-negative-001":
        values = [float(5 + (i % 7)) if i % 11 else -3.0 for i in range(n)]
    elif name == "bad-constant-001":
        values = [12.0] * n
    else:
        values = [float(10 + i % 3) for i in range(n)]
    return dates, values


def rows(products: int, days: int, seed: int, start: date, bad: bool = False) -> Iterator[tuple[str, date, float]]:
    """Long-format rows (product_id, ds, y), product by product."""
    for index in range(products):
        dates, values = series(index, days, seed, start)
        pid = product_id(index)
        yield from ((pid, d, v) for d, v in zip(dates, values, strict=True))
    if bad:
        for name in BAD_PRODUCTS:
            dates, values = bad_series(name, days, start)
            yield from ((name, d, v) for d, v in zip(dates, values, strict=True))


def write_csv(path: str, data: Iterator[tuple[str, date, float]]) -> int:
    count = 0
    stream: Any = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="") if path == "-" else None
    handle = stream or open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    try:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["product_id", "ds", "y"])
        for pid, d, v in data:
            writer.writerow([pid, d.isoformat(), f"{v:g}"])
            count += 1
    finally:
        if stream is not None:
            stream.detach()
        else:
            handle.close()
    return count


async def write_postgres(cfg: SampleDataConfig, data: list[tuple[str, date, float]]) -> int:
    """Create the table if needed, replace the rows of the generated products, insert."""
    from forecast_trainer.db import Database
    from forecast_trainer.sqlident import check_table, qualified

    assert cfg.dsn is not None
    schema, name = check_table(cfg.table, "--table")
    table = qualified(schema, name)
    products = sorted({r[0] for r in data})
    db = Database(cfg.dsn, cfg.db, role="output database")

    async def work(conn: Any) -> int:
        async with conn.transaction():
            if schema:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {qualified(None, schema)}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (product_id text NOT NULL, ds date NOT NULL, "
                "y double precision)"
            )
            await conn.execute(f"DELETE FROM {table} WHERE product_id = ANY($1::text[])", products)
            await conn.copy_records_to_table(name, schema_name=schema, records=data, columns=["product_id", "ds", "y"])
        return len(data)

    try:
        return await db.run(f"cannot write sample data to table {cfg.table!r}", work)
    finally:
        await db.close()


def run_sample_data(cfg: SampleDataConfig) -> int:
    start = date.fromisoformat(cfg.start)
    generated = rows(cfg.products, cfg.days, cfg.seed, start, cfg.bad_products)
    total = cfg.products + (len(BAD_PRODUCTS) if cfg.bad_products else 0)
    if cfg.csv:
        count = write_csv(cfg.csv, generated)
        where = "stdout" if cfg.csv == "-" else cfg.csv
    else:
        count = asyncio.run(write_postgres(cfg, list(generated)))
        where = f"table {cfg.table}"
    log.info(
        "wrote %d rows for %d products to %s",
        count,
        total,
        where,
        extra={"fields": {"event": "sample_data", "rows": count, "products": total}},
    )
    if cfg.csv != "-":
        print(f"sample data: {total} products x {cfg.days} days ({count} rows) -> {where}")
    return 0
