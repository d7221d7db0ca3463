"""One scheduler pass: read the TrainingSchedule and its runs -> pure decision -> act -> status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from trainingjob_operator import metrics
from trainingjob_operator.actions import Event
from trainingjob_operator.controller import EventPoster
from trainingjob_operator.kube import Conflict, Kube, KubeError, is_transient
from trainingjob_operator.observe import controller_uid
from trainingjob_operator.schedule import (
    LABEL_SCHEDULE,
    CreateRun,
    DeleteRun,
    SchedulePlan,
    parse_run,
    reconcile_schedule,
    run_rejected,
    schedule_label,
)
from trainingjob_operator.schedule_api import TrainingSchedule


async def schedule_pass(
    kube: Kube,
    namespace: str,
    name: str,
    post_event: EventPoster,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SchedulePlan:
    """Runs are created and deleted before the status write: a pass whose write is lost (a restart at
    the scheduled minute) finds its run by name next time instead of creating another."""
    ts = TrainingSchedule.model_validate(await kube.get_schedule(namespace, name))
    children = await kube.list_trainingjobs(namespace, f"{LABEL_SCHEDULE}={schedule_label(ts.name)}")
    runs = [parse_run(c) for c in children if controller_uid(c) == ts.uid]
    now = clock()
    plan = reconcile_schedule(ts, runs, now)
    refused: list[Event] = []
    for action in plan.actions:
        if isinstance(action, CreateRun):
            try:
                await kube.create_trainingjob(namespace, action.body)
            except Conflict:
                pass  # created by an earlier pass (its status write was lost)
            except KubeError as exc:
                if is_transient(exc):
                    raise  # the pass is retried soon, the scheduled time still unmet
                refused.append(run_rejected(plan, ts, action.name, str(exc), now))
        elif isinstance(action, DeleteRun):
            await kube.delete_trainingjob(namespace, action.name, action.uid)
    new_status = plan.status.model_dump(by_alias=True, mode="json")
    if new_status != ts.status.model_dump(by_alias=True, mode="json"):
        await kube.patch_schedule_status(namespace, name, new_status)
    for action in [*plan.actions, *refused]:
        if isinstance(action, Event):
            post_event(action.type, action.reason, action.message)
    created = ts.metadata.get("creationTimestamp")
    metrics.observe_schedule(namespace, name, created, plan.status.last_successful_time, ts.spec.suspend)
    return plan
