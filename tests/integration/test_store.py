from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap

import asyncpg
import numpy as np
import pandas as pd
import pytest
from tests.unit.trainer.helpers import REPO, daily_frame, run_cli

from forecast_trainer import model as models
from forecast_trainer.errors import ModelIntegrityError
from forecast_trainer.store import (
    LATEST_VERSION,
    ModelRecord,
    last_best_params,
    load,
    migrate,
    migrate_connection,
    save,
)

ALL_TABLES = {
    "forecast_models",
    "forecasts",
    "forecast_intervals",
    "forecast_quantiles",
    "forecast_trainer_schema_version",
    "forecast_champions",
    "champion_forecasts",  # a view
    "run_products",  # shards (issue 19): the discovered product list
    "run_outcomes",  # shards: every product's outcome per run
}
INJECTION_IDS = [
    "x'); DROP TABLE forecasts; --",
    'Robert"); DROP TABLE forecast_models; --',
    "1 OR 1=1",
    "$1::text",
]


async def table_names(conn, schema: str) -> set[str]:
    rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    return {r["table_name"] for r in rows}


async def counts(conn, schema: str) -> tuple[int, int]:
    models_count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models')
    forecasts_count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecasts')
    return models_count, forecasts_count


@pytest.fixture(scope="module")
def fitted():
    frame = daily_frame(60, seed=11)
    structure = models.structure_for(frame["ds"], "D")
    model = models.fit(frame, {"changepoint_prior_scale": 0.1}, structure, uncertainty=True)
    forecast = models.forecast(model, frame["ds"].iloc[-1], 7, "D")
    text = models.to_json(model)
    return model, forecast, text


def record(product: str, text: str, params: dict | None = None, metrics: dict | None = None) -> ModelRecord:
    return ModelRecord(
        product_id=product,
        trainingjob="default/tj",
        prophet_version=models.prophet_version(),
        params=params or models.effective_params({"changepoint_prior_scale": 0.1}),
        metrics=metrics or {"metric": "smape", "cv": {"error": 10.5, "fold_errors": [float("nan")]}},
        model_json=text,
        checksum=models.checksum(text),
    )


async def test_migrate_creates_schema_and_is_idempotent(db, conn, schema: str) -> None:
    first = await migrate(db, schema)
    assert (first.before, first.after, first.changed) == (0, LATEST_VERSION, True)
    assert await table_names(conn, schema) == ALL_TABLES
    second = await migrate(db, schema)
    assert (second.before, second.after, second.changed) == (LATEST_VERSION, LATEST_VERSION, False)
    versions = await conn.fetch(f'SELECT version FROM "{schema}".forecast_trainer_schema_version')
    assert [r["version"] for r in versions] == list(range(1, LATEST_VERSION + 1))


async def test_concurrent_migrations_apply_once(dsn: str, conn, schema: str) -> None:
    connections = [await asyncpg.connect(dsn) for _ in range(12)]
    try:
        results = await asyncio.gather(*(migrate_connection(c, schema) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    assert sum(r.changed for r in results) == 1
    assert all(r.after == LATEST_VERSION for r in results)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_trainer_schema_version') == LATEST_VERSION


def test_concurrent_migrate_commands(dsn: str, new_schema) -> None:
    schema = new_schema()
    env = {"TRAINER_OUTPUT_DSN": dsn, "TRAINER_OUTPUT_SCHEMA": schema, "PYTHONPATH": str(REPO / "trainer_image")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "forecast_trainer", "migrate"],
            env={**_base_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert sum("upgraded from version 0" in out for out, _ in outputs) == 1
    assert sum("already up to date" in out for out, _ in outputs) == 3
    assert run_cli(["migrate"], env).code == 0


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}


async def test_save_and_load_round_trip(db, conn, schema: str, fitted) -> None:
    model, forecast, text = fitted
    await migrate(db, schema)
    model_id = await save(db, schema, record("bakery-croissant-001", text), forecast)
    row = await conn.fetchrow(f'SELECT * FROM "{schema}".forecast_models WHERE id = $1', model_id)
    assert row["product_id"] == "bakery-croissant-001" and row["trainingjob"] == "default/tj"
    assert row["checksum"] == hashlib.sha256(text.encode()).hexdigest()
    assert json.loads(row["metrics"])["cv"]["fold_errors"] == [None]  # NaN stored as null
    rows = await conn.fetch(f'SELECT * FROM "{schema}".forecasts WHERE model_id = $1 ORDER BY ds', model_id)
    assert len(rows) == 7 and rows[0]["ds"] == forecast["ds"].iloc[0].to_pydatetime()
    assert np.allclose([r["yhat"] for r in rows], forecast["yhat"])
    loaded, info = await load(db, schema, model_id)  # a Prophet JSON row, as earlier trainers stored them
    assert info["params"]["changepoint_prior_scale"] == 0.1 and loaded.family == "prophet"
    future = pd.Series(forecast["ds"])
    assert np.allclose(loaded.forecast(len(future))["yhat"], models.predict_yhat(model, future))


async def test_checksum_mismatch_is_refused_on_load_and_for_warm_start(db, conn, schema: str, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    model_id = await save(db, schema, record("p", text), forecast)
    assert (await last_best_params(db, schema, "p")).model_id == model_id
    await conn.execute(
        f'UPDATE "{schema}".forecast_models SET model_json = replace(model_json, \'"growth"\', \'"growth" \') '
        "WHERE id = $1",
        model_id,
    )
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        await load(db, schema, model_id)
    assert await last_best_params(db, schema, "p") is None


async def test_failure_between_model_and_forecast_leaves_no_rows(db, conn, schema: str, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)

    async def explode(_conn, model_id: int) -> None:
        assert model_id > 0
        raise RuntimeError("injected failure after the model insert")

    with pytest.raises(RuntimeError, match="injected"):
        await save(db, schema, record("p", text), forecast, fault_hook=explode)
    assert await counts(conn, schema) == (0, 0)


async def test_a_failing_forecast_write_rolls_back_the_model(db, conn, schema: str, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    duplicated = pd.concat([forecast, forecast.iloc[:1]], ignore_index=True)  # violates PRIMARY KEY (model_id, ds)
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await save(db, schema, record("p", text), duplicated)
    assert await counts(conn, schema) == (0, 0)


async def test_process_killed_between_the_writes_leaves_no_rows(dsn: str, db, conn, schema: str) -> None:
    await migrate(db, schema)
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        import pandas as pd
        from forecast_trainer.config import DbSettings
        from forecast_trainer.db import Database
        from forecast_trainer.store import ModelRecord, save
        from forecast_trainer.model import checksum

        async def kill(conn, model_id):
            os.kill(os.getpid(), signal.SIGKILL)

        async def main():
            db = Database({dsn!r}, DbSettings(retries=0), role="output database")
            forecast = pd.DataFrame({{"ds": pd.date_range("2024-01-01", periods=3), "yhat": [1.0, 2.0, 3.0],
                                     "yhat_lower": [0.5, 1.0, 2.0], "yhat_upper": [2.0, 3.0, 4.0]}})
            rec = ModelRecord("killed", None, "1.5.0", {{}}, {{}}, "{{}}", checksum("{{}}"))
            await save(db, {schema!r}, rec, forecast, fault_hook=kill)

        asyncio.run(main())
        """
    )
    env = {**_base_env(), "PYTHONPATH": str(REPO / "trainer_image")}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    for _ in range(50):  # the server notices the dead connection and rolls back
        busy = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE state LIKE 'idle in transaction%' AND datname = current_database()"
        )
        if not busy:
            break
        await asyncio.sleep(0.1)
    assert await counts(conn, schema) == (0, 0)


@pytest.mark.parametrize("product", INJECTION_IDS)
async def test_sql_injection_product_ids_are_just_data(db, conn, schema: str, fitted, product: str) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    model_id = await save(db, schema, record(product, text), forecast)
    assert await table_names(conn, schema) == ALL_TABLES
    assert await conn.fetchval(f'SELECT product_id FROM "{schema}".forecast_models WHERE id = $1', model_id) == product
    assert (await last_best_params(db, schema, product)).model_id == model_id


async def test_last_best_params_prefers_the_best_trial_when_defaults_won(db, schema: str, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    assert await last_best_params(db, schema, "p") is None
    best = {"changepoint_prior_scale": 0.3, "seasonality_mode": "multiplicative"}
    metrics = {"tuning": {"tuned": False, "best_trial_params": best}}
    await save(db, schema, record("p", text, params=models.effective_params(None), metrics=metrics), forecast)
    warm = await last_best_params(db, schema, "p")
    assert warm.params == best


async def champion_row(conn, schema: str, product: str) -> tuple[int, str, int | None] | None:
    row = await conn.fetchrow(
        f'SELECT model_id, decided_by, previous_model_id FROM "{schema}".forecast_champions WHERE product_id = $1',
        product,
    )
    return None if row is None else (row["model_id"], row["decided_by"], row["previous_model_id"])


async def test_champion_migration_makes_the_newest_model_of_each_product_its_champion(db, conn, schema, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    a1 = await save(db, schema, record("a", text), forecast)
    a2 = await save(db, schema, record("a", text), forecast)
    b1 = await save(db, schema, record("b", text), forecast)
    # As a schema at version 3 had it: models, no champions.
    await conn.execute(f'DROP VIEW "{schema}".champion_forecasts; DROP TABLE "{schema}".forecast_champions')
    await conn.execute(f'DELETE FROM "{schema}".forecast_trainer_schema_version WHERE version >= 4')
    upgraded = await migrate(db, schema)
    assert (upgraded.before, upgraded.after) == (3, LATEST_VERSION)
    assert await champion_row(conn, schema, "a") == (a2, "migration", None)
    assert await champion_row(conn, schema, "b") == (b1, "migration", None)
    assert a1 < a2


async def test_a_kept_challenger_writes_no_forecast_and_leaves_the_champion(db, conn, schema, fitted) -> None:
    _, forecast, text = fitted
    await migrate(db, schema)
    first = await save(db, schema, dataclasses.replace(record("p", text), champion="first"), forecast)
    kept = await save(db, schema, dataclasses.replace(record("p", text), champion="kept"), forecast)
    assert await champion_row(conn, schema, "p") == (first, "first", None)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecasts WHERE model_id = $1', kept) == 0
    promoted = await save(db, schema, dataclasses.replace(record("p", text), champion="promoted"), forecast)
    assert await champion_row(conn, schema, "p") == (promoted, "promoted", first)
    view = await conn.fetch(f'SELECT DISTINCT model_id FROM "{schema}".champion_forecasts WHERE product_id = $1', "p")
    assert [r["model_id"] for r in view] == [promoted]
