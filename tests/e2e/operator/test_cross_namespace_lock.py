"""Two TrainingJobs in two namespaces over the same products, writing to one PostgreSQL database
(issue 9): Leases are namespaced, so the second line holds: the trainer's advisory lock on
(output schema, product). No two trainings of a product overlap (the trainer's own log: from its
``product_started`` line, written under the lock, to its ``product_done`` line, written after the
lock is released; a real container starts seconds before its lock and exits a second after it, so
container lifetimes may overlap while trainings cannot); a trainer
that finds its product locked exits 5 and the operator shows the product waiting, then relaunches
it; every product is trained by both TrainingJobs, one after the other."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from tests.e2e.conftest import Database, create_namespace, delete_namespace
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import (
    LABEL_HASH,
    apply,
    get,
    overlapping,
    sample_sales_table,
    tj_body,
    tj_status,
    trainings,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def exit_codes(cluster: Any, namespace: str) -> list[int]:
    codes = []
    for pod in get(cluster, namespace, "pods", selector=LABEL_HASH)["items"]:
        for cs in pod["status"].get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                codes.append(term["exitCode"])
    return codes


def test_two_namespaces_one_database_never_train_a_product_at_once(
    cluster: Any, namespace: str, operator: OperatorProcess, database: Database
) -> None:
    table, schema = sample_sales_table(database.dsn, 4, 400)
    products = [f"bakery-{k}-001" for k in ("croissant", "baguette", "sourdough", "brioche")]
    other = create_namespace(cluster, f"{namespace[:50]}-b")
    try:
        for ns in (namespace, other):
            cluster.kubectl("create", "secret", "generic", "db", "-n", ns, f"--from-literal=dsn={database.pod_dsn}")
            body = tj_body("nightly", products, parallelism=4, tuning={"trials": 3, "folds": 1})
            body["spec"]["data"] = {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}}
            body["spec"]["output"] = {"postgres": {"schema": schema}}
            apply(cluster, ns, body)
        max_waiting = 0
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            sts = [tj_status(cluster, ns, "nightly") for ns in (namespace, other)]
            waiting = [(s.get("products") or {}).get("waiting", 0) for s in sts]
            if max(waiting) > max_waiting:
                print("waiting:", json.dumps([s.get("conditions") for s in sts])[:2000])
            max_waiting = max([max_waiting, *waiting])
            if all(s.get("phase") in ("Succeeded", "Failed") for s in sts):
                break
            time.sleep(0.5)
        assert [s.get("phase") for s in sts] == ["Succeeded", "Succeeded"], sts
        runs = trainings(cluster, namespace, LABEL_HASH) + trainings(cluster, other, LABEL_HASH)
        overlaps = overlapping(runs)
        locked = sum(c == 5 for ns in (namespace, other) for c in exit_codes(cluster, ns))
        print(f"trainings {len(runs)}, overlapping {len(overlaps)}, locked exits {locked}, max waiting {max_waiting}")
        for a, b in overlaps:
            print("overlap", a[0], a[1].time(), a[2].time(), b[1].time(), b[2].time())
        assert overlaps == [], overlaps
        assert len(runs) == 2 * len(products)
        if locked:
            assert max_waiting >= 1, "a locked product was never shown waiting"
        rows = subprocess.run(
            ["psql", database.dsn, "-AtX", "-c", f"SELECT count(*) FROM {schema}.forecast_models"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert rows == str(2 * len(products))
    finally:
        delete_namespace(cluster, other)
