"""Identity and folding edges of issue 18 (points 2-5), through ``observe.build`` and ``reconcile``
with raw API objects: a finished Job seen before its pod, two pods of one Job, product-hash
collisions and Leases named by an earlier release, skipUnchanged turned on mid-run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.observe import build
from trainingjob_operator.observed import Observed, UnchangedCheck
from trainingjob_operator.reasons import Reason
from trainingjob_operator.reconcile import DeleteJob, Launch, Plan, reconcile

NOW = datetime(2026, 12, 7, 2, 0, 0, tzinfo=UTC)
UID = "uid-1"
ME = f"shop/weekly/{UID}"
LOCKED_BY_POLICY = (
    "Container trainer for pod shop/weekly-x-abcde failed with exit code 5 matching FailJob rule at index 0"
)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def raw_job(
    product: str,
    uid: str,
    condition: str | None = None,
    reason: str = "",
    message: str = "",
    name: str | None = None,
    owner: str = UID,
    finished: datetime = NOW,
) -> dict[str, Any]:
    conditions = []
    if condition is not None:
        conditions.append(
            {
                "type": condition,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp(finished),
            }
        )
    return {
        "metadata": {
            "name": name or builders.job_name("weekly", product),
            "uid": uid,
            "annotations": {builders.ANNOTATION_PRODUCT: product, builders.ANNOTATION_RETRY_ROUND: ""},
            "ownerReferences": [{"uid": owner, "controller": True}],
        },
        "spec": {},
        "status": {"active": int(condition is None), "conditions": conditions},
    }


def raw_pod(job_uid: str, exit_code: int, status: str, product: str, finished: datetime = NOW) -> dict[str, Any]:
    report = json.dumps({"products": [{"product": product, "status": status}]})
    terminated = {"exitCode": exit_code, "message": report, "finishedAt": stamp(finished)}
    return {
        "metadata": {"labels": {builders.JOB_UID_LABEL: job_uid}},
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
        },
    }


def observe(
    tj: TrainingJob,
    jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]] | None = None,
    leases: list[dict[str, Any]] | None = None,
    read_pods: dict[str, list[dict[str, Any]]] | None = None,
) -> Observed:
    def pods_of(uid: str) -> list[dict[str, Any]]:
        return [p for p in pods or [] if p["metadata"]["labels"][builders.JOB_UID_LABEL] == uid]

    if read_pods is None:
        return build(tj, set(), jobs, pods_of, leases or [])
    return build(tj, set(), jobs, pods_of, leases or [], read_pods=read_pods)


def launches(plan: Plan) -> list[Launch]:
    return [a for a in plan.actions if isinstance(a, Launch)]


# ---------------------------------------------------------------- 2. a finished Job before its pod


def test_a_complete_job_whose_pod_is_not_cached_yet_is_not_recorded_failed() -> None:
    """The Job watch delivered Complete, the pod watch has not delivered the pod yet (a restart, an
    API outage): the product is held (active, its slot and Lease kept), then folded from its pod."""
    tj = make_tj(["a", "b"], parallelism=1)
    job = raw_job("a", "ja", "Complete")
    held = reconcile(tj, observe(tj, [job]), NOW + timedelta(seconds=5))
    st = held.status
    assert st.products.failed == 0 and st.products.active == 1 and launches(held) == []
    assert not st.failures
    arrived = observe(tj, [job], [raw_pod("ja", 0, "trained", "a")])
    plan = reconcile(tj.model_copy(update={"status": st}), arrived, NOW + timedelta(seconds=6))
    assert plan.status.products.succeeded == 1 and plan.status.products.failed == 0
    assert [a.product for a in launches(plan)] == ["b"]


def test_a_complete_job_whose_failed_first_pod_is_cached_but_not_its_succeeded_one_waits() -> None:
    tj = make_tj(["a"], parallelism=1)
    job = raw_job("a", "ja", "Complete")
    first = raw_pod("ja", 4, "failed", "a", NOW - timedelta(seconds=30))
    held = reconcile(tj, observe(tj, [job], [first]), NOW)
    assert held.status.products.failed == 0 and held.status.products.active == 1
    both = observe(tj, [job], [first, raw_pod("ja", 0, "trained", "a")])
    assert reconcile(tj, both, NOW).status.products.succeeded == 1


def test_a_read_of_the_api_that_finds_no_pod_folds_the_job_at_once() -> None:
    """The pod is gone for good (PodGC): a read of the API (not the cache) confirms it; the Job is
    folded from its condition without waiting."""
    tj = make_tj(["a"], parallelism=1)
    plan = reconcile(tj, observe(tj, [raw_job("a", "ja", "Complete")], read_pods={"ja": []}), NOW)
    assert plan.status.products.failed == 1 and plan.status.failures[0].reason == Reason.MISSING_REPORT


def test_a_locked_job_whose_pod_is_gone_is_relaunched_not_failed_invalid_data() -> None:
    """Exit code 5 fails the Job through its podFailurePolicy; with no pod to read (PodGC, past the
    grace period) the Job condition's own message names the exit code: locked, relaunched."""
    tj = make_tj(["a"], parallelism=1)
    job = raw_job("a", "ja", "Failed", "PodFailurePolicy", LOCKED_BY_POLICY)
    later = NOW + timedelta(seconds=120)
    plan = reconcile(tj, observe(tj, [job]), later)
    assert plan.status.products.failed == 0 and plan.waiting == {"a": "ProductLocked"}
    assert DeleteJob(builders.job_name("weekly", "a"), "ja") in plan.actions


# ---------------------------------------------------------------- 4. two pods of one Job


def test_a_job_with_one_locked_pod_is_locked_whatever_its_other_pod_did_later() -> None:
    tj = make_tj(["a"], parallelism=1)
    job = raw_job("a", "ja", "Failed", "PodFailurePolicy", LOCKED_BY_POLICY)
    pods = [
        raw_pod("ja", 5, "locked", "a", NOW - timedelta(seconds=30)),
        raw_pod("ja", 4, "failed", "a", NOW - timedelta(seconds=1)),  # ended later (terminated)
    ]
    plan = reconcile(tj, observe(tj, [job], pods), NOW + timedelta(seconds=20))
    assert plan.status.products.failed == 0 and plan.waiting == {"a": "ProductLocked"}
    assert DeleteJob(builders.job_name("weekly", "a"), "ja") in plan.actions


# ---------------------------------------------------------------- 3. product-hash collisions


@pytest.fixture
def weak_hash(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every product id hashes alike (salted names differ): a collision on every pair."""

    def colliding(product: str, salt: int = 0) -> str:
        return hashlib.sha256(f"salt-{salt}".encode()).hexdigest()[:16]

    monkeypatch.setattr(builders, "product_hash", colliding)
    yield


@pytest.mark.usefixtures("weak_hash")
def test_a_job_name_held_by_another_products_job_launches_under_a_salted_name() -> None:
    tj = make_tj(["a", "b"], parallelism=2)
    plan = reconcile(tj, observe(tj, [raw_job("a", "ja")]), NOW)
    (launch,) = launches(plan)
    assert launch.product == "b"
    assert launch.job_name != builders.job_name("weekly", "a")
    assert launch.job_name == builders.job_name("weekly", "b", 1)
    # Its Job under that name is found by owner uid and product annotation, never launched twice.
    again = observe(tj, [raw_job("a", "ja"), raw_job("b", "jb", name=launch.job_name)])
    assert set(again.jobs) == {"a", "b"}
    assert launches(reconcile(tj.model_copy(update={"status": plan.status}), again, NOW)) == []


@pytest.mark.usefixtures("weak_hash")
def test_a_foreign_job_of_another_product_under_our_name_does_not_stall_the_product() -> None:
    tj = make_tj(["b"], parallelism=1)
    foreign = raw_job("zz", "jz", owner="uid-other", name=builders.job_name("weekly", "b"))
    (launch,) = launches(reconcile(tj, observe(tj, [foreign]), NOW))
    assert launch.job_name == builders.job_name("weekly", "b", 1)


def test_job_names_fit_63_characters_with_a_64_bit_hash() -> None:
    name = builders.job_name("x" * 253, "SKU-00422759")
    assert len(name) <= 63 and name.endswith(builders.product_hash("SKU-00422759"))
    assert len(builders.product_hash("p")) == 16
    # The 40-bit pair of the review no longer collides.
    assert builders.job_name("n", "SKU-00422759") != builders.job_name("n", "SKU-00534859")
    assert builders.lease_name("SKU-00422759") != builders.lease_name("SKU-00534859")


def legacy_lease(product: str, holder: str, renewed: datetime) -> dict[str, Any]:
    """A Lease as the 10-hex-digit release named it (an operator upgrade mid-run finds these)."""
    old_hash = hashlib.sha256(product.encode()).hexdigest()[:10]
    return {
        "metadata": {
            "name": f"tj-product-{old_hash}",
            "resourceVersion": "3",
            "annotations": {builders.ANNOTATION_PRODUCT: product},
        },
        "spec": {"holderIdentity": holder, "renewTime": stamp(renewed), "leaseDurationSeconds": 60},
    }


def test_after_an_upgrade_a_lease_named_by_the_old_release_still_locks_its_product() -> None:
    tj = make_tj(["a", "b"], parallelism=2)
    other = "shop/other/uid-9"
    live = legacy_lease("a", other, NOW - timedelta(seconds=10))
    expired = legacy_lease("b", other, NOW - timedelta(seconds=600))
    plan = reconcile(tj, observe(tj, [], leases=[live, expired]), NOW)
    assert plan.waiting == {"a": "WaitingForLease"}
    # The expired old-named Lease is no claim: b gets a Lease of its own (created, not taken over).
    assert [(x.product, x.takeover) for x in launches(plan)] == [("b", None)]


def test_after_an_upgrade_running_jobs_named_by_the_old_release_are_recognised() -> None:
    tj = make_tj(["a"], parallelism=1)
    old_name = f"weekly-{hashlib.sha256(b'a').hexdigest()[:10]}"
    mine = legacy_lease("a", ME, NOW - timedelta(seconds=30))
    plan = reconcile(tj, observe(tj, [raw_job("a", "ja", name=old_name)], leases=[mine]), NOW)
    assert launches(plan) == [] and plan.status.products.active == 1
    assert [type(a).__name__ for a in plan.actions if type(a).__name__ != "Event"] == ["RenewLease"]


# ---------------------------------------------------------------- 5. skipUnchanged turned on mid-run


def test_turning_skip_unchanged_on_mid_run_never_skips_a_running_product() -> None:
    tj = make_tj(["a", "b", "c"], parallelism=1)
    first = reconcile(tj, observe(tj, []), NOW)
    assert [x.product for x in launches(first)] == ["a"]
    on = make_tj(["a", "b", "c"], parallelism=1, skipUnchanged=True).model_copy(update={"status": first.status})
    check = UnchangedCheck(name="c", uid="u-c", finished="Complete", unchanged=frozenset({0, 1}))  # a and b
    jobs = observe(on, [raw_job("a", "ja")]).jobs
    plan = reconcile(on, Observed(jobs=jobs, unchanged_check=check), NOW)
    st = plan.status.products
    assert (st.active, st.skipped, st.succeeded) == (1, 1, 1)  # a trains on; only b is skipped
    assert not any(type(a).__name__ == "ReleaseLease" for a in plan.actions)
    assert launches(plan) == []  # a holds the one slot: parallelism is kept


@pytest.mark.usefixtures("weak_hash")
def test_another_products_lease_under_our_name_is_waited_for_never_taken_over() -> None:
    """Even expired: that product's Job may still run (its holder releases the Lease when it is done)."""
    tj = make_tj(["b"], parallelism=1)
    expired = {
        "metadata": {
            "name": builders.lease_name("b"),
            "resourceVersion": "4",
            "annotations": {builders.ANNOTATION_PRODUCT: "a"},
        },
        "spec": {"holderIdentity": "shop/other/uid-9", "renewTime": stamp(NOW - timedelta(hours=1))},
    }
    plan = reconcile(tj, observe(tj, [], leases=[expired]), NOW)
    assert launches(plan) == [] and plan.waiting == {"b": "WaitingForLease"}


def test_the_pods_of_a_finished_job_missing_from_the_cache_are_read_from_the_api() -> None:
    """What main.py's cached observe does: a Job whose finished pod the cache lacks is listed by
    ``unreported``, its pods are read from the API (by the Job's controller-uid label), and the
    pass is built again with them: the Job is folded from its pod at once."""
    import asyncio

    from trainingjob_operator.observe import read_unreported_pods, unreported

    tj = make_tj(["a"], parallelism=1)
    job = raw_job("a", "ja", "Complete")
    cached = observe(tj, [job])
    assert unreported(cached) == ["ja"]

    class Api:
        selectors: list[str] = []

        async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
            self.selectors.append(label_selector)
            return [raw_pod("ja", 0, "trained", "a")]

    api = Api()
    read = asyncio.run(read_unreported_pods(api, "shop", unreported(cached)))  # type: ignore[arg-type]
    assert api.selectors == [f"{builders.JOB_UID_LABEL}=ja"]
    plan = reconcile(tj, observe(tj, [job], read_pods=read), NOW)
    assert plan.status.products.succeeded == 1 and plan.status.phase == "Succeeded"
