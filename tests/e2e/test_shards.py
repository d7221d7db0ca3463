"""Shard mode on the real node (issue 19): the operator as a local process, the trainer image's pods
on the real kubelet training many products each, PostgreSQL on the host address.

Needs the trainer side of issue 19 (branch shard-trainer: `forecast-trainer discover`, shard mode
of `train`, run_products/run_outcomes) in the imported trainer image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import ClusterHandle, wait_for
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import apply, tj_status, wait_phase

from trainingjob_operator.status import parse_indexes

pytestmark = [pytest.mark.e2e, pytest.mark.real_node, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
CHEAP = {"models": ["naive"], "trials": 0, "folds": 1}
"""The trainer's cheapest families: this measures orchestration and exactly-once, not accuracy."""


@pytest.fixture(scope="module")
def crds(cluster: ClusterHandle) -> None:
    for crd in ("trainingjob.yaml", "trainingschedule.yaml"):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / crd))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.training.forecast.dev")


@pytest.fixture(scope="module")
def operator(cluster: ClusterHandle, crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(str(cluster.kubeconfig), tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def database(cluster: ClusterHandle) -> Iterator[Any]:
    """A PostgreSQL the pods reach on the host address (hack/postgres.sh via pg_harness)."""
    from pg_harness import PostgresServer

    server = PostgresServer(listen=(cluster.host_address,))
    server.start()
    yield server
    server.stop()


def psql(dsn: str, sql: str) -> str:
    return subprocess.run(["psql", dsn, "-AtX", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()


def sales(database: Any, products: int, days: int = 120) -> tuple[str, str]:
    """A fresh sales table of the trainer's sample data, and a fresh output schema."""
    suffix = uuid.uuid4().hex[:8]
    table, schema = f"sales_{suffix}", f"models_{suffix}"
    trainer = str(Path(sys.executable).parent / "forecast-trainer")
    cmd = [trainer, "sample-data", "--products", str(products), "--days", str(days), "--dsn", database.dsn]
    subprocess.run([*cmd, "--table", table], check=True, capture_output=True)
    return table, schema


def shard_tj(
    cluster: ClusterHandle, namespace: str, database: Any, name: str, table: str, schema: str, **spec: Any
) -> dict[str, Any]:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        namespace,
        f"--from-literal=dsn={database.dsn_for(cluster.host_address)}",
    )
    return {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}},
            "output": {"postgres": {"schema": schema}},
            "tuning": CHEAP,
            "forecast": {"horizonDays": 7},
            **spec,
        },
    }


def models_per_product(database: Any, schema: str) -> dict[str, int]:
    rows = psql(database.dsn, f"SELECT product_id, count(*) FROM {schema}.forecast_models GROUP BY 1")
    return {p: int(n) for p, n in (line.split("|") for line in rows.splitlines() if line)}


def test_all_products_from_postgresql_in_shards_of_50_are_each_stored_once(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 300)
    body = shard_tj(cluster, namespace, database, "every", table, schema, allProducts=True, productsPerPod=50)
    body["spec"]["parallelism"] = 3
    apply(cluster, namespace, body)
    st = wait_phase(cluster, namespace, "every", ("Succeeded", "Failed"), timeout=1200)
    assert st["phase"] == "Succeeded", st
    assert st["products"]["total"] == 300 and st["products"]["succeeded"] == 300, st["products"]
    assert st["succeededIndexes"] == "0-299" and st["failedIndexes"] == "" and st["indexOrder"] == "Sorted"
    assert st["shards"]["size"] == 50 and st["discovery"]["products"] == 300
    complete = next(c for c in st["conditions"] if c["type"] == "Complete")
    assert complete["status"] == "True"
    models = models_per_product(database, schema)
    assert len(models) == 300 and set(models.values()) == {1}, "every product stored exactly once"
    uid = cluster.kubectl_json("get", "tj", "every", "-n", namespace)["metadata"]["uid"]
    outcomes = psql(
        database.dsn, f"SELECT status, count(*) FROM {schema}.run_outcomes WHERE run_key LIKE '{uid}/%' GROUP BY 1"
    )
    assert outcomes == "trained|300", outcomes
    jobs = cluster.kubectl_json("get", "jobs", "-n", namespace)["items"]
    shard_jobs = [j for j in jobs if j["spec"].get("completionMode") == "Indexed"]
    assert len(shard_jobs) == 1 and shard_jobs[0]["spec"]["completions"] == 6
    leases = cluster.kubectl_json("get", "leases", "-n", namespace)["items"]
    assert leases == [], "no Lease per product in shard mode"


def test_a_pod_deleted_mid_shard_loses_at_most_its_product_in_progress(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 100)
    products = psql(database.dsn, f"SELECT DISTINCT product_id FROM {table} ORDER BY 1").splitlines()
    body = shard_tj(cluster, namespace, database, "killed", table, schema, products=products, productsPerPod=50)
    body["spec"]["parallelism"] = 1
    # Prophet at its defaults (~0.3-1 s a product), not the cheapest family: on an idle machine a shard
    # of 50 naive products is done within a second, before a poll every 0.5 s sees it half-way.
    body["spec"]["tuning"] = {"models": ["prophet"], "trials": 0, "folds": 1}
    apply(cluster, namespace, body)

    def some_stored() -> bool | None:
        try:
            return 1 <= sum(models_per_product(database, schema).values()) < 45 or None
        except subprocess.CalledProcessError:
            return None  # the schema is created by the first pod

    wait_for("a few products of the first shard stored", some_stored, timeout=600, every=0.5)
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    running = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
    assert running, "a shard pod is running"
    cluster.kubectl("delete", "pod", "-n", namespace, running[0], "--wait=false")
    st = wait_phase(cluster, namespace, "killed", ("Succeeded", "Failed"), timeout=1200)
    assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 100, st
    models = models_per_product(database, schema)
    assert len(models) == 100 and set(models.values()) == {1}, "each product stored once, none twice"


def test_an_invalid_product_fails_alone_and_retry_failed_relaunches_only_it(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 59)
    bad = "zz-bad-001"
    psql(
        database.dsn,
        f"INSERT INTO {table} (product_id, ds, y) SELECT '{bad}', current_date - d, 1 FROM generate_series(1, 5) d",
    )
    products = psql(database.dsn, f"SELECT DISTINCT product_id FROM {table} ORDER BY 1").splitlines()
    assert len(products) == 60 and products[-1] == bad
    body = shard_tj(cluster, namespace, database, "invalid", table, schema, products=products, productsPerPod=20)
    apply(cluster, namespace, body)
    st = wait_phase(cluster, namespace, "invalid", ("Succeeded", "Failed"), timeout=900)
    assert st["phase"] == "Failed", st  # maxFailedProducts unset: no product may fail
    assert st["products"]["succeeded"] == 59 and st["failedIndexes"] == "59", st
    (failure,) = st["failures"]
    assert failure["product"] == bad and failure["reason"] == "DataInvalid", failure
    # Fix the data, then retry the failed product: a round of exactly its index.
    psql(
        database.dsn,
        f"INSERT INTO {table} (product_id, ds, y) SELECT '{bad}', current_date - g, 10 + g % 7 "
        "FROM generate_series(6, 200) g",
    )
    cluster.kubectl("annotate", "tj", "invalid", "-n", namespace, "training.forecast.dev/retry-failed=1")
    st = wait_phase(cluster, namespace, "invalid", ("Succeeded",), timeout=900)
    assert st["products"]["succeeded"] == 60 and parse_indexes(st["succeededIndexes"]) == set(range(60))
    jobs = cluster.kubectl_json("get", "jobs", "-n", namespace)["items"]
    retry = [j for j in jobs if j["metadata"].get("annotations", {}).get("training.forecast.dev/retry-round") == "1"]
    assert len(retry) == 1
    env = {e["name"]: e.get("value") for e in retry[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRAINER_SHARD_INDEXES"] == "59" and retry[0]["spec"]["completions"] == 1
    models = models_per_product(database, schema)
    assert len(models) == 60 and set(models.values()) == {1}
    assert json.loads(json.dumps(tj_status(cluster, namespace, "invalid")))["failures"] == []
