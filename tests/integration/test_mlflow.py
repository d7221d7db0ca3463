"""The trainer + a real PostgreSQL + a real MLflow tracking server (hack/mlflow_harness.py).

Runs, artifacts, registered versions and aliases are read back from the server with MLflow's
own client; the champion table and forecasts from PostgreSQL. Stopping the server mid-run must
not stop training; a worse model must not replace the champion.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import REPO, clean_env, daily_frame, run_cli

from forecast_trainer.tracking import registered_name

mlflow = pytest.importorskip("mlflow", reason="the full mlflow package (dev extra) runs the test server")

from mlflow_harness import MlflowServer  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[MlflowServer]:
    with MlflowServer() as srv:
        yield srv


def client(server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def env_for(dsn: str, table: str, schema: str, term: Path, uri: str, experiment: str, **extra: str) -> dict[str, str]:
    return {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": table,
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_TRAININGJOB": "shop/nightly",
        "TRAINER_RUN_KEY": f"uid-{time.monotonic_ns()}/0",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_FOLDS": "3",
        "TRAINER_TRIALS": "0",
        "TRAINER_MODELS": "ets,theta,seasonal_naive,last_value",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_DB_RETRIES": "1",
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "TRAINER_REGISTERED_MODEL_PREFIX": f"{experiment}-",
        "TRAINER_TRACKING_BUDGET_SECONDS": "20",
        **extra,
    }


def entries(term: Path) -> dict[str, dict[str, Any]]:
    return {e["product"]: e for e in json.loads(term.read_text())["products"]}


async def champion_id(conn: Any, schema: str, product: str) -> int:
    return int(
        await conn.fetchval(f'SELECT model_id FROM "{schema}".forecast_champions WHERE product_id = $1', product)
    )


async def test_runs_artifacts_versions_and_aliases(dsn, conn, new_schema, tmp_path, server) -> None:
    data, out = new_schema(), new_schema()
    products = {"croissant": daily_frame(160, seed=1), "pain au chocolat": daily_frame(160, level=20, seed=2)}
    table = await make_sales(conn, data, products)
    term = tmp_path / "term.json"
    experiment = f"exp-{out}"
    run = run_cli(["train"], env_for(dsn, table, out, term, server.uri, experiment))
    assert run.code == 0, run.stderr
    got = entries(term)
    mc = client(server)
    exp = mc.get_experiment_by_name(experiment)
    assert exp is not None
    runs = {r.data.tags["forecast.product_id"]: r for r in mc.search_runs([exp.experiment_id])}
    assert set(runs) == set(products)
    for product, entry in got.items():
        assert entry["status"] == "trained" and entry["tracking"] == "logged" and entry["champion"] == "first"
        r = runs[product]
        assert r.info.status == "FINISHED" and r.info.run_name == product
        assert r.data.params["family"] == entry["family"] and r.data.params["folds"] == "3"
        assert r.data.tags["forecast.model_id"] == str(entry["model_id"])
        assert r.data.tags["forecast.trainingjob"] == "shop/nightly"
        assert r.data.metrics["cv_error"] == pytest.approx(entry["error"], rel=1e-3)
        assert len(mc.get_metric_history(r.info.run_id, "cv_fold_error")) == 3
        local = Path(mc.download_artifacts(r.info.run_id, "model", str(tmp_path / product)))
        text = (local / "model.json").read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == entry["checksum"]
        assert (local / "model.sha256").read_text().split()[0] == entry["checksum"]
        name = registered_name(f"{experiment}-", product)
        version = mc.get_model_version_by_alias(name, "champion")
        assert version.tags["forecast.model_id"] == str(entry["model_id"]) and version.run_id == r.info.run_id
        assert mc.get_registered_model(name).tags["forecast.product_id"] == product
        assert await champion_id(conn, out, product) == entry["model_id"]


async def test_worse_model_does_not_replace_the_champion_and_a_better_one_does(
    dsn, conn, new_schema, tmp_path, server
) -> None:
    data, out = new_schema(), new_schema()
    product = "sourdough"
    table = await make_sales(conn, data, {product: daily_frame(200, seed=5)})
    term = tmp_path / "term.json"
    experiment = f"exp-{out}"
    name = registered_name(f"{experiment}-", product)
    mc = client(server)

    def train(models: str) -> dict[str, Any]:
        run = run_cli(["train"], env_for(dsn, table, out, term, server.uri, experiment, TRAINER_MODELS=models))
        assert run.code == 0, run.stderr
        return entries(term)[product]

    # 1. A weak first champion: the last value only (a weekly-seasonal series).
    first = train("last_value")
    assert first["champion"] == "first" and first["family"] == "last_value"
    # 2. Seasonal models beat it on the most recent window by far more than fold noise: promoted.
    better = train("ets,seasonal_naive,last_value")
    assert better["champion"] == "promoted", better["warnings"]
    assert await champion_id(conn, out, product) == better["model_id"]
    assert mc.get_model_version_by_alias(name, "champion").tags["forecast.model_id"] == str(better["model_id"])
    # 3. The weak family again: worse on the same window, recorded as challenger only.
    worse = train("last_value")
    assert worse["champion"] == "kept" and worse["tracking"] == "logged"
    assert any("champion kept" in w for w in worse["warnings"])
    assert await champion_id(conn, out, product) == better["model_id"]
    stored = await conn.fetchval(f'SELECT count(*) FROM "{out}".forecasts WHERE model_id = $1', worse["model_id"])
    assert stored == 0  # the champion's forecast stays the one in forecasts
    current = await conn.fetch(
        f'SELECT DISTINCT model_id FROM "{out}".champion_forecasts WHERE product_id = $1', product
    )
    assert [r["model_id"] for r in current] == [better["model_id"]]
    metrics = json.loads(
        await conn.fetchval(f'SELECT metrics FROM "{out}".forecast_models WHERE id = $1', worse["model_id"])
    )
    decision = metrics["champion"]
    assert decision["outcome"] == "kept" and decision["champion_model_id"] == better["model_id"]
    assert decision["challenger_error"] > decision["champion_error"]
    assert mc.get_model_version_by_alias(name, "champion").tags["forecast.model_id"] == str(better["model_id"])
    assert mc.get_model_version_by_alias(name, "challenger").tags["forecast.model_id"] == str(worse["model_id"])
    # 4. A person moves the champion alias back to the first model in the MLflow UI: respected, pinned.
    first_version = next(
        v for v in mc.search_model_versions(f"name = '{name}'") if v.tags["forecast.model_id"] == str(first["model_id"])
    )
    mc.set_registered_model_alias(name, "champion", first_version.version)
    pinned = train("ets,seasonal_naive,last_value")
    assert pinned["champion"] == "kept" and any("set by hand" in w for w in pinned["warnings"])
    row = await conn.fetchrow(f'SELECT model_id, pinned FROM "{out}".forecast_champions WHERE product_id = $1', product)
    assert row["model_id"] == first["model_id"] and row["pinned"] is True


def train_stopping_server(env: dict[str, str], srv: MlflowServer) -> tuple[int, str, float]:
    """Run the trainer; stop the server when the second product starts. (exit code, stderr, seconds after)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast_trainer", "train"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        starts = 0
        for line in proc.stderr:
            if '"product_started"' in line:
                starts += 1
                if starts == 2:
                    srv.stop()
                    break
        started = time.monotonic()
        rest = proc.communicate(timeout=300)[1]
        return proc.returncode, rest, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_server_stopped_mid_run_training_completes_and_tracking_is_skipped(
    dsn, conn, new_schema, tmp_path
) -> None:
    data, out = new_schema(), new_schema()
    products = {f"p{i}": daily_frame(160, seed=10 + i) for i in range(4)}
    table = await make_sales(conn, data, products)
    term = tmp_path / "term.json"
    experiment = f"exp-{out}"
    with MlflowServer() as srv:
        env = clean_env(env_for(dsn, table, out, term, srv.uri, experiment, TRAINER_TRACKING_BUDGET_SECONDS="5"))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "trainer_image"), env.get("PYTHONPATH", "")])
        code, rest, after_stop = await asyncio.to_thread(train_stopping_server, env, srv)
    assert code == 0, rest
    got = entries(term)
    assert [got[p]["status"] for p in sorted(products)] == ["trained"] * 4
    assert [got[p]["tracking"] for p in sorted(products)].count("logged") == 1
    skipped = [got[p] for p in sorted(products) if got[p]["tracking"] == "skipped"]
    assert len(skipped) == 3
    assert all(any("MLflow tracking skipped" in w for w in e["warnings"]) for e in skipped)
    # No retry storm: after the first failure the others skip without calling MLflow at all.
    assert sum("MLflow unavailable earlier in this run" in w for e in skipped for w in e["warnings"]) == 2
    assert after_stop < 120
    models = await conn.fetchval(f'SELECT count(*) FROM "{out}".forecast_models')
    assert models == 4  # every model and forecast is in the database


async def test_unreachable_server_costs_at_most_the_budget(dsn, conn, new_schema, tmp_path) -> None:
    from operator_harness import free_port

    data, out = new_schema(), new_schema()
    table = await make_sales(conn, data, {"a": daily_frame(160, seed=3), "b": daily_frame(160, seed=4)})
    term = tmp_path / "term.json"
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = run_cli(["train"], env_for(dsn, table, out, term, uri, "x", TRAINER_TRACKING_BUDGET_SECONDS="3"))
    assert run.code == 0, run.stderr
    got = entries(term)
    assert {e["status"] for e in got.values()} == {"trained"}
    assert {e["tracking"] for e in got.values()} == {"skipped"}
    assert {e["champion"] for e in got.values()} == {"first"}
    assert all(e["seconds"] < 60 for e in got.values())
