"""One reconcile pass: observe -> pure decision -> apply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trainingjob_operator import builders, leases, metrics
from trainingjob_operator.actions import CreateDiscovery, CreateShardRound, PatchJob
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.kube import Conflict, Kube, KubeError, NotFound, Obj, is_quota_exceeded, is_transient
from trainingjob_operator.observe import gather, is_product_job
from trainingjob_operator.reconcile import (
    Action,
    CreateUnchangedCheck,
    DeleteJob,
    Event,
    Launch,
    Observed,
    Plan,
    ReclaimLease,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
    Settings,
    read_record,
    reconcile,
)

log = logging.getLogger("trainingjob_operator")

EventPoster = Callable[[str, str, str], None]
"""(type, reason, message) -> posts a Kubernetes Event on the TrainingJob."""


Observe = Callable[[TrainingJob, set[str], dict[str, str]], Awaitable[Observed]]
"""(TrainingJob, recorded products, refused launches) -> reconcile inputs (watch caches, or the API)."""


@dataclass
class Outcomes:
    """What the API answered to this pass's launches (the only inputs not readable from the API later)."""

    created: list[str] = field(default_factory=list)
    """Products whose Job was created."""
    created_names: list[str] = field(default_factory=list)
    """Their Jobs' names."""
    rejected: dict[str, str] = field(default_factory=dict)
    quota_exceeded: dict[str, str] = field(default_factory=dict)
    """Products whose Job create a ResourceQuota refused (transient: quota.QuotaBackoff)."""


@dataclass
class PassResult:
    plan: Plan
    status_written: bool
    finished: bool
    active: int
    read: Obj | None = None
    """The TrainingJob as this pass read it from the API (None when the caller supplied it)."""
    written: Obj | None = None
    """The TrainingJob as returned by this pass's status write (None when nothing was written)."""

    @property
    def created_jobs(self) -> set[str]:
        return set(self.outcomes.created_names)

    @property
    def released_leases(self) -> set[str]:
        return {a.lease.name for a in self.plan.actions if isinstance(a, ReleaseLease)}

    tj_name: str = ""
    outcomes: Outcomes = field(default_factory=Outcomes)
    recorded: set[str] = field(default_factory=set)
    """Products on record (succeeded or failed) after this pass."""


def _early(action: Action) -> bool:
    """Actions that need no status on record first: they can go out with the status write."""
    return isinstance(action, Launch | RenewLease | ReclaimLease)


def status_dict(plan: Plan) -> dict[str, Any]:
    return plan.status.model_dump(by_alias=True, mode="json")


async def _launch(
    kube: Kube, tj: TrainingJob, plan: Plan, action: Launch, now: datetime, settings: Settings, outcomes: Outcomes
) -> None:
    """Take the product's Lease only for a Job that gets created: release it when creation fails."""
    ns = tj.namespace
    if not await leases.acquire(kube, tj, action.product, now, settings.lease_duration_seconds, action.takeover):
        metrics.LEASE_WAITS.inc()
        return
    body = builders.build_job(tj, action.product, plan.status.retry_failed or "", action.job_name or None)
    try:
        await kube.create_job(ns, body)
    except Conflict:
        # Created by an earlier pass whose effect we had not observed yet; or the name is taken by
        # another TrainingJob's Job (a re-created TrainingJob of the same name) or by a Job of
        # another product (a hash collision: the next pass picks a salted name): not ours to hold.
        try:
            existing = await kube.get_job(ns, body["metadata"]["name"])
        except NotFound:
            existing = None
        if existing is not None and is_product_job(existing, tj.uid, action.product):
            return
        await leases.release_product(kube, tj, action.product)
        return
    except KubeError as exc:
        await leases.release_product(kube, tj, action.product)
        if is_quota_exceeded(exc):
            outcomes.quota_exceeded[action.product] = str(exc)[:900]
        elif not is_transient(exc):
            outcomes.rejected[action.product] = f"the API server refused the product Job ({exc.status}): {exc}"[:900]
        raise
    metrics.JOBS_LAUNCHED.inc()
    outcomes.created.append(action.product)
    outcomes.created_names.append(body["metadata"]["name"])


async def _act(
    kube: Kube, tj: TrainingJob, plan: Plan, action: Action, now: datetime, settings: Settings, outcomes: Outcomes
) -> None:
    ns = tj.namespace
    if isinstance(action, Launch):
        await _launch(kube, tj, plan, action, now, settings, outcomes)
    elif isinstance(action, RenewLease):
        await leases.renew(kube, tj, action.lease, now)
    elif isinstance(action, ReleaseLease):
        await leases.release(kube, tj, action.lease)
    elif isinstance(action, ReclaimLease):
        if await leases.acquire(kube, tj, action.product, now, settings.lease_duration_seconds, None):
            log.info("%s/%s: re-created the Lease of %s for its unfinished Job", ns, tj.name, action.product)
    elif isinstance(action, DeleteJob):
        await kube.delete_job(ns, action.name, uid=action.uid)
    elif isinstance(action, SetJobTTL):
        await kube.patch_job(ns, action.name, {"spec": {"ttlSecondsAfterFinished": action.seconds}})
    elif isinstance(action, CreateShardRound):
        await _create_all(kube, ns, builders.shard_round_objects(tj, action.round, action.suspend))
    elif isinstance(action, CreateDiscovery):
        await _create_all(kube, ns, [builders.build_discovery_job(tj)])
    elif isinstance(action, PatchJob):
        # The uid in the patch is a precondition: a Job re-created under the name is refused (422).
        await kube.patch_job(ns, action.name, {"metadata": {"uid": action.uid}, **action.patch})
    elif isinstance(action, CreateUnchangedCheck):
        for create, body in (
            (kube.create_configmap, builders.build_plan_configmap(tj)),
            (kube.create_job, builders.build_plan_job(tj, action.retry_round)),
        ):
            try:
                await create(ns, body)
            except Conflict:
                pass  # made by an earlier pass


async def _create_all(kube: Kube, namespace: str, bodies: list[dict[str, Any]]) -> None:
    """Create ConfigMaps and Jobs in order; one that exists already (an earlier pass's) is fine."""
    for body in bodies:
        create = kube.create_configmap if body["kind"] == "ConfigMap" else kube.create_job
        try:
            await create(namespace, body)
        except Conflict:
            pass


async def apply(
    kube: Kube,
    tj: TrainingJob,
    plan: Plan,
    now: datetime,
    settings: Settings,
    actions: list[Action],
    outcomes: Outcomes | None = None,
) -> None:
    """Carry out ``actions`` (API actions of ``plan``) concurrently, bounded.

    Actions of one plan are independent of each other (each touches one product's Lease
    and/or Job), so their order does not matter; launches still go out in product order.
    """
    semaphore = asyncio.Semaphore(settings.max_concurrent_actions)
    out = outcomes if outcomes is not None else Outcomes()

    async def guarded(action: Action) -> None:
        async with semaphore:
            try:
                await _act(kube, tj, plan, action, now, settings, out)
            except KubeError as exc:
                metrics.RECONCILE_ERRORS.labels(kind=type(action).__name__).inc()
                log.warning("%s/%s: %s failed: %s", tj.namespace, tj.name, type(action).__name__, exc)

    await asyncio.gather(*(guarded(a) for a in actions if not isinstance(a, Event)))


def launched_event(outcomes: Outcomes) -> Event | None:
    """One "Launched" event for the Jobs that were created (never for launches that did not happen)."""
    created = outcomes.created
    if not created:
        return None
    shown = ", ".join(created[:5]) + (f" and {len(created) - 5} more" if len(created) > 5 else "")
    return Event("Normal", "Launched", f"Started {len(created)} product Job(s): {shown}")


def quota_event(outcomes: Outcomes) -> Event | None:
    """One Warning for the launches a ResourceQuota refused (each refused attempt; they back off)."""
    refused = outcomes.quota_exceeded
    if not refused:
        return None
    message = next(iter(refused.values()))
    return Event(
        "Warning",
        "QuotaExceeded",
        f"a ResourceQuota refused {len(refused)} product Job(s); they wait and launches back off: {message}"[:1024],
    )


def post_events(plan: Plan, outcomes: Outcomes, post_event: EventPoster) -> None:
    extra = [e for e in (launched_event(outcomes), quota_event(outcomes)) if e is not None]
    for action in [*plan.actions, *extra]:
        if isinstance(action, Event):
            post_event(action.type, action.reason, action.message)


async def reconcile_once(
    kube: Kube,
    namespace: str,
    name: str,
    post_event: EventPoster,
    observe: Observe | None = None,
    settings: Settings = Settings(),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    current: Obj | None = None,
    rejected: dict[str, str] | None = None,
) -> PassResult:
    """Observe, decide, act, write status if it changed.

    ``current`` is the TrainingJob as last watched, given only when it includes this operator's
    last status write (freshness.py): its status is the durable record and must not be stale.
    Without it the TrainingJob is read from the API. Children come from ``observe`` (the caches).
    """
    started = time.perf_counter()
    read = None if current is not None else await kube.get_trainingjob(namespace, name)
    raw = current if current is not None else read
    assert raw is not None
    tj = TrainingJob.model_validate(raw)
    succeeded, failed = read_record(tj)
    observed = await (observe or (lambda t, r, x: gather(kube, t, r, x)))(tj, succeeded | failed, rejected or {})
    now = clock()
    plan = reconcile(tj, observed, now, settings)
    # What a pass folded in (finished products) must be on record before any action that depends
    # on it (releasing Leases, TTL on finished Jobs, deleting Jobs); launches and renewals need
    # nothing on record, so they go out together with the status write.
    new_status = status_dict(plan)
    old_status = tj.status.model_dump(by_alias=True, mode="json")
    written: Obj | None = None

    async def write_status() -> None:
        nonlocal written
        if new_status != old_status:
            written = await kube.patch_trainingjob_status(namespace, name, new_status)

    early = [a for a in plan.actions if _early(a)]
    outcomes = Outcomes()
    await asyncio.gather(write_status(), apply(kube, tj, plan, now, settings, early, outcomes))
    await apply(kube, tj, plan, now, settings, [a for a in plan.actions if not _early(a)], outcomes)
    post_events(plan, outcomes, post_event)
    st = plan.status
    uncertain = st.results.uncertain if st.results is not None else 0
    metrics.observe_products(namespace, name, st.products.model_dump(), uncertain)
    metrics.observe_pass(namespace, name, st.phase, plan.waiting, plan.new_failures)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    return PassResult(
        plan=plan,
        status_written=written is not None,
        read=read,
        written=written,
        finished=st.phase in ("Succeeded", "Failed"),
        active=st.products.active,
        tj_name=name,
        outcomes=outcomes,
        recorded=set().union(*read_record(tj.model_copy(update={"status": plan.status}))),
    )
