"""Shard mode against a real PostgreSQL (issue 19): discover's snapshot, a shard's products
committed one by one with their run_outcomes rows, the run-key guard on a retried pod, a locked
product, digest mismatches, an unreachable database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import daily_frame, run_cli

from forecast_trainer import db as db_module
from forecast_trainer.config import TRAIN_OPTIONS, TrainConfig, job_completion_index, resolve, train_config
from forecast_trainer.discover import discover
from forecast_trainer.locking import product_lock_key
from forecast_trainer.progress import Progress
from forecast_trainer.shard import products_sha256
from forecast_trainer.shard_run import ShardState, shard_exit_code, train_shard
from forecast_trainer.store import read_snapshot

UID = "0b6f1c2a-7e2d-4c55-9a55-6f1c2a7e2d1b"
GOOD = [f"shop-{i:02d}" for i in range(5)]
BAD = "aaa-too-short"  # sorts first: position 0 of shard 0
IDS = sorted([*GOOD, BAD])


def sales() -> dict[str, pd.DataFrame]:
    frames = {p: daily_frame(90, seed=i) for i, p in enumerate(GOOD)}
    frames[BAD] = daily_frame(10, seed=9)
    return frames


def shard_config(dsn: str, schema: str, tmp_path: Path, k: int, **extra: str) -> TrainConfig:
    env = {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": f"{schema}.sales",
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_MODELS": "seasonal_naive",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_DB_RETRIES": "0",
        "TRAINER_DB_CONNECT_TIMEOUT": "3",
        "TRAINER_RUN_KEY": f"{UID}/0",
        "TRAINER_TERMINATION_LOG": str(tmp_path / f"term-{k}.json"),
        "TRAINER_SHARD_SIZE": "4",
        "TRAINER_SHARD_INDEXES": "0-5",
        "TRAINER_PRODUCTS_FROM": "snapshot",
        "TRAINER_PRODUCTS_SHA256": products_sha256(IDS),
        "JOB_COMPLETION_INDEX": str(k),
        **extra,
    }
    return train_config(job_completion_index(resolve(TRAIN_OPTIONS, {}, env), env))


class Watching(Progress):
    """Reads the termination message each time a product is done (it was rewritten just before)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.seen: list[dict[str, Any]] = []

    def product_done(self, product: str, status: str, fields: dict[str, Any]) -> None:
        self.seen.append(json.loads(Path(self.path).read_text(encoding="utf-8")))


async def run_shard(cfg: TrainConfig) -> tuple[ShardState, Watching, dict[str, Any]]:
    assert cfg.shard is not None
    state, progress, holder = ShardState(cfg.shard.index, cfg.shard.size), Watching(cfg.termination_log), {}
    await train_shard(cfg, progress, state, holder)
    return state, progress, holder


async def outcomes(conn: Any, schema: str, run_key: str = f"{UID}/0") -> dict[str, Any]:
    rows = await conn.fetch(f'SELECT * FROM "{schema}".run_outcomes WHERE run_key = $1', run_key)
    return {r["product_id"]: r for r in rows}


async def discovered(dsn: str, schema: str, tmp_path: Path, key: str = UID) -> Any:
    return await discover(shard_config(dsn, schema, tmp_path, 0), key)


async def test_discover_writes_the_sorted_list_once_per_key(dsn, conn, schema, tmp_path) -> None:
    await make_sales(conn, schema, sales())
    found = await discovered(dsn, schema, tmp_path)
    assert found.products == IDS and found.snapshot and found.digest == products_sha256(IDS)
    await discovered(dsn, schema, tmp_path, key="another-uid")
    again = await discovered(dsn, schema, tmp_path)  # a rerun replaces the same key's rows
    rows = await conn.fetch(f'SELECT idx, product_id FROM "{schema}".run_products WHERE run_key = $1', UID)
    assert again.products == IDS and sorted((r["idx"], r["product_id"]) for r in rows) == list(enumerate(IDS))
    await conn.execute(f"INSERT INTO \"{schema}\".sales VALUES ('Zeta', '2024-01-01', 1), ('b', '2024-01-01', 2)")
    grown = await discovered(dsn, schema, tmp_path)
    assert grown.products == sorted([*IDS, "Zeta", "b"])  # Python str order: upper case first
    db = db_module.Database(dsn, shard_config(dsn, schema, tmp_path, 0).db, role="output database")
    try:
        count, digest, rows_by_idx = await read_snapshot(db, schema, UID, [0, 7])
        assert (count, digest) == (8, products_sha256(grown.products))  # the server computes the same digest
        assert rows_by_idx == {0: "Zeta", 7: "shop-04"}
        assert (await read_snapshot(db, schema, "another-uid", [0]))[:2] == (6, products_sha256(IDS))
    finally:
        await db.close()


async def test_a_shard_commits_each_product_with_its_outcome_and_reports_after_each(
    dsn, conn, schema, tmp_path, monkeypatch
) -> None:
    await make_sales(conn, schema, sales())
    await discovered(dsn, schema, tmp_path)
    connects: list[str] = []
    real_connect = db_module.Database.connect

    async def counted(self: Any, what: str, server_settings: Any = None) -> Any:
        connects.append(what)
        return await real_connect(self, what, server_settings)

    monkeypatch.setattr(db_module.Database, "connect", counted)
    state, progress, holder = await run_shard(shard_config(dsn, schema, tmp_path, 0))
    assert shard_exit_code(state) == 0 and state.n == 4
    assert [r.status for r in state.results] == ["invalid", "trained", "trained", "trained"]
    assert [doc["done"] for doc in progress.seen] == [1, 2, 3, 4]  # rewritten after EVERY product
    assert progress.seen[0]["failed"] == "0" and progress.seen[0]["errors"][0][:3] == [0, BAD, "DataInvalid"]
    assert len(connects) == 1  # one lock connection for the shard, not one per product
    assert holder["run"].prefetch.queries == 1  # the shard's history in one batch, not one query per product
    state1, _, _ = await run_shard(shard_config(dsn, schema, tmp_path, 1))
    assert [r.status for r in state1.results] == ["trained", "trained"] and state1.n == 2

    rows = await outcomes(conn, schema)
    assert set(rows) == set(IDS)
    assert (rows[BAD]["status"], rows[BAD]["reason"]) == ("invalid", "TooFewPoints")
    models = await conn.fetch(f'SELECT id, product_id FROM "{schema}".forecast_models WHERE run_key = $1', f"{UID}/0")
    assert {m["product_id"]: m["id"] for m in models} == {p: rows[p]["model_id"] for p in GOOD}
    assert all(rows[p]["status"] == "trained" for p in GOOD)

    # A retried pod of shard 0 (same run key): nothing is trained twice, every product is reported.
    retried, progress, _ = await run_shard(shard_config(dsn, schema, tmp_path, 0))
    assert [r.status for r in retried.results] == ["invalid", "trained", "trained", "trained"]
    assert all("already recorded" in r.warnings[0] for r in retried.results[1:])
    again = await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models WHERE run_key = $1', f"{UID}/0")
    assert again == len(GOOD)
    last = progress.seen[-1]
    assert last["trained"] == "1-3" and last["results"]["trained"] == 3
    assert last["results"]["models"] == {"seasonal_naive": 3}  # aggregates from the stored rows


async def test_a_locked_product_is_reported_and_the_rest_of_the_shard_trains(dsn, conn, schema, tmp_path) -> None:
    await make_sales(conn, schema, sales())
    await discovered(dsn, schema, tmp_path)
    held = IDS[2]
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", product_lock_key(schema, held))
    state, progress, _ = await run_shard(shard_config(dsn, schema, tmp_path, 0))
    assert shard_exit_code(state) == 0
    assert [r.status for r in state.results] == ["invalid", "trained", "locked", "trained"]
    assert progress.seen[-1]["locked"] == "2"
    rows = await outcomes(conn, schema)
    assert rows[held]["status"] == "locked" and rows[held]["model_id"] is None
    await conn.execute("SELECT pg_advisory_unlock_all()")


async def test_another_list_digest_or_a_missing_snapshot_is_a_config_error(dsn, conn, schema, tmp_path) -> None:
    await make_sales(conn, schema, sales())
    state, _, _ = await run_shard(shard_config(dsn, schema, tmp_path, 0))  # nothing discovered
    assert shard_exit_code(state) == 2 and "no discovered product list" in str(state.error)
    await discovered(dsn, schema, tmp_path)
    cfg = shard_config(dsn, schema, tmp_path, 0, TRAINER_PRODUCTS_SHA256=products_sha256(IDS[:-1]))
    state, _, _ = await run_shard(cfg)
    assert shard_exit_code(state) == 2 and "does not have the digest" in str(state.error) and not state.results
    cfg = shard_config(dsn, schema, tmp_path, 0, TRAINER_PRODUCTS_FROM="source")
    await conn.execute(f"INSERT INTO \"{schema}\".sales VALUES ('new-product', '2024-01-01', 1)")
    state, _, _ = await run_shard(cfg)
    assert shard_exit_code(state) == 2 and "changed since discovery" in str(state.error)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models') == 0


async def test_an_unreachable_output_database_exits_4(dsn, tmp_path) -> None:
    products = tmp_path / "products"
    products.write_text("a\nb\n", encoding="utf-8")
    csv = tmp_path / "sales.csv"
    csv.write_text("product_id,ds,y\na,2024-01-01,1\n", encoding="utf-8")
    cfg = shard_config(
        "postgresql://tjo:tjo@127.0.0.1:1/tjo",
        "public",
        tmp_path,
        0,
        TRAINER_PRODUCTS_FROM=f"file:{products}",
        TRAINER_PRODUCTS_SHA256=products_sha256(["a", "b"]),
        TRAINER_OUTPUT_DSN="postgresql://tjo:tjo@127.0.0.1:1/tjo",
        TRAINER_DATA_DSN="",
        TRAINER_DATA_CSV=str(csv),
    )
    state, _, _ = await run_shard(cfg)
    assert shard_exit_code(state) == 4 and not state.results


@pytest.mark.parametrize("k", [0, 1])
def test_discover_then_shards_from_the_command_line(dsn, schema, tmp_path, k) -> None:
    import asyncio

    import asyncpg

    async def setup() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await make_sales(conn, schema, sales())
        finally:
            await conn.close()

    asyncio.run(setup())
    term = tmp_path / "discover.json"
    base = {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": f"{schema}.sales",
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_RUN_KEY": f"{UID}/0",
    }
    run = run_cli(["discover"], {**base, "TRAINER_TERMINATION_LOG": str(term)})
    assert run.code == 0, run.stderr
    doc = json.loads(term.read_text())
    assert doc == {
        "v": 1,
        "kind": "discover",
        "count": 6,
        "products_sha256": products_sha256(IDS),
        "snapshot": True,
        "exit_code": 0,
    }
    shard_term = tmp_path / "shard.json"
    env = {
        **base,
        "TRAINER_MODELS": "seasonal_naive",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_SHARD_SIZE": "3",
        "TRAINER_SHARD_INDEXES": "0-5",
        "TRAINER_PRODUCTS_FROM": "snapshot",
        "TRAINER_PRODUCTS_SHA256": doc["products_sha256"],
        "TRAINER_TERMINATION_LOG": str(shard_term),
        "JOB_COMPLETION_INDEX": str(k),
    }
    run = run_cli(["train"], env)
    assert run.code == 0, run.stderr
    report = json.loads(shard_term.read_text())
    assert (report["shard"], report["n"], report["done"]) == (k, 3, 3)
    assert report["trained"] == ("1-2" if k == 0 else "0-2")


async def test_skip_unchanged_in_a_shard_skips_what_is_unchanged(dsn, conn, schema, tmp_path) -> None:
    await make_sales(conn, schema, sales())
    await discovered(dsn, schema, tmp_path)
    first, _, _ = await run_shard(shard_config(dsn, schema, tmp_path, 0))
    assert [r.status for r in first.results] == ["invalid", "trained", "trained", "trained"]
    await conn.execute(f"INSERT INTO \"{schema}\".sales VALUES ('{IDS[3]}', '2023-04-01', 5)")  # one changed
    nightly = shard_config(dsn, schema, tmp_path, 0, TRAINER_SKIP_UNCHANGED="true", TRAINER_RUN_KEY=f"{UID}/1")
    state, progress, _ = await run_shard(nightly)
    assert shard_exit_code(state) == 0
    assert [r.status for r in state.results] == ["invalid", "skipped", "skipped", "trained"]
    assert (progress.seen[-1]["skipped"], progress.seen[-1]["trained"]) == ("1-2", "3")
    rows = await outcomes(conn, schema, f"{UID}/1")
    assert {p: (r["status"], r["reason"]) for p, r in rows.items()} == {
        BAD: ("invalid", "TooFewPoints"),
        IDS[1]: ("skipped", "Unchanged"),
        IDS[2]: ("skipped", "Unchanged"),
        IDS[3]: ("trained", None),
    }
