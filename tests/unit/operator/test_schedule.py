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


def _events(plan: Any, reason: str) -> int:
    return sum(1 for a in plan.actions if getattr(a, "reason", "") == reason)


def _after(ts: TrainingSchedule, plan: Any) -> TrainingSchedule:
    return ts.model_copy(update={"status": plan.status})


def test_dst_fall_back_runs_a_daily_schedule_once() -> None:
    """30 2 * * * in Europe/Berlin on 2026-10-25: 02:30 CEST (00:30Z) and 02:30 CET (01:30Z) are one
    wall-clock time; the second is no scheduled time (vixie cron)."""
    ts = make_ts(schedule="30 2 * * *", timeZone="Europe/Berlin").model_copy(
        update={"status": make_ts().status.model_validate({"lastScheduleTime": "2026-10-24T00:30:00Z"})}
    )
    first = reconcile_schedule(ts, [], datetime(2026, 10, 25, 0, 30, 5, tzinfo=UTC))
    assert first.status.last_schedule_time == "2026-10-25T00:30:00Z" and len(creates(first)) == 1
    # the next run is the next day's 02:30 CET, not 01:30Z the same night
    assert first.next_time == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    ran = Run(creates(first)[0], "u1", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Succeeded")
    second = reconcile_schedule(_after(ts, first), [ran], datetime(2026, 10, 25, 1, 30, 5, tzinfo=UTC))
    assert creates(second) == [] and second.status.last_schedule_time == "2026-10-25T00:30:00Z"
    # spring forward still runs (02:30 does not exist on 2026-03-29: croniter moves it to 03:30)
    spring = reconcile_schedule(
        ts.model_copy(update={"status": make_ts().status.model_validate({"lastScheduleTime": "2026-03-28T01:30:00Z"})}),
        [],
        datetime(2026, 3, 29, 3, 0, tzinfo=UTC),
    )
    assert len(creates(spring)) == 1


def test_blocked_and_missed_runs_post_their_event_once_per_scheduled_time() -> None:
    running = Run("nightly-old", "u-old", datetime(2026, 11, 23, 8, 1, tzinfo=UTC), "Running")
    ts = make_ts().model_copy(
        update={"status": make_ts().status.model_validate({"lastScheduleTime": "2026-11-23T08:01:00Z"})}
    )
    posted = 0
    for second in range(1, 60, 10):  # six passes within the minute of 08:02, the old run still going
        plan = reconcile_schedule(ts, [running], datetime(2026, 11, 23, 8, 2, second, tzinfo=UTC))
        posted += _events(plan, "RunAlreadyActive")
        ts = _after(ts, plan)
    assert posted == 1
    plan = reconcile_schedule(ts, [running], datetime(2026, 11, 23, 8, 3, 1, tzinfo=UTC))
    assert _events(plan, "RunAlreadyActive") == 1  # a new blocked time: said again
    strict = make_ts(startingDeadlineSeconds=5)
    posted = 0
    for second in range(10, 60, 10):
        plan = reconcile_schedule(strict, [], datetime(2026, 11, 23, 8, 30, second, tzinfo=UTC))
        posted += _events(plan, "MissSchedule")
        strict = _after(strict, plan)
    assert posted == 1


def test_long_schedule_names_give_valid_run_labels() -> None:
    long = make_ts().model_copy(update={"metadata": {**make_ts().metadata, "name": "a" * 62 + "-b" + "c" * 10}})
    body = next(
        a.body for a in reconcile_schedule(long, [], CREATED + timedelta(minutes=1)).actions if isinstance(a, CreateRun)
    )
    label = body["metadata"]["labels"]["training.forecast.dev/schedule"]
    assert len(label) <= 63 and label[-1].isalnum() and label[0].isalnum()


def test_a_refused_run_is_stalled_not_retried_in_a_loop() -> None:
    import asyncio

    from trainingjob_operator.kube import KubeError
    from trainingjob_operator.schedule_controller import schedule_pass

    class Kube:
        def __init__(self, raw: dict[str, Any]) -> None:
            self.raw, self.creates, self.events = raw, 0, []

        async def get_schedule(self, namespace: str, name: str) -> dict[str, Any]:
            return self.raw

        async def list_trainingjobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            return []

        async def create_trainingjob(self, namespace: str, body: dict[str, Any]) -> None:
            self.creates += 1
            raise KubeError(422, "TrainingJob.training.forecast.dev is invalid: spec.products: Required value")

        async def patch_schedule_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
            self.raw = {**self.raw, "status": status}

    ts = make_ts()
    kube = Kube(ts.model_dump(by_alias=True, mode="json", exclude_none=True))
    events: list[str] = []
    for second in (2, 3, 4, 5):  # passes of the same minute (the daemon's error retry was ~1 s)
        asyncio.run(
            schedule_pass(
                kube,  # type: ignore[arg-type]
                "shop",
                "nightly",
                lambda type_, reason, message: events.append(reason),
                clock=lambda s=second: datetime(2026, 11, 23, 8, 1, s, tzinfo=UTC),  # type: ignore[misc]
            )
        )
    assert kube.creates == 1
    assert events.count("RunRejected") == 1
    cond = {c["type"]: c for c in kube.raw["status"]["conditions"]}
    assert (cond["Stalled"]["status"], cond["Stalled"]["reason"]) == ("True", "RunRejected")
    assert cond["Ready"]["status"] == "False" and "spec.products" in cond["Stalled"]["message"]


def test_runs_pass_all_products_and_products_per_pod() -> None:
    """A schedule of every product of the source, in shards: each run is the same TrainingJob."""
    from trainingjob_operator.api import TrainingJob
    from trainingjob_operator.schedule import build_run

    ts = make_ts()
    ts.spec.training_job_template.spec.products = []
    ts.spec.training_job_template.spec.all_products = True
    ts.spec.training_job_template.spec.products_per_pod = 200
    run = build_run(ts, "nightly-1", CREATED)
    assert run["spec"]["allProducts"] is True and run["spec"]["productsPerPod"] == 200
    assert "products" not in run["spec"]  # exactly one of products and allProducts
    tj = TrainingJob.model_validate({**run, "metadata": {**run["metadata"], "uid": "u"}})
    assert tj.spec.all_products and tj.spec.products_per_pod == 200
