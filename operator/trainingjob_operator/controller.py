"""One reconcile pass: observe -> pure decision -> apply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trainingjob_operator import builders, leases, metrics
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.builders import job_name
from trainingjob_operator.kube import Conflict, Kube, KubeError, Obj
from trainingjob_operator.observe import gather
from trainingjob_operator.reconcile import (
    Action,
    DeleteJob,
    Event,
    Launch,
    Observed,
    Plan,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
    Settings,
    reconcile,
)
from trainingjob_operator.status import parse_indexes

log = logging.getLogger("trainingjob_operator")

EventPoster = Callable[[str, str, str], None]
"""(type, reason, message) -> posts a Kubernetes Event on the TrainingJob."""


Observe = Callable[[TrainingJob, set[int]], Awaitable[Observed]]
"""(TrainingJob, recorded product indexes) -> reconcile inputs (from the watch caches, or the API)."""


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
        return {job_name(self.tj_name, a.product) for a in self.plan.actions if isinstance(a, Launch)}

    @property
    def released_leases(self) -> set[str]:
        return {a.lease.name for a in self.plan.actions if isinstance(a, ReleaseLease)}

    tj_name: str = ""


def _early(action: Action) -> bool:
    """Actions that need no status on record first: they can go out with the status write."""
    return isinstance(action, Launch | RenewLease)


def status_dict(plan: Plan) -> dict[str, Any]:
    return plan.status.model_dump(by_alias=True, mode="json")


async def _act(kube: Kube, tj: TrainingJob, plan: Plan, action: Action, now: datetime, settings: Settings) -> None:
    ns = tj.namespace
    if isinstance(action, Launch):
        if not await leases.acquire(kube, tj, action.product, now, settings.lease_duration_seconds, action.takeover):
            metrics.LEASE_WAITS.inc()
            return
        try:
            await kube.create_job(ns, builders.build_job(tj, action.index, plan.status.retry_failed or ""))
            metrics.JOBS_LAUNCHED.inc()
        except Conflict:
            pass  # already created by an earlier pass whose effect we had not observed yet
    elif isinstance(action, RenewLease):
        await leases.renew(kube, tj, action.lease, now)
    elif isinstance(action, ReleaseLease):
        await leases.release(kube, tj, action.lease)
    elif isinstance(action, DeleteJob):
        await kube.delete_job(ns, action.name)
    elif isinstance(action, SetJobTTL):
        await kube.patch_job(ns, action.name, {"spec": {"ttlSecondsAfterFinished": action.seconds}})


async def apply(
    kube: Kube,
    tj: TrainingJob,
    plan: Plan,
    now: datetime,
    settings: Settings,
    actions: list[Action],
) -> None:
    """Carry out ``actions`` (API actions of ``plan``) concurrently, bounded.

    Actions of one plan are independent of each other (each touches one product's Lease
    and/or Job), so their order does not matter; launches still go out in product order.
    """
    semaphore = asyncio.Semaphore(settings.max_concurrent_actions)

    async def guarded(action: Action) -> None:
        async with semaphore:
            try:
                await _act(kube, tj, plan, action, now, settings)
            except KubeError as exc:
                metrics.RECONCILE_ERRORS.labels(kind=type(action).__name__).inc()
                log.warning("%s/%s: %s failed: %s", tj.namespace, tj.name, type(action).__name__, exc)

    await asyncio.gather(*(guarded(a) for a in actions if not isinstance(a, Event)))


def post_events(plan: Plan, post_event: EventPoster) -> None:
    for action in plan.actions:
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
    folded = parse_indexes(tj.status.succeeded_indexes) | parse_indexes(tj.status.failed_indexes)
    observed = await (observe or (lambda t, f: gather(kube, t, f)))(tj, folded)
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
    await asyncio.gather(write_status(), apply(kube, tj, plan, now, settings, early))
    await apply(kube, tj, plan, now, settings, [a for a in plan.actions if not _early(a)])
    post_events(plan, post_event)
    st = plan.status
    metrics.observe_products(namespace, name, st.products.model_dump())
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    return PassResult(
        plan=plan,
        status_written=written is not None,
        read=read,
        written=written,
        finished=st.phase in ("Succeeded", "Failed"),
        active=st.products.active,
        tj_name=name,
    )
