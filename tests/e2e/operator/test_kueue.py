"""Kueue queues the product Jobs (issue 13), against a real Kueue (hack/build-kueue.sh, run by the
``kueue`` fixture with its CRDs and webhooks) on the local control plane.

Orchestration-only: the no-op image (hack/images/noop) sleeps, then reports its product
trained. Each product pod requests 100m CPU; the ClusterQueue's quota is 200m, so Kueue admits two
product Jobs at a time while the TrainingJob's parallelism (and the node: 2 CPUs) would allow more.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import restricted_pod_spec
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import (
    LABEL_HASH,
    get,
    noop_tj,
    secret,
    succeeded_pods,
    tj_status,
    trainer_intervals,
    wait_for,
)

from localcluster.kueue import Kueue, objects
from trainingjob_operator import builders

pytestmark = pytest.mark.e2e

QUEUE_LABEL, PRIORITY_LABEL = builders.KUEUE_LABELS
LOCAL_QUEUE = "training"
POD_CPU = "100m"
QUOTA_CPU = "200m"
QUOTA_PODS = 2


@pytest.fixture
def queue(cluster: Any, namespace: str, kueue: Kueue) -> Iterator[str]:
    """A ClusterQueue with room for two product pods and the LocalQueue ``training`` in ``namespace``."""
    cq = f"cq-{namespace}"[:63]
    for obj in objects(QUOTA_CPU, cq, LOCAL_QUEUE, namespace):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    yield cq
    cluster.kubectl("delete", "clusterqueue", cq, "--wait=false", "--ignore-not-found", check=False)


def queued_tj(name: str, products: list[str], seconds: float, priority_class: str | None = None, **spec: Any) -> Any:
    body = noop_tj(name, products, seconds, **spec)
    body["spec"]["template"]["resources"] = {"requests": {"cpu": POD_CPU}}
    body["metadata"]["labels"] = {
        QUEUE_LABEL: LOCAL_QUEUE,
        **({PRIORITY_LABEL: priority_class} if priority_class else {}),
    }
    return body


def max_overlap(intervals: list[tuple[str, str, str, str]]) -> int:
    """Most trainer runs at once; a run ending in the second another starts does not overlap it
    (the kubelet reports whole seconds, and Kueue admits the next Job only after one finished)."""
    edges = sorted([(start, 1) for _, _, start, _ in intervals] + [(end, -1) for _, _, _, end in intervals])
    most = now = 0
    for _, step in edges:  # -1 sorts before +1 at the same instant
        now += step
        most = max(most, now)
    return most


class Watch:
    """Polls the TrainingJob, its Jobs and pods while it runs; keeps the peaks."""

    def __init__(self, cluster: Any, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.max_queued = self.max_running_pods = self.max_jobs = 0
        self.job_uids: dict[str, set[str]] = {}
        self.status: dict[str, Any] = {}

    def poll(self) -> dict[str, Any]:
        self.status = tj_status(self.cluster, self.namespace, self.name)
        self.max_queued = max(self.max_queued, int((self.status.get("products") or {}).get("queued") or 0))
        jobs = get(self.cluster, self.namespace, "jobs", selector=f"{LABEL_HASH}")["items"]
        mine = [j for j in jobs if j["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"]
        for j in mine:
            product = j["metadata"]["annotations"][builders.ANNOTATION_PRODUCT]
            self.job_uids.setdefault(product, set()).add(j["metadata"]["uid"])
        pods = get(self.cluster, self.namespace, "pods", selector=LABEL_HASH)["items"]
        phases = [
            ((p.get("status") or {}).get("phase"), p["metadata"]["labels"].get(builders.JOB_UID_LABEL)) for p in pods
        ]
        self.max_running_pods = max(self.max_running_pods, sum(1 for phase, _ in phases if phase == "Running"))
        # Unfinished as the operator counts them: a Job whose pod succeeded is done (the Job
        # controller marks it Complete up to ~1 s later), and its slot is free.
        done = {uid for phase, uid in phases if phase == "Succeeded"}
        unfinished = [j for j in mine if not _finished(j) and j["metadata"]["uid"] not in done]
        self.max_jobs = max(self.max_jobs, len(unfinished))
        return self.status

    def until_finished(self, timeout: float = 150) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll().get("phase") in ("Succeeded", "Failed"):
                return self.status
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not finished after {timeout}s: {self.status}")


def _finished(job: dict[str, Any]) -> bool:
    conds = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)


def test_kueue_quota_bounds_running_product_pods_and_every_product_trains_once(
    cluster: Any, namespace: str, operator: OperatorProcess, kueue: Kueue, queue: str
) -> None:
    products = [f"sku-{i}" for i in range(8)]
    secret(cluster, namespace)
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(queued_tj("queued", products, 3, parallelism=6))
    )
    watch = Watch(cluster, namespace, "queued")
    st = watch.until_finished()
    assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 8 and st["products"]["failed"] == 0, st
    assert st["products"]["queued"] == 0, st
    # Kueue held product Jobs (queued), while parallelism still bounded how many exist.
    assert watch.max_queued > 0, "no product Job was ever counted queued"
    assert watch.max_jobs <= 6, watch.max_jobs
    # At most the quota's worth of product pods ran at once (and the quota was used).
    pods = get(cluster, namespace, "pods", selector=LABEL_HASH)["items"]
    runs = trainer_intervals(pods)
    print(
        f"kueue: started in {kueue.start_seconds:.1f} s; at most {max_overlap(runs)} product pods at once"
        f" (quota {QUOTA_PODS}, parallelism 6), up to {watch.max_queued} queued, {watch.max_jobs} Jobs unfinished"
    )
    assert max_overlap(runs) == QUOTA_PODS, sorted(runs, key=lambda r: r[2])
    assert watch.max_running_pods <= QUOTA_PODS, watch.max_running_pods
    # Nothing trained twice: one pod per product in all, and it succeeded; one Job per product.
    assert Counter(h for h, *_ in runs) == Counter({builders.product_hash(p): 1 for p in products}), runs
    per_product = Counter(p["metadata"]["labels"][LABEL_HASH] for p in succeeded_pods(cluster, namespace))
    assert per_product == Counter({builders.product_hash(p): 1 for p in products}), per_product
    assert all(len(uids) == 1 for uids in watch.job_uids.values()) and len(watch.job_uids) == 8, watch.job_uids
    # Kueue admitted every product Job through a Workload of its own (the queue label reached the Jobs).
    workloads = get(cluster, namespace, "workloads.kueue.x-k8s.io")["items"]
    owners = {w["metadata"]["ownerReferences"][0]["uid"] for w in workloads}
    assert owners == {u for uids in watch.job_uids.values() for u in uids}, workloads
    assert all(w["spec"]["queueName"] == LOCAL_QUEUE for w in workloads)


def _priority_class(name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "WorkloadPriorityClass", "metadata": {"name": name},
            "value": value}  # fmt: skip


def _preempted_jobs(cluster: Any, namespace: str) -> set[str]:
    """Uids of the Jobs whose Workload Kueue evicted to preempt it (kept in the Workload's conditions)."""
    out = set()
    for w in get(cluster, namespace, "workloads.kueue.x-k8s.io")["items"]:
        conds = (w.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Evicted" and c.get("reason") == "Preempted" for c in conds) or any(
            c["type"] == "Preempted" and c["status"] == "True" for c in conds
        ):
            out.add(w["metadata"]["ownerReferences"][0]["uid"])
    return out


def test_kueue_preempted_product_job_is_queued_not_failed_and_resumes(
    cluster: Any, namespace: str, operator: OperatorProcess, queue: str
) -> None:
    low, high = f"low-{namespace}"[:63], f"high-{namespace}"[:63]
    for name, value in ((low, 10), (high, 1000)):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_priority_class(name, value)))
    try:
        products = [f"p{i}" for i in range(4)]
        secret(cluster, namespace)
        body = queued_tj("preempted", products, 15, priority_class=low, parallelism=4)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        watch = Watch(cluster, namespace, "preempted")

        def two_running() -> bool:
            watch.poll()
            return watch.max_running_pods >= QUOTA_PODS

        wait_for("two product pods running", two_running, timeout=90, every=0.3)
        # Urgent work at a higher priority needs the whole quota: Kueue preempts the running products.
        urgent = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "urgent", "labels": {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: high}},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": restricted_pod_spec("sleep 5", container={"resources": {"requests": {"cpu": QUOTA_CPU}}})
                },
            },
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(urgent))

        def preempted_and_queued() -> set[str] | None:
            """Kueue evicted product workloads, and every unfinished product counts queued, none active."""
            p = watch.poll().get("products") or {}
            done = _preempted_jobs(cluster, namespace)
            all_queued = p.get("active") == 0 and p.get("queued") == 4 - int(p.get("succeeded") or 0)
            return done if done and all_queued else None

        preempted = wait_for("product Jobs preempted and counted queued", preempted_and_queued, timeout=60, every=0.3)
        print(f"kueue: {len(preempted)} product Job(s) preempted, then {watch.status['products']}")
        mid = watch.status
        assert mid["products"]["failed"] == 0 and not mid.get("failures"), mid
        running_cond = next(c for c in mid["conditions"] if c["type"] == "Running")
        assert "queued" in running_cond["message"], running_cond
        st = watch.until_finished()
        assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 4 and st["products"]["failed"] == 0, st
        urgent_job = get(cluster, namespace, "jobs", "urgent")
        assert any(c["type"] == "Complete" and c["status"] == "True" for c in urgent_job["status"]["conditions"])

        # The preempted Jobs resumed (same uid, Complete); no product got a second Job or a second success.
        # (The Job controller may mark a resumed Job Complete a little after the operator recorded its
        # product from the succeeded pod; under load that took seconds.)
        def product_jobs_finished() -> dict[str, Any] | None:
            items = get(cluster, namespace, "jobs", selector=LABEL_HASH)["items"]
            done = {j["metadata"]["uid"]: j for j in items}
            return done if all(_finished(done[uid]) for uid in preempted if uid in done) else None

        jobs = wait_for("the preempted product Jobs finished", product_jobs_finished, timeout=120, every=1)
        assert preempted <= set(jobs), (preempted, set(jobs))
        for uid in preempted:
            # The Job controller did not count the deleted pod failed (backoffLimit untouched).
            status = jobs[uid]["status"]
            assert _finished(jobs[uid]) and status.get("succeeded") == 1 and not status.get("failed"), status
        assert all(len(uids) == 1 for uids in watch.job_uids.values()) and len(watch.job_uids) == 4, watch.job_uids
        per_product = Counter(p["metadata"]["labels"][LABEL_HASH] for p in succeeded_pods(cluster, namespace))
        assert per_product == Counter({builders.product_hash(p): 1 for p in products}), per_product
    finally:
        for name in (low, high):
            cluster.kubectl("delete", "workloadpriorityclass", name, "--ignore-not-found", "--wait=false", check=False)
