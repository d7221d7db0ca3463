"""PostgreSQL output: schema migrations, atomic model + forecast writes, verified loads.

Tables (in the output schema, default ``public``):
  forecast_models(id bigserial, product_id, trainingjob, trained_at, prophet_version,
                  params jsonb, metrics jsonb, model_json, checksum, run_key,
                  data_rows, data_last, data_hash, config_hash)   (watermark.py; version 3)
  forecasts(model_id -> forecast_models.id, product_id, ds, yhat, yhat_lower, yhat_upper)
  forecast_intervals(model_id, product_id, ds, level, lower, upper)     (version 4)
  forecast_quantiles(model_id, product_id, ds, quantile, value)         (version 4)
  forecast_trainer_schema_version(version, description, applied_at)
  forecast_champions(product_id PRIMARY KEY, model_id -> forecast_models.id, since, pinned,
                     decided_by, previous_model_id, registry_model_id)   (champion.py; version 5)
  champion_forecasts: view of the forecasts of each product's champion
  run_products(run_key, idx, product_id)   the sorted product list ``discover`` found (version 6)
  run_outcomes(run_key, product_id, status, reason, message, model_id, finished_at)
                                           every product's outcome in a run (shard mode; version 6)

``migrate`` is idempotent and safe to run from many pods at once: it holds a transaction-scoped
advisory lock (keyed by the schema name) while it checks and applies migrations.
``yhat_lower``/``yhat_upper`` stay the first requested level (80 % by default) for existing
readers; every level and every quantile also goes to the two normalised tables, one row per
(model, level or quantile, day). Normalised rather than a column per level: the levels and
quantiles are each TrainingJob's choice (``spec.forecast.intervals``/``quantiles``), so wide
columns would need an ALTER TABLE on a table many pods write to whenever someone asks for a new
one; the tables also keep the level as a number that SQL can filter on
(``WHERE level = 95``).

A model and its forecast are written in ONE transaction: either both exist or neither. The
transaction holds the product's advisory lock (``pg_advisory_xact_lock``, key from locking.py)
and inserts with ``ON CONFLICT (run_key, product_id) DO NOTHING``: a transaction retried after
a lost COMMIT acknowledgement finds the row of the attempt that did commit instead of adding
a second one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from forecast_trainer import model as models
from forecast_trainer.db import Database
from forecast_trainer.errors import ModelIntegrityError
from forecast_trainer.jsonutil import json_safe
from forecast_trainer.locking import product_lock_key
from forecast_trainer.logs import get_logger
from forecast_trainer.sqlident import check_identifier, qualified, quote

log = get_logger("store")

VERSION_TABLE = "forecast_trainer_schema_version"
LOCK_NAMESPACE = 1179931730  # "FTTR": first key of pg_advisory_xact_lock(int, int)

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "forecast_models and forecasts",
        (
            """CREATE TABLE IF NOT EXISTS {s}.forecast_models (
                id bigserial PRIMARY KEY,
                product_id text NOT NULL,
                trainingjob text,
                trained_at timestamptz NOT NULL DEFAULT now(),
                prophet_version text NOT NULL,
                params jsonb NOT NULL,
                metrics jsonb NOT NULL,
                model_json text NOT NULL,
                checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{{64}}$')
            )""",
            "CREATE INDEX IF NOT EXISTS forecast_models_product_idx ON {s}.forecast_models (product_id, id DESC)",
            """CREATE TABLE IF NOT EXISTS {s}.forecasts (
                model_id bigint NOT NULL REFERENCES {s}.forecast_models (id) ON DELETE CASCADE,
                product_id text NOT NULL,
                ds timestamp NOT NULL,
                yhat double precision NOT NULL,
                yhat_lower double precision,
                yhat_upper double precision,
                PRIMARY KEY (model_id, ds)
            )""",
            "CREATE INDEX IF NOT EXISTS forecasts_product_ds_idx ON {s}.forecasts (product_id, ds)",
        ),
    ),
    (
        2,
        "forecast_models.run_key: one model per (run key, product)",
        (
            "ALTER TABLE {s}.forecast_models ADD COLUMN IF NOT EXISTS run_key text",
            "CREATE UNIQUE INDEX IF NOT EXISTS forecast_models_run_key_product_uq "
            "ON {s}.forecast_models (run_key, product_id) WHERE run_key IS NOT NULL",
        ),
    ),
    (
        3,
        "forecast_models data watermark and config hash (skip unchanged products)",
        (
            "ALTER TABLE {s}.forecast_models ADD COLUMN IF NOT EXISTS data_rows bigint, "
            "ADD COLUMN IF NOT EXISTS data_last text, ADD COLUMN IF NOT EXISTS data_hash text, "
            "ADD COLUMN IF NOT EXISTS config_hash text",
            # A product's newest model with what skipping compares, from the index alone.
            "CREATE INDEX IF NOT EXISTS forecast_models_watermark_idx "
            "ON {s}.forecast_models (product_id, id DESC) INCLUDE (data_hash, config_hash, run_key)",
        ),
    ),
    (
        4,
        "forecast_intervals and forecast_quantiles: calibrated bands per level and quantile (issue 20)",
        (
            """CREATE TABLE IF NOT EXISTS {s}.forecast_intervals (
                model_id bigint NOT NULL REFERENCES {s}.forecast_models (id) ON DELETE CASCADE,
                product_id text NOT NULL,
                ds timestamp NOT NULL,
                level double precision NOT NULL CHECK (level > 0 AND level < 100),
                lower double precision,
                upper double precision,
                PRIMARY KEY (model_id, level, ds)
            )""",
            """CREATE TABLE IF NOT EXISTS {s}.forecast_quantiles (
                model_id bigint NOT NULL REFERENCES {s}.forecast_models (id) ON DELETE CASCADE,
                product_id text NOT NULL,
                ds timestamp NOT NULL,
                quantile double precision NOT NULL CHECK (quantile > 0 AND quantile < 1),
                value double precision,
                PRIMARY KEY (model_id, quantile, ds)
            )""",
        ),
    ),
    (
        5,
        "forecast_champions: each product's champion model (champion/challenger)",
        (
            """CREATE TABLE IF NOT EXISTS {s}.forecast_champions (
                product_id text PRIMARY KEY,
                model_id bigint NOT NULL REFERENCES {s}.forecast_models (id),
                since timestamptz NOT NULL DEFAULT now(),
                pinned boolean NOT NULL DEFAULT false,
                decided_by text NOT NULL DEFAULT 'first',
                previous_model_id bigint,
                registry_model_id bigint
            )""",
            # Products trained before champions existed: their newest model is their champion.
            "INSERT INTO {s}.forecast_champions (product_id, model_id, decided_by) "
            "SELECT DISTINCT ON (product_id) product_id, id, 'migration' FROM {s}.forecast_models "
            "ORDER BY product_id, id DESC ON CONFLICT (product_id) DO NOTHING",
            "CREATE OR REPLACE VIEW {s}.champion_forecasts AS SELECT f.* FROM {s}.forecasts f "
            "JOIN {s}.forecast_champions c ON c.model_id = f.model_id",
        ),
    ),
    (
        6,
        "run_products and run_outcomes: a run's discovered product list and every product's outcome (issue 19)",
        (
            """CREATE TABLE IF NOT EXISTS {s}.run_products (
                run_key text NOT NULL,
                idx integer NOT NULL CHECK (idx >= 0),
                product_id text NOT NULL,
                PRIMARY KEY (run_key, idx)
            )""",
            """CREATE TABLE IF NOT EXISTS {s}.run_outcomes (
                run_key text NOT NULL,
                product_id text NOT NULL,
                status text NOT NULL,
                reason text,
                message text,
                model_id bigint,
                finished_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (run_key, product_id)
            )""",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class MigrateResult:
    schema: str
    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.after != self.before


async def migrate_connection(conn: Any, schema: str) -> MigrateResult:
    """Create or upgrade ``schema``'s tables on one connection (see the module doc)."""
    check_identifier(schema, "--output-schema")
    s = quote(schema)
    version_table = qualified(schema, VERSION_TABLE)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))", LOCK_NAMESPACE, schema)
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema)
        if not exists:
            await conn.execute(f"CREATE SCHEMA {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {version_table} (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        before = int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {version_table}"))
        for version, description, statements in MIGRATIONS:
            if version <= before:
                continue
            for statement in statements:
                await conn.execute(statement.format(s=s))
            await conn.execute(
                f"INSERT INTO {version_table} (version, description) VALUES ($1, $2)", version, description
            )
    after = max(before, LATEST_VERSION)
    if before > LATEST_VERSION:
        log.warning("schema %s is at version %d, newer than this trainer knows (%d)", schema, before, LATEST_VERSION)
    return MigrateResult(schema, before, after)


async def migrate(db: Database, schema: str) -> MigrateResult:
    async def work(conn: Any) -> MigrateResult:
        return await migrate_connection(conn, schema)

    return await db.run(f"cannot migrate schema {schema!r}", work)


@dataclass(frozen=True)
class ModelRecord:
    product_id: str
    trainingjob: str | None
    prophet_version: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    model_json: str
    checksum: str
    run_key: str | None = None  # idempotency key (<TrainingJob uid>/<retry round>): one model per key and product
    data_rows: int | None = None  # the data watermark the model was trained on (watermark.py)
    data_last: str | None = None
    data_hash: str | None = None
    config_hash: str | None = None  # hash of the model-affecting configuration (watermark.py)
    # champion.py: "first"/"promoted" make this model the product's champion (and write its
    # forecast); "kept" records it as a challenger only (no forecast rows: the champion's stay).
    champion: str = "promoted"
    champion_reason: str = ""
    outcome: bool = False  # also record run_outcomes (run_key, product, 'trained') in the same transaction


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def interval_records(product: str, forecast: Any) -> list[tuple[Any, ...]]:
    """(product_id, ds, level, lower, upper) rows of every level in ``forecast.attrs``."""
    from forecast_trainer.intervals import level_name

    rows = []
    for level in forecast.attrs.get("levels", ()):
        name = level_name(level)
        lower, upper = forecast[f"yhat_lower_{name}"], forecast[f"yhat_upper_{name}"]
        rows += [
            (product, ds.to_pydatetime(), float(level), _finite(lo), _finite(hi))
            for ds, lo, hi in zip(forecast["ds"], lower, upper, strict=True)
        ]
    return rows


def quantile_records(product: str, forecast: Any) -> list[tuple[Any, ...]]:
    """(product_id, ds, quantile, value) rows of every quantile in ``forecast.attrs``."""
    from forecast_trainer.intervals import quantile_name

    rows = []
    for q in forecast.attrs.get("quantiles", ()):
        values = forecast[quantile_name(q)]
        rows += [
            (product, ds.to_pydatetime(), float(q), _finite(v)) for ds, v in zip(forecast["ds"], values, strict=True)
        ]
    return rows


def forecast_records(product: str, forecast: Any) -> list[tuple[Any, ...]]:
    """(product_id, ds, yhat, yhat_lower, yhat_upper) rows; NaN bounds become NULL."""
    return [
        (product, row.ds.to_pydatetime(), float(row.yhat), _finite(row.yhat_lower), _finite(row.yhat_upper))
        for row in forecast.itertuples(index=False)
    ]


FaultHook = Callable[[Any, int], Awaitable[None]]


@dataclass(frozen=True)
class Saved:
    """What a write stored: ``existing`` when an earlier attempt with the same run key had."""

    model_id: int
    checksum: str
    existing: bool = False


AfterCommit = Callable[[Any, Saved], Awaitable[None]]


async def save_connection(
    conn: Any, schema: str, record: ModelRecord, forecast: Any, *, fault_hook: FaultHook | None = None
) -> int:
    """Insert the model and its forecast in one transaction; returns the model id."""
    return (await write_model(conn, schema, record, forecast, fault_hook=fault_hook)).model_id


async def write_model(
    conn: Any,
    schema: str,
    record: ModelRecord,
    forecast: Any,
    *,
    fault_hook: FaultHook | None = None,
    after_commit: AfterCommit | None = None,
) -> Saved:
    """Insert the model and its forecast in one transaction, at most once per (run key, product).

    The transaction first takes the product's advisory lock (``pg_advisory_xact_lock``; the
    second line behind the session lock in locking.py). With a run key, a row of an earlier
    attempt wins: nothing is written and that row is returned (``existing``).
    ``fault_hook(conn, model_id)`` runs between the two writes and ``after_commit(conn, saved)``
    after the COMMIT; tests use them to fail, kill the process or lose the acknowledgement there.
    """
    models_table = qualified(schema, "forecast_models")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)", product_lock_key(schema, record.product_id))
        new_id = await conn.fetchval(
            f"INSERT INTO {models_table} (product_id, trainingjob, prophet_version, params, metrics, "
            "model_json, checksum, run_key, data_rows, data_last, data_hash, config_hash) "
            "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (run_key, product_id) WHERE run_key IS NOT NULL DO NOTHING RETURNING id",
            record.product_id,
            record.trainingjob,
            record.prophet_version,
            json.dumps(json_safe(record.params), allow_nan=False),
            json.dumps(json_safe(record.metrics), allow_nan=False),
            record.model_json,
            record.checksum,
            record.run_key,
            record.data_rows,
            record.data_last,
            record.data_hash,
            record.config_hash,
        )
        if new_id is None:  # only with a run key: an earlier attempt committed this product's model
            assert record.run_key is not None
            earlier = await model_for_run(conn, schema, record.run_key, record.product_id)
            if earlier is None:
                raise RuntimeError(f"run key conflict for {record.product_id!r} but no row found")
            saved = Saved(earlier.model_id, earlier.checksum, existing=True)
            if record.outcome:
                await record_outcome(
                    conn, schema, record.run_key, Outcome(record.product_id, "trained", None, None, saved.model_id)
                )
        else:
            model_id = int(new_id)
            if fault_hook is not None:
                await fault_hook(conn, model_id)
            if record.champion != "kept":
                # A kept champion's forecast (and its bands) stays the one in forecasts.
                await _copy(conn, schema, "forecasts", model_id, forecast_records(record.product_id, forecast))
                await _copy_bands(conn, schema, model_id, record.product_id, forecast)
                await set_champion(conn, schema, record.product_id, model_id, record.champion)
            if record.outcome and record.run_key is not None:
                await record_outcome(
                    conn, schema, record.run_key, Outcome(record.product_id, "trained", None, None, model_id)
                )
            saved = Saved(model_id, record.checksum)
    if after_commit is not None:
        await after_commit(conn, saved)
    return saved


COPY_COLUMNS = {
    "forecasts": ["model_id", "product_id", "ds", "yhat", "yhat_lower", "yhat_upper"],
    "forecast_intervals": ["model_id", "product_id", "ds", "level", "lower", "upper"],
    "forecast_quantiles": ["model_id", "product_id", "ds", "quantile", "value"],
}
"""The columns each forecast table is written with (COPY), model_id first."""


async def _copy(conn: Any, schema: str, table: str, model_id: int, records: Any) -> None:
    """COPY ``records`` (rows without the model id) into ``table``, each under ``model_id``."""
    rows = [(model_id, *r) for r in records]
    if rows:
        await conn.copy_records_to_table(table, schema_name=schema, records=rows, columns=COPY_COLUMNS[table])


async def _copy_bands(conn: Any, schema: str, model_id: int, product: str, forecast: Any) -> None:
    """Every level's interval and every quantile of the forecast, in the write's transaction."""
    await _copy(conn, schema, "forecast_intervals", model_id, interval_records(product, forecast))
    await _copy(conn, schema, "forecast_quantiles", model_id, quantile_records(product, forecast))


async def set_champion(
    conn: Any, schema: str, product: str, model_id: int, decided_by: str, pinned: bool = False
) -> None:
    """Make ``model_id`` the product's champion (the previous one is remembered)."""
    table = qualified(schema, "forecast_champions")
    await conn.execute(
        f"INSERT INTO {table} AS c (product_id, model_id, decided_by, pinned) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (product_id) DO UPDATE SET model_id = EXCLUDED.model_id, since = now(), "
        "decided_by = EXCLUDED.decided_by, pinned = EXCLUDED.pinned, "
        "previous_model_id = CASE WHEN c.model_id = EXCLUDED.model_id THEN c.previous_model_id ELSE c.model_id END",
        product,
        model_id,
        decided_by,
        pinned,
    )


@dataclass(frozen=True)
class Champion:
    """A product's champion: its row in forecast_champions and its stored model (checksum verified)."""

    model_id: int
    pinned: bool
    decided_by: str
    model_json: str
    params: dict[str, Any]
    verified: bool
    registry_model_id: int | None = None  # the model the MLflow champion alias was last pointed at by a trainer


async def champion_of(conn: Any, schema: str, product: str) -> Champion | None:
    row = await conn.fetchrow(
        "SELECT c.model_id, c.pinned, c.decided_by, c.registry_model_id, m.model_json, m.checksum, "
        "m.params::text AS params "
        f"FROM {qualified(schema, 'forecast_champions')} c "
        f"JOIN {qualified(schema, 'forecast_models')} m ON m.id = c.model_id WHERE c.product_id = $1",
        product,
    )
    if row is None:
        return None
    verified = models.checksum(row["model_json"]) == row["checksum"]
    if not verified:
        log.warning(
            "champion model %s of %r fails checksum verification; it cannot be re-scored",
            row["model_id"],
            product,
            extra={"fields": {"event": "checksum_mismatch", "model_id": row["model_id"], "product": product}},
        )
    params = json.loads(row["params"]) if row["params"] else {}
    return Champion(
        int(row["model_id"]),
        bool(row["pinned"]),
        str(row["decided_by"]),
        row["model_json"],
        params if isinstance(params, dict) else {},
        verified,
        int(row["registry_model_id"]) if row["registry_model_id"] is not None else None,
    )


async def set_registry_model(conn: Any, schema: str, product: str, model_id: int) -> None:
    """Remember that the registry's champion alias now points at ``model_id`` (set by this trainer)."""
    await conn.execute(
        f"UPDATE {qualified(schema, 'forecast_champions')} SET registry_model_id = $2 WHERE product_id = $1",
        product,
        model_id,
    )


async def product_model_ids(conn: Any, schema: str, product: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are models of ``product`` (a registry alias must name one of its own)."""
    rows = await conn.fetch(
        f"SELECT id FROM {qualified(schema, 'forecast_models')} WHERE product_id = $1 AND id = ANY($2::bigint[])",
        product,
        ids,
    )
    return {int(r["id"]) for r in rows}


@dataclass(frozen=True)
class RunModel:
    """The model an attempt with a given run key stored for a product."""

    model_id: int
    checksum: str
    trained_at: Any
    metrics: dict[str, Any]


async def model_for_run(conn: Any, schema: str, run_key: str, product: str) -> RunModel | None:
    """The product's model stored under ``run_key``, or None; its checksum is verified."""
    row = await conn.fetchrow(
        f"SELECT id, checksum, trained_at, metrics::text AS metrics, model_json "
        f"FROM {qualified(schema, 'forecast_models')} WHERE run_key = $1 AND product_id = $2",
        run_key,
        product,
    )
    if row is None:
        return None
    if models.checksum(row["model_json"]) != row["checksum"]:
        raise ModelIntegrityError(
            f"model {row['id']} of product {product!r} (run key {run_key!r}) fails checksum verification"
        )
    metrics = json.loads(row["metrics"]) if row["metrics"] else {}
    return RunModel(int(row["id"]), row["checksum"], row["trained_at"], metrics if isinstance(metrics, dict) else {})


async def save(
    db: Database, schema: str, record: ModelRecord, forecast: Any, *, fault_hook: FaultHook | None = None
) -> int:
    async def work(conn: Any) -> int:
        return await save_connection(conn, schema, record, forecast, fault_hook=fault_hook)

    return await db.run(f"cannot save the model of product {record.product_id!r}", work)


async def load(db: Database, schema: str, model_id: int) -> tuple[Any, dict[str, Any]]:
    """Model ``model_id`` (a forecaster.LoadedModel of any family) and its row.

    The checksum is verified first: ModelIntegrityError on a mismatch.
    """
    table = qualified(schema, "forecast_models")

    async def work(conn: Any) -> Any:
        return await conn.fetchrow(
            f"SELECT id, product_id, trainingjob, trained_at, prophet_version, params::text AS params, "
            f"metrics::text AS metrics, model_json, checksum FROM {table} WHERE id = $1",
            model_id,
        )

    row = await db.run(f"cannot load model {model_id}", work)
    if row is None:
        raise LookupError(f"no model with id {model_id} in schema {schema!r}")
    from forecast_trainer.forecaster import load as load_model

    fitted = load_model(row["model_json"], row["checksum"])
    info = dict(row)
    info["params"] = json.loads(info["params"])
    info["metrics"] = json.loads(info["metrics"])
    return fitted, info


@dataclass(frozen=True)
class WarmStart:
    model_id: int
    params: dict[str, Any]  # Prophet's parameters to start the search from
    family: str | None = None  # the family that won last time (the incumbent of the selection)


async def last_best_params(db: Database, schema: str, product: str) -> WarmStart | None:
    """The product's last best parameters and winning family, from its newest verified model.

    Prophet's parameters are those its last tuning chose (``metrics.tuning.params``, whichever
    family won; the ``params`` column of models stored before other families existed) unless
    the defaults won; then the best tuned trial recorded in its metrics is the better place to
    start the search.
    """
    table = qualified(schema, "forecast_models")

    async def work(conn: Any) -> list[Any]:
        return list(
            await conn.fetch(
                f"SELECT id, params::text AS params, metrics::text AS metrics, model_json, checksum "
                f"FROM {table} WHERE product_id = $1 ORDER BY id DESC LIMIT 3",
                product,
            )
        )

    for row in await db.run(f"cannot read previous models of product {product!r}", work):
        if models.checksum(row["model_json"]) != row["checksum"]:
            log.warning(
                "model %s of %r fails checksum verification; not used for warm start",
                row["id"],
                product,
                extra={"fields": {"event": "checksum_mismatch", "model_id": row["id"], "product": product}},
            )
            continue
        params = json.loads(row["params"]) or {}
        metrics = json.loads(row["metrics"]) or {}
        tuning = metrics.get("tuning") or {}
        if isinstance(tuning.get("params"), dict):
            params = tuning["params"]
        best = tuning.get("best_trial_params")
        if not tuning.get("tuned") and isinstance(best, dict) and best:
            params = best
        family = metrics.get("family") or "prophet"  # models stored before other families were all Prophet
        return WarmStart(int(row["id"]), params if isinstance(params, dict) else {}, str(family))
    return None


# --------------------------------------------------------------------------- shards (issue 19)


@dataclass(frozen=True)
class Outcome:
    """One product's outcome in a run (a row of run_outcomes)."""

    product_id: str
    status: str  # trained | invalid | failed | locked | skipped
    reason: str | None
    message: str | None
    model_id: int | None = None


OUTCOME_SQL = (
    "INSERT INTO {table} (run_key, product_id, status, reason, message, model_id, finished_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (run_key, product_id) DO UPDATE SET "
    "status = EXCLUDED.status, reason = EXCLUDED.reason, message = EXCLUDED.message, "
    "model_id = EXCLUDED.model_id, finished_at = EXCLUDED.finished_at "
    # a committed 'trained' row is the truth: a later attempt's report never overwrites it
    "WHERE {table}.status <> 'trained' OR EXCLUDED.status = 'trained'"
)


async def record_outcome(conn: Any, schema: str, run_key: str, outcome: Outcome) -> None:
    """Upsert ``outcome`` under ``run_key`` (a trained row stays trained)."""
    await conn.execute(
        OUTCOME_SQL.format(table=qualified(schema, "run_outcomes")),
        run_key,
        outcome.product_id,
        outcome.status,
        outcome.reason,
        outcome.message,
        outcome.model_id,
    )


SNAPSHOT_LOCK = 1179931731  # "FTTS": first key of the snapshot's pg_advisory_xact_lock(int, int)


async def write_snapshot(conn: Any, schema: str, run_key: str, sorted_ids: list[str]) -> None:
    """Replace ``run_key``'s rows of run_products with ``sorted_ids`` (idx = position), in ONE transaction.

    Idempotent: a rerun leaves exactly the same rows; two concurrent runs are serialised by a
    transaction-scoped advisory lock on (schema, run key).
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))", SNAPSHOT_LOCK, f"{schema}/{run_key}"
        )
        await conn.execute(f"DELETE FROM {qualified(schema, 'run_products')} WHERE run_key = $1", run_key)
        await conn.copy_records_to_table(
            "run_products",
            schema_name=schema,
            records=[(run_key, i, p) for i, p in enumerate(sorted_ids)],
            columns=["run_key", "idx", "product_id"],
        )


SNAPSHOT_DIGEST_SQL = (
    "SELECT count(*) AS n, encode(sha256(convert_to(coalesce(string_agg(product_id, E'\\n' ORDER BY idx), ''), "
    "'UTF8')), 'hex') AS digest FROM {table} WHERE run_key = $1"
)


async def read_snapshot(db: Database, schema: str, run_key: str, indexes: list[int]) -> tuple[int, str, dict[int, str]]:
    """(count, digest of the whole list, {idx: product id} of ``indexes``) of ``run_key``'s snapshot.

    The digest (sha256 of the ids joined by newlines in idx order) is computed by the server:
    one row comes back, not the list.
    """
    table = qualified(schema, "run_products")

    async def work(conn: Any) -> tuple[int, str, dict[int, str]]:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchrow(SNAPSHOT_DIGEST_SQL.format(table=table), run_key)
            rows = await conn.fetch(
                f"SELECT idx, product_id FROM {table} WHERE run_key = $1 AND idx = ANY($2::int[])", run_key, indexes
            )
        return int(head["n"]), str(head["digest"]), {int(r["idx"]): r["product_id"] for r in rows}

    return await db.run(f"cannot read the discovered product list (run key {run_key!r})", work)
