"""The pure scheduler (schedule.py), CronJob semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trainingjob_operator.schedule import (
    ANNOTATION_RUN_NOW,
    CreateRun,
    DeleteRun,
    Run,
    reconcile_schedule,
    run_name,
)
from trainingjob_operator.schedule_api import TrainingSchedule

CREATED = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)


def make_ts(schedule: str = "*/1 * * * *", annotations: dict[str, str] | None = None, **spec: Any) -> TrainingSchedule:
    return TrainingSchedule.model_validate(
        {
            "metadata": {
                "name": "nightly",
                "namespace": "shop",
                "uid": "ts-uid",
                "generation": 1,
                "creationTimestamp": "2026-11-23T08:00:30Z",
                "annotations": annotations or {},
            },
            "spec": {
                "schedule": schedule,
                "trainingJobTemplate": {
                    "spec": {"products": ["a"], "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}}}
                },
                **spec,
            },
        }
    )


def creates(plan: Any) -> list[str]:
    return [a.name for a in plan.actions if isinstance(a, CreateRun)]


def test_run_at_the_scheduled_minute_named_by_it_and_owned_by_the_schedule() -> None:
    ts = make_ts()
    assert creates(reconcile_schedule(ts, [], CREATED + timedelta(seconds=20))) == []  # 08:00:50: none due
    now = datetime(2026, 11, 23, 8, 1, 2, tzinfo=UTC)
    plan = reconcile_schedule(ts, [], now)
    expected = run_name(ts, datetime(2026, 11, 23, 8, 1, tzinfo=UTC))
    assert (
        creates(plan) == [expected]
        and expected == f"nightly-{int(datetime(2026, 11, 23, 8, 1, tzinfo=UTC).timestamp()) // 60}"
    )
    body = next(a.body for a in plan.actions if isinstance(a, CreateRun))
    assert body["metadata"]["ownerReferences"][0]["uid"] == "ts-uid"
    assert body["spec"]["skipUnchanged"] is True  # default for scheduled runs
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "trainingschedule",
        "app.kubernetes.io/instance": "nightly",
        "app.kubernetes.io/component": "run",
        "app.kubernetes.io/part-of": "trainingjob-operator",
        "app.kubernetes.io/managed-by": "trainingjob-operator",
        "training.forecast.dev/schedule": "nightly",
    }
    assert plan.status.last_schedule_time == "2026-11-23T08:01:00Z"
    assert plan.next_time == datetime(2026, 11, 23, 8, 2, tzinfo=UTC)


def test_restart_at_the_scheduled_minute_neither_skips_nor_doubles() -> None:
    ts = make_ts()
    now = datetime(2026, 11, 23, 8, 1, 2, tzinfo=UTC)
    name = run_name(ts, datetime(2026, 11, 23, 8, 1, tzinfo=UTC))
    # the run was created, but the status write was lost (operator killed): the run is found, not doubled
    again = reconcile_schedule(ts, [Run(name, "u1", datetime(2026, 11, 23, 8, 1, tzinfo=UTC), "Running")], now)
    assert creates(again) == [] and again.status.last_schedule_time == "2026-11-23T08:01:00Z"


def test_missed_runs_start_only_the_latest_and_respect_the_starting_deadline() -> None:
    ts = make_ts()
    later = datetime(2026, 11, 23, 8, 30, 10, tzinfo=UTC)  # 30 missed minutes
    plan = reconcile_schedule(ts, [], later)
    assert creates(plan) == [run_name(ts, datetime(2026, 11, 23, 8, 30, tzinfo=UTC))]
    strict = make_ts(startingDeadlineSeconds=5)
    plan = reconcile_schedule(strict, [], later)
    assert creates(plan) == [] and any(getattr(a, "reason", "") == "MissSchedule" for a in plan.actions)
    hourly_for_days = make_ts(schedule="* * * * *")
    plan = reconcile_schedule(hourly_for_days, [], CREATED + timedelta(days=3))
    assert len(creates(plan)) == 1 and any(getattr(a, "reason", "") == "TooManyMissedTimes" for a in plan.actions)


def test_concurrency_policies() -> None:
    now = datetime(2026, 11, 23, 8, 2, 1, tzinfo=UTC)
    running = Run("nightly-old", "u-old", datetime(2026, 11, 23, 8, 1, tzinfo=UTC), "Running")
    status = {"lastScheduleTime": "2026-11-23T08:01:00Z"}
    forbid = make_ts().model_copy(update={"status": make_ts().status.model_validate(status)})
    assert creates(reconcile_schedule(forbid, [running], now)) == []
    allow = make_ts(concurrencyPolicy="Allow").model_copy(update={"status": forbid.status})
    assert len(creates(reconcile_schedule(allow, [running], now))) == 1
    replace = make_ts(concurrencyPolicy="Replace").model_copy(update={"status": forbid.status})
    plan = reconcile_schedule(replace, [running], now)
    assert DeleteRun("nightly-old", "u-old") in plan.actions and len(creates(plan)) == 1


def test_suspend_history_limits_and_run_now() -> None:
    now = datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC)
    runs = [
        Run(f"r{i}", f"u{i}", CREATED + timedelta(minutes=i), "Succeeded", CREATED + timedelta(minutes=i, seconds=30))
        for i in range(5)
    ]
    runs += [Run(f"f{i}", f"v{i}", CREATED + timedelta(minutes=i), "Failed") for i in range(3)]
    plan = reconcile_schedule(make_ts(suspend=True), runs, now)
    assert creates(plan) == [] and plan.status.next_schedule_time is None
    deleted = {a.name for a in plan.actions if isinstance(a, DeleteRun)}
    assert deleted == {"r0", "r1", "f0", "f1"}  # keep 3 succeeded, 1 failed (the newest)
    assert plan.status.last_successful_time == "2026-11-23T08:05:00Z"
    manual = make_ts(suspend=True, annotations={ANNOTATION_RUN_NOW: "x1"})
    plan = reconcile_schedule(manual, [], now)
    assert len(creates(plan)) == 1 and plan.status.last_run_now == "x1"
    again = reconcile_schedule(manual.model_copy(update={"status": plan.status}), [], now)
    assert creates(again) == []  # the same value: once


def test_invalid_schedule_or_zone_is_a_condition_not_a_crash() -> None:
    for ts in (make_ts(schedule="61 * * * *"), make_ts(timeZone="Mars/Olympus")):
        plan = reconcile_schedule(ts, [], CREATED + timedelta(hours=1))
        cond = {c.type: c for c in plan.status.conditions}
        assert cond["InvalidSchedule"].status == "True" and cond["Ready"].status == "False" and creates(plan) == []
        assert (cond["Stalled"].status, cond["Stalled"].reason) == ("True", "InvalidSchedule")  # kstatus: Failed
    valid = reconcile_schedule(make_ts(), [], CREATED + timedelta(hours=1)).status.conditions
    assert {c.type: (c.status, c.reason) for c in valid} == {
        "Ready": ("True", "Scheduled"),
        "Suspended": ("False", "NotSuspended"),
        "Stalled": ("False", "ValidSchedule"),
    }


def test_time_zone_and_dst() -> None:
    ts = make_ts(schedule="0 2 * * *", timeZone="Europe/Berlin")
    now = datetime(2026, 11, 24, 1, 0, 5, tzinfo=UTC)  # 02:00:05 in Berlin (UTC+1)
    plan = reconcile_schedule(ts, [], now)
    assert plan.status.last_schedule_time == "2026-11-24T01:00:00Z" and len(creates(plan)) == 1
