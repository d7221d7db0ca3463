"""Data watermarks and config hashes: has a product's model been trained on exactly this?

A product is *unchanged* when its newest stored model was trained on the same data (watermark)
with the same model-affecting configuration (config hash); ``train --skip-unchanged`` and the
``unchanged`` planning command then skip it (unchanged.py). This module is imported before any
data or model library, so a skipped product never pays for pandas, Prophet or Optuna.

Watermark of a product's history, read the way ``train`` reads it (the product column compared
verbatim as text, the time column as text in ISO DateStyle and the session TimeZone, the
value as text):

- ``rows``: the number of rows, ``last``: the greatest time value (as text; informative);
- ``hash``: SHA-256 over the scheme, ``rows``, ``last`` and a *multiset digest*: the exact sum
  over every row of a 64-bit hash of its time and value texts (PostgreSQL's
  ``hashtextextended(time, seed = hashtextextended(value))``; a NULL value and a NULL time
  have their own constants). Any added, removed or edited row changes it (the chance that an
  edit leaves it unchanged is about 2**-64); the order of the rows does not, and neither does
  it for the model (validate.py sorts, sums duplicate periods, drops exact duplicates).
  PostgreSQL computes it in ONE aggregate per product, or one GROUP BY per batch of products,
  in parallel workers and without sorting anything. Measured on 10,000 products x 1,095 days
  (11 M rows, index on (product_id, ds), 2 cores): count(*) alone 1.6 s, this digest 2.6 s,
  the sum of per-row md5s 10.4 s, md5 of an ordered ``string_agg`` (the first design) 11.2 s.
  ``hashtextextended`` backs hash partitioning, so PostgreSQL keeps it stable; were it ever to
  change (or the database move to a server of the other byte order), every product would be
  retrained once: a changed digest never skips anything.

A CSV source (embedded mode) gets the same kind of watermark from Python's csv module
(scheme ``csv1``: the md5 of each row's JSON ``[time, value]`` strings, summed the same way),
computed once per run without pandas.

Config hash: SHA-256 of the canonical JSON of ``config_document(cfg)``, every option that
changes the model (``MODEL_FIELDS``), ``MODEL_REVISION``, the trainer's version and the versions
of the libraries that fit it (``MODEL_LIBRARIES`` and the CmdStan Prophet bundles): a new trainer
image with other numerics retrains every product once instead of skipping it.
``NON_MODEL_FIELDS`` lists the options that do not (where data is read from or written to,
logging, timeouts of the database, identities); a unit test fails when an option is in neither
list.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecast_trainer.config import TrainConfig
from forecast_trainer.errors import ConfigError, DataInvalid
from forecast_trainer.version import __version__

# Bump when the trainer's code would fit a different model from the same data and options
# (new validation rule, other CV folds, another selection rule, ...): every product is then
# retrained once. A change that only touches logging, reporting or the operator does not.
MODEL_REVISION = 2  # 2: the winner is combined with the best naive baseline (blend.py)
PG_SCHEME = "pg1"  # bump when the SQL digest changes (every product then retrains once)
CSV_SCHEME = "csv1"

# TrainConfig fields that change the model (their values go into the config hash).
MODEL_FIELDS: tuple[str, ...] = (
    "horizon_days",
    "frequency",
    "trials",
    "metric",
    "folds",
    "interval_levels",
    "quantiles",
    "timeout_seconds",
    "warm_start",
    "business_timezone",
    "fill_missing",
    "improvement_margin",
    "models",
    "country_holidays",
    "tuning_seed",
)
# TrainConfig fields that do not: which products, where data comes from (the watermark covers
# the data itself) or goes to, identities, reporting and database settings.
NON_MODEL_FIELDS: tuple[str, ...] = (
    "products",
    "product_id",
    "data_csv",
    "data_dsn",
    "data_table",
    "product_column",
    "time_column",
    "value_column",
    "output_dsn",
    "output_schema",
    "output_dir",
    "trainingjob",
    "run_key",
    "termination_log",
    "pushgateway",
    "log_format",
    "db",
    "skip_unchanged",
    "lock_heartbeat_seconds",
    # Champion/challenger and MLflow decide what happens to a model, not what is fitted (docs/mlflow.md).
    "champion_challenger",
    "pin_champion",
    "tracking_uri",
    "experiment_name",
    "registered_model_prefix",
    "tracking_budget_seconds",
    "shard",  # which products a process trains (shard mode), not how
)
# Libraries whose version changes what is fitted (holidays only when --country-holidays is set):
# the model families, the tuner, the numerics under them (numpy, pandas: resampling, rolling CV
# folds) and the Stan interface; plus the CmdStan build Prophet's wheel ships (cmdstan_version).
MODEL_LIBRARIES: tuple[str, ...] = ("prophet", "statsforecast", "optuna", "numpy", "pandas", "cmdstanpy")

WATERMARK_FILE = "watermark.json"  # per product folder in --output-dir mode, next to model.json
BATCH = 10_000  # product ids per set-based statement


@dataclass(frozen=True)
class Watermark:
    """What a product's history looked like when it was read (see the module doc)."""

    rows: int
    last: str | None
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "last": self.last, "hash": self.hash}


def _final_hash(scheme: str, rows: int, last: str | None, digest: str) -> str:
    text = json.dumps([scheme, rows, last, digest], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cmdstan_version() -> str:
    """The CmdStan bundled in Prophet's wheel (``prophet/stan_model/cmdstan-X.Y.Z``), found
    without importing Prophet; "absent" when there is none."""
    spec = importlib.util.find_spec("prophet")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        found = sorted(p.name for p in Path(folder, "stan_model").glob("cmdstan-*"))
        if found:
            return found[-1].removeprefix("cmdstan-")
    return "absent"


def config_document(cfg: TrainConfig) -> dict[str, Any]:
    """Everything that changes the model, as plain JSON values (stored in metrics.watermark)."""
    doc: dict[str, Any] = {}
    for name in MODEL_FIELDS:
        value = getattr(cfg, name)
        if name == "trials" and value is None:
            value = "auto"
        if isinstance(value, tuple):
            value = list(value)
        doc[name] = value
    libraries = list(MODEL_LIBRARIES) + (["holidays"] if cfg.country_holidays else [])
    doc["model_revision"] = MODEL_REVISION
    # The trainer's own version: a new image may fit differently without a MODEL_REVISION bump.
    doc["trainer"] = __version__
    doc["libraries"] = {name: library_version(name) for name in libraries}
    doc["libraries"]["cmdstan"] = cmdstan_version()
    return doc


def config_hash(cfg: TrainConfig) -> str:
    text = json.dumps(config_document(cfg), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- PostgreSQL data


def _aggregates(time_sql: str, value_sql: str) -> str:
    row = f"coalesce(hashtextextended({time_sql}::text, coalesce(hashtextextended({value_sql}::text, 0), 1)), 2)"
    return f"count(*) AS n, max({time_sql})::text AS last, sum({row})::text AS digest"


def one_sql(table_sql: str, product_sql: str, time_sql: str, value_sql: str) -> str:
    """One product's watermark: ONE aggregate (``$1`` = the product id, compared as text)."""
    return f"SELECT {_aggregates(time_sql, value_sql)} FROM {table_sql} WHERE {product_sql}::text = $1"


def batch_sql(table_sql: str, product_sql: str, time_sql: str, value_sql: str) -> str:
    """Watermarks of many products in one GROUP BY (``$1`` = text[] of product ids)."""
    return (
        f"SELECT {product_sql}::text AS product, {_aggregates(time_sql, value_sql)} FROM {table_sql} "
        f"WHERE {product_sql}::text = ANY($1::text[]) GROUP BY 1"
    )


SESSION_SQL = "SET LOCAL DateStyle TO 'ISO, YMD'; SET LOCAL extra_float_digits TO 1"


def from_row(row: Any) -> Watermark | None:
    """The Watermark of an aggregate row (None when the product has no rows)."""
    rows = int(row["n"] or 0)
    if rows == 0:
        return None
    return Watermark(rows, row["last"], _final_hash(PG_SCHEME, rows, row["last"], str(row["digest"])))


async def one_watermark(conn: Any, source: Any, product: str) -> Watermark | None:
    """The product's watermark on ``conn`` (inside the caller's transaction; see PostgresSource)."""
    await conn.execute(SESSION_SQL)
    row = await conn.fetchrow(one_sql(source.table_sql, source.product_sql, source.time_sql, source.value_sql), product)
    return from_row(row)


async def pg_watermarks(source: Any, products: list[str], batch: int = BATCH) -> dict[str, Watermark]:
    """Watermarks of ``products`` (absent: no rows), one GROUP BY per batch of ids."""
    sql = batch_sql(source.table_sql, source.product_sql, source.time_sql, source.value_sql)
    found: dict[str, Watermark] = {}
    for start in range(0, len(products), batch):
        chunk = products[start : start + batch]

        async def work(conn: Any, chunk: list[str] = chunk) -> list[Any]:
            async with conn.transaction(readonly=True):
                await conn.execute(SESSION_SQL)
                if len(chunk) == 1:  # the single-product form: ONE aggregate, the index on the product
                    row = await conn.fetchrow(
                        one_sql(source.table_sql, source.product_sql, source.time_sql, source.value_sql), chunk[0]
                    )
                    return [{"product": chunk[0], **dict(row)}]
                return list(await conn.fetch(sql, chunk))

        for row in await source.db.run(f"cannot compute the data watermarks of table {source.table_name!r}", work):
            mark = from_row(row)
            if mark is not None:
                found[row["product"]] = mark
    return found


# --------------------------------------------------------------------------- CSV data


def _digest64(text: str) -> int:
    return int(struct.unpack(">q", hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()[:8])[0])


class _Acc:
    __slots__ = ("digest", "last", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self.last: str | None = None
        self.digest = 0


def csv_watermarks(path: str, product_column: str, time_column: str, value_column: str) -> dict[str, Watermark]:
    """Every product's watermark in a long-format CSV, read as CsvSource reads it (no pandas).

    Product ids are stripped and empty ones dropped, empty values count as missing, exactly
    as in data.CsvSource. ConfigError when the file is missing, DataInvalid when a column is.
    """
    if not os.path.exists(path):
        raise ConfigError(f"data CSV {path!r} does not exist")
    if os.path.isdir(path):
        raise ConfigError(f"data CSV {path!r} is a directory")
    accs: dict[str, _Acc] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = [str(c).strip() for c in next(reader, [])]
            try:
                ip, it, iv = (header.index(c) for c in (product_column, time_column, value_column))
            except ValueError:
                raise DataInvalid(
                    f"data CSV {path!r} lacks a product, time or value column", reason="MissingColumns"
                ) from None
            width = max(ip, it, iv)
            for record in reader:
                if not record:
                    continue
                if len(record) <= width:
                    record = record + [""] * (width + 1 - len(record))
                product = record[ip].strip()
                if not product:
                    continue
                ds, y = record[it], record[iv]
                acc = accs.get(product)
                if acc is None:
                    acc = accs[product] = _Acc()
                acc.rows += 1
                if ds and (acc.last is None or ds > acc.last):
                    acc.last = ds
                key = json.dumps([ds or None, y or None], ensure_ascii=False)
                acc.digest += _digest64(key)
    except PermissionError:
        raise ConfigError(f"data CSV {path!r} is not readable") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataInvalid(f"data CSV {path!r} is not valid CSV: {exc}", reason="MalformedCsv") from None
    return {
        p: Watermark(a.rows, a.last, _final_hash(CSV_SCHEME, a.rows, a.last, str(a.digest))) for p, a in accs.items()
    }


# --------------------------------------------------------------------------- stored models


@dataclass(frozen=True)
class StoredModel:
    """A product's newest stored model, as far as skipping needs it."""

    model_id: int | str
    checksum: str | None
    data_hash: str | None
    config_hash: str | None
    run_key: str | None = None
    rows: int | None = None
    last: str | None = None
    trained_at: str | None = None
    family: str | None = None
    error: float | None = None


async def schema_version(conn: Any, schema: str) -> int:
    """The output schema's migration version (0 when it was never migrated)."""
    from forecast_trainer.sqlident import qualified
    from forecast_trainer.store import VERSION_TABLE

    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", qualified(schema, VERSION_TABLE))
    if not exists:
        return 0
    return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {qualified(schema, VERSION_TABLE)}"))


WATERMARK_VERSION = 3  # the store migration that added the watermark columns


async def latest_models(
    db: Any, schema: str, products: list[str], *, details: bool = False, batch: int = BATCH
) -> dict[str, StoredModel]:
    """Each product's newest model in ``schema``'s forecast_models (absent: none, or no watermark columns).

    One index probe per product (forecast_models_watermark_idx: an index-only scan), batched.
    ``details`` also reads the checksum, trained_at, the winning family and the CV error (for a
    skipped product's report).
    """
    from forecast_trainer.sqlident import qualified

    table = qualified(schema, "forecast_models")
    columns = "f.id, f.data_hash, f.config_hash, f.run_key"
    if details:
        columns += (
            ", f.checksum, f.data_rows, f.data_last, "
            "to_char(f.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS trained_at, "
            "f.metrics->>'family' AS family, f.metrics->'cv'->>'error' AS error"
        )
    sql = (
        f"SELECT p.product, m.* FROM unnest($1::text[]) AS p(product) CROSS JOIN LATERAL "
        f"(SELECT {columns} FROM {table} f WHERE f.product_id = p.product ORDER BY f.id DESC LIMIT 1) m"
    )
    found: dict[str, StoredModel] = {}

    async def version(conn: Any) -> int:
        return await schema_version(conn, schema)

    if await db.run(f"cannot read the version of schema {schema!r}", version) < WATERMARK_VERSION:
        return found
    for start in range(0, len(products), batch):
        chunk = products[start : start + batch]

        async def work(conn: Any, chunk: list[str] = chunk) -> list[Any]:
            return list(await conn.fetch(sql, chunk))

        for row in await db.run(f"cannot read the latest models in schema {schema!r}", work):
            found[row["product"]] = StoredModel(
                model_id=int(row["id"]),
                checksum=row["checksum"] if details else None,
                data_hash=row["data_hash"],
                config_hash=row["config_hash"],
                run_key=row["run_key"],
                rows=row["data_rows"] if details else None,
                last=row["data_last"] if details else None,
                trained_at=row["trained_at"] if details else None,
                family=row["family"] if details else None,
                error=_float(row["error"]) if details else None,
            )
    return found


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- --output-dir


def dir_document(mark: Watermark, config: str, checksum: str) -> dict[str, Any]:
    return {"v": 1, **mark.as_dict(), "config_hash": config, "checksum": checksum, "model": "model.json"}


def write_dir_watermark(output_dir: str, folder: str, mark: Watermark, config: str, checksum: str) -> None:
    """Record the watermark next to the product's model.json (atomic rename)."""
    path = os.path.join(output_dir, folder, WATERMARK_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(dir_document(mark, config, checksum), fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)


def read_dir_model(output_dir: str, product: str) -> StoredModel | None:
    """The watermark stored with ``product``'s model in ``output_dir`` (None: none, or unusable).

    Usable only when model.json.sha256 still names the checksum the watermark was written with
    (a model written later without a watermark does not inherit it).
    """
    from forecast_trainer.outputs import product_folder

    folder = os.path.join(output_dir, product_folder(product))
    try:
        with open(os.path.join(folder, WATERMARK_FILE), encoding="utf-8") as fh:
            doc = json.load(fh)
        with open(os.path.join(folder, "model.json.sha256"), encoding="utf-8") as fh:
            recorded = (fh.read().split() or [""])[0]
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("checksum") != recorded:
        return None
    family, error = None, None
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as fh:
            metrics = json.load(fh)
        family = metrics.get("family") if isinstance(metrics.get("family"), str) else None
        error = _float((metrics.get("cv") or {}).get("error"))
    except (OSError, ValueError, AttributeError):
        pass
    return StoredModel(
        model_id=product_folder(product),
        checksum=recorded,
        data_hash=doc.get("hash"),
        config_hash=doc.get("config_hash"),
        rows=doc.get("rows"),
        last=doc.get("last"),
        family=family,
        error=error,
    )


# --------------------------------------------------------------------------- the decision


def is_unchanged(mark: Watermark | None, stored: StoredModel | None, config: str, run_key: str | None = None) -> bool:
    """True when ``stored`` (the newest model) was trained on ``mark`` with config hash ``config``.

    A model stored under this run's own run key is not "unchanged": an earlier attempt of this
    very run trained it, and guard.py reports it as trained.
    """
    if mark is None or stored is None or not stored.data_hash or not stored.config_hash:
        return False
    if run_key is not None and stored.run_key == run_key:
        return False
    return stored.data_hash == mark.hash and stored.config_hash == config


def index_ranges(indexes: Iterable[int]) -> str:
    """Sorted, compressed ranges: [0, 1, 2, 3, 7] -> "0-3,7"."""
    parts: list[str] = []
    run_start: int | None = None
    previous: int | None = None
    for i in sorted(set(indexes)):
        if run_start is None:
            run_start = previous = i
            continue
        assert previous is not None
        if i == previous + 1:
            previous = i
            continue
        parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
        run_start = previous = i
    if run_start is not None:
        parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
    return ",".join(parts)


def index_bitmap(indexes: Iterable[int], total: int) -> str:
    """``indexes`` (each in ``range(total)``) as a bitmap: bit ``i % 8`` (least significant first)
    of byte ``i // 8`` set for each index, base64 (standard alphabet, padded). 10,000 products take
    1,668 characters whatever their pattern: what index ranges cannot promise."""
    bits = bytearray((total + 7) // 8)
    for i in indexes:
        if not 0 <= i < total:
            raise ValueError(f"index {i} outside 0..{total - 1}")
        bits[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(bits)).decode("ascii")


def parse_ranges(text: str) -> list[int]:
    """The inverse of index_ranges (for tests and tools)."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out
