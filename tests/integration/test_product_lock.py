"""The per-product lock in the output database (issue 9 item 6): never two trainings of one product at once,
whichever namespace, cluster or machine the trainers run in, as long as they write to the same table."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import REPO, clean_env, daily_frame

from forecast_trainer.config import DbSettings
from forecast_trainer.db import Database
from forecast_trainer.errors import ProductLocked
from forecast_trainer.locking import ProductLock, lock_key_parts, product_lock_key
from forecast_trainer.store import ModelRecord, migrate, write_model

PRODUCT = "bakery-croissant-001"


def database(dsn: str) -> Database:
    return Database(dsn, DbSettings(connect_timeout=5, query_timeout=30, retries=1), role="output database")


async def holders(conn, schema: str, product: str) -> list[int]:
    classid, objid = lock_key_parts(product_lock_key(schema, product))
    rows = await conn.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid "
        "AND objid = $2::bigint::oid AND objsubid = 1",
        classid,
        objid,
    )
    return [r["pid"] for r in rows]


async def test_a_second_lock_on_the_same_product_is_refused_and_names_the_holder(dsn, conn, schema) -> None:
    first, second = database(dsn), database(dsn)
    held = ProductLock(first, schema, PRODUCT, "shop/nightly")
    try:
        await held.acquire()
        assert await holders(conn, schema, PRODUCT) == [held.conn.get_server_pid()]
        with pytest.raises(ProductLocked) as info:
            await ProductLock(second, schema, PRODUCT, "other/weekly").acquire()
        message = info.value.message
        assert info.value.exit_code == 5 and info.value.reason == "ProductLocked"
        assert repr(PRODUCT) in message and repr(schema) in message and "retry later" in message
        assert "forecast-trainer shop/nightly" in message and str(held.conn.get_server_pid()) in message
        other_product = ProductLock(second, schema, "bakery-baguette-002")
        other_schema = ProductLock(second, schema + "_x", PRODUCT)
        await other_product.acquire()  # other products and other output schemas are independent
        await other_schema.acquire()
        await other_product.release()
        await other_schema.release()
        await held.release()
        assert await holders(conn, schema, PRODUCT) == []
        again = ProductLock(second, schema, PRODUCT)
        await again.acquire()
        await again.release()
    finally:
        await held.release()
        await first.close()
        await second.close()


async def test_lock_lost_with_its_connection_is_taken_again_before_the_write(dsn, conn, schema) -> None:
    db = database(dsn)
    lock = ProductLock(db, schema, PRODUCT)
    try:
        await lock.acquire()
        for round_ in range(12):  # the client learns of the end at different moments: every way must recover
            old_pid = lock.conn.get_server_pid()
            await conn.execute("SELECT pg_terminate_backend($1)", old_pid)  # e.g. a failover or a network cut
            await asyncio.sleep(0.01 * (round_ % 4))
            pid = await lock.run("probe", lambda c: c.fetchval("SELECT pg_backend_pid()"))
            assert pid != old_pid and await holders(conn, schema, PRODUCT) == [pid]
    finally:
        await lock.release()
        await db.close()


async def test_lock_lost_and_taken_by_another_trainer_is_reported_locked(dsn, conn, schema) -> None:
    db, thief_db = database(dsn), database(dsn)
    lock, thief = ProductLock(db, schema, PRODUCT), ProductLock(thief_db, schema, PRODUCT, "thief/job")
    try:
        await lock.acquire()
        await conn.execute("SELECT pg_terminate_backend($1)", lock.conn.get_server_pid())
        for _ in range(50):
            if not await holders(conn, schema, PRODUCT):
                break
            await asyncio.sleep(0.1)
        await thief.acquire()
        with pytest.raises(ProductLocked, match="thief/job"):
            await lock.run("write", lambda c: c.fetchval("SELECT 1"))
    finally:
        await thief.release()
        await lock.release()
        await db.close()
        await thief_db.close()


async def test_the_write_transaction_waits_for_a_session_lock_held_elsewhere(dsn, conn, schema) -> None:
    """Second line: a writer that holds no session lock is still serialised with one that does."""
    db = database(dsn)
    await migrate(db, schema)
    other = ProductLock(database(dsn), schema, PRODUCT)
    await other.acquire()
    forecast = pd.DataFrame(
        {"ds": pd.date_range("2024-01-01", periods=3), "yhat": [1.0, 2.0, 3.0], "yhat_lower": 0.5, "yhat_upper": 4.0}
    )
    from forecast_trainer.model import checksum

    record = ModelRecord(PRODUCT, None, "1.1", {}, {}, "{}", checksum("{}"))
    writer = await database(dsn).connect("writer")
    try:
        task = asyncio.ensure_future(write_model(writer, schema, record, forecast))
        await asyncio.sleep(1.0)
        assert not task.done()  # blocked on pg_advisory_xact_lock
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models') == 0
        await other.release()
        saved = await asyncio.wait_for(task, 10)
        assert not saved.existing
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models') == 1
    finally:
        await other.release()
        await other.db.close()
        await writer.close()
        await db.close()


async def _make_sales(conn, schema: str, days: int) -> str:
    return await make_sales(conn, schema, {PRODUCT: daily_frame(days, seed=4)})


def _trainer(
    dsn: str, table: str, out_schema: str, term: Path, trials: str, name: str, extra: dict[str, str] | None = None
) -> subprocess.Popen:
    env = clean_env(
        {
            "TRAINER_DATA_DSN": dsn,
            "TRAINER_DATA_TABLE": table,
            "TRAINER_OUTPUT_SCHEMA": out_schema,
            "TRAINER_PRODUCT_ID": PRODUCT,
            "TRAINER_TRAININGJOB": name,
            "TRAINER_TRIALS": trials,
            "TRAINER_FOLDS": "2",
            "TRAINER_HORIZON_DAYS": "14",
            "TRAINER_TERMINATION_LOG": str(term),
            "TRAINER_LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO / "trainer_image"),
            **(extra or {}),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "forecast_trainer", "train"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_trainers_on_one_product_one_trains_the_other_exits_5(dsn, conn, new_schema, tmp_path) -> None:
    """Two TrainingJobs (two namespaces) on the same product and output table: no overlapping training."""
    data_schema, out_schema = new_schema(), new_schema()
    table = await _make_sales(conn, data_schema, 400)
    term_a, term_b = tmp_path / "a.json", tmp_path / "b.json"
    first = _trainer(dsn, table, out_schema, term_a, "8", "ns-a/nightly")
    try:
        deadline = time.monotonic() + 60
        while not await holders(conn, out_schema, PRODUCT):  # the first trainer holds the lock: it is training
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
            await asyncio.sleep(0.05)
        second = _trainer(dsn, table, out_schema, term_b, "8", "ns-b/nightly")
        _, err_b = await asyncio.to_thread(second.communicate, timeout=120)
        still_training = first.poll() is None
        _, err_a = await asyncio.to_thread(first.communicate, timeout=300)
    finally:
        first.kill()
    assert still_training, "the first trainer finished before the second asked: no overlap was tried"
    assert first.returncode == 0, err_a
    assert second.returncode == 5, err_b
    a, b = json.loads(term_a.read_text()), json.loads(term_b.read_text())
    assert [(e["product"], e["status"]) for e in a["products"]] == [(PRODUCT, "trained")]
    assert b["exit_code"] == 5 and b["counts"]["locked"] == 1 and b["counts"]["trained"] == 0
    [entry] = b["products"]
    assert (entry["product"], entry["status"], entry["reason"]) == (PRODUCT, "locked", "ProductLocked")
    assert repr(out_schema) in entry["message"] and repr(PRODUCT) in entry["message"]
    assert "ns-a/nightly" in entry["message"]  # who holds it
    assert "product_started" not in err_b  # the locked trainer did not even read the product
    rows = await conn.fetch(f'SELECT trainingjob FROM "{out_schema}".forecast_models')
    assert [r["trainingjob"] for r in rows] == ["ns-a/nightly"]


async def test_simultaneous_trainers_never_overlap(dsn, conn, new_schema, tmp_path) -> None:
    """Started at the same moment: either one is locked out, or they ran one after the other."""
    data_schema, out_schema = new_schema(), new_schema()
    table = await _make_sales(conn, data_schema, 200)
    terms = [tmp_path / f"{i}.json" for i in range(2)]
    procs = [_trainer(dsn, table, out_schema, terms[i], "3", f"ns-{i}/job") for i in range(2)]
    for proc in procs:
        await asyncio.to_thread(proc.communicate, timeout=300)
    codes = sorted(p.returncode for p in procs)
    models = await conn.fetchval(f'SELECT count(*) FROM "{out_schema}".forecast_models')
    assert codes in ([0, 5], [0, 0]), codes
    assert models == codes.count(0)


async def test_a_product_locked_by_someone_else_is_not_read_not_trained_exit_5(dsn, conn, new_schema, tmp_path):
    data_schema, out_schema = new_schema(), new_schema()
    table = await _make_sales(conn, data_schema, 100)
    await migrate(database(dsn), out_schema)
    held = ProductLock(database(dsn), out_schema, PRODUCT, "elsewhere/job")
    await held.acquire()
    try:
        term = tmp_path / "t.json"
        proc = _trainer(dsn, table, out_schema, term, "0", "here/job")
        _, err = await asyncio.to_thread(proc.communicate, timeout=120)
    finally:
        await held.release()
        await held.db.close()
    assert proc.returncode == 5, err
    doc = json.loads(term.read_text())
    assert doc["exit_code"] == 5 and [e["status"] for e in doc["products"]] == ["locked"]
    assert "elsewhere/job" in doc["products"][0]["message"]
    assert await conn.fetchval(f'SELECT count(*) FROM "{out_schema}".forecast_models') == 0


async def test_the_lock_session_asks_for_tcp_keepalives(dsn, schema) -> None:
    """A trainer that dies with its node sends no FIN: without keepalives the server keeps its session,
    and the lock, for the OS default (~2 h 11 min) while the product is relaunched again and again."""
    db = database(dsn)
    lock = ProductLock(db, schema, PRODUCT)
    try:
        await lock.acquire()
        shown = await lock.run(
            "probe",
            lambda c: c.fetchrow(
                "SELECT current_setting('tcp_keepalives_idle') AS idle, "
                "current_setting('tcp_keepalives_interval') AS interval, "
                "current_setting('tcp_keepalives_count') AS count"
            ),
        )
        assert (shown["idle"], shown["interval"], shown["count"]) == ("30", "10", "3")
    finally:
        await lock.release()
        await db.close()


async def test_a_lock_lost_while_training_stops_the_trainer_and_nothing_is_written(
    dsn, conn, new_schema, tmp_path
) -> None:
    """The lock's session ends mid-training (an idle timeout, a failover, a pooler; here
    pg_terminate_backend): the heartbeat sees it, training stops, nothing is written, the product is
    reported locked (exit 5) so its launcher retries it; before, it trained on unprotected and wrote."""
    data_schema, out_schema = new_schema(), new_schema()
    table = await _make_sales(conn, data_schema, 400)
    term = tmp_path / "t.json"
    trainer = _trainer(dsn, table, out_schema, term, "30", "ns-a/nightly", {"TRAINER_LOCK_HEARTBEAT_SECONDS": "0.5"})
    try:
        deadline = time.monotonic() + 60
        while not (pids := await holders(conn, out_schema, PRODUCT)):
            assert trainer.poll() is None and time.monotonic() < deadline, trainer.communicate()[1]
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # it reads and starts training
        assert trainer.poll() is None, "finished before its lock could be taken away"
        await conn.execute("SELECT pg_terminate_backend($1)", pids[0])
        killed = time.monotonic()
        _, err = await asyncio.to_thread(trainer.communicate, timeout=300)
        took = time.monotonic() - killed
    finally:
        trainer.kill()
    assert trainer.returncode == 5, err
    doc = json.loads(term.read_text())
    [entry] = doc["products"]
    assert (entry["status"], entry["reason"]) == ("locked", "ProductLocked")
    assert "was lost while it trained" in entry["message"] and "nothing was written" in entry["message"]
    assert await conn.fetchval(f'SELECT count(*) FROM "{out_schema}".forecast_models') == 0
    assert took < 30, f"the trainer went on for {took:.0f} s after losing its lock"


async def test_a_heartbeat_during_a_write_retry_does_not_call_the_lock_lost(dsn, conn, schema) -> None:
    """A write whose connection broke is retried after a back-off (0.5 s): the retry locks again
    before its statement. A heartbeat ticking in that back-off saw no connection and called the lock
    lost, cancelling the write that was about to succeed (seen as a flaky test_run_key)."""
    lock = ProductLock(database(dsn), schema, PRODUCT, heartbeat_seconds=0.05)
    attempts = 0

    async def write(connection) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionResetError("the COMMIT acknowledgement was lost")
        return int(await connection.fetchval("SELECT 7"))

    try:
        await lock.acquire()
        assert await lock.while_held(lock.run("write the model", write)) == 7
        assert attempts == 2
        assert await holders(conn, schema, PRODUCT) == [lock.conn.get_server_pid()]  # locked again
        assert not lock.relocking
    finally:
        await lock.release()
