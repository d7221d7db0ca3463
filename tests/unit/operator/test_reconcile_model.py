"""A model-based test of the pure reconcile (Hypothesis): random sequences of cluster events and user
edits, with the operator's pass (observe.build -> reconcile -> the plan's effects) in between.

Properties, checked after every step:
  (a) no product is launched while another unfinished Job of it exists in the namespace;
  (b) no product is recorded succeeded without a succeeded pod of that product under this
      TrainingJob's uid (a pod of a Job owned by that uid, for that product);
  (c) no product is lost: once the world settles, every product ends succeeded or failed;
  (d) Kueue may hold (suspend) any unfinished Job and admit it again later: such a Job is counted
      queued, keeps its product's Lease, is never relaunched or recorded failed for it;
  (e) a ResourceQuota may fill up and free again: a Job create it refuses never fails a product
      (the product waits, launches back off) and no product is lost once it frees up;
  (f) a pod may be unable to start (a missing Secret), long after its Job was created (it waited
      for a node): its product is never counted active, not failed before the stuck-pod wait has
      passed since the pod reached its node, and failed once it has.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trainingjob_operator import builders, observe
from trainingjob_operator.api import TrainingJob, TrainingJobStatus
from trainingjob_operator.quota import QuotaBackoff
from trainingjob_operator.reconcile import (
    DeleteJob,
    Launch,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
    read_record,
    reconcile,
)

PRODUCTS = ["a", "b", "c", "d", "e"]
NS = "shop"
FOREIGN = "uid-foreign"
START = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
_ids = itertools.count()


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    name: str
    uid: str
    owner: str
    product: str
    retry_round: str
    state: str = "running"  # running | succeeded | failed
    deleting: bool = False
    finished_at: datetime | None = None
    suspended: bool = False
    """Held by Kueue (not admitted yet, or preempted: its pod deleted, not counted failed)."""
    created: datetime = START
    stuck_since: datetime | None = None
    """Its pod reached a node at this time and cannot start (CreateContainerConfigError)."""

    def stuck_pods(self) -> list[dict[str, Any]]:
        """The pending pod the operator's probe reads (only while it cannot start)."""
        if self.stuck_since is None or not self.unfinished or self.suspended:
            return []
        return [
            {
                "metadata": {"uid": f"pod-{self.uid}", "creationTimestamp": stamp(self.created)},
                "spec": {"nodeName": "node"},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(self.stuck_since)}
                    ],
                    "containerStatuses": [
                        {"name": "trainer", "state": {"waiting": {"reason": "CreateContainerConfigError"}}}
                    ],
                },
            }
        ]

    def raw(self) -> dict[str, Any]:
        conds = []
        if self.state in ("succeeded", "failed"):
            conds.append(
                {
                    "type": "Complete" if self.state == "succeeded" else "Failed",
                    "status": "True",
                    "reason": "" if self.state == "succeeded" else "BackoffLimitExceeded",
                    "lastTransitionTime": stamp(self.finished_at or START),
                }
            )
        return {
            "metadata": {
                "name": self.name,
                "uid": self.uid,
                "labels": {builders.LABEL_PRODUCT_HASH: builders.product_hash(self.product)},
                "annotations": {
                    builders.ANNOTATION_PRODUCT: self.product,
                    builders.ANNOTATION_RETRY_ROUND: self.retry_round,
                },
                "ownerReferences": [{"uid": self.owner, "controller": True}],
                "deletionTimestamp": stamp(START) if self.deleting else None,
            },
            "spec": {"suspend": True} if self.suspended else {},
            "status": {
                "active": int(self.state == "running" and not self.suspended),
                "failed": int(self.state == "failed"),
                "conditions": conds,
            },
        }

    @property
    def unfinished(self) -> bool:
        return self.state == "running"


@dataclass
class Pod:
    job_uid: str
    product: str
    phase: str
    exit_code: int

    def raw(self) -> dict[str, Any]:
        report = {"products": [{"product": self.product, "status": "trained" if self.exit_code == 0 else "failed"}]}
        return {
            "metadata": {"labels": {builders.JOB_UID_LABEL: self.job_uid}},
            "status": {
                "phase": self.phase,
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "state": {
                            "terminated": {
                                "exitCode": self.exit_code,
                                "message": json.dumps(report),
                                "finishedAt": "2026-11-23T09:00:00Z",
                            }
                        },
                    }
                ],
            },
        }


@dataclass
class Lease:
    product: str
    holder: str
    renew: datetime
    rv: int

    def raw(self) -> dict[str, Any]:
        return {
            "metadata": {
                "name": builders.lease_name(self.product),
                "resourceVersion": str(self.rv),
                "annotations": {builders.ANNOTATION_PRODUCT: self.product},
            },
            "spec": {
                "holderIdentity": self.holder,
                "renewTime": self.renew.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "leaseDurationSeconds": 60,
            },
        }


@dataclass
class World:
    now: datetime = START
    uid: str = "uid-0"
    products: list[str] = field(default_factory=lambda: list(PRODUCTS))
    parallelism: int = 2
    suspend: bool = False
    retry: str = ""
    status: TrainingJobStatus = field(default_factory=TrainingJobStatus)
    jobs: dict[str, Job] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)
    leases: dict[str, Lease] = field(default_factory=dict)
    trained: set[tuple[str, str]] = field(default_factory=set)
    """(TrainingJob uid, product) with a succeeded pod of a Job that uid owns, for that product."""
    rv: int = 0
    quota_full: bool = False
    """A ResourceQuota of the namespace refuses every Job create (403 exceeded quota)."""
    backoff: QuotaBackoff = field(default_factory=QuotaBackoff)
    refused: dict[str, str] = field(default_factory=dict)
    created: int = 0

    def tj(self) -> TrainingJob:
        ann = {builders.ANNOTATION_RETRY_FAILED: self.retry} if self.retry else {}
        body = {
            "metadata": {"name": "tj", "namespace": NS, "uid": self.uid, "generation": 1, "annotations": ann},
            "spec": {
                "products": self.products,
                "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
                "parallelism": self.parallelism,
                "suspend": self.suspend,
            },
        }
        return TrainingJob.model_validate(body).model_copy(update={"status": self.status})

    def me(self) -> str:
        return f"{NS}/tj/{self.uid}"

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    # ---- the operator's pass, and its effects on the world

    def operator_pass(self) -> None:
        tj = self.tj()
        succeeded, failed = read_record(tj)
        observed = observe.build(
            tj,
            succeeded | failed,
            [j.raw() for j in self.jobs.values()],
            lambda uid: [p.raw() for p in self.pods if p.job_uid == uid],
            [x.raw() for x in self.leases.values()],
            stuck_pods={j.uid: j.stuck_pods() for j in self.jobs.values() if j.stuck_pods()},
            quota_exceeded=self.backoff.blocked(self.now),
        )
        plan = reconcile(tj, observed, self.now)
        self.refused, self.created = {}, 0
        for action in plan.actions:
            if isinstance(action, Launch):
                self.launch(action)
            elif isinstance(action, DeleteJob):
                job = self.jobs.get(action.name)
                if job is not None and (not action.uid or job.uid == action.uid):
                    job.deleting = True  # foreground: it stays until its pods are gone
            elif isinstance(action, ReleaseLease):
                lease = self.leases.get(action.lease.product or "")
                if lease is not None and str(lease.rv) == action.lease.resource_version:
                    del self.leases[lease.product]
            elif isinstance(action, RenewLease):
                lease = self.leases.get(action.lease.product or "")
                if lease is not None and str(lease.rv) == action.lease.resource_version:
                    lease.renew, lease.rv = self.now, self.next_rv()
            elif isinstance(action, SetJobTTL):
                pass
        self.status = plan.status
        self.backoff.record(self.refused, self.created, self.now)  # as the daemon does (main.py)
        # (e): a quota refusal is transient: never a failure
        assert all(f.reason not in ("JobRejected", "QuotaExceeded") for f in self.status.failures), self.status.failures
        new_succeeded, new_failed = read_record(self.tj())
        launched = sum(1 for a in plan.actions if isinstance(a, Launch))  # counted active by this pass
        self.check_stuck(new_succeeded | new_failed, new_failed, launched)
        for product in new_succeeded:
            # (b): recorded succeeded only with a succeeded pod of that product under this uid
            assert (self.uid, product) in self.trained, f"{product} recorded without its training"
        self.check_queued(new_succeeded | new_failed)

    def check_stuck(self, recorded: set[str], failed: set[str], launched: int) -> None:
        """(f): a pod that cannot start is not active, fails its product only after the wait counted
        from when it reached its node (not from its Job's creation), and surely after it."""
        wait = timedelta(seconds=120)  # Settings.stuck_pod_seconds
        for job in self.jobs.values():
            if job.owner != self.uid or job.stuck_since is None or not job.unfinished or job.suspended:
                continue
            if job.deleting or job.retry_round != (self.status.retry_failed or ""):
                continue
            if self.now < job.stuck_since + wait:
                assert job.product not in failed or any(
                    f.product == job.product and f.reason != "CreateContainerConfigError" for f in self.status.failures
                ), f"{job.product} failed before its pod waited {wait} on its node"
            elif job.product not in recorded:
                raise AssertionError(f"{job.product}: its pod could not start for {self.now - job.stuck_since}")
        startable = [
            j
            for j in self.jobs.values()
            if j.owner == self.uid and j.unfinished and not j.suspended and j.stuck_since is None
        ]
        assert self.status.products.active <= len(startable) + launched, "a pod that cannot start counted active"

    def check_queued(self, recorded: set[str]) -> None:
        """(d): Jobs Kueue holds are counted queued, hold their product's Lease and fail nothing."""
        held = [
            j
            for j in self.jobs.values()
            if j.owner == self.uid and j.suspended and j.unfinished and not j.deleting and j.product not in recorded
        ]
        assert self.status.products.queued == len(held), (self.status.products, held)
        for job in held:
            lease = self.leases.get(job.product)
            assert lease is not None and lease.holder == self.me(), f"{job.product} queued without its Lease"
            assert all(f.product != job.product for f in self.status.failures), f"{job.product} failed while queued"

    def launch(self, action: Launch) -> None:
        product = action.product
        if self.quota_full:
            # the create is refused (controller: the Lease taken for it is released again)
            self.refused[product] = "jobs.batch is forbidden: exceeded quota: jobs, limited: count/jobs.batch=2"
            return
        held = self.leases.get(product)
        if action.takeover is None:
            if held is not None and held.holder != self.me():
                return
            if held is None:
                self.leases[product] = Lease(product, self.me(), self.now, self.next_rv())
        else:
            if held is None or str(held.rv) != action.takeover.resource_version:
                return
            self.leases[product] = Lease(product, self.me(), self.now, self.next_rv())
        name = builders.job_name("tj", product)
        if name in self.jobs:
            if self.jobs[name].owner != self.uid:
                del self.leases[product]  # not created: the Lease goes
            return
        # (a): never while another unfinished Job of the product exists in the namespace
        others = [j for j in self.jobs.values() if j.product == product and j.unfinished]
        assert not others, f"launched {product} while {others[0].name} ({others[0].owner}) is unfinished"
        uid = f"job-{next(_ids)}"
        self.jobs[name] = Job(name, uid, self.uid, product, self.status.retry_failed or "", created=self.now)
        self.created += 1

    def finish(self, job: Job, ok: bool, lag: bool = False) -> None:
        """The Job's pod ends; with ``lag`` the Job controller has not marked the Job finished yet."""
        self.pods.append(Pod(job.uid, job.product, "Succeeded" if ok else "Failed", 0 if ok else 4))
        if ok:
            self.trained.add((job.owner, job.product))
        if not lag:
            self.job_controller_catches_up(job)

    def job_controller_catches_up(self, job: Job) -> None:
        pods = [p for p in self.pods if p.job_uid == job.uid]
        if job.state == "running" and pods:
            job.state = "succeeded" if pods[-1].exit_code == 0 else "failed"
            job.finished_at = self.now


class ReconcileModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()

    def _pick(self, data: Any, items: list[Any]) -> Any:
        return items[data.draw(st.integers(0, len(items) - 1))]

    @rule()
    def operator_pass(self) -> None:
        self.w.operator_pass()

    @rule(data=st.data(), ok=st.booleans(), lag=st.booleans())
    def a_job_finishes(self, data: Any, ok: bool, lag: bool) -> None:
        running = [
            j
            for j in self.w.jobs.values()
            if j.unfinished and not j.deleting and not j.suspended and not self._has_pod(j) and j.stuck_since is None
        ]
        if running:
            self.w.finish(self._pick(data, running), ok, lag)

    @rule(data=st.data(), waited=st.sampled_from([0, 600]))
    def a_pod_reaches_its_node_and_cannot_start(self, data: Any, waited: int) -> None:
        """A missing Secret: the pod reaches a node now, after ``waited`` seconds Unschedulable (an
        autoscaler adding a node), and cannot start."""
        running = [
            j
            for j in self.w.jobs.values()
            if j.unfinished and not j.suspended and not self._has_pod(j) and j.stuck_since is None
        ]
        if running:
            job = self._pick(data, running)
            self.w.now += timedelta(seconds=waited)
            job.stuck_since = self.w.now

    @rule(data=st.data())
    def the_secret_appears(self, data: Any) -> None:
        stuck = [j for j in self.w.jobs.values() if j.stuck_since is not None and j.unfinished]
        if stuck:
            self._pick(data, stuck).stuck_since = None

    def _has_pod(self, job: Job) -> bool:
        return any(p.job_uid == job.uid for p in self.w.pods)

    @rule(data=st.data())
    def kueue_suspends_a_job(self, data: Any) -> None:
        """Kueue holds a new Job until it admits it, or preempts a running one (its pod is deleted
        with the Job controller's finalizer removed first: not counted failed)."""
        running = [j for j in self.w.jobs.values() if j.unfinished and not j.suspended and not self._has_pod(j)]
        if running:
            self._pick(data, running).suspended = True

    @rule(data=st.data())
    def kueue_admits_a_job(self, data: Any) -> None:
        held = [j for j in self.w.jobs.values() if j.suspended]
        if held:
            self._pick(data, held).suspended = False

    @rule(data=st.data())
    def the_job_controller_catches_up(self, data: Any) -> None:
        lagging = [j for j in self.w.jobs.values() if j.unfinished and self._has_pod(j)]
        if lagging:
            self.w.job_controller_catches_up(self._pick(data, lagging))

    @rule(data=st.data())
    def a_deleting_job_goes(self, data: Any) -> None:
        deleting = [j for j in self.w.jobs.values() if j.deleting]
        if deleting:
            del self.w.jobs[self._pick(data, deleting).name]

    @rule(data=st.data())
    def a_finished_job_is_cleaned_up(self, data: Any) -> None:
        finished = [j for j in self.w.jobs.values() if not j.unfinished]
        if finished:
            del self.w.jobs[self._pick(data, finished).name]

    @rule(seconds=st.sampled_from([1, 30, 90]))
    def time_passes(self, seconds: int) -> None:
        self.w.now += timedelta(seconds=seconds)

    @rule(n=st.integers(1, 4))
    def user_scales(self, n: int) -> None:
        self.w.parallelism = n

    @rule()
    def the_namespace_quota_fills_or_frees(self) -> None:
        """Other workloads (or finished Jobs' TTL) fill or free a count/jobs.batch quota."""
        self.w.quota_full = not self.w.quota_full

    @rule()
    def user_toggles_suspend(self) -> None:
        self.w.suspend = not self.w.suspend

    @rule(seed=st.integers(0, 1000))
    def gitops_reorders_products(self, seed: int) -> None:
        self.w.products.reverse()
        random.Random(seed).shuffle(self.w.products)

    @rule()
    def user_retries_failed(self) -> None:
        self.w.retry = str(self.w.next_rv())

    @rule()
    def user_recreates_the_trainingjob(self) -> None:
        """kubectl delete + apply of the same name: a new uid and an empty status; the old Jobs are
        garbage (deleting, their pods still finishing), the old Leases gone with their owner."""
        w = self.w
        for job in w.jobs.values():
            if job.owner == w.uid:
                job.deleting = True
        w.leases = {p: x for p, x in w.leases.items() if x.holder != w.me()}
        w.uid, w.status, w.retry = f"uid-{w.next_rv()}", TrainingJobStatus(), ""

    @rule(data=st.data())
    def old_deleting_job_pod_finishes(self, data: Any) -> None:
        """A deleting Job's pod may still finish (and succeed) before it goes: a stale pod."""
        deleting = [j for j in self.w.jobs.values() if j.deleting and j.unfinished and not self._has_pod(j)]
        if deleting:
            self.w.finish(self._pick(data, deleting), True)

    @rule(data=st.data())
    def another_trainingjob_starts_a_product(self, data: Any) -> None:
        """Another TrainingJob (its operator plays by the rules: free Lease, no unfinished Job)."""
        w = self.w
        product = self._pick(data, PRODUCTS)
        lease = w.leases.get(product)
        if lease is not None and lease.renew + timedelta(seconds=60) >= w.now:
            return
        if any(j.product == product and j.unfinished for j in w.jobs.values()):
            return
        w.leases[product] = Lease(product, f"{NS}/other/{FOREIGN}", w.now, w.next_rv())
        name = f"other-{builders.product_hash(product)}"
        if name not in w.jobs:
            w.jobs[name] = Job(name, f"job-{next(_ids)}", FOREIGN, product, "")

    @rule(data=st.data())
    def a_foreign_lease_vanishes(self, data: Any) -> None:
        """Its TrainingJob deleted (GC took the Lease) while its Job still runs."""
        foreign = [p for p, x in self.w.leases.items() if x.holder != self.w.me()]
        if foreign:
            del self.w.leases[self._pick(data, foreign)]

    @invariant()
    def counts_add_up(self) -> None:
        p = self.w.status.products
        if p.total:
            assert p.pending + p.waiting + p.active + p.queued + p.succeeded + p.failed == p.total

    def teardown(self) -> None:
        """(c): let everything finish (no more user edits) and every product ends on record."""
        self.settle_and_check_nothing_is_lost()

    def settle_and_check_nothing_is_lost(self) -> None:
        """(c): let everything finish (no more user edits) and every product ends on record."""
        w = self.w
        w.suspend = False
        w.quota_full = False
        for _ in range(200):
            w.operator_pass()
            for job in list(w.jobs.values()):
                if job.deleting:
                    del w.jobs[job.name]
                elif job.unfinished:
                    job.suspended = False  # Kueue admits everything in the end
                    if any(p.job_uid == job.uid for p in w.pods):
                        w.job_controller_catches_up(job)
                    else:
                        w.finish(job, True)
            w.now += timedelta(seconds=61)
            succeeded, failed = read_record(w.tj())
            if len(succeeded | failed) == len(PRODUCTS) and w.status.phase in ("Succeeded", "Failed"):
                break
        succeeded, failed = read_record(w.tj())
        assert succeeded | failed == set(PRODUCTS), f"lost: {set(PRODUCTS) - succeeded - failed}"
        assert w.status.products.succeeded + w.status.products.failed == len(PRODUCTS)


ReconcileModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReconcileModel = ReconcileModel.TestCase
