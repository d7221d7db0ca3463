"""Pure scheduler: (TrainingSchedule, its runs, now) -> actions + new status.

Modelled on the CronJob controller (pkg/controller/cronjob, v2): the most recent unmet scheduled
time since ``lastScheduleTime`` is the only candidate (missed runs never storm: at most one
catch-up, and only within ``startingDeadlineSeconds``); a run's name is derived from its scheduled
time (``<schedule>-<unix minutes>``), so a restart or a leader failover at the scheduled minute
finds the run it may already have created and neither skips nor doubles it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from trainingjob_operator import api, builders
from trainingjob_operator.actions import Event
from trainingjob_operator.api import TrainingJobStatus
from trainingjob_operator.reasons import Reason
from trainingjob_operator.schedule_api import RunReference, SkippedRun, TrainingSchedule, TrainingScheduleStatus
from trainingjob_operator.status import get_condition, set_condition

LABEL_SCHEDULE = builders.LABEL_SCHEDULE
ANNOTATION_SCHEDULED_TIME = f"{api.GROUP}/scheduled-time"
ANNOTATION_RUN_NOW = f"{api.GROUP}/run-now"
MAX_MISSED = 100
"""Like CronJob: past this many missed start times, say so (an Event) instead of counting on."""
SCHEDULE_CONDITIONS = ("Ready", "Suspended", "InvalidSchedule", "Stalled")


@dataclass(frozen=True)
class Run:
    """A TrainingJob created by the schedule (controller ownerReference to it)."""

    name: str
    uid: str
    scheduled_time: datetime | None
    phase: str | None
    completion_time: datetime | None = None
    deleting: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class CreateRun:
    name: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteRun:
    name: str
    uid: str


ScheduleAction = CreateRun | DeleteRun | Event


@dataclass(frozen=True)
class SchedulePlan:
    actions: list[ScheduleAction]
    status: TrainingScheduleStatus
    next_time: datetime | None
    """When the next run is due (the caller wakes up then)."""


class InvalidSchedule(ValueError):
    """The schedule or time zone cannot be evaluated."""


def fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def zone(ts: TrainingSchedule) -> ZoneInfo:
    name = ts.spec.time_zone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(f"unknown time zone {name!r}") from exc


def check_schedule(ts: TrainingSchedule) -> ZoneInfo:
    tz = zone(ts)
    if not croniter.is_valid(ts.spec.schedule):
        raise InvalidSchedule(f"{ts.spec.schedule!r} is not a valid cron schedule")
    return tz


def wall_clock(t: datetime, tz: ZoneInfo) -> datetime:
    """``t`` as the local wall clock shows it (naive): 02:30 CEST and 02:30 CET read the same."""
    return t.astimezone(tz).replace(tzinfo=None)


def unmet_times(ts: TrainingSchedule, since: datetime, now: datetime) -> tuple[datetime | None, int, datetime]:
    """(the most recent scheduled time in (since, now], how many there were (capped), the next one).

    A time whose local wall clock is not later than the previous one's (``since`` included) is no
    scheduled time: when clocks fall back (DST ends), the repeated hour's times already ran on the
    wall clock, and a daily ``30 2 * * *`` runs once, not twice (as vixie cron; docs/schedules.md)."""
    tz = check_schedule(ts)
    it = croniter(ts.spec.schedule, since.astimezone(tz))
    latest: datetime | None = None
    missed = 0
    last_wall = wall_clock(since, tz)
    while True:
        t = it.get_next(datetime).astimezone(UTC)
        wall = wall_clock(t, tz)
        if wall <= last_wall:
            continue  # the repeated hour after a fall-back: this wall-clock time has run already
        last_wall = wall
        if t > now:
            return latest, missed, t
        latest, missed = t, missed + 1
        if missed > MAX_MISSED:
            # Too many to walk: jump to the last one before now (as CronJob's mostRecentScheduleTime).
            back = croniter(ts.spec.schedule, now.astimezone(tz)).get_prev(datetime).astimezone(UTC)
            nxt = croniter(ts.spec.schedule, now.astimezone(tz)).get_next(datetime).astimezone(UTC)
            return back, missed, nxt


def schedule_label(name: str) -> str:
    """Value of the run label ``training.forecast.dev/schedule`` (a valid label value for any name
    a schedule stored before the 52-character cap may have)."""
    return builders.label_value(name)


def run_name(ts: TrainingSchedule, scheduled: datetime) -> str:
    """``<schedule>-<unix minutes>``, like a CronJob's Jobs."""
    return f"{ts.name}-{int(scheduled.timestamp()) // 60}"


def manual_run_name(ts: TrainingSchedule, value: str) -> str:
    return f"{ts.name}-manual-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def build_run(ts: TrainingSchedule, name: str, scheduled: datetime | None) -> dict[str, Any]:
    """The TrainingJob of one run (pure): the template, owned by the schedule, skipUnchanged on by default."""
    tmpl = ts.spec.training_job_template
    spec = tmpl.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not spec.get("products"):
        spec.pop("products", None)  # allProducts: the run names no list
    if tmpl.spec.skip_unchanged is None:
        spec["skipUnchanged"] = True
    annotations = dict(tmpl.metadata.annotations or {})
    if scheduled is not None:
        annotations[ANNOTATION_SCHEDULED_TIME] = fmt(scheduled)
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": name,
            "namespace": ts.namespace,
            "labels": {
                **builders.recommended_labels("trainingschedule", ts.name, "run"),
                **(tmpl.metadata.labels or {}),
                LABEL_SCHEDULE: schedule_label(ts.name),
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": "TrainingSchedule",
                    "name": ts.name,
                    "uid": ts.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def parse_run(tj: dict[str, Any]) -> Run:
    meta = tj.get("metadata") or {}
    status = TrainingJobStatus.model_validate(tj.get("status") or {})
    return Run(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        scheduled_time=parse((meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME))
        or parse(meta.get("creationTimestamp")),
        phase=status.phase,
        completion_time=parse(status.completion_time),
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass
class _Pass:
    ts: TrainingSchedule
    runs: list[Run]
    now: datetime
    status: TrainingScheduleStatus
    actions: list[ScheduleAction] = field(default_factory=list)

    @property
    def stamp(self) -> str:
        return fmt(self.now)

    def condition(self, type_: str, value: bool, reason: Reason, message: str = "") -> None:
        self.status.conditions = _ordered(
            set_condition(self.status.conditions, type_, value, reason, message, self.stamp, self.ts.generation)
        )


def _ordered(conds: list[api.Condition]) -> list[api.Condition]:
    order = {t: i for i, t in enumerate(SCHEDULE_CONDITIONS)}
    return sorted(conds, key=lambda c: order.get(c.type, len(order)))


def observe_runs(p: _Pass) -> list[Run]:
    """Active runs and the last success, from the runs themselves."""
    active = [r for r in p.runs if not r.finished and not r.deleting]
    p.status.active = [RunReference(name=r.name, uid=r.uid) for r in sorted(active, key=lambda r: r.name)]
    p.status.active_count = len(active)
    done = [r.completion_time for r in p.runs if r.phase == "Succeeded" and r.completion_time]
    last = parse(p.status.last_successful_time)
    if done and (last is None or max(done) > last):
        p.status.last_successful_time = fmt(max(done))
    return active


def manual_run(p: _Pass) -> None:
    """``training.forecast.dev/run-now=<new value>``: one run now (like ``kubectl create job --from=cronjob``)."""
    value = p.ts.annotations.get(ANNOTATION_RUN_NOW, "")
    if not value or value == p.status.last_run_now:
        return
    name = manual_run_name(p.ts, value)
    if all(r.name != name for r in p.runs):
        p.actions.append(CreateRun(name, build_run(p.ts, name, p.now)))
        p.actions.append(Event("Normal", "RunNow", f"Started manual run {name}"))
    p.status.last_run_now = value


def skipped(p: _Pass, scheduled: datetime, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
    """A due time not started: its Event once per (time, reason), not on every pass while it is
    blocked (status.lastSkipped remembers it)."""
    last = p.status.last_skipped
    if last is None or last.scheduled_time != fmt(scheduled) or last.reason != reason:
        p.actions.append(Event(type_, reason, message))
    p.status.last_skipped = SkippedRun(scheduled_time=fmt(scheduled), reason=reason)


def scheduled_run(p: _Pass, active: list[Run]) -> datetime | None:
    """Start the most recent unmet scheduled run if due and allowed; returns the next scheduled time."""
    ts = p.ts
    since = parse(p.status.last_schedule_time) or parse(ts.metadata.get("creationTimestamp")) or p.now
    latest, missed, nxt = unmet_times(ts, since, p.now)
    if latest is None or ts.spec.suspend:
        return nxt
    if missed > MAX_MISSED:
        p.actions.append(
            Event("Warning", "TooManyMissedTimes", f"more than {MAX_MISSED} missed start times; starting the latest")
        )
    deadline = ts.spec.starting_deadline_seconds
    if deadline is not None and (p.now - latest) > timedelta(seconds=deadline):
        message = f"missed the run of {fmt(latest)}: not started within {deadline} s"
        skipped(p, latest, "Warning", "MissSchedule", message)
        return nxt
    name = run_name(ts, latest)
    if any(r.name == name for r in p.runs):
        p.status.last_schedule_time = fmt(latest)  # started earlier (a pass whose status write was lost)
        return nxt
    others = [r for r in active if r.name != name]
    if others and ts.spec.concurrency_policy == "Forbid":
        message = f"not starting the run of {fmt(latest)}: {others[0].name} still runs"
        skipped(p, latest, "Normal", "RunAlreadyActive", message)
        return nxt
    if others and ts.spec.concurrency_policy == "Replace":
        for r in others:
            p.actions.append(DeleteRun(r.name, r.uid))
        p.actions.append(Event("Normal", "RunReplaced", f"deleted {', '.join(r.name for r in others)}"))
    p.actions.append(CreateRun(name, build_run(ts, name, latest)))
    p.actions.append(Event("Normal", "RunStarted", f"Started run {name} for {fmt(latest)}"))
    p.status.last_schedule_time = fmt(latest)
    return nxt


def prune_history(p: _Pass) -> None:
    """Delete the oldest finished runs past the history limits (their models stay in the database)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    for phase, limit in (
        ("Succeeded", p.ts.spec.successful_runs_history_limit),
        ("Failed", p.ts.spec.failed_runs_history_limit),
    ):
        done = sorted(
            (r for r in p.runs if r.phase == phase and not r.deleting),
            key=lambda r: (r.scheduled_time or epoch, r.name),
            reverse=True,
        )
        for r in done[limit:]:
            p.actions.append(DeleteRun(r.name, r.uid))


def conditions(p: _Pass, invalid: str | None) -> None:
    """Ready (valid and not suspended), Suspended, InvalidSchedule, and Stalled (True with
    InvalidSchedule: kstatus-based tools then read the schedule as Failed)."""
    if invalid is not None:
        p.condition("InvalidSchedule", True, Reason.INVALID_SCHEDULE, invalid)
        p.condition("Ready", False, Reason.INVALID_SCHEDULE, invalid)
        p.condition("Stalled", True, Reason.INVALID_SCHEDULE, invalid)
        prev = get_condition(p.ts.status.conditions, "InvalidSchedule")
        if prev is None or prev.status != "True":
            p.actions.append(Event("Warning", "InvalidSchedule", invalid))
        return
    if get_condition(p.status.conditions, "InvalidSchedule") is not None:
        p.condition("InvalidSchedule", False, Reason.VALID_SCHEDULE)
    rejected = get_condition(p.ts.status.conditions, "Stalled")
    creating = any(isinstance(a, CreateRun) for a in p.actions)
    if (
        rejected is not None
        and rejected.status == "True"
        and rejected.reason == Reason.RUN_REJECTED
        and rejected.observed_generation == p.ts.generation
        and not creating
    ):
        # The last run was refused; nothing changed since: still needs a person (or the next time).
        p.condition("Stalled", True, Reason.RUN_REJECTED, rejected.message)
        p.condition("Ready", False, Reason.RUN_REJECTED, rejected.message)
        return
    p.condition("Stalled", False, Reason.VALID_SCHEDULE)
    suspended = p.ts.spec.suspend
    p.condition("Suspended", suspended, Reason.SUSPENDED_BY_USER if suspended else Reason.NOT_SUSPENDED)
    if suspended:
        p.condition("Ready", False, Reason.SUSPENDED, "no new runs start")
    else:
        p.condition("Ready", True, Reason.SCHEDULED, f"next run {p.status.next_schedule_time}")


def run_rejected(plan: SchedulePlan, ts: TrainingSchedule, name: str, message: str, now: datetime) -> Event:
    """The API server refused a run this plan created (a 422: an invalid template, an admission
    policy): Stalled and not Ready until a later run is created or the spec changes. The scheduled
    time stays handled (lastScheduleTime), so no pass retries the refused create in a loop."""
    text = f"the API server refused run {name}: {message}"[:1024]
    for type_, value in (("Stalled", True), ("Ready", False)):
        plan.status.conditions = _ordered(
            set_condition(plan.status.conditions, type_, value, Reason.RUN_REJECTED, text, fmt(now), ts.generation)
        )
    return Event("Warning", Reason.RUN_REJECTED.value, text)


def reconcile_schedule(ts: TrainingSchedule, runs: list[Run], now: datetime) -> SchedulePlan:
    p = _Pass(ts=ts, runs=runs, now=now, status=ts.status.model_copy(deep=True))
    # 1. What runs, and the last success.
    active = observe_runs(p)
    # 2. A manual run asked for with the run-now annotation.
    manual_run(p)
    # 3. The scheduled run, if due and allowed by suspend, the starting deadline and the concurrency policy.
    invalid: str | None = None
    nxt: datetime | None = None
    try:
        nxt = scheduled_run(p, active)
    except InvalidSchedule as exc:
        invalid = str(exc)
    p.status.next_schedule_time = fmt(nxt) if nxt is not None and not ts.spec.suspend else None
    # 4. History limits.
    prune_history(p)
    # 5. Conditions.
    conditions(p, invalid)
    p.status.observed_generation = ts.generation
    return SchedulePlan(actions=p.actions, status=p.status, next_time=nxt)
