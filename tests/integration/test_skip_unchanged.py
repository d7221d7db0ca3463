"""Skipping unchanged products against a real PostgreSQL: ``train --skip-unchanged`` and ``unchanged``.

Configured through TRAINER_* env vars, as pods are.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import daily_frame, run_cli

from forecast_trainer.config import TRAIN_OPTIONS, DbSettings, resolve, train_config
from forecast_trainer.data import Columns, PostgresSource
from forecast_trainer.db import Database
from forecast_trainer.store import migrate
from forecast_trainer.watermark import config_hash, parse_ranges, pg_watermarks


def env_for(dsn: str, table: str, out_schema: str, term: Path, **extra: str) -> dict[str, str]:
    return {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": table,
        "TRAINER_OUTPUT_SCHEMA": out_schema,
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_FOLDS": "1",
        "TRAINER_TRIALS": "0",
        "TRAINER_MODELS": "prophet,naive",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_DB_RETRIES": "1",
        "TRAINER_LOG_FORMAT": "json",
        **extra,
    }


def termination(term: Path) -> dict:
    text = term.read_text()
    assert len(text.encode()) <= 4096
    return json.loads(text)


def run(args: list[str], env: dict[str, str], term: Path) -> dict:
    result = run_cli(args, env)
    assert result.code == 0, result.stderr
    return termination(term)


def statuses(doc: dict) -> dict[str, str]:
    return {e["product"]: e["status"] for e in doc["products"]}


def unchanged_set(doc: dict, products: list[str]) -> set[str]:
    ordered = sorted(products)
    return {ordered[i] for i in parse_ranges(doc["unchanged"])}


async def append_day(conn: Any, table: str, products: list[str], value: float = 9.0) -> None:
    schema, name = table.split(".")
    for product in products:
        await conn.execute(
            f'INSERT INTO "{schema}"."{name}" SELECT product_id, max(ds) + 1, $2 FROM "{schema}"."{name}" '
            "WHERE product_id = $1 GROUP BY product_id",
            product,
            value,
        )


async def test_skip_unchanged_twice_then_only_changed_products_then_config_change(dsn, conn, new_schema, tmp_path):
    data_schema, out_schema = new_schema(), new_schema()
    products = [f"shop-{i}" for i in range(6)]
    table = await make_sales(conn, data_schema, {p: daily_frame(120, seed=i) for i, p in enumerate(products)})
    term = tmp_path / "term.json"
    env = env_for(dsn, table, out_schema, term, TRAINER_SKIP_UNCHANGED="true")

    first = run(["train"], env, term)  # nothing stored yet: every product trains
    assert first["counts"]["trained"] == 6 and first["counts"]["skipped"] == 0
    ids = {e["product"]: e["model_id"] for e in first["products"]}
    rows = await conn.fetch(f'SELECT * FROM "{out_schema}".forecast_models ORDER BY id')
    assert all(r["data_rows"] == 120 and r["data_last"] == "2023-04-30" for r in rows)
    assert all(len(r["data_hash"]) == 64 and len(r["config_hash"]) == 64 for r in rows)
    metrics = json.loads(rows[0]["metrics"])
    assert metrics["watermark"]["data"]["hash"] == rows[0]["data_hash"]
    assert metrics["watermark"]["config"]["horizon_days"] == 14

    second = run(["train"], env, term)  # unchanged data: trains nothing
    assert second["counts"]["trained"] == 0 and second["counts"]["skipped"] == 6 and second["exit_code"] == 0
    for entry in second["products"]:
        assert entry["status"] == "skipped" and entry["reason"] == "Unchanged"
        assert entry["model_id"] == ids[entry["product"]] and entry["checksum"]
    assert await conn.fetchval(f'SELECT count(*) FROM "{out_schema}".forecast_models') == 6
    assert run(["unchanged"], env, term)["unchanged"] == "0-5"

    changed = ["shop-0", "shop-2", "shop-5"]
    await append_day(conn, table, changed)
    plan = run(["unchanged"], env, term)  # the planning command, then train, on the same state
    assert plan["unchanged"] == "1,3-4" and plan["checked"] == 6 and plan["changed"] == 3
    third = run(["train"], env, term)
    assert {p for p, s in statuses(third).items() if s == "trained"} == set(changed)
    assert {p for p, s in statuses(third).items() if s == "skipped"} == unchanged_set(plan, products)
    new_rows = await conn.fetch(f'SELECT product_id, data_rows FROM "{out_schema}".forecast_models WHERE id > 6')
    assert sorted((r["product_id"], r["data_rows"]) for r in new_rows) == [(p, 121) for p in changed]

    longer = {**env, "TRAINER_HORIZON_DAYS": "21"}  # a model option changed: everything trains
    assert run(["unchanged"], longer, term)["unchanged"] == ""
    fourth = run(["train"], longer, term)
    assert fourth["counts"]["trained"] == 6
    assert run(["train"], longer, term)["counts"]["skipped"] == 6
    # Back to 14 days: the newest models are the 21-day ones, so every product trains again.
    assert run(["unchanged"], env, term)["unchanged"] == ""


async def test_one_product_pods_and_the_run_key(dsn, conn, new_schema, tmp_path):
    data_schema = new_schema()
    table = await make_sales(conn, data_schema, {"p": daily_frame(100, seed=3), "q": daily_frame(100, seed=4)})
    term = tmp_path / "term.json"
    env = env_for(dsn, table, data_schema, term, TRAINER_MODELS="naive", TRAINER_SKIP_UNCHANGED="true")
    first = run(["train"], {**env, "TRAINER_PRODUCT_ID": "p", "TRAINER_RUN_KEY": "job-uid-1"}, term)
    assert statuses(first) == {"p": "trained"}
    # A retried pod of the same Job (same run key) reports the model its earlier attempt stored.
    again = run(["train"], {**env, "TRAINER_PRODUCT_ID": "p", "TRAINER_RUN_KEY": "job-uid-1"}, term)
    assert statuses(again) == {"p": "trained"} and "already recorded" in again["products"][0]["warnings"][0]
    # The planner given that run key sends the product to its pod (which reports it trained).
    planner = {**env, "TRAINER_PRODUCTS_JSON": '["p"]'}
    assert run(["unchanged"], {**planner, "TRAINER_RUN_KEY": "job-uid-1"}, term)["unchanged"] == ""
    assert run(["unchanged"], {**planner, "TRAINER_RUN_KEY": "job-uid-2"}, term)["unchanged"] == "0"
    # The next night's Job (another run key): skipped, nothing written.
    later = run(["train"], {**env, "TRAINER_PRODUCT_ID": "p", "TRAINER_RUN_KEY": "job-uid-2"}, term)
    assert statuses(later) == {"p": "skipped"} and later["products"][0]["model_id"] == first["products"][0]["model_id"]
    # q has no model yet; a product with no rows is not skipped (the trainer reports it invalid).
    other = run_cli(["train"], {**env, "TRAINER_PRODUCTS_JSON": '["q", "gone"]'})
    assert other.code == 0, other.stderr
    assert statuses(termination(term)) == {"q": "trained", "gone": "invalid"}
    assert await conn.fetchval(f'SELECT count(*) FROM "{data_schema}".forecast_models') == 2


async def test_watermark_follows_edits_of_any_row_type(dsn, conn, new_schema, tmp_path):
    schema = new_schema()
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'CREATE TABLE "{schema}".sales (sku text, at timestamptz, qty numeric)')
    start = date(2024, 1, 1)
    records = [("a", f"{start + timedelta(days=i)} 10:00:00+00", str(10 + (i * 7) % 5)) for i in range(80)]
    records.append(("a", f"{start} 11:00:00+00", None))  # a NULL value
    for sku, at, qty in records:
        await conn.execute(
            f'INSERT INTO "{schema}".sales VALUES ($1, $2::text::timestamptz, $3::text::numeric)', sku, at, qty
        )
    term = tmp_path / "term.json"
    env = env_for(
        dsn,
        f"{schema}.sales",
        schema,
        term,
        TRAINER_MODELS="naive",
        TRAINER_PRODUCT_COLUMN="sku",
        TRAINER_TIME_COLUMN="at",
        TRAINER_VALUE_COLUMN="qty",
        TRAINER_SKIP_UNCHANGED="true",
    )
    assert run(["train"], env, term)["counts"]["trained"] == 1
    assert run(["train"], env, term)["counts"]["skipped"] == 1
    await conn.execute(f"UPDATE \"{schema}\".sales SET qty = 10.0 WHERE at = '2024-01-05 10:00:00+00'")
    changed = run(["unchanged"], env, term)  # 10 -> 10.0 is another value as stored: retrained
    assert changed["changed"] == 1
    assert run(["train"], env, term)["counts"]["trained"] == 1
    await conn.execute(f'UPDATE "{schema}".sales SET qty = 3 WHERE qty IS NULL')  # the NULL row got a value
    assert run(["unchanged"], env, term)["changed"] == 1


async def test_migration_3_adds_watermark_columns_and_index(db, conn, schema) -> None:
    result = await migrate(db, schema)
    assert result.after >= 3
    columns = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            schema,
            "forecast_models",
        )
    }
    assert {"data_rows", "data_last", "data_hash", "config_hash"} <= columns
    indexdef = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'forecast_models_watermark_idx'", schema
    )
    assert "(product_id, id DESC) INCLUDE (data_hash, config_hash, run_key)" in indexdef


async def test_unchanged_for_10000_products_takes_seconds(dsn, conn, new_schema, tmp_path):
    data_schema = new_schema()
    n, days = 10_000, 60
    await conn.execute(f'CREATE SCHEMA "{data_schema}"')
    await conn.execute(f'CREATE TABLE "{data_schema}".sales (product_id text NOT NULL, ds date NOT NULL, y float8)')
    await conn.execute(
        f"INSERT INTO \"{data_schema}\".sales SELECT 'sku-' || p, date '2024-01-01' + d, (p * 7 + d * 3) % 50 "
        f"FROM generate_series(0, {n - 1}) p, generate_series(0, {days - 1}) d"
    )
    await conn.execute(f'CREATE INDEX ON "{data_schema}".sales (product_id, ds)')
    await conn.execute(f'ANALYZE "{data_schema}".sales')
    table = f"{data_schema}.sales"
    products = [f"sku-{p}" for p in range(n)]
    term = tmp_path / "term.json"
    env = env_for(dsn, table, data_schema, term)
    # A stored model for every product, with the watermark and config hash train would record.
    cfg = train_config(resolve(TRAIN_OPTIONS, {}, env))
    settings = DbSettings(retries=1)
    db = Database(dsn, settings, role="data source")
    try:
        source = PostgresSource(dsn, table, Columns(), settings, db=db)
        marks = await pg_watermarks(source, products)
        await migrate(db, data_schema)
    finally:
        await db.close()
    model_json = "{}"
    checksum = hashlib.sha256(model_json.encode()).hexdigest()
    chash = config_hash(cfg)
    await conn.copy_records_to_table(
        "forecast_models",
        schema_name=data_schema,
        columns=[
            "product_id",
            "prophet_version",
            "params",
            "metrics",
            "model_json",
            "checksum",
            "data_rows",
            "data_last",
            "data_hash",
            "config_hash",
        ],
        records=[
            (p, "x", "{}", "{}", model_json, checksum, marks[p].rows, marks[p].last, marks[p].hash, chash)
            for p in products
        ],
    )
    await conn.execute(f'ANALYZE "{data_schema}".forecast_models')
    products_file = tmp_path / "products.json"
    products_file.write_text(json.dumps(products))
    env["TRAINER_PRODUCTS_FILE"] = str(products_file)

    started = time.monotonic()
    every = run(["unchanged"], env, term)
    seconds = time.monotonic() - started
    print(f"\nunchanged: {n} products x {days} days checked in {seconds:.2f} s (trainer says {every['seconds']} s)")
    assert every["unchanged"] == "0-9999" and every["checked"] == n and every["changed"] == 0
    assert seconds < 60  # "seconds, not minutes"; about 3 s on an idle 2-core machine

    ordered = sorted(products)  # Python's str order: sku-0, sku-1, sku-10, sku-100, ...
    await conn.execute(
        f"INSERT INTO \"{data_schema}\".sales SELECT unnest($1::text[]), date '2024-03-01', 1", ordered[1::2]
    )
    alternating = run(["unchanged"], env, term)
    assert alternating["truncated"] is True and alternating["unchanged"] == "" and alternating["changed"] == n // 2
    assert "changed_indexes" not in alternating  # neither form fits in 4096 bytes: train everything

    await conn.execute(f"DELETE FROM \"{data_schema}\".sales WHERE ds = '2024-03-01'")
    await conn.execute(
        f"INSERT INTO \"{data_schema}\".sales SELECT unnest($1::text[]), date '2024-03-01', 1", ordered[::20]
    )
    scattered = run(["unchanged"], env, term)  # 5 % changed, scattered
    assert scattered["changed"] == n // 20 and scattered["truncated"] is True
    assert parse_ranges(scattered["changed_indexes"]) == list(range(0, n, 20))


def pod_env(container_env: list[dict[str, Any]], dsn: str, term: Path, plan_dir: Path) -> dict[str, str]:
    """A container's env as the operator builds it, as the kubelet would give it (Secret refs -> the DSN,
    the mounted product list and termination log -> files under tmp_path)."""
    env = {e["name"]: e.get("value", dsn) for e in container_env}
    env["TRAINER_TERMINATION_LOG"] = str(term)
    if "TRAINER_PRODUCTS_FILE" in env:
        env["TRAINER_PRODUCTS_FILE"] = str(plan_dir / "products.json")
    return env


async def test_the_operators_check_pod_counts_a_model_of_its_own_run_as_trained_not_skipped(
    dsn, conn, new_schema, tmp_path
):
    """The check Job and the product Jobs exactly as the operator builds them: a product whose model an
    earlier attempt of this run stored (same run key) goes to its pod, which reports it trained; without
    the run key in the check pod (the bug) it was counted skipped."""
    from trainingjob_operator import builders
    from trainingjob_operator.api import TrainingJob

    data_schema = new_schema()
    table = await make_sales(conn, data_schema, {"p": daily_frame(100, seed=3), "q": daily_frame(100, seed=4)})

    def trainingjob(uid: str) -> TrainingJob:
        return TrainingJob.model_validate(
            {
                "apiVersion": "training.forecast.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": f"nightly-{uid}", "namespace": "shop", "uid": uid},
                "spec": {
                    "products": ["p", "q"],
                    "skipUnchanged": True,
                    "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}},
                    "output": {"postgres": {"schema": data_schema}},
                    "forecast": {"horizonDays": 14},
                    "tuning": {"trials": 0, "folds": 1, "models": ["naive"]},
                },
            }
        )

    tj, last_night = trainingjob("uid-run-2"), trainingjob("uid-run-1")
    term, plan_dir = tmp_path / "term.json", tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "products.json").write_text(builders.build_plan_configmap(tj)["data"]["products.json"])

    def container(job: dict[str, Any]) -> dict[str, str]:
        c = job["spec"]["template"]["spec"]["containers"][0]
        return {**pod_env(c["env"], dsn, term, plan_dir), "TRAINER_LOG_FORMAT": "json"}

    # Last night's model of q (another run); p trained by an earlier attempt of THIS run (its pod
    # stored the model, then the operator lost track of it, e.g. a restart before its status write).
    assert statuses(run(["train"], container(builders.build_job(last_night, "q")), term)) == {"q": "trained"}
    assert statuses(run(["train"], container(builders.build_job(tj, "p")), term)) == {"p": "trained"}

    check = run(["unchanged"], container(builders.build_plan_job(tj)), term)
    assert check["checked"] == 2 and unchanged_set(check, ["p", "q"]) == {"q"}  # p is this run's: not skipped
    again = run(["train"], container(builders.build_job(tj, "p")), term)
    assert statuses(again) == {"p": "trained"} and "already recorded" in again["products"][0]["warnings"][0]
    assert await conn.fetchval(f'SELECT count(*) FROM "{data_schema}".forecast_models') == 2


async def test_a_re_created_trainingjobs_check_answers_for_its_own_list_only(dsn, conn, new_schema, tmp_path):
    """Issue 18, point 1, with the real check pod: ``nightly`` (p, q) trained; re-created with q
    swapped for r, whose data changed since. The check Job the operator builds reads its own uid's
    list and answers "r changed"; an answer for the old list (same count: what a stale ConfigMap
    gave) is refused by the operator, so r is never skipped untrained."""
    from trainingjob_operator import builders
    from trainingjob_operator.api import TrainingJob
    from trainingjob_operator.termination import parse_unchanged

    data_schema = new_schema()
    frames = {p: daily_frame(100, seed=i) for i, p in enumerate(["p", "q", "r"])}
    table = await make_sales(conn, data_schema, frames)

    def trainingjob(uid: str, products: list[str]) -> TrainingJob:
        return TrainingJob.model_validate(
            {
                "apiVersion": "training.forecast.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "nightly", "namespace": "shop", "uid": uid},
                "spec": {
                    "products": products,
                    "skipUnchanged": True,
                    "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}},
                    "output": {"postgres": {"schema": data_schema}},
                    "forecast": {"horizonDays": 14},
                    "tuning": {"trials": 0, "folds": 1, "models": ["naive"]},
                },
            }
        )

    old, new = trainingjob("uid-old", ["p", "q"]), trainingjob("uid-new", ["p", "r"])
    term, plan_dir = tmp_path / "term.json", tmp_path / "plan"
    plan_dir.mkdir()

    def container(job: dict[str, Any]) -> dict[str, str]:
        c = job["spec"]["template"]["spec"]["containers"][0]
        return {**pod_env(c["env"], dsn, term, plan_dir), "TRAINER_LOG_FORMAT": "json"}

    for product in ["p", "q", "r"]:
        assert statuses(run(["train"], container(builders.build_job(old, product)), term)) == {product: "trained"}
    await append_day(conn, table, ["r"])

    def check(listed: TrainingJob) -> str:
        (plan_dir / "products.json").write_text(builders.build_plan_configmap(listed)["data"]["products.json"])
        run(["unchanged"], container(builders.build_plan_job(new)), term)
        return term.read_text()

    digest = builders.products_digest(new.spec.products)
    own = parse_unchanged(check(new), 2, digest)
    assert own.unchanged == frozenset({0})  # p unchanged, r changed
    stale = parse_unchanged(check(old), 2, digest)  # the old list: p and q both unchanged
    assert json.loads(term.read_text())["unchanged"] == "0-1"
    assert stale.unchanged is None and "another product list" in stale.problem


async def test_a_new_numpy_or_trainer_version_makes_a_stored_model_changed(
    dsn, conn, new_schema, tmp_path, monkeypatch
):
    """The config hash a model was stored with (real train) no longer matches once the trainer or a
    library that fits it has another version: the product is not unchanged, it trains again."""
    import forecast_trainer.watermark as watermark
    from forecast_trainer.unchanged import check

    data_schema = new_schema()
    table = await make_sales(conn, data_schema, {"p": daily_frame(100, seed=5)})
    term = tmp_path / "term.json"
    env = env_for(dsn, table, data_schema, term, TRAINER_PRODUCTS='["p"]', TRAINER_MODELS="naive")
    assert statuses(run(["train"], env, term)) == {"p": "trained"}
    cfg = train_config(resolve(TRAIN_OPTIONS, {}, {**env, "TRAINER_OUTPUT_DSN": dsn}))
    assert set((await check(cfg, ["p"])).unchanged) == {"p"}  # same versions: unchanged
    real = watermark.library_version
    monkeypatch.setattr(watermark, "library_version", lambda name: "9.9.9" if name == "numpy" else real(name))
    assert (await check(cfg, ["p"])).unchanged == {}
    monkeypatch.undo()
    monkeypatch.setattr(watermark, "__version__", "9.9.9")
    assert (await check(cfg, ["p"])).unchanged == {}
