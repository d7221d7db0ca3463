"""A model-based test of the pure reconcile (Hypothesis): random sequences of cluster events and user
edits, with the operator's pass (observe.build -> reconcile -> the plan's effects) in between.

Properties, checked after every step:
  (a) no product is launched while another unfinished Job of it exists in the namespace;
  (b) no product is recorded succeeded without a succeeded pod of that product under this
      TrainingJob's uid (a pod of a Job owned by that uid, for that product);
  (c) no product is lost: once the world settles, every product ends succeeded or failed;
  (d) Kueue may hold (suspend) any unfinished Job and admit it again later: such a Job is counted
      queued, keeps its product's Lease (claimed again by the next pass when someone deletes it),
      is never relaunched or recorded failed for it;
  (e) with skipUnchanged (turned on at any time) a product is recorded skipped only when a check
      pod of this uid found it unchanged (the list it read proves which products it checked: a
      re-created TrainingJob with another list must not use the old list's answer), and never
      while a Job of this uid trains it;
  (f) no product is recorded failed unless a Job of this uid for it really failed: not a Job
      whose pod the operator has not seen yet (the pod watch lags the Job watch), not a Job of
      which any pod found the product locked (exit code 5), whatever its other pod did later;
  (g) a ResourceQuota may fill up and free again: a Job create it refuses never fails a product
      (the product waits, launches back off) and no product is lost once it frees up;
  (h) a pod may be unable to start (a missing Secret), long after its Job was created (it waited
      for a node): its product is never counted active, not failed before the stuck-pod wait has
      passed since the pod reached its node, and failed once it has.

``CollidingReconcileModel`` runs the same with a weak product hash (every other product id
collides), so Job and Lease names are shared between products.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from forecast_trainer.unchanged import products_digest, unchanged_message
from trainingjob_operator import builders, observe
from trainingjob_operator.api import TrainingJob, TrainingJobStatus
from trainingjob_operator.quota import QuotaBackoff
from trainingjob_operator.reconcile import (
    CreateUnchangedCheck,
    DeleteJob,
    Launch,
    ReclaimLease,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
    read_record,
    read_skipped,
    reconcile,
)

PRODUCTS = ["a", "b", "c", "d", "e"]
POOL = [*PRODUCTS, "f", "g"]
"""Ids a re-created TrainingJob may swap in."""
LOCKED = 5
POD_LAGS = [0, 0, 20, 45]
"""Seconds a finished pod may reach the operator's cache after its Job's condition (< the 60 s grace)."""
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
    locked: bool = False
    """Failed by its podFailurePolicy: a pod exited 5 (the product locked in the output database)."""
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
            reason, message = "", ""
            if self.state == "failed":
                reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                if self.locked:
                    reason = "PodFailurePolicy"
                    message = f"Container trainer for pod {NS}/{self.name}-x failed with exit code 5 (FailJob rule)"
            conds.append(
                {
                    "type": "Complete" if self.state == "succeeded" else "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
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
class CheckJob:
    """The unchanged check's Job (``forecast-trainer unchanged``), mounting ``configmap``."""

    name: str
    uid: str
    owner: str
    configmap: str
    state: str = "running"  # running | succeeded
    deleting: bool = False

    def raw(self) -> dict[str, Any]:
        conds = [{"type": "Complete", "status": "True"}] if self.state == "succeeded" else []
        return {
            "metadata": {
                "name": self.name,
                "uid": self.uid,
                "labels": {builders.LABEL_PRODUCT_HASH: builders.PLAN_HASH},
                "annotations": {builders.ANNOTATION_ROLE: builders.ROLE_UNCHANGED_PLAN},
                "ownerReferences": [{"uid": self.owner, "controller": True}],
                "deletionTimestamp": stamp(START) if self.deleting else None,
            },
            "spec": {},
            "status": {"active": int(self.state == "running"), "conditions": conds},
        }


@dataclass
class Pod:
    job_uid: str
    product: str
    phase: str
    exit_code: int
    visible_at: datetime = START
    """When the operator's pod cache has it (the pod watch may lag the Job watch)."""
    finished_at: datetime = START
    message: str | None = None
    """The termination message; None: the trainer's report for ``product``."""

    def raw(self) -> dict[str, Any]:
        status = {0: "trained", LOCKED: "locked"}.get(self.exit_code, "failed")
        report = {"products": [{"product": self.product, "status": status}]}
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
                                "message": json.dumps(report) if self.message is None else self.message,
                                "finishedAt": stamp(self.finished_at),
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
    skip_unchanged: bool = False
    retry: str = ""
    status: TrainingJobStatus = field(default_factory=TrainingJobStatus)
    jobs: dict[str, Job] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)
    leases: dict[str, Lease] = field(default_factory=dict)
    """By Lease name (a weak product hash makes products share one)."""
    checks: dict[str, CheckJob] = field(default_factory=dict)
    configmaps: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    """ConfigMap name -> (owner uid, product list): the check's list, garbage-collected only later."""
    trained: set[tuple[str, str]] = field(default_factory=set)
    """(TrainingJob uid, product) with a succeeded pod of a Job that uid owns, for that product."""
    checked_unchanged: set[tuple[str, str]] = field(default_factory=set)
    """(TrainingJob uid, product) that a check pod of a Job that uid owns read and found unchanged."""
    failed_for_real: set[tuple[str, str]] = field(default_factory=set)
    """(TrainingJob uid, product) with a Job of that uid that failed, no pod of it locked."""
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
                "skipUnchanged": self.skip_unchanged,
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
        for job in self.jobs.values():
            # (f), (h): a pod that could not start for the whole stuck-pod wait is a real failure
            stuck = job.stuck_since is not None and job.unfinished and not job.suspended
            if job.owner == self.uid and stuck and self.now >= job.stuck_since + timedelta(seconds=120):  # type: ignore[operator]
                self.failed_for_real.add((job.owner, job.product))
        observed = observe.build(
            tj,
            succeeded | failed,
            [j.raw() for j in [*self.jobs.values(), *self.checks.values()]],
            lambda uid: [p.raw() for p in self.pods if p.job_uid == uid and p.visible_at <= self.now],
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
                job = self.jobs.get(action.name) or self.checks.get(action.name)
                if job is not None and (not action.uid or job.uid == action.uid):
                    job.deleting = True  # foreground: it stays until its pods are gone
            elif isinstance(action, ReleaseLease):
                lease = self.leases.get(action.lease.name)
                if lease is not None and str(lease.rv) == action.lease.resource_version:
                    del self.leases[action.lease.name]
            elif isinstance(action, RenewLease):
                lease = self.leases.get(action.lease.name)
                if lease is not None and str(lease.rv) == action.lease.resource_version:
                    lease.renew, lease.rv = self.now, self.next_rv()
            elif isinstance(action, ReclaimLease):
                name = builders.lease_name(action.product)
                if name not in self.leases:  # a create: 409 when the name is taken
                    self.leases[name] = Lease(action.product, self.me(), self.now, self.next_rv())
            elif isinstance(action, CreateUnchangedCheck):
                self.create_check(tj)
            elif isinstance(action, SetJobTTL):
                pass
        self.status = plan.status
        self.backoff.record(self.refused, self.created, self.now)  # as the daemon does (main.py)
        # (g): a quota refusal is transient: never a failure
        assert all(f.reason not in ("JobRejected", "QuotaExceeded") for f in self.status.failures), self.status.failures
        now_tj = self.tj()
        new_succeeded, new_failed = read_record(now_tj)
        launched = sum(1 for a in plan.actions if isinstance(a, Launch))  # counted active by this pass
        self.check_stuck(new_succeeded | new_failed, new_failed, launched)
        for product in new_succeeded:
            # (b), (e): recorded succeeded only with a succeeded pod of that product under this uid,
            # or skipped as found unchanged by a check pod of this uid that read that product
            key = (self.uid, product)
            assert key in self.trained or key in self.checked_unchanged, f"{product} recorded without its training"
        for product in read_skipped(now_tj) & new_succeeded:
            # (e): never while a Job of this uid trains it
            training = [j for j in self.jobs.values() if j.owner == self.uid and j.product == product and j.unfinished]
            assert not training, f"{product} recorded skipped while {training[0].name} trains it"
        for product in new_failed:
            # (f): recorded failed only when a Job of this uid really failed for it
            assert (self.uid, product) in self.failed_for_real, f"{product} recorded failed, never failed"
        self.check_queued(new_succeeded | new_failed)

    def create_check(self, tj: TrainingJob) -> None:
        """What the controller does for CreateUnchangedCheck: create the list and the Job (a 409 on
        either is taken as made by an earlier pass)."""
        cm = builders.build_plan_configmap(tj)
        name = cm["metadata"]["name"]
        if name not in self.configmaps:
            self.configmaps[name] = (self.uid, json.loads(cm["data"][builders.PLAN_PRODUCTS_FILE]))
        body = builders.build_plan_job(tj, self.status.retry_failed or "")
        job_name = body["metadata"]["name"]
        if job_name in self.checks:
            return
        (mounted,) = [v["configMap"]["name"] for v in body["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
        self.checks[job_name] = CheckJob(job_name, f"job-{next(_ids)}", self.uid, mounted)

    def check_stuck(self, recorded: set[str], failed: set[str], launched: int) -> None:
        """(h): a pod that cannot start is not active, fails its product only after the wait counted
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
        # A finished Job whose pod the operator has not seen yet (the pod watch lags) keeps its
        # slot, counted active until its pod shows (property f): it is no stuck pod.
        startable = [
            j
            for j in self.jobs.values()
            if j.owner == self.uid
            and not j.suspended
            and j.stuck_since is None
            and (j.unfinished or j.product not in recorded)
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
            lease = self.leases.get(builders.lease_name(job.product))
            if lease is not None and lease.product != job.product:
                # Only with colliding names (CollidingReconcileModel): the product's Lease expired
                # while no operator pass renewed it, and a claim of another product took its name.
                # A claim, not the truth: nobody launches this product while its Job is unfinished
                # (property (b) checks that); this Job keeps its slot and is counted queued.
                continue
            assert lease is not None and lease.holder == self.me(), f"{job.product} queued without its Lease"
            assert all(f.product != job.product for f in self.status.failures), f"{job.product} failed while queued"

    def launch(self, action: Launch) -> None:
        """What the controller and leases.acquire do for a Launch, against this world's API."""
        product = action.product
        if self.quota_full:
            # the create is refused (controller: the Lease taken for it is released again)
            self.refused[product] = "jobs.batch is forbidden: exceeded quota: jobs, limited: count/jobs.batch=2"
            return
        lease_name = builders.lease_name(product)
        held = self.leases.get(lease_name)
        if action.takeover is None:
            if held is not None and (held.holder != self.me() or held.product != product):
                return  # 409, and not this product's Lease of ours
            if held is None:
                self.leases[lease_name] = Lease(product, self.me(), self.now, self.next_rv())
        else:
            if held is None or str(held.rv) != action.takeover.resource_version:
                return
            self.leases[lease_name] = Lease(product, self.me(), self.now, self.next_rv())
        name = getattr(action, "job_name", "") or builders.job_name("tj", product)
        if name in self.jobs:
            existing = self.jobs[name]
            if existing.owner != self.uid or existing.product != product:
                del self.leases[lease_name]  # not created: the Lease goes
            return
        # (a): never while another unfinished Job of the product exists in the namespace
        others = [j for j in self.jobs.values() if j.product == product and j.unfinished]
        assert not others, f"launched {product} while {others[0].name} ({others[0].owner}) is unfinished"
        uid = f"job-{next(_ids)}"
        self.jobs[name] = Job(name, uid, self.uid, product, self.status.retry_failed or "", created=self.now)
        self.created += 1

    def finish(self, job: Job, code: int, lag: bool = False, pod_lag: int = 0, second: int | None = None) -> None:
        """The Job's pod ends with exit ``code``; with ``lag`` the Job controller has not marked the
        Job finished yet; the pod reaches the operator's cache ``pod_lag`` seconds after it ended.
        ``second``: another pod of the Job (a replacement started while the first was deleted)
        ends just after it with that code."""
        for exit_code in [code] if second is None else [code, second]:
            phase = "Succeeded" if exit_code == 0 else "Failed"
            seen = self.now + timedelta(seconds=pod_lag)
            self.pods.append(Pod(job.uid, job.product, phase, exit_code, seen, self.now))
            if exit_code == 0:
                self.trained.add((job.owner, job.product))
        if not lag:
            self.job_controller_catches_up(job)

    def job_controller_catches_up(self, job: Job) -> None:
        pods = [p for p in self.pods if p.job_uid == job.uid]
        if job.state == "running" and pods:
            job.locked = any(p.exit_code == LOCKED for p in pods)
            job.state = "succeeded" if not job.locked and any(p.exit_code == 0 for p in pods) else "failed"
            job.finished_at = self.now
            if job.state == "failed" and not job.locked:
                self.failed_for_real.add((job.owner, job.product))

    def check_pod_ends(self, check: CheckJob, unchanged: set[str]) -> None:
        """The check pod reads its mounted list and finds the products of ``unchanged`` unchanged;
        it answers over the sorted list it read, with that list's digest (the trainer's own code)."""
        _, listed = self.configmaps[check.configmap]
        ordered = sorted(set(listed))
        indexes = [i for i, p in enumerate(ordered) if p in unchanged]
        text = unchanged_message(indexes, len(ordered), 0.1, products_sha256=products_digest(ordered))
        self.pods.append(Pod(check.uid, "", "Succeeded", 0, self.now, self.now, text))
        self.checked_unchanged |= {(check.owner, p) for p in ordered if p in unchanged}
        check.state = "succeeded"


class ReconcileModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()

    def _pick(self, data: Any, items: list[Any]) -> Any:
        return items[data.draw(st.integers(0, len(items) - 1))]

    @rule()
    def operator_pass(self) -> None:
        self.w.operator_pass()

    @rule(
        data=st.data(),
        code=st.sampled_from([0, 0, 4, LOCKED]),
        lag=st.booleans(),
        pod_lag=st.sampled_from(POD_LAGS),
        second=st.sampled_from([None, None, 4, 0]),
        then_pass=st.booleans(),
    )
    def a_job_finishes(
        self, data: Any, code: int, lag: bool, pod_lag: int, second: int | None, then_pass: bool
    ) -> None:
        """A pod ends (``then_pass``: and the operator's pass follows at once, as the wake-up makes it)."""
        running = [
            j
            for j in self.w.jobs.values()
            if j.unfinished and not j.deleting and not j.suspended and not self._has_pod(j) and j.stuck_since is None
        ]
        if running:
            # a second pod only beside a locked one (exit 5 fails the Job at once: the other is killed)
            self.w.finish(self._pick(data, running), code, lag, pod_lag, second if code == LOCKED else None)
            if then_pass:
                self.w.operator_pass()

    @rule(data=st.data(), then_pass=st.booleans())
    def the_check_pod_ends(self, data: Any, then_pass: bool) -> None:
        running = [c for c in self.w.checks.values() if c.state == "running" and c.configmap in self.w.configmaps]
        if running:
            check = self._pick(data, running)
            listed = self.w.configmaps[check.configmap][1]
            self.w.check_pod_ends(check, set(data.draw(st.sets(st.sampled_from(sorted(listed))))))
            if then_pass:
                self.w.operator_pass()

    @initialize(skip=st.booleans())
    def created(self, skip: bool) -> None:
        """The TrainingJob as applied: with skipUnchanged (a TrainingSchedule's runs) or without."""
        self.w.skip_unchanged = skip

    @rule(then_pass=st.booleans(), answer=st.none() | st.sets(st.sampled_from(POOL)))
    def user_turns_skip_unchanged_on(self, then_pass: bool, answer: set[str] | None) -> None:
        """(``then_pass``: the operator's pass follows; ``answer``: and then the check pod ends
        finding these products unchanged, and another pass follows.)"""
        self.w.skip_unchanged = True
        if then_pass:
            self.w.operator_pass()
            self.check_answers(answer)

    def check_answers(self, answer: set[str] | None) -> None:
        w = self.w
        running = [c for c in w.checks.values() if c.state == "running" and c.configmap in w.configmaps]
        if answer is not None and running:
            w.check_pod_ends(running[0], answer & set(w.configmaps[running[0].configmap][1]))
            w.operator_pass()

    @rule()
    def garbage_collector_removes_orphans(self) -> None:
        """ConfigMaps and check Jobs of a deleted TrainingJob go (some time after it)."""
        w = self.w
        w.configmaps = {n: c for n, c in w.configmaps.items() if c[0] == w.uid}
        w.checks = {n: c for n, c in w.checks.items() if c.owner == w.uid}

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
        gone = [c.name for c in self.w.checks.values() if c.deleting]
        if gone:
            del self.w.checks[self._pick(data, gone)]

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

    @rule(
        data=st.data(),
        swap=st.booleans(),
        checks_go=st.booleans(),
        then_pass=st.booleans(),
        answer=st.none() | st.sets(st.sampled_from(POOL)),
    )
    def user_recreates_the_trainingjob(
        self, data: Any, swap: bool, checks_go: bool, then_pass: bool, answer: set[str] | None
    ) -> None:
        """kubectl delete + apply of the same name (maybe with one product swapped for another, as
        the CRD's message for a products change suggests): a new uid and an empty status; the old
        Jobs are garbage (deleting, their pods still finishing; ``checks_go``: its check Jobs are
        gone already), the old Leases gone with their owner; its ConfigMaps stay until the garbage
        collector comes."""
        w = self.w
        for job in [*w.jobs.values(), *w.checks.values()]:
            if job.owner == w.uid:
                job.deleting = True
        if checks_go:
            w.checks = {n: c for n, c in w.checks.items() if c.owner != w.uid}
        w.leases = {n: x for n, x in w.leases.items() if x.holder != w.me()}
        if swap:
            out = self._pick(data, w.products)
            into = self._pick(data, [p for p in POOL if p not in w.products])
            w.products = [into if p == out else p for p in w.products]
        w.uid, w.status, w.retry = f"uid-{w.next_rv()}", TrainingJobStatus(), ""
        if then_pass:  # the new TrainingJob's first pass (and maybe its check's answer)
            w.operator_pass()
            self.check_answers(answer)

    @rule(data=st.data())
    def old_deleting_job_pod_finishes(self, data: Any) -> None:
        """A deleting Job's pod may still finish (and succeed) before it goes: a stale pod."""
        deleting = [j for j in self.w.jobs.values() if j.deleting and j.unfinished and not self._has_pod(j)]
        if deleting:
            self.w.finish(self._pick(data, deleting), 0)

    @rule(data=st.data())
    def another_trainingjob_starts_a_product(self, data: Any) -> None:
        """Another TrainingJob (its operator plays by the rules: free Lease, no unfinished Job)."""
        w = self.w
        product = self._pick(data, POOL)
        lease = w.leases.get(builders.lease_name(product))
        if lease is not None and lease.renew + timedelta(seconds=60) >= w.now:
            return
        if any(j.product == product and j.unfinished for j in w.jobs.values()):
            return
        w.leases[builders.lease_name(product)] = Lease(product, f"{NS}/other/{FOREIGN}", w.now, w.next_rv())
        name = f"other-{builders.product_hash(product)}"
        if name not in w.jobs:
            w.jobs[name] = Job(name, f"job-{next(_ids)}", FOREIGN, product, "")

    @rule(data=st.data())
    def someone_deletes_one_of_our_leases(self, data: Any) -> None:
        """``kubectl delete lease`` or a GitOps prune, while the product's Job may run or wait: the
        next pass claims it again (d), and no other TrainingJob starts the product meanwhile (a)."""
        ours = sorted(n for n, x in self.w.leases.items() if x.holder == self.w.me())
        if ours:
            del self.w.leases[self._pick(data, ours)]

    @rule(data=st.data())
    def a_foreign_lease_vanishes(self, data: Any) -> None:
        """Its TrainingJob deleted (GC took the Lease) while its Job still runs."""
        foreign = [n for n, x in self.w.leases.items() if x.holder != self.w.me()]
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
                        w.finish(job, 0)
            for check in list(w.checks.values()):
                if check.deleting or check.owner != w.uid:
                    del w.checks[check.name]
                elif check.state == "running" and check.configmap in w.configmaps:
                    w.check_pod_ends(check, set())
            w.configmaps = {n: c for n, c in w.configmaps.items() if c[0] == w.uid}
            for name, lease in list(w.leases.items()):
                # The other TrainingJob's operator releases a Lease once its product is done; one
                # that shares its name with a product of ours (a collision) is never taken over.
                done = not any(j.product == lease.product and j.unfinished for j in w.jobs.values())
                shared = any(builders.lease_name(p) == name and p != lease.product for p in w.products)
                if lease.holder != w.me() and done and shared:
                    del w.leases[name]
            w.now += timedelta(seconds=61)
            succeeded, failed = read_record(w.tj())
            if len(succeeded | failed) == len(w.products) and w.status.phase in ("Succeeded", "Failed"):
                break
        succeeded, failed = read_record(w.tj())
        assert succeeded | failed == set(w.products), f"lost: {set(w.products) - succeeded - failed}"
        assert w.status.products.succeeded + w.status.products.failed == len(w.products)


ReconcileModel.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReconcileModel = ReconcileModel.TestCase

_REAL_PRODUCT_HASH = builders.product_hash


def weak_product_hash(product: str, salt: int = 0) -> str:
    """Two buckets for the plain hash: every other pair of ids collides (salted names stay strong)."""
    if salt == 0:
        return str(hashlib.sha256(product.encode()).digest()[0] % 2) * 10
    return _REAL_PRODUCT_HASH(product, salt)


class CollidingReconcileModel(ReconcileModel):
    """The same model, with product ids whose hash collides: Job names and Lease names are shared
    by products (issue 18, point 3). No product may stall: every one still ends on record."""

    def __init__(self) -> None:
        builders.product_hash = weak_product_hash  # type: ignore[assignment]
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            builders.product_hash = _REAL_PRODUCT_HASH


CollidingReconcileModel.TestCase.settings = settings(
    max_examples=400, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCollidingReconcileModel = CollidingReconcileModel.TestCase
