"""Shard mode on the real node (issue 19): the operator as a local process, the trainer image's pods
on the real kubelet training many products each, PostgreSQL on the host address.

Needs the trainer side of issue 19 (branch shard-trainer: `forecast-trainer discover`, shard mode
of `train`, run_products/run_outcomes) in the imported trainer image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import ClusterHandle, create_namespace, delete_namespace, wait_for
from tests.e2e.operator.conftest import OperatorProcess, kueue  # noqa: F401 (kueue: a fixture)
from tests.e2e.operator.helpers import apply, condition, overlapping, tj_status, trainings, wait_phase

from localcluster.kueue import objects
from trainingjob_operator import builders
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
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"dsn": database.dsn_for(cluster.host_address)},
    }
    apply(cluster, namespace, secret)  # idempotent: several TrainingJobs of a namespace share it
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


def assert_stored_once(database: Any, schema: str, count: int, why: str = "each product stored once") -> set[str]:
    """Exactly ``count`` products in the schema's models, each with one model; returns their ids."""
    models = models_per_product(database, schema)
    assert len(models) == count and set(models.values()) == {1}, (why, len(models), set(models.values()))
    return set(models)


def product_ids(database: Any, table: str) -> list[str]:
    return psql(database.dsn, f"SELECT DISTINCT product_id FROM {table} ORDER BY 1").splitlines()


def add_invalid_product(database: Any, table: str, product: str) -> None:
    """Five days of history: the trainer fails the product with DataInvalid."""
    psql(
        database.dsn,
        f"INSERT INTO {table} (product_id, ds, y) SELECT '{product}', current_date - d, 1 FROM generate_series(1, 5) d",
    )


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
    assert condition(st, "Complete")["status"] == "True"
    assert_stored_once(database, schema, 300)
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
    products = product_ids(database, table)
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
    assert_stored_once(database, schema, 100, "each product stored once, none twice")


def test_an_invalid_product_fails_alone_and_retry_failed_relaunches_only_it(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 59)
    bad = "zz-bad-001"
    add_invalid_product(database, table, bad)
    products = product_ids(database, table)
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
    assert_stored_once(database, schema, 60)
    assert json.loads(json.dumps(tj_status(cluster, namespace, "invalid")))["failures"] == []


def round_jobs(cluster: ClusterHandle, namespace: str) -> list[dict[str, Any]]:
    jobs = cluster.kubectl_json("get", "jobs", "-n", namespace)["items"]
    return [j for j in jobs if j["spec"].get("completionMode") == "Indexed"]


def test_scale_and_suspend_steer_the_round_job_and_resume_loses_nothing(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 100)
    products = product_ids(database, table)
    body = shard_tj(cluster, namespace, database, "steer", table, schema, products=products, productsPerPod=10)
    body["spec"]["parallelism"] = 1
    apply(cluster, namespace, body)
    wait_for("the round's Indexed Job", lambda: round_jobs(cluster, namespace) or None, timeout=120)

    # kubectl scale -> the round Job's parallelism (the shard size stays what it was at the start).
    cluster.kubectl("scale", "trainingjob", "steer", "-n", namespace, "--replicas=2")
    wait_for("parallelism 2", lambda: round_jobs(cluster, namespace)[0]["spec"]["parallelism"] == 2 or None, 60)

    # suspend -> the Job is suspended, its pods stop; status says so.
    cluster.kubectl("patch", "trainingjob", "steer", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    (job,) = wait_for(
        "the Job suspended", lambda: [j for j in round_jobs(cluster, namespace) if j["spec"]["suspend"]] or None, 60
    )
    assert job["spec"]["parallelism"] == 2
    wait_for("no shard pod active", lambda: not round_jobs(cluster, namespace)[0]["status"].get("active") or None, 120)
    st = wait_phase(cluster, namespace, "steer", ("Suspended",), timeout=60)
    suspended = condition(st, "Suspended")
    assert suspended["status"] == "True" and suspended["reason"] == "SuspendedByUser", suspended
    assert st["shards"]["size"] == 10
    assert st["products"]["succeeded"] < 100, "suspended before the end (the test needs the run in flight)"

    # resume -> the same Job resumes; every product ends stored exactly once.
    cluster.kubectl(
        "patch", "trainingjob", "steer", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    st = wait_phase(cluster, namespace, "steer", ("Succeeded", "Failed"), timeout=900)
    assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 100, st
    assert [j["metadata"]["uid"] for j in round_jobs(cluster, namespace)] == [job["metadata"]["uid"]], "one round"
    assert_stored_once(database, schema, 100, "each product stored once, none twice")


def test_max_failed_products_in_shard_mode_tolerates_up_to_the_limit_and_fails_past_it(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, _ = sales(database, 28)
    bad = ["zz-bad-001", "zz-bad-002"]
    for product in bad:
        add_invalid_product(database, table, product)
    products = product_ids(database, table)
    runs = {"tolerant": "10%", "strict": 1}  # 10 % of 30 = 3 may fail; 1 may fail
    schemas = {}
    for name, limit in runs.items():
        schemas[name] = f"models_{uuid.uuid4().hex[:8]}"
        body = shard_tj(cluster, namespace, database, name, table, schemas[name], products=products, productsPerPod=10)
        body["spec"]["maxFailedProducts"] = limit
        apply(cluster, namespace, body)
    tolerant = wait_phase(cluster, namespace, "tolerant", ("Succeeded", "Failed"), timeout=900)
    assert tolerant["phase"] == "Succeeded", tolerant
    assert tolerant["products"]["succeeded"] == 28 and tolerant["products"]["failed"] == 2
    assert tolerant["failedIndexes"] == "28-29"
    assert sorted(f["product"] for f in tolerant["failures"]) == bad
    strict = wait_phase(cluster, namespace, "strict", ("Succeeded", "Failed"), timeout=900)
    assert strict["phase"] == "Failed", strict
    failed = condition(strict, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "MaxFailedProductsExceeded", failed
    assert "maxFailedProducts allows 1" in failed["message"]
    for name in runs:  # nothing left running for either
        jobs = [j for j in round_jobs(cluster, namespace) if j["metadata"]["name"].startswith(f"{name}-")]
        assert all(not j["status"].get("active") for j in jobs), jobs
    assert not set(bad) & assert_stored_once(database, schemas["tolerant"], 28)


def test_skip_unchanged_in_shard_mode_skips_every_product_of_a_second_run(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    table, schema = sales(database, 40)
    for name in ("first", "second"):
        body = shard_tj(cluster, namespace, database, name, table, schema, allProducts=True, productsPerPod=10)
        body["spec"]["skipUnchanged"] = True
        apply(cluster, namespace, body)
        st = wait_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=900)
        assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 40, st
    first, second = (tj_status(cluster, namespace, n) for n in ("first", "second"))
    assert first["products"].get("skipped", 0) == 0 and first.get("skippedIndexes", "") == ""
    assert second["products"]["skipped"] == 40 and second["skippedIndexes"] == "0-39", second
    assert_stored_once(database, schema, 40, "the second run stored nothing")
    uid = cluster.kubectl_json("get", "tj", "second", "-n", namespace)["metadata"]["uid"]
    outcomes = psql(
        database.dsn, f"SELECT status, count(*) FROM {schema}.run_outcomes WHERE run_key LIKE '{uid}/%' GROUP BY 1"
    )
    assert outcomes == "skipped|40", outcomes
    jobs = [j["metadata"]["name"] for j in cluster.kubectl_json("get", "jobs", "-n", namespace)["items"]]
    others = [n for n in jobs if "-discover-" not in n and "-shards-" not in n]
    assert others == [], "shard mode runs no unchanged-check Job: its pods skip unchanged products themselves"


def test_two_namespaces_in_shard_mode_never_train_a_product_at_once(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    """Shard mode has no Lease per product: the output database's advisory lock per product is the
    exclusion (docs/design.md, "Locks"). Two TrainingJobs in two namespaces, same products, same
    output schema, at once: no two trainings of a product overlap (the trainers' own logs), a
    product found locked goes to a later round, and each is trained once by each TrainingJob."""
    table, schema = sales(database, 40)
    other = create_namespace(cluster, f"{namespace[:50]}-b")
    try:
        for ns in (namespace, other):
            body = shard_tj(cluster, ns, database, "nightly", table, schema, allProducts=True, productsPerPod=5)
            body["spec"]["parallelism"] = 2
            body["spec"]["tuning"] = {"models": ["prophet"], "trials": 0, "folds": 1}  # ~0.5 s each: overlap
            apply(cluster, ns, body)
        sts = [wait_phase(cluster, ns, "nightly", ("Succeeded", "Failed"), timeout=1200) for ns in (namespace, other)]
        assert [s["phase"] for s in sts] == ["Succeeded", "Succeeded"], sts
        runs = trainings(cluster, namespace) + trainings(cluster, other)
        overlaps = overlapping(runs)
        rounds = [len(round_jobs(cluster, ns)) for ns in (namespace, other)]
        print(f"trainings {len(runs)}, overlapping {len(overlaps)}, rounds per TrainingJob {rounds}")
        assert overlaps == [], overlaps[:5]
        per_product = Counter(p for p, _, _ in runs)
        assert len(per_product) == 40 and set(per_product.values()) == {2}, per_product
        models = models_per_product(database, schema)
        assert len(models) == 40 and set(models.values()) == {2}, "each product once by each TrainingJob"
    finally:
        delete_namespace(cluster, other)


@pytest.mark.usefixtures("kueue")
def test_kueue_admits_the_round_job_only_when_its_quota_fits(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    """Kueue queues the one Indexed Job of a round: with parallelism 2 and 100m per pod it needs 200m;
    under a 100m quota it stays suspended (the operator never resumes a Job that carries a queue
    name), and once the quota is raised Kueue admits it and the round completes."""
    queue_label, _ = builders.KUEUE_LABELS
    cq = f"cq-{namespace}"[:63]
    try:
        for obj in objects("100m", cq, "training", namespace):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        table, schema = sales(database, 40)
        body = shard_tj(cluster, namespace, database, "queued", table, schema, products=product_ids(database, table))
        body["spec"].update(productsPerPod=10, parallelism=2, template={"resources": {"requests": {"cpu": "100m"}}})
        body["metadata"]["labels"] = {queue_label: "training"}
        apply(cluster, namespace, body)
        (job,) = wait_for("the round's Indexed Job", lambda: round_jobs(cluster, namespace) or None, timeout=120)
        assert job["metadata"]["labels"][queue_label] == "training" and job["spec"]["suspend"] is True
        workloads = wait_for(
            "Kueue's Workload for the round Job",
            lambda: cluster.kubectl_json("get", "workloads.kueue.x-k8s.io", "-n", namespace)["items"] or None,
            timeout=60,
        )
        assert len(workloads) == 1
        # Over quota: several operator passes later the Job is still suspended and no pod exists.
        generation = cluster.kubectl_json("get", "tj", "queued", "-n", namespace)["metadata"]["generation"]
        wait_for(
            "status observed",
            lambda: tj_status(cluster, namespace, "queued").get("observedGeneration") == generation or None,
            60,
        )
        for _ in range(10):
            assert round_jobs(cluster, namespace)[0]["spec"]["suspend"] is True, "resumed over quota"
            assert cluster.kubectl_json("get", "pods", "-n", namespace)["items"] == []
            time.sleep(1)
        assert tj_status(cluster, namespace, "queued")["phase"] in ("Pending", "Running"), "not failed while queued"
        # Quota raised: Kueue admits the Job; the round completes, each product stored once.
        for obj in objects("200m", cq, "training", namespace):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        st = wait_phase(cluster, namespace, "queued", ("Succeeded", "Failed"), timeout=900)
        assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 40, st
        assert [j["metadata"]["uid"] for j in round_jobs(cluster, namespace)] == [job["metadata"]["uid"]], "one round"
        assert_stored_once(database, schema, 40)
    finally:
        cluster.kubectl("delete", "clusterqueue", cq, "--wait=false", "--ignore-not-found", check=False)


def test_a_training_schedule_runs_every_product_in_shards(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, database: Any
) -> None:
    """A TrainingSchedule passes allProducts/productsPerPod to each run: two runs (run-now), each a
    shard-mode TrainingJob of its own over every product; a rare cron never fires. A schedule's runs
    skip unchanged products by default, so the second run, on the same data, skips all of them."""
    table, schema = sales(database, 30)
    run = shard_tj(cluster, namespace, database, "x", table, schema, allProducts=True, productsPerPod=10)
    body = {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingSchedule",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 0 1 1 *", "trainingJobTemplate": {"spec": run["spec"]}},
    }
    apply(cluster, namespace, body)
    selector = "training.forecast.dev/schedule=nightly"
    names: list[str] = []
    for value in ("first", "second"):
        cluster.kubectl(
            "annotate", "--overwrite", "tjs", "nightly", "-n", namespace, f"training.forecast.dev/run-now={value}"
        )

        def new_run() -> str | None:
            items = cluster.kubectl_json("get", "tj", "-n", namespace, "-l", selector)["items"]
            fresh = [i["metadata"]["name"] for i in items if i["metadata"]["name"] not in names]
            return fresh[0] if fresh else None

        name = wait_for(f"the {value} run", new_run, timeout=60)
        names.append(name)
        spec = cluster.kubectl_json("get", "tj", name, "-n", namespace)["spec"]
        assert spec["allProducts"] is True and spec["productsPerPod"] == 10
        st = wait_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=900)
        assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 30, st
        assert st["shards"]["size"] == 10 and st["discovery"]["products"] == 30
        skipped = 0 if value == "first" else 30
        assert st["products"].get("skipped", 0) == skipped, st["products"]
    assert_stored_once(database, schema, 30, "trained by the first run, skipped as unchanged by the second")
