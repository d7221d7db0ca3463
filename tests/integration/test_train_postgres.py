"""``forecast-trainer train`` against PostgreSQL, configured only through TRAINER_* env vars (as pods are)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import daily_frame, run_cli

from forecast_trainer.config import DbSettings
from forecast_trainer.db import Database
from forecast_trainer.store import load

INJECTION_PRODUCT = "x'; DROP TABLE sales; --"


def env_for(dsn: str, table: str, out_schema: str, term: Path, **extra: str) -> dict[str, str]:
    return {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": table,
        "TRAINER_OUTPUT_SCHEMA": out_schema,
        "TRAINER_TRAININGJOB": "shop/nightly",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_FOLDS": "1",
        "TRAINER_TRIALS": "2",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_DB_RETRIES": "1",
        **extra,
    }


def termination(term: Path) -> dict:
    text = term.read_text()
    assert len(text.encode()) <= 4096
    return json.loads(text)


async def test_train_writes_model_and_forecast_and_warm_starts_next_time(dsn, conn, new_schema, tmp_path) -> None:
    data_schema, out_schema = new_schema(), new_schema()
    table = await make_sales(conn, data_schema, {"bakery-croissant-001": daily_frame(150, seed=1)})
    term = tmp_path / "term.json"
    env = env_for(dsn, table, out_schema, term, TRAINER_PRODUCT="bakery-croissant-001")
    first = run_cli(["train"], env)
    assert first.code == 0, first.stderr
    entry = termination(term)["products"][0]
    assert entry["status"] == "trained" and isinstance(entry["model_id"], int)
    row = await conn.fetchrow(f'SELECT * FROM "{out_schema}".forecast_models WHERE id = $1', entry["model_id"])
    assert row["product_id"] == "bakery-croissant-001" and row["trainingjob"] == "shop/nightly"
    assert row["checksum"] == entry["checksum"] and row["prophet_version"]
    metrics = json.loads(row["metrics"])
    assert metrics["beats_baseline"] is True and metrics["family"] == entry["family"]
    assert metrics["cv"]["error"] <= metrics["cv"]["best_naive_error"]
    assert metrics["tuning"]["warm_start"] == {"used": False, "model_id": None}
    assert json.loads(row["params"])["family"] == entry["family"]
    assert set(metrics["candidates"]) >= {"prophet", "ets", "theta", "arima", "seasonal_naive", "last_value"}
    forecasts = await conn.fetch(f'SELECT * FROM "{out_schema}".forecasts WHERE model_id = $1', entry["model_id"])
    assert len(forecasts) == 14 and all(r["product_id"] == "bakery-croissant-001" for r in forecasts)

    db = Database(dsn, DbSettings(retries=0), role="output database")
    try:
        await load(db, out_schema, entry["model_id"])  # checksum verified
    finally:
        await db.close()

    second = run_cli(["train"], env)
    assert second.code == 0, second.stderr
    second_id = termination(term)["products"][0]["model_id"]
    metrics2 = json.loads(
        await conn.fetchval(f'SELECT metrics FROM "{out_schema}".forecast_models WHERE id = $1', second_id)
    )
    warm = metrics2["tuning"]["warm_start"]
    assert warm == {"used": True, "model_id": entry["model_id"]}
    start = metrics["tuning"]["best_trial_params"] if not metrics["tuning"]["tuned"] else metrics["tuning"]["params"]
    first_trial = metrics2["tuning"]["first_trial_params"]
    assert first_trial == {k: v for k, v in start.items() if k in first_trial}


async def test_injection_strings_as_product_ids_train_and_harm_nothing(dsn, conn, new_schema, tmp_path) -> None:
    data_schema = new_schema()
    products = {INJECTION_PRODUCT: daily_frame(100, seed=2), 'a"; DELETE FROM forecasts; --': daily_frame(100, seed=3)}
    table = await make_sales(conn, data_schema, products)
    term = tmp_path / "term.json"
    env = env_for(dsn, table, data_schema, term, TRAINER_PRODUCTS_JSON=json.dumps(list(products)), TRAINER_TRIALS="0")
    run = run_cli(["train"], env)
    assert run.code == 0, run.stderr
    assert await conn.fetchval(f'SELECT count(*) FROM "{data_schema}".sales') == 200  # still there
    stored = await conn.fetch(f'SELECT product_id FROM "{data_schema}".forecast_models ORDER BY id')
    assert [r["product_id"] for r in stored] == list(products)


async def test_injection_table_name_is_refused_before_any_sql(dsn, conn, new_schema, tmp_path) -> None:
    data_schema, out_schema = new_schema(), new_schema()
    await make_sales(conn, data_schema, {"p": daily_frame(60)})
    term = tmp_path / "term.json"
    for bad in (f"{data_schema}.sales; DROP TABLE {data_schema}.sales", 'sales" --', "a.b.c"):
        run = run_cli(["train"], env_for(dsn, bad, out_schema, term, TRAINER_PRODUCT="p"))
        assert run.code == 2 and "--data-table" in run.stderr and len(run.stderr.strip().splitlines()) == 1
        assert termination(term)["products"][0]["reason"] == "InvalidConfig"
    assert await conn.fetchval(f'SELECT count(*) FROM "{data_schema}".sales') == 60
    assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", out_schema) == 0


async def test_invalid_products_are_skipped_and_nothing_is_written_for_them(dsn, conn, new_schema, tmp_path) -> None:
    schema = new_schema()
    short = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=10), "y": [float(i + 1) for i in range(10)]})
    zeros = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=60), "y": [0.0] * 60})
    table = await make_sales(conn, schema, {"good": daily_frame(90, seed=4), "short": short, "zeros": zeros})
    term = tmp_path / "term.json"
    run = run_cli(["train"], env_for(dsn, table, schema, term, TRAINER_TRIALS="0"))  # every product in the table
    assert run.code == 0, run.stderr
    doc = termination(term)
    assert doc["counts"] == {"trained": 1, "invalid": 2, "failed": 0, "locked": 0, "skipped": 0}
    reasons = {e["product"]: e["reason"] for e in doc["products"]}
    assert reasons == {"good": None, "short": "TooFewPoints", "zeros": "MostlyZeros"}
    assert [r["product_id"] for r in await conn.fetch(f'SELECT product_id FROM "{schema}".forecast_models')] == ["good"]
    assert await conn.fetchval(f"SELECT count(*) FROM \"{schema}\".forecasts WHERE product_id <> 'good'") == 0

    only_bad = run_cli(
        ["train"], env_for(dsn, table, schema, term, TRAINER_PRODUCTS_JSON='["short", "zeros", "missing"]')
    )
    assert only_bad.code == 3
    assert {e["reason"] for e in termination(term)["products"]} == {"TooFewPoints", "MostlyZeros", "NoData"}


async def test_missing_table_or_column_is_invalid_data(dsn, new_schema, tmp_path) -> None:
    schema = new_schema()
    term = tmp_path / "term.json"
    run = run_cli(["train"], env_for(dsn, f"{schema}.nope", schema, term, TRAINER_PRODUCT="p"))
    assert run.code == 3, run.stderr
    entry = termination(term)["products"][0]
    assert entry["reason"] == "DataSourceInvalid" and "nope" in entry["message"]


async def test_typed_columns_integer_ids_timestamptz_numeric(dsn, conn, new_schema, tmp_path) -> None:
    schema = new_schema()
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'CREATE TABLE "{schema}".orders (sku integer, sold_at timestamptz, qty numeric(10,2))')
    frame = daily_frame(80, seed=5)
    records = [
        (42, d.to_pydatetime().replace(tzinfo=pd.Timestamp(0, tz="UTC").tzinfo), v)
        for d, v in zip(frame["ds"] + pd.Timedelta(hours=12), frame["y"], strict=True)
    ]
    await conn.copy_records_to_table("orders", schema_name=schema, records=records)
    term = tmp_path / "term.json"
    env = env_for(
        dsn,
        f"{schema}.orders",
        schema,
        term,
        TRAINER_PRODUCT="42",
        TRAINER_PRODUCT_COLUMN="sku",
        TRAINER_TIME_COLUMN="sold_at",
        TRAINER_VALUE_COLUMN="qty",
        TRAINER_TRIALS="0",
    )
    run = run_cli(["train"], env)
    assert run.code == 0, run.stderr
    assert termination(term)["products"][0]["status"] == "trained"


@pytest.mark.parametrize("missing_column", ["TRAINER_VALUE_COLUMN"])
async def test_wrong_column_name(dsn, conn, new_schema, tmp_path, missing_column: str) -> None:
    schema = new_schema()
    table = await make_sales(conn, schema, {"p": daily_frame(60)})
    term = tmp_path / "term.json"
    run = run_cli(["train"], env_for(dsn, table, schema, term, TRAINER_PRODUCT="p", **{missing_column: "qty"}))
    assert run.code == 3
    assert termination(term)["products"][0]["reason"] == "DataSourceInvalid"


async def test_sample_data_to_postgres_then_train(dsn, conn, new_schema, tmp_path) -> None:
    schema = new_schema()
    env = {"TRAINER_DSN": dsn, "TRAINER_TABLE": f"{schema}.sales"}
    assert run_cli(["sample-data", "--products", "2", "--days", "100", "--bad-products"], env).code == 0
    assert run_cli(["sample-data", "--products", "2", "--days", "100", "--bad-products"], env).code == 0  # rerun
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".sales') == 2 * 100 + 10 + 3 * 100
    term = tmp_path / "term.json"
    run = run_cli(
        ["train"],
        env_for(
            dsn,
            f"{schema}.sales",
            schema,
            term,
            TRAINER_TRIALS="0",
            TRAINER_PRODUCTS_JSON='["bakery-croissant-001", "bad-negative-001"]',
        ),
    )
    assert run.code == 0, run.stderr
    assert termination(term)["counts"] == {"trained": 1, "invalid": 1, "failed": 0, "locked": 0, "skipped": 0}


async def test_a_non_prophet_model_is_stored_loaded_and_remembered_as_the_last_winner(
    dsn, conn, new_schema, tmp_path
) -> None:
    schema = new_schema()
    table = await make_sales(conn, schema, {"p": daily_frame(150, seed=6)})
    term = tmp_path / "term.json"
    env = env_for(dsn, table, schema, term, TRAINER_PRODUCT="p", TRAINER_MODELS="ets")
    first = run_cli(["train"], env)
    assert first.code == 0, first.stderr
    entry = termination(term)["products"][0]
    assert entry["family"] == "ets" and termination(term)["models"] == {"ets": 1}
    db = Database(dsn, DbSettings(retries=0), role="output database")
    try:
        loaded, info = await load(db, schema, entry["model_id"])  # checksum verified
    finally:
        await db.close()
    assert loaded.family == "ets" and info["params"]["family"] == "ets"
    stored = await conn.fetch(
        f'SELECT ds, yhat FROM "{schema}".forecasts WHERE model_id = $1 ORDER BY ds', entry["model_id"]
    )
    again = loaded.forecast(len(stored))
    assert [r["yhat"] for r in stored] == pytest.approx(list(again["yhat"]), rel=1e-6)

    second = run_cli(["train"], {**env, "TRAINER_MODELS": "all"})
    assert second.code == 0, second.stderr
    model_id = termination(term)["products"][0]["model_id"]
    metrics = json.loads(await conn.fetchval(f'SELECT metrics FROM "{schema}".forecast_models WHERE id = $1', model_id))
    assert metrics["selection"]["last_winner"] == "ets"
