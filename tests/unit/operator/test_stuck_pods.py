"""Pods that cannot start: when the stuck clock starts (issue 18 point 9), the unchanged check's pod
(point 7), and the bounded, concurrent pod probes (point 13)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders, observe
from trainingjob_operator.actions import DeleteJob, Event, Launch
from trainingjob_operator.reconcile import reconcile

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def job(product: str, uid: str, *, role: str | None = None, started: datetime = NOW) -> dict[str, Any]:
    ann = {builders.ANNOTATION_ROLE: role} if role else {builders.ANNOTATION_PRODUCT: product}
    return {
        "metadata": {
            "name": f"weekly-{uid}",
            "uid": uid,
            "annotations": ann,
            "labels": {builders.LABEL_PRODUCT_HASH: builders.product_hash(product)},
            "ownerReferences": [{"uid": "uid-1", "controller": True}],
        },
        "spec": {},
        "status": {"active": 1, "ready": 0, "startTime": stamp(started)},
    }


def pending_pod(uid: str, reason: str, created: datetime, scheduled: datetime | None) -> dict[str, Any]:
    conds = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    if scheduled is not None:
        conds = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(scheduled)}]
    return {
        "metadata": {"uid": f"pod-{uid}", "creationTimestamp": stamp(created), "labels": {builders.JOB_UID_LABEL: uid}},
        "status": {
            "phase": "Pending",
            "conditions": conds,
            "containerStatuses": [{"name": "trainer", "state": {"waiting": {"reason": reason, "message": "m"}}}],
        },
    }


def plan_for(
    tj: Any, jobs: list[dict[str, Any]], stuck: dict[str, list[dict[str, Any]]], now: datetime, **kw: Any
) -> Any:
    observed = observe.build(tj, set(), jobs, lambda uid: [], [], None, stuck, **kw)
    return reconcile(tj, observed, now)


# ---------------------------------------------------------------- point 9: the stuck clock


def test_the_stuck_clock_starts_when_the_pod_was_scheduled_not_created() -> None:
    """10 minutes Unschedulable (an autoscaler adds a node), then an image pull backs off: the
    product is not failed at once, only 120 s after the pod reached its node."""
    tj = make_tj(["a"])
    created, scheduled = NOW, NOW + timedelta(minutes=10)
    pods = {"j-a": [pending_pod("j-a", "ImagePullBackOff", created, scheduled)]}
    soon = plan_for(tj, [job("a", "j-a")], pods, scheduled + timedelta(seconds=20))
    assert soon.status.products.failed == 0 and soon.status.products.waiting == 1
    late = plan_for(tj, [job("a", "j-a")], pods, scheduled + timedelta(seconds=121))
    assert late.status.products.failed == 1 and late.status.failures[0].reason == "ImagePullBackOff"


def test_a_single_err_image_pull_is_not_stuck() -> None:
    """A registry's 429 fails one pull; the kubelet retries. Only ImagePullBackOff counts."""
    tj = make_tj(["a"])
    pods = {"j-a": [pending_pod("j-a", "ErrImagePull", NOW, NOW)]}
    plan = plan_for(tj, [job("a", "j-a")], pods, NOW + timedelta(minutes=5))
    assert plan.status.products.failed == 0 and plan.status.products.active == 1


def test_the_clock_starts_when_the_trouble_was_first_seen() -> None:
    """A Secret created a little late (external-secrets): the wait counts from when the operator
    first saw the pod unable to start, when that is later than its scheduling."""
    tj = make_tj(["a"])
    pods = {"j-a": [pending_pod("j-a", "CreateContainerConfigError", NOW, NOW)]}
    first_seen = {"pod-j-a": NOW + timedelta(minutes=3)}
    plan = plan_for(tj, [job("a", "j-a")], pods, NOW + timedelta(minutes=4), first_seen=first_seen)
    assert plan.status.products.failed == 0
    plan = plan_for(tj, [job("a", "j-a")], pods, NOW + timedelta(minutes=5, seconds=1), first_seen=first_seen)
    assert plan.status.products.failed == 1


# ---------------------------------------------------------------- point 7: the unchanged check


def _check_tj() -> Any:
    return make_tj(["a", "b"], skipUnchanged=True)


def _check_job(suspended: bool = False) -> dict[str, Any]:
    raw = job(builders.PLAN_HASH, "j-check", role=builders.ROLE_UNCHANGED_PLAN)
    if suspended:
        raw["spec"] = {"suspend": True}
        raw["status"] = {}
    return raw


def test_an_unchanged_check_that_cannot_start_is_stalled_then_trains_everything() -> None:
    """A missing DSN Secret or a bad image: before, Reconciling=True, Stalled=False, no Event, for
    ever (and every later run of a Forbid schedule blocked behind it)."""
    tj = _check_tj()
    pods = {"j-check": [pending_pod("j-check", "CreateContainerConfigError", NOW, NOW)]}
    first = plan_for(tj, [_check_job()], pods, NOW + timedelta(seconds=30))
    cond = {c.type: c for c in first.status.conditions}
    assert (cond["Stalled"].status, cond["Stalled"].reason) == ("True", "CreateContainerConfigError")
    assert "unchanged check" in cond["Stalled"].message and cond["Reconciling"].status == "False"
    assert any(isinstance(a, Event) and a.type == "Warning" for a in first.actions)
    assert not any(isinstance(a, Launch) for a in first.actions)
    tj = tj.model_copy(update={"status": first.status})
    later = plan_for(tj, [_check_job()], pods, NOW + timedelta(seconds=121))
    assert DeleteJob("weekly-j-check", "j-check") in later.actions
    assert [a.product for a in later.actions if isinstance(a, Launch)] == ["a", "b"]
    assert any(isinstance(a, Event) and a.reason == "UnchangedCheckFailed" for a in later.actions)
    assert later.status.unchanged_checked


def test_a_kueue_held_unchanged_check_reads_queued() -> None:
    plan = plan_for(_check_tj(), [_check_job(suspended=True)], {}, NOW + timedelta(minutes=30))
    running = next(c for c in plan.status.conditions if c.type == "Running")
    assert running.reason == "Queued" and plan.status.phase == "Pending"
    assert not any(c.type == "Stalled" and c.status == "True" for c in plan.status.conditions)


# ---------------------------------------------------------------- point 13: probes


class SlowPods:
    """list_pods with a fixed latency, counting calls and the most in flight at once."""

    def __init__(self, latency: float) -> None:
        self.latency, self.calls, self.in_flight, self.most = latency, 0, 0, 0
        self.field_selectors: set[str | None] = set()

    async def list_pods(self, namespace: str, label_selector: str, field_selector: str | None = None) -> list[Any]:
        self.calls += 1
        self.field_selectors.add(field_selector)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(self.latency)
        self.in_flight -= 1
        return []


def test_probes_read_only_scheduled_pods_concurrently_and_at_most_every_interval() -> None:
    from trainingjob_operator.probes import SCHEDULED_PENDING_PODS, PodProbes

    jobs = [job(f"p{i}", f"j{i}", started=NOW - timedelta(minutes=1)) for i in range(200)]
    kube = SlowPods(0.01)
    probes = PodProbes()

    async def passes() -> tuple[float, int]:
        started = time.perf_counter()
        await observe.read_stuck_pods(kube, "shop", jobs, NOW, probes)  # type: ignore[arg-type]
        took = time.perf_counter() - started
        await observe.read_stuck_pods(kube, "shop", jobs, NOW + timedelta(seconds=5), probes)  # type: ignore[arg-type]
        return took, kube.calls

    took, calls = asyncio.run(passes())
    assert calls == 200  # the second pass, 5 s later, reused the answers
    assert kube.most > 1 and took < 200 * 0.01 / 2  # concurrent, not one after the other
    assert kube.field_selectors == {SCHEDULED_PENDING_PODS}
    asyncio.run(observe.read_stuck_pods(kube, "shop", jobs, NOW + timedelta(seconds=11), probes))  # type: ignore[arg-type]
    assert kube.calls == 400


def test_an_earlier_rounds_job_whose_pod_cannot_start_is_stuck_not_active_for_ever() -> None:
    """Found by the model test: after a retry-failed round started, an earlier round's unfinished Job
    whose pod cannot start was counted active on every pass and never ended."""
    from trainingjob_operator.api import TrainingJobStatus

    tj = make_tj(["a", "b"]).model_copy(
        update={
            "annotations": {builders.ANNOTATION_RETRY_FAILED: "r1"},
            "status": TrainingJobStatus(retry_failed="r1"),
        }
    )
    old_round = job("a", "j-a")  # retry-round annotation "": the earlier round
    pods = {"j-a": [pending_pod("j-a", "CreateContainerConfigError", NOW, NOW)]}
    soon = plan_for(tj, [old_round], pods, NOW + timedelta(seconds=30))
    assert soon.status.products.active == 1 and soon.status.products.waiting == 1  # b launched; a stuck
    late = plan_for(tj, [old_round], pods, NOW + timedelta(seconds=121))
    assert any(f.product == "a" and f.reason == "CreateContainerConfigError" for f in late.status.failures)


def test_image_never_pulled_is_stuck() -> None:
    """imagePullPolicy: Never and an image the node lacks: the kubelet says ErrImageNeverPull and
    never retries a pull; the pod would wait for ever. It is stuck like ImagePullBackOff (found on
    the real node: the process node never reported it)."""
    tj = make_tj(["a"])
    pods = {"j-a": [pending_pod("j-a", "ErrImageNeverPull", NOW, NOW)]}
    soon = plan_for(tj, [job("a", "j-a")], pods, NOW + timedelta(seconds=20))
    assert soon.status.products.waiting == 1
    stalled = next(c for c in soon.status.conditions if c.type == "Stalled")
    assert stalled.status == "True" and stalled.reason == "ErrImageNeverPull"
    late = plan_for(tj, [job("a", "j-a")], pods, NOW + timedelta(seconds=121))
    assert late.status.products.failed == 1 and late.status.failures[0].reason == "ErrImageNeverPull"
