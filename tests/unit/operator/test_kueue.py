"""Kueue (issue 13), pure parts: the queue labels reach product Jobs; Jobs Kueue holds suspended
are counted queued, hold their parallelism slot and Lease, and are never failed or relaunched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.unit.operator.factories import make_tj
from tests.unit.operator.test_reconcile import NOW, jobs_of, launches, lease, running

from trainingjob_operator import builders, metrics, observe
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.crdgen import PRINTER_COLUMNS
from trainingjob_operator.reconcile import DeleteJob, Observed, ObservedJob, ReleaseLease, RenewLease, reconcile

QUEUE, PRIORITY = builders.KUEUE_LABELS


def labelled(labels: dict[str, str], **spec: Any) -> TrainingJob:
    tj = make_tj(**spec)
    return tj.model_copy(update={"metadata": {**tj.metadata, "labels": labels}})


def queued(p: str, **kw: Any) -> ObservedJob:
    return ObservedJob(name=f"j-{p}", uid=f"u-{p}", product=p, retry_round="", suspended=True, **kw)


# ---------------------------------------------------------------- builders


def test_queue_and_priority_labels_go_onto_the_product_job_not_its_pods() -> None:
    tj = labelled({QUEUE: "team-a", PRIORITY: "nightly", "team": "x"}, template={"labels": {"app": "f"}})
    job = builders.build_job(tj, "p0")
    labels = job["metadata"]["labels"]
    assert labels[QUEUE] == "team-a" and labels[PRIORITY] == "nightly" and labels["app"] == "f"
    assert "team" not in labels  # only Kueue's labels are copied from the TrainingJob
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert QUEUE not in pod_labels and PRIORITY not in pod_labels and pod_labels["app"] == "f"
    assert "suspend" not in job["spec"]  # Kueue's webhook suspends it; the operator never does


def test_no_kueue_labels_without_a_queue() -> None:
    job = builders.build_job(labelled({QUEUE: ""}), "p0")
    assert not set(builders.KUEUE_LABELS) & set(job["metadata"]["labels"])


def test_the_unchanged_check_job_is_queued_too() -> None:
    plan_job = builders.build_plan_job(labelled({QUEUE: "team-a"}, skipUnchanged=True))
    assert plan_job["metadata"]["labels"][QUEUE] == "team-a"
    assert QUEUE not in plan_job["spec"]["template"]["metadata"]["labels"]


# ---------------------------------------------------------------- observe


def raw_job(suspend: bool, conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "j",
            "uid": "uid-j",
            "annotations": {builders.ANNOTATION_PRODUCT: "a", builders.ANNOTATION_RETRY_ROUND: ""},
        },
        "spec": {"suspend": suspend, "ttlSecondsAfterFinished": 60},
        "status": {"conditions": conditions or [], **status},
    }


def test_a_suspended_unfinished_job_is_queued_and_never_stuck() -> None:
    pending_pod = {
        "metadata": {"creationTimestamp": "2026-11-23T08:00:00Z"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "trainer", "state": {"waiting": {"reason": "ErrImagePull"}}}],
        },
    }
    held = observe.parse_job(raw_job(True), None, [pending_pod])
    assert held is not None and held.queued and held.stuck is None and held.unfinished
    preempted = raw_job(True, [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}], active=0)
    parsed = observe.parse_job(preempted, None)
    assert parsed is not None and parsed.queued and parsed.failed_pods == 0
    complete = observe.parse_job(raw_job(True, [{"type": "Complete", "status": "True"}]), None)
    assert complete is not None and not complete.queued and complete.succeeded
    started = {**raw_job(True, active=1), "status": {"active": 1, "startTime": "2026-11-23T08:00:00Z"}}
    assert not observe.may_be_stuck(started, NOW)
    assert observe.may_be_stuck({**started, "spec": {}}, NOW)
    assert observe.trim_job(raw_job(True))["spec"] == {"suspend": True, "ttlSecondsAfterFinished": 60}


# ---------------------------------------------------------------- reconcile


def test_queued_jobs_are_counted_queued_and_hold_their_parallelism_slots() -> None:
    tj = make_tj(parallelism=4)
    observed = Observed(
        jobs=jobs_of(running("p0"), queued("p1"), queued("p2")),
        leases={lease(p).name: lease(p, age=30) for p in ("p0", "p1", "p2")},
    )
    plan = reconcile(tj, observed, NOW)
    p = plan.status.products
    assert (p.active, p.queued, p.pending, p.waiting) == (2, 2, 6, 0)  # p0 and the launched p3
    assert launches(plan) == ["p3"]  # 4 - 1 active - 2 queued
    # Queued products keep their Leases (renewed when due), none is released.
    assert {a.lease.product for a in plan.actions if isinstance(a, RenewLease)} == {"p0", "p1", "p2"}
    assert not any(isinstance(a, ReleaseLease | DeleteJob) for a in plan.actions)
    running_cond = next(c for c in plan.status.conditions if c.type == "Running")
    assert "2 queued" in running_cond.message


def test_only_queued_jobs_is_pending_with_reason_queued() -> None:
    tj = make_tj(products=["a", "b"], parallelism=2)
    plan = reconcile(tj, Observed(jobs=jobs_of(queued("a"), queued("b"))), NOW)
    st = plan.status
    assert st.phase == "Pending" and st.products.queued == 2 and st.products.pending == 0 and launches(plan) == []
    running_cond = next(c for c in st.conditions if c.type == "Running")
    assert running_cond.status == "False" and running_cond.reason == "Queued"
    assert st.start_time is not None


def test_a_preempted_job_is_not_failed_not_relaunched_and_resumes() -> None:
    """Kueue suspends a running Job to preempt it: its pods go (not counted failed), the Job waits."""
    tj = make_tj(products=["a", "b"], parallelism=2)
    first = reconcile(tj, Observed(jobs=jobs_of(running("a"), running("b"))), NOW)
    tj = tj.model_copy(update={"status": first.status})
    preempted = Observed(jobs=jobs_of(queued("a", failed_pods=0), running("b")), leases={lease("a").name: lease("a")})
    plan = reconcile(tj, preempted, NOW + timedelta(seconds=600))
    st = plan.status
    assert st.products.failed == 0 and st.products.queued == 1 and st.products.active == 1 and not st.failures
    assert launches(plan) == [] and not any(isinstance(a, DeleteJob | ReleaseLease) for a in plan.actions)
    assert st.phase == "Running"
    resumed = reconcile(tj.model_copy(update={"status": st}), Observed(jobs=jobs_of(running("a"), running("b"))), NOW)
    assert resumed.status.products.active == 2 and resumed.status.products.queued == 0


def test_a_queued_job_past_the_stuck_pod_wait_does_not_fail() -> None:
    tj = make_tj(products=["a"], parallelism=1)
    since = NOW - timedelta(hours=1)
    job = queued("a", stuck=("ErrImagePull", "image", since))
    plan = reconcile(tj, Observed(jobs=jobs_of(job)), NOW)
    assert plan.status.products.failed == 0 and plan.status.products.queued == 1 and not plan.status.failures


def test_max_failed_exceeded_waits_for_queued_jobs_too() -> None:
    tj = make_tj(products=["a", "b", "c"], parallelism=3, maxFailedProducts=0)
    failed = ObservedJob(name="j-a", uid="u-a", product="a", retry_round="", finished="Failed", reason="X")
    plan = reconcile(tj, Observed(jobs=jobs_of(failed, queued("b"))), NOW)
    assert plan.status.phase == "Running" and plan.status.completion_time is None


def test_queued_is_a_metrics_state_and_a_wide_printer_column() -> None:
    assert "queued" in metrics.STATES
    column = next(c for c in PRINTER_COLUMNS if c["name"] == "Queued")
    assert column["jsonPath"] == ".status.products.queued" and column["priority"] == 1
