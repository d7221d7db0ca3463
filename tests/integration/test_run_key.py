"""Idempotent writes (issue 10 item 8): one model per (run key, product), whatever is retried.

The operator passes the Job's uid as TRAINER_RUN_KEY. A pod that committed its model but never
learnt it (the COMMIT acknowledgement was lost, or the pod died right after) must not leave a
second row behind when the transaction, or the whole pod, is retried.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import REPO, Run, clean_env, daily_frame, run_cli

from forecast_trainer import store
from forecast_trainer.config import DbSettings
from forecast_trainer.db import Database
from forecast_trainer.locking import ProductLock
from forecast_trainer.model import checksum
from forecast_trainer.store import (
    LATEST_VERSION,
    MIGRATIONS,
    ModelRecord,
    migrate,
    migrate_connection,
    model_for_run,
    save,
    write_model,
)

PRODUCT = "bakery-croissant-001"
RUN_KEY = "6f1c2a7e-2d1b-4c55-9a55-0b6f1c2a7e2d"  # a Job uid


def record(product: str = PRODUCT, run_key: str | None = RUN_KEY, text: str = "{}") -> ModelRecord:
    return ModelRecord(product, "shop/nightly", "1.1", {"p": 1}, {"cv": {"error": 12.5}}, text, checksum(text), run_key)


def forecast() -> pd.DataFrame:
    return pd.DataFrame(
        {"ds": pd.date_range("2024-01-01", periods=3), "yhat": [1.0, 2.0, 3.0], "yhat_lower": 0.5, "yhat_upper": 4.0}
    )


async def counts(conn, schema: str) -> tuple[int, int]:
    models = await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models')
    forecasts = await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecasts')
    return models, forecasts


async def test_same_run_key_and_product_is_written_once(db, conn, schema) -> None:
    await migrate(db, schema)
    first = await save(db, schema, record(text='{"a": 1}'), forecast())
    again = await save(db, schema, record(text='{"a": 2}'), forecast())  # a retry of the same attempt
    assert again == first and await counts(conn, schema) == (1, 3)
    found = await model_for_run(conn, schema, RUN_KEY, PRODUCT)
    assert found is not None and found.model_id == first and found.checksum == checksum('{"a": 1}')
    await save(db, schema, record(product="other"), forecast())  # same key, another product: its own row
    await save(db, schema, record(run_key="another-job-uid"), forecast())  # a later Job: a new model
    await save(db, schema, record(run_key=None), forecast())  # no key (a person's run): always a new model
    await save(db, schema, record(run_key=None), forecast())
    assert await counts(conn, schema) == (5, 15)
    assert await model_for_run(conn, schema, "nope", PRODUCT) is None


async def test_a_retry_after_a_lost_commit_acknowledgement_finds_the_committed_row(dsn, conn, schema) -> None:
    """Commit, then the connection breaks before the caller hears of it; the retried transaction adds nothing."""
    db = Database(dsn, DbSettings(connect_timeout=5, query_timeout=30, retries=2), role="output database")
    await migrate(db, schema)
    lock = ProductLock(db, schema, PRODUCT)
    acks_lost = []

    async def lose_the_ack(conn_, saved: store.Saved) -> None:
        if not acks_lost:
            acks_lost.append(saved)
            raise ConnectionResetError("connection reset by peer (the COMMIT reply never arrived)")

    try:
        await lock.acquire()
        saved = await lock.run(
            "save", lambda c: write_model(c, schema, record(), forecast(), after_commit=lose_the_ack)
        )
    finally:
        await lock.release()
        await db.close()
    assert len(acks_lost) == 1 and not acks_lost[0].existing  # the first attempt did commit
    assert saved.existing and saved.model_id == acks_lost[0].model_id
    assert await counts(conn, schema) == (1, 3)


def _trainer_script(after_commit: str) -> str:
    """A pod whose model write is followed by ``after_commit`` (a lost ack, or the pod dying)."""
    return textwrap.dedent(
        f"""
        import os, sys
        from forecast_trainer import store
        real = store.write_model
        state = {{"calls": 0}}

        async def after_commit(conn, saved):
            state["calls"] += 1
            if state["calls"] == 1:
                {after_commit}

        async def write_model(conn, schema, record, forecast, **kw):
            return await real(conn, schema, record, forecast, after_commit=after_commit)

        store.write_model = write_model
        from forecast_trainer.cli import main
        sys.exit(main(["train"]))
        """
    )


def run_script(script: str, env: dict[str, str]) -> Run:
    full_env = clean_env({**env, "PYTHONPATH": str(REPO / "trainer_image")})
    proc = subprocess.run([sys.executable, "-c", script], env=full_env, capture_output=True, text=True, timeout=300)
    return Run(proc.returncode, proc.stdout, proc.stderr)


async def _sales(conn, schema: str) -> str:
    return await make_sales(conn, schema, {PRODUCT: daily_frame(120, seed=6)})


def _env(dsn: str, table: str, schema: str, term: Path, **extra: str) -> dict[str, str]:
    return {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": table,
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_PRODUCT_ID": PRODUCT,
        "TRAINER_RUN_KEY": RUN_KEY,
        "TRAINER_TRIALS": "0",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "7",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_DB_RETRIES": "2",
        "TRAINER_LOG_FORMAT": "json",
        **extra,
    }


async def test_trainer_retrying_a_write_whose_ack_was_lost_reports_one_model(dsn, conn, new_schema, tmp_path):
    schema = new_schema()
    table = await _sales(conn, schema)
    term = tmp_path / "t.json"
    script = _trainer_script('raise ConnectionResetError("the COMMIT acknowledgement was lost")')
    run = run_script(script, _env(dsn, table, schema, term))
    assert run.code == 0, run.stderr
    [entry] = json.loads(term.read_text())["products"]
    row = await conn.fetchrow(f'SELECT id, checksum, run_key FROM "{schema}".forecast_models')
    assert await counts(conn, schema) == (1, 7)
    assert (entry["status"], entry["model_id"], entry["checksum"]) == ("trained", row["id"], row["checksum"])
    assert row["run_key"] == RUN_KEY
    assert any("already recorded by an earlier attempt" in w for w in entry["warnings"])


async def test_a_new_pod_after_one_died_past_its_commit_does_not_train_again(dsn, conn, new_schema, tmp_path):
    schema = new_schema()
    table = await _sales(conn, schema)
    term = tmp_path / "t.json"
    died = run_script(_trainer_script("os._exit(137)"), _env(dsn, table, schema, term))
    assert died.code == 137
    assert await counts(conn, schema) == (1, 7)  # it committed, then died before reporting
    row = await conn.fetchrow(f'SELECT id, checksum FROM "{schema}".forecast_models')

    retried = run_cli(["train"], _env(dsn, table, schema, term))  # the Job's next pod: same uid
    assert retried.code == 0, retried.stderr
    doc = json.loads(term.read_text())
    [entry] = doc["products"]
    assert (entry["status"], entry["model_id"], entry["checksum"]) == ("trained", row["id"], row["checksum"])
    assert entry["error"] is not None and entry["metric"] == "smape"  # reported from the stored metrics
    assert any("already recorded by an earlier attempt" in w and "not trained again" in w for w in entry["warnings"])
    assert "product_started" not in retried.stderr  # no data read, no fit
    assert await counts(conn, schema) == (1, 7)

    other_job = run_cli(["train"], _env(dsn, table, schema, term, TRAINER_RUN_KEY="the-next-job-uid"))
    assert other_job.code == 0, other_job.stderr
    # Another Job (another uid) trains a new model. Same data, same recipe: it does not beat the
    # champion by more than fold noise, so it is a challenger and writes no forecast (docs/mlflow.md).
    assert await counts(conn, schema) == (2, 7)
    assert json.loads(term.read_text())["products"][0]["champion"] == "kept"


async def test_migrate_upgrades_a_version_1_schema_in_place(db, conn, schema) -> None:
    version_1 = MIGRATIONS[:1]
    store.MIGRATIONS, saved_latest = version_1, store.LATEST_VERSION
    store.LATEST_VERSION = 1
    try:
        await migrate_connection(conn, schema)
    finally:
        store.MIGRATIONS, store.LATEST_VERSION = MIGRATIONS, saved_latest
    await conn.execute(
        f'INSERT INTO "{schema}".forecast_models (product_id, prophet_version, params, metrics, model_json, checksum) '
        "VALUES ('old', '1.1', '{}', '{}', '{}', $1)",
        checksum("{}"),
    )
    assert not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'run_key')",
        schema,
    )
    result = await migrate(db, schema)
    assert (result.before, result.after) == (1, LATEST_VERSION) and LATEST_VERSION >= 2
    assert await conn.fetchval(f'SELECT run_key FROM "{schema}".forecast_models WHERE product_id = $1', "old") is None
    index = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'forecast_models_run_key_product_uq'",
        schema,
    )
    assert "UNIQUE" in index and "(run_key, product_id)" in index and "run_key IS NOT NULL" in index
    await save(db, schema, record(), forecast())
    await save(db, schema, record(), forecast())
    assert await counts(conn, schema) == (2, 3)
