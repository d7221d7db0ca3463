"""skipUnchanged through the operator, real trainer and PostgreSQL (issue 12): a second run on
unchanged data trains nothing and starts no product pod (one check pod finds them all unchanged);
after a day is appended to one product, only that product trains."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from tests.e2e.conftest import Database
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import LABEL_HASH, apply, get, sample_sales_table, tj_body, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
PRODUCTS = ["bakery-croissant-001", "bakery-baguette-001", "bakery-sourdough-001"]


def psql(dsn: str, sql: str) -> str:
    return subprocess.run(["psql", dsn, "-AtX", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()


def product_pods(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = get(cluster, namespace, "pods", selector=f"training.forecast.dev/trainingjob={name}")["items"]
    return [p for p in pods if p["metadata"]["labels"].get(LABEL_HASH) != "unchanged"]


def test_unchanged_products_are_skipped_without_pods(
    cluster: Any, namespace: str, operator: OperatorProcess, database: Database
) -> None:
    table, schema = sample_sales_table(database.dsn, 3, 400)
    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=dsn={database.pod_dsn}")

    def run(name: str, skip: bool) -> dict[str, Any]:
        body = tj_body(name, PRODUCTS, parallelism=3, skipUnchanged=skip)
        body["spec"]["data"] = {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}}
        body["spec"]["output"] = {"postgres": {"schema": schema}}
        apply(cluster, namespace, body)
        return wait_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=300)

    first = run("first", False)
    assert first["phase"] == "Succeeded" and first["products"]["skipped"] == 0, first
    second = run("second", True)
    assert second["phase"] == "Succeeded", second
    assert second["products"]["skipped"] == 3 and second["products"]["succeeded"] == 3, second["products"]
    assert product_pods(cluster, namespace, "second") == []  # decided before any product pod
    # one more day for one product: only it trains
    psql(
        database.dsn,
        f"INSERT INTO {table} (product_id, ds, y) SELECT product_id, max(ds) + interval '1 day', 7 "
        f"FROM {table} WHERE product_id = '{PRODUCTS[0]}' GROUP BY product_id",
    )
    third = run("third", True)
    assert third["phase"] == "Succeeded" and third["products"]["skipped"] == 2, third["products"]
    assert third["results"]["trained"] == 1
    assert len(product_pods(cluster, namespace, "third")) == 1
    models = psql(database.dsn, f"SELECT count(*) FROM {schema}.forecast_models")
    assert models == "4"  # 3 + the one retrained
