"""MLflow through the operator (docs/mlflow.md): spec.tracking.mlflow from a Secret, runs, registered
versions and aliases on a real tracking server; the server stopped -> training completes, status says
tracking was skipped; a worse model does not replace the champion. Real PostgreSQL, real MLflow server
(hack/mlflow_harness.py), real control plane.

The server listens on the cluster's host address (pods on the real node cannot reach the host's
127.0.0.1); the test reaches it there too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import Database
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import apply, condition, sample_sales_table, tj_body, wait_phase

from forecast_trainer.tracking import registered_name

pytestmark = pytest.mark.e2e
PRODUCTS = ["bakery-croissant-001", "bakery-baguette-001"]

pytest.importorskip("mlflow", reason="the full mlflow package (dev extra) runs the test server")
from mlflow_harness import MlflowServer  # noqa: E402


@pytest.fixture
def mlflow_server(cluster: Any) -> Iterator[MlflowServer]:
    with MlflowServer(host=cluster.host_address) as server:
        yield server


def champions(dsn: str, schema: str) -> dict[str, int]:
    out = subprocess.run(
        ["psql", dsn, "-AtX", "-F", "\t", "-c", f"SELECT product_id, model_id FROM {schema}.forecast_champions"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("\t")[0]: int(line.split("\t")[1]) for line in out.splitlines() if line}


def tracked_tj(name: str, table: str, schema: str, **spec: Any) -> dict[str, Any]:
    body = tj_body(
        name,
        PRODUCTS,
        tracking={"mlflow": {"secretRef": {"name": "mlflow", "uriKey": "uri"}, "experimentName": "e2e"}},
        **spec,
    )
    body["spec"]["data"] = {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}}
    body["spec"]["output"] = {"postgres": {"schema": schema}}
    return body


def test_tracking_registry_and_champion_through_the_operator(
    cluster: Any, namespace: str, operator: OperatorProcess, database: Database, mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    table, schema = sample_sales_table(database.dsn, 2, 200)
    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=dsn={database.pod_dsn}")
    cluster.kubectl("create", "secret", "generic", "mlflow", "-n", namespace, f"--from-literal=uri={mlflow_server.uri}")

    # 1. First models: logged, registered, each its product's first champion.
    apply(cluster, namespace, tracked_tj("tracked", table, schema))
    st = wait_phase(cluster, namespace, "tracked", ("Succeeded", "Failed"), timeout=600)
    assert st["phase"] == "Succeeded", st
    assert st["results"]["tracking"] == {"logged": 2, "skipped": 0}, st["results"]
    assert st["results"]["champions"] == {"promoted": 0, "kept": 0, "first": 2}, st["results"]
    assert condition(st, "Tracked")["status"] == "True"
    first = champions(database.dsn, schema)
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["forecast.product_id"] for r in runs) == sorted(PRODUCTS)
    assert {r.data.tags["forecast.trainingjob"] for r in runs} == {f"{namespace}/tracked"}
    for run in runs:
        assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == [
            "model/model.json",
            "model/model.sha256",
        ]
    for product in PRODUCTS:
        version = client.get_model_version_by_alias(registered_name("forecast-", product), "champion")
        assert version.tags["forecast.model_id"] == str(first[product])

    # 2. MLflow down, and a worse model family: trained and stored, tracking skipped, champions kept.
    mlflow_server.stop()
    worse = tracked_tj("tracked-again", table, schema, tuning={"trials": 0, "folds": 2, "models": ["last_value"]})
    apply(cluster, namespace, worse)
    st = wait_phase(cluster, namespace, "tracked-again", ("Succeeded", "Failed"), timeout=600)
    assert st["phase"] == "Succeeded", st
    assert st["results"]["tracking"] == {"logged": 0, "skipped": 2}, st["results"]
    assert st["results"]["champions"] == {"promoted": 0, "kept": 2, "first": 0}, st["results"]
    tracked = condition(st, "Tracked")
    assert (tracked["status"], tracked["reason"]) == ("False", "TrackingSkipped")
    assert champions(database.dsn, schema) == first
    described = cluster.kubectl("describe", "trainingjob", "tracked-again", "-n", namespace).stdout
    assert "Champions:" in described and "Kept:" in described and "TrackingSkipped" in described
    events = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=TrackingSkipped", "-o", "json"
        ).stdout
    )
    assert events["items"], "a Warning event says tracking was skipped"
