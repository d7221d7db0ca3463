"""The operator on the real control plane, with the real node running the trainer image."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tests.e2e.operator.conftest import OperatorProcess, few_points
from tests.e2e.operator.helpers import (
    apply,
    condition,
    get,
    jobs_of,
    leases,
    pods_of,
    tj_body,
    tj_status,
    trainer_intervals,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.e2e


def test_happy_path_ten_products(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=10)
    apply(cluster, namespace, tj_body("happy", products, parallelism=4))
    result = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "--timeout=300s", "tj/happy", check=False, timeout=320
    )
    assert result.returncode == 0, f"{result.stderr}\n{operator.tail()}"
    st = tj_status(cluster, namespace, "happy")
    assert st["phase"] == "Succeeded" and st["progress"] == "10/10" and st["succeededIndexes"] == "0-9"
    assert st["products"] == {
        "total": 10,
        "pending": 0,
        "waiting": 0,
        "queued": 0,
        "active": 0,
        "succeeded": 10,
        "skipped": 0,
        "failed": 0,
    }
    assert st["results"]["trained"] == 10 and float(st["results"]["medianError"]) > 0
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Running": "False",
        "Complete": "True",
        "Failed": "False",
        "Suspended": "False",
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "TrialMode": "True",  # configMap data and no output: nothing stored, and status says so
    }
    assert st["startTime"] and st["completionTime"]
    # kubectl get shows the printer columns
    table = cluster.kubectl("get", "tj", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "ACTIVE", "FAILED", "AGE"]
    assert row.split()[:5] == ["happy", "Succeeded", "10/10", "0", "0"]

    # one Job per product, owned by the TrainingJob, each trained exactly once
    # (the TrainingJob counts a product done when its pod succeeded; the Job controller marks the
    # Job itself Complete up to ~1 s later)
    def all_jobs_complete() -> list[dict[str, Any]] | None:
        js = jobs_of(cluster, namespace, "happy")
        return js if all(j["status"].get("succeeded") == 1 for j in js) else None

    jobs = wait_for("Jobs complete", all_jobs_complete, timeout=30)
    assert len(jobs) == 10
    for job in jobs:
        assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
        assert job["status"].get("succeeded") == 1 and not job["status"].get("failed")
    assert leases(cluster, namespace) == []  # released
    events = get(cluster, namespace, "events")["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == "happy"}
    assert {"Launched", "Complete", "NothingStored"} <= reasons  # configMap data, no output: trial mode
    assert condition(st, "TrialMode")["reason"] == "NothingStored"
    described = cluster.kubectl("describe", "tj", "happy", "-n", namespace).stdout
    assert "TrialMode" in described and "nothing stored" in described
    assert "trainingjob_jobs_launched_total" in operator.metrics()


def test_invalid_data_fails_at_once_without_retry(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=2, extra_rows=few_points("tiny-product"))
    assert products[-1] == "tiny-product"
    apply(cluster, namespace, tj_body("bad", products, backoffLimit=3))
    st = wait_phase(cluster, namespace, "bad", ("Succeeded", "Failed"))
    # maxFailedProducts unset: no product may fail (as a Job without maxFailedIndexes)
    assert st["phase"] == "Failed" and st["failedIndexes"] == "2" and st["succeededIndexes"] == "0-1"
    assert condition(st, "Failed")["reason"] == "ProductsFailed" and condition(st, "Ready")["status"] == "False"
    (failure,) = st["failures"]
    assert failure["product"] == "tiny-product" and failure["reason"] == "InvalidData"
    assert failure["attempts"] == 1 and "tiny-product" in failure["message"]
    pods = [
        p
        for p in pods_of(cluster, namespace, "bad")
        if p["metadata"]["annotations"]["training.forecast.dev/product"] == "tiny-product"
    ]
    assert len(pods) == 1, "invalid data must not be retried"
    assert "1 of 3 products failed" in condition(st, "Complete")["message"]


def test_max_failed_products_stops_the_run(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    bad = [r for p in ("bad-a", "bad-b") for r in few_points(p)]
    good = sales_csv(products=3, extra_rows=bad)
    products = ["bad-a", "bad-b", *good[:3]]
    apply(cluster, namespace, tj_body("limit", products, parallelism=1, maxFailedProducts=1))
    st = wait_phase(cluster, namespace, "limit", ("Succeeded", "Failed"))
    assert st["phase"] == "Failed"
    failed = condition(st, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "MaxFailedProductsExceeded"
    assert "allows 1" in failed["message"]
    assert st["products"]["failed"] == 2 and st["products"]["pending"] == 3
    assert len(jobs_of(cluster, namespace, "limit")) == 2


def test_two_trainingjobs_never_train_a_product_concurrently(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=6)
    apply(cluster, namespace, tj_body("first", products, parallelism=3))
    apply(cluster, namespace, tj_body("second", list(reversed(products)), parallelism=3))
    for name in ("first", "second"):
        st = wait_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=300)
        assert st["phase"] == "Succeeded", st
    runs = trainer_intervals(pods_of(cluster, namespace, "first") + pods_of(cluster, namespace, "second"))
    assert len(runs) == 12
    by_product: dict[str, list[tuple[str, str]]] = {}
    for h, _pod, start, end in runs:
        by_product.setdefault(h, []).append((start, end))
    for h, intervals in by_product.items():
        (a0, a1), (b0, b1) = sorted(intervals)
        assert not (a0 < b1 and b0 < a1), f"product {h} trained concurrently: {intervals}"


def test_scale_down_and_up_mid_run(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=10)
    apply(cluster, namespace, tj_body("scaled", products, parallelism=1))
    wait_for("first product running", lambda: tj_status(cluster, namespace, "scaled").get("products", {}).get("active"))
    cluster.kubectl("scale", "-n", namespace, "tj/scaled", "--replicas=4")

    def scaled_up() -> dict[str, Any] | None:
        s = tj_status(cluster, namespace, "scaled")
        return s if s["products"]["active"] >= 3 or s.get("phase") == "Succeeded" else None

    st = wait_for("3+ active after scaling up", scaled_up)
    assert st["parallelism"] == 4
    cluster.kubectl("scale", "-n", namespace, "tj/scaled", "--replicas=1")
    wait_for("parallelism 1 in status", lambda: tj_status(cluster, namespace, "scaled").get("parallelism") == 1)
    scale = json.loads(
        cluster.kubectl(
            "get", "--raw", f"/apis/training.forecast.dev/v1alpha1/namespaces/{namespace}/trainingjobs/scaled/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 1 and "training.forecast.dev/trainingjob=scaled" in scale["status"]["selector"]
    max_active_after = 0
    deadline = time.monotonic() + 300
    seen_one = False
    while time.monotonic() < deadline:
        st = tj_status(cluster, namespace, "scaled")
        active = st["products"]["active"]
        if active <= 1:
            seen_one = True
        elif seen_one:
            max_active_after = max(max_active_after, active)
        if st.get("phase") == "Succeeded":
            break
        time.sleep(0.3)
    assert st["phase"] == "Succeeded"
    assert max_active_after <= 1, "launched above the scaled-down parallelism"


def test_suspend_and_resume(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=6)
    apply(cluster, namespace, tj_body("pausable", products, parallelism=1))
    wait_for("running", lambda: tj_status(cluster, namespace, "pausable").get("products", {}).get("active"))
    cluster.kubectl("patch", "-n", namespace, "tj/pausable", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    st = wait_phase(cluster, namespace, "pausable", ("Suspended",))
    assert condition(st, "Suspended")["status"] == "True"
    wait_for("running product finished", lambda: tj_status(cluster, namespace, "pausable")["products"]["active"] == 0)
    frozen = len(jobs_of(cluster, namespace, "pausable"))
    time.sleep(4)
    assert len(jobs_of(cluster, namespace, "pausable")) == frozen < 6, "launched while suspended"
    cluster.kubectl("patch", "-n", namespace, "tj/pausable", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    st = wait_phase(cluster, namespace, "pausable", ("Succeeded",), timeout=300)
    assert condition(st, "Suspended")["status"] == "False" and st["progress"] == "6/6"


def test_retry_failed_annotation(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=2, extra_rows=few_points("late-product"))
    apply(cluster, namespace, tj_body("retry", products))
    st = wait_phase(cluster, namespace, "retry", ("Succeeded", "Failed"))
    assert st["failedIndexes"] == "2"
    # the data gets fixed, then the user asks for a retry of the failed products only
    sales_csv(products=2, extra_rows=few_points("late-product", 120))
    cluster.kubectl("annotate", "-n", namespace, "tj/retry", "training.forecast.dev/retry-failed=1")
    wait_for("retry started", lambda: tj_status(cluster, namespace, "retry").get("retryFailed") == "1")
    st = wait_phase(cluster, namespace, "retry", ("Succeeded", "Failed"), timeout=300)
    assert st["phase"] == "Succeeded" and st["succeededIndexes"] == "0-2" and st["failures"] == []
    pods = pods_of(cluster, namespace, "retry")
    per_product = Counter(p["metadata"]["annotations"]["training.forecast.dev/product"] for p in pods)
    assert per_product[products[0]] == 1 and per_product[products[1]] == 1, f"succeeded products re-run: {per_product}"
    assert per_product["late-product"] == 1  # its failed first attempt was deleted with its Job


def test_operator_restarts_mid_run_train_each_product_once(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=12)
    apply(cluster, namespace, tj_body("restarts", products, parallelism=3))
    for i in range(3):
        wait_for(
            f"progress before kill {i}",
            lambda i=i: len(jobs_of(cluster, namespace, "restarts")) >= 3 * (i + 1),
            timeout=180,
        )
        operator.kill()
        time.sleep(1)
        operator.start()
    st = wait_phase(cluster, namespace, "restarts", ("Succeeded", "Failed"), timeout=400)
    assert st["phase"] == "Succeeded" and st["progress"] == "12/12"
    jobs = jobs_of(cluster, namespace, "restarts")
    assert len(jobs) == 12 and len({j["metadata"]["name"] for j in jobs}) == 12
    runs = Counter(h for h, *_ in trainer_intervals(pods_of(cluster, namespace, "restarts")))
    assert set(runs.values()) == {1}, f"some product trained more than once: {runs}"
    assert st["results"]["trained"] == 12


def test_delete_mid_run_removes_children_and_leases(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    products = sales_csv(products=8)
    apply(cluster, namespace, tj_body("doomed", products, parallelism=2))
    wait_for("running", lambda: tj_status(cluster, namespace, "doomed").get("products", {}).get("active"))
    assert leases(cluster, namespace)
    started = time.monotonic()
    # A stuck finalizer fails the delete (kubectl waits for the object to go, at most 120 s). The
    # deletion waits for the pods (foreground): each real container gets SIGTERM, reports and exits.
    cluster.kubectl("delete", "-n", namespace, "tj/doomed", "--timeout=120s", timeout=150)
    print(f"TrainingJob deleted in {time.monotonic() - started:.1f} s")
    wait_for("jobs gone", lambda: not jobs_of(cluster, namespace, "doomed"), timeout=60)
    wait_for("pods gone", lambda: not pods_of(cluster, namespace, "doomed"), timeout=90)
    wait_for("leases gone", lambda: not leases(cluster, namespace), timeout=60)


def test_ttl_cleans_finished_jobs_and_status_survives(cluster: Any, namespace: str, operator: OperatorProcess) -> None:
    cluster.kubectl("create", "configmap", "sales", "-n", namespace, "--from-literal=sales.csv=product_id,ds,y")
    body = tj_body(
        "ttl", [f"p{i}" for i in range(4)], ttlSecondsAfterFinished=0, template={"image": "localhost/tjo-noop"}
    )
    apply(cluster, namespace, body)
    st = wait_phase(cluster, namespace, "ttl", ("Succeeded", "Failed"))
    assert st["phase"] == "Succeeded"
    wait_for("child Jobs deleted by TTL", lambda: not jobs_of(cluster, namespace, "ttl"), timeout=60)
    time.sleep(3)  # a few more passes with no Jobs left: nothing is relaunched, the record stays
    st = tj_status(cluster, namespace, "ttl")
    assert st["phase"] == "Succeeded" and st["succeededIndexes"] == "0-3" and not jobs_of(cluster, namespace, "ttl")


def test_tuning_models_restricts_the_families_end_to_end(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Callable[..., list[str]]
) -> None:
    """spec.tuning.models reaches the real trainer (TRAINER_MODELS): with [prophet] every product's
    winning family is prophet, and status.results counts it."""
    products = sales_csv(products=3)
    body = tj_body("prophet-only", products, parallelism=3)
    body["spec"]["tuning"] = {**body["spec"]["tuning"], "models": ["prophet"]}
    apply(cluster, namespace, body)
    st = wait_phase(cluster, namespace, "prophet-only", ("Succeeded", "Failed"), timeout=300)
    assert st["phase"] == "Succeeded", st
    assert st["results"]["models"] == {"prophet": 3}, st["results"]
