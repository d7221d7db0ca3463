"""Identity and locking on the real control plane (issue 9): a product is its id, a child is its uid.

Orchestration-only tests use the no-op image (hack/images/noop): each pod sleeps, then
reports its product (TRAINER_PRODUCT_ID) trained.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import (
    LABEL_HASH,
    apply,
    get,
    noop_tj,
    secret,
    succeeded,
    succeeded_pods,
    wait_for,
    wait_phase,
)

from trainingjob_operator import builders

pytestmark = pytest.mark.e2e


def test_reordering_products_mid_run_trains_every_product_exactly_once(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    products = [f"sku-{i:02d}" for i in range(12)]
    secret(cluster, namespace)
    apply(cluster, namespace, noop_tj("reorder", products, 1.5, parallelism=3))
    wait_for("4 trained", lambda: succeeded(cluster, namespace, "reorder") >= 4 or None, timeout=120)
    # What a GitOps tool that sorts lists does: the same set, another order (accepted: a set).
    patch = {"spec": {"products": list(reversed(products))}}
    cluster.kubectl("patch", "tj", "reorder", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    st = wait_phase(cluster, namespace, "reorder", ("Succeeded", "Failed"), timeout=180)
    assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 12, st
    per_product = Counter(p["metadata"]["labels"][LABEL_HASH] for p in succeeded_pods(cluster, namespace))
    assert per_product == Counter({builders.product_hash(p): 1 for p in products}), per_product


def test_recreated_trainingjob_of_the_same_name_counts_only_its_own_pods(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    """kubectl delete (finalizer forced off, so the old Jobs and pods outlive their owner) + apply of
    the same name mid-run: no product is counted without a succeeded pod under the new uid."""
    products = [f"p{i}" for i in range(6)]
    secret(cluster, namespace)
    apply(cluster, namespace, noop_tj("same", products, 4, parallelism=6))
    wait_for("1 trained", lambda: succeeded(cluster, namespace, "same") >= 1 or None, timeout=120)
    old_uid = get(cluster, namespace, "trainingjob", "same")["metadata"]["uid"]
    cluster.kubectl("delete", "tj", "same", "-n", namespace, "--wait=false")
    cluster.kubectl("patch", "tj", "same", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for("old gone", lambda: get(cluster, namespace, "trainingjob")["items"] == [] or None, timeout=30)
    apply(cluster, namespace, noop_tj("same", products, 0.5, parallelism=6))
    st = wait_phase(cluster, namespace, "same", ("Succeeded", "Failed"), timeout=180)
    new_uid = get(cluster, namespace, "trainingjob", "same")["metadata"]["uid"]
    assert new_uid != old_uid and st["phase"] == "Succeeded" and st["products"]["succeeded"] == 6, st
    jobs = get(cluster, namespace, "jobs", selector=LABEL_HASH)["items"]
    new_jobs = {j["metadata"]["uid"]: j for j in jobs if j["metadata"]["ownerReferences"][0]["uid"] == new_uid}
    ok = Counter(
        new_jobs[p["metadata"]["labels"][builders.JOB_UID_LABEL]]["metadata"]["annotations"][
            builders.ANNOTATION_PRODUCT
        ]
        for p in succeeded_pods(cluster, namespace)
        if p["metadata"]["labels"].get(builders.JOB_UID_LABEL) in new_jobs
    )
    assert ok == Counter({p: 1 for p in products}), ok


def test_ten_thousand_products_created_as_documented(cluster: Any, namespace: str, operator: OperatorProcess) -> None:
    """The README's way for big lists (kubectl apply --server-side): stored, and the operator's
    status write fits too."""
    products = [f"{i:06d}-" + "x" * 57 for i in range(10000)]
    body = noop_tj("big", products, 0, suspend=True)
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(body))
    st = wait_phase(cluster, namespace, "big", ("Suspended",), timeout=60)
    assert st["products"]["total"] == 10000 and st["products"]["pending"] == 10000
