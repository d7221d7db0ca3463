from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob, TrainingJobStatus
from trainingjob_operator.reasons import Reason
from trainingjob_operator.reconcile import (
    DeleteJob,
    Event,
    Launch,
    Observed,
    ObservedJob,
    ObservedLease,
    Plan,
    ReclaimLease,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
    classify_failure,
    reconcile,
)
from trainingjob_operator.termination import ProductReport

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
ME = "shop/weekly/uid-1"


def launches(plan: Plan) -> list[str]:
    return [a.product for a in plan.actions if isinstance(a, Launch)]


def with_status(tj: TrainingJob, status: TrainingJobStatus) -> TrainingJob:
    return tj.model_copy(update={"status": status})


def lease(product: str, holder: str | None = ME, age: float = 0, duration: int = 60) -> ObservedLease:
    return ObservedLease(builders.lease_name(product), holder, NOW - timedelta(seconds=age), duration, "7", product)


TRAINED = ProductReport(product="", status="trained")


def running(p: str) -> ObservedJob:
    return ObservedJob(name=f"j-{p}", uid=f"u-{p}", product=p, retry_round="", active=1)


def done(p: str, ok: bool = True, **kw: object) -> ObservedJob:
    if ok:
        kw.setdefault("report", ProductReport(product=p, status="trained"))
    return ObservedJob(
        name=f"j-{p}",
        uid=f"u-{p}",
        product=p,
        retry_round="",
        finished="Complete" if ok else "Failed",
        **kw,  # type: ignore[arg-type]
    )


def jobs_of(*jobs: ObservedJob) -> dict[str, ObservedJob]:
    return {j.product: j for j in jobs}


def test_first_pass_launches_up_to_parallelism_in_order() -> None:
    tj = make_tj(parallelism=3)
    plan = reconcile(tj, Observed(), NOW)
    assert launches(plan) == ["p0", "p1", "p2"]
    st = plan.status
    assert (st.phase, st.products.active, st.products.pending, st.products.total) == ("Running", 3, 7, 10)
    assert st.progress == "0/10" and st.parallelism == 3 and st.selector == f"{builders.LABEL_TRAININGJOB}=weekly"
    assert {c.type: c.status for c in st.conditions} == {
        "Running": "True",
        "Complete": "False",
        "Failed": "False",
        "Suspended": "False",
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
    }


def test_same_observed_state_gives_same_plan_and_no_duplicates() -> None:
    tj = make_tj(parallelism=3)
    first = reconcile(tj, Observed(), NOW)
    tj2 = with_status(tj, first.status)
    observed = Observed(
        jobs=jobs_of(*(running(f"p{i}") for i in range(3))),
        leases={lease(f"p{i}").name: lease(f"p{i}") for i in range(3)},
    )
    a = reconcile(tj2, observed, NOW)
    b = reconcile(tj2, observed, NOW)
    assert launches(a) == [] and a == b
    # status reaches a fixed point: reconciling the written status changes nothing
    assert reconcile(with_status(tj2, a.status), observed, NOW).status == a.status


def test_finished_jobs_are_folded_once_and_leases_released() -> None:
    tj = make_tj(parallelism=2)
    report = ProductReport(
        product="p0", status="trained", metric="smape", error=0.2, baseline_error=0.3, beats_baseline=True, tuned=True
    )
    observed = Observed(
        jobs=jobs_of(done("p0", report=report), running("p1")),
        leases={lease("p0").name: lease("p0"), lease("p1").name: lease("p1", age=30)},
    )
    plan = reconcile(tj, observed, NOW)
    st = plan.status
    assert st.succeeded_indexes == "0" and st.products.succeeded == 1 and st.index_order == "Sorted"
    assert st.results is not None and st.results.trained == 1 and st.results.beat_baseline == 1
    assert ReleaseLease(lease("p0")) in plan.actions
    assert RenewLease(lease("p1", age=30)) in plan.actions  # 30 s old of 60: due
    assert launches(plan) == ["p2"]
    again = reconcile(with_status(tj, st), observed, NOW)
    assert again.status.results == st.results  # not counted twice


def test_a_running_jobs_lease_deleted_by_someone_is_claimed_again() -> None:
    """``kubectl delete lease`` or a GitOps prune while p1 trains: the next pass re-creates p1's
    Lease (no other TrainingJob may start p1 meanwhile); a Lease of another product under p0's name
    (a collision) or another holder's claim of p0 is nobody's to take over."""
    tj = make_tj(parallelism=3)
    observed = Observed(jobs=jobs_of(running("p0"), running("p1"), running("p2")), leases={})
    plan = reconcile(tj, observed, NOW)
    assert [a for a in plan.actions if isinstance(a, ReclaimLease)] == [
        ReclaimLease("p0"),
        ReclaimLease("p1"),
        ReclaimLease("p2"),
    ]
    collided = ObservedLease(builders.lease_name("p0"), "shop/other/uid-9", NOW, 60, "8", "q7")
    observed = Observed(
        jobs=observed.jobs,
        leases={collided.name: collided, lease("p1").name: lease("p1"), lease("p2").name: lease("p2", "shop/x/u")},
    )
    assert [a for a in reconcile(tj, observed, NOW).actions if isinstance(a, ReclaimLease)] == []


def test_reordering_products_keeps_the_record_by_id() -> None:
    products = [f"p{i}" for i in range(6)]
    tj = make_tj(products=products, parallelism=2)
    plan = reconcile(tj, Observed(jobs=jobs_of(done("p0"), done("p1"))), NOW)
    assert plan.status.products.succeeded == 2
    reordered = make_tj(products=list(reversed(products)), parallelism=2).model_copy(update={"status": plan.status})
    after = reconcile(reordered, Observed(jobs=jobs_of(done("p0"), done("p1"))), NOW)
    assert after.status.products.succeeded == 2 and after.status.succeeded_indexes == plan.status.succeeded_indexes
    assert set(launches(after)) == {"p5", "p4"}  # spec order now starts at p5; p0, p1 never run again
    # with the Jobs cleaned up (TTL), the record alone keeps p0 and p1 trained
    cleaned = reconcile(with_status(reordered, after.status), Observed(), NOW)
    assert "p0" not in launches(cleaned) and "p1" not in launches(cleaned)


def test_legacy_indexes_over_spec_order_are_read_in_spec_order() -> None:
    tj = make_tj(products=["z", "a", "m"])
    legacy = with_status(tj, TrainingJobStatus(succeeded_indexes="0"))  # "z" under the old meaning
    plan = reconcile(legacy, Observed(), NOW)
    assert "z" not in launches(plan) and plan.status.products.succeeded == 1
    assert plan.status.index_order == "Sorted" and plan.status.succeeded_indexes == "2"  # z is last sorted


def test_exit_0_without_a_report_for_the_product_is_a_failure() -> None:
    tj = make_tj(products=["a"])
    stray = ProductReport(product="a", status="unknown")
    for job in (
        ObservedJob(name="j", uid="u", product="a", retry_round="", finished="Complete"),
        ObservedJob(name="j", uid="u", product="a", retry_round="", finished="Complete", report=stray),
    ):
        st = reconcile(tj, Observed(jobs=jobs_of(job)), NOW).status
        assert st.products.succeeded == 0 and st.products.failed == 1
        assert st.failures[0].reason == "MissingReport" and st.results is None


def test_invalid_data_fails_product_without_retry_and_reports_reason() -> None:
    tj = make_tj(parallelism=1, products=["a"])
    report = ProductReport(product="a", status="invalid", reason="TooFewPoints", message="a: 10 points, need 30")
    job = ObservedJob(
        name="j",
        uid="u",
        product="a",
        retry_round="",
        finished="Failed",
        reason="PodFailurePolicy",
        failed_pods=1,
        report=report,
        exit_code=3,
    )
    plan = reconcile(tj, Observed(jobs=jobs_of(job)), NOW)
    st = plan.status
    assert st.failed_indexes == "0" and st.phase == "Failed"  # the only product failed
    f = st.failures[0]
    assert (f.product, f.reason, f.attempts) == ("a", "InvalidData", 1)
    assert "TooFewPoints" in f.message and "10 points" in f.message
    assert any(isinstance(a, Event) and a.reason == "ProductFailed" for a in plan.actions)
    assert plan.new_failures == {"a": "InvalidData"}  # for trainingjob_product_failures_total
    # the next pass folds nothing new: the failure is counted once
    assert reconcile(tj.model_copy(update={"status": st}), Observed(jobs=jobs_of(job)), NOW).new_failures == {}


def test_classify_failure_backoff_deadline_and_config() -> None:
    j = ObservedJob(
        name="j",
        uid="u",
        product="a",
        retry_round="",
        finished="Failed",
        reason="BackoffLimitExceeded",
        failed_pods=3,
        exit_code=4,
        message="Job has reached the specified backoff limit",
    )
    reason, msg = classify_failure(j)
    assert reason == "BackoffLimitExceeded" and "3 time(s)" in msg and "exit code 4" in msg
    d = ObservedJob(name="j", uid="u", product="a", retry_round="", finished="Failed", reason="DeadlineExceeded")
    assert classify_failure(d)[0] == "DeadlineExceeded"
    c = ObservedJob(
        name="j", uid="u", product="a", retry_round="", finished="Failed", reason="PodFailurePolicy", exit_code=2
    )
    assert classify_failure(c)[0] == "InvalidConfig"


def test_complete_with_some_failures_is_succeeded_within_the_limit_only() -> None:
    products = ["a", "b", "c", "d"]
    jobs = jobs_of(done("a"), done("b"), done("c"), done("d", ok=False, reason="BackoffLimitExceeded"))
    ok = reconcile(make_tj(products=products, maxFailedProducts=1), Observed(jobs=jobs), NOW).status
    assert ok.phase == "Succeeded" and ok.completion_time is not None
    complete = next(c for c in ok.conditions if c.type == "Complete")
    assert complete.status == "True" and "1 failed" in complete.message
    for spec, reason in (({"maxFailedProducts": 0}, "MaxFailedProductsExceeded"), ({}, "ProductsFailed")):
        bad = reconcile(make_tj(products=products, **spec), Observed(jobs=jobs), NOW).status
        assert bad.phase == "Failed" and bad.completion_time is not None
        assert next(c for c in bad.conditions if c.type == "Failed").reason == reason


def test_max_failed_stops_launching_and_lets_running_finish() -> None:
    tj = make_tj(parallelism=2, maxFailedProducts="10%")  # 10 products -> 1 failure tolerated
    jobs = jobs_of(
        done("p0", ok=False, reason="BackoffLimitExceeded"),
        done("p1", ok=False, reason="BackoffLimitExceeded"),
        running("p2"),
    )
    plan = reconcile(tj, Observed(jobs=jobs), NOW)
    assert launches(plan) == []
    assert plan.status.phase == "Running"
    assert next(c for c in plan.status.conditions if c.type == "Running").reason == "MaxFailedProductsExceeded"
    jobs["p2"] = done("p2")
    final = reconcile(with_status(tj, plan.status), Observed(jobs=jobs), NOW).status
    assert final.phase == "Failed" and final.products.pending == 7


def test_foreign_lease_makes_product_wait_and_expired_one_is_taken_over() -> None:
    tj = make_tj(parallelism=5, products=["a", "b", "c"])
    other = "shop/other/uid-2"
    held = lease("a", holder=other, age=5)
    expired = lease("b", holder=other, age=120)
    plan = reconcile(tj, Observed(leases={held.name: held, expired.name: expired}), NOW)
    acts = [a for a in plan.actions if isinstance(a, Launch)]
    assert [(a.product, a.takeover) for a in acts] == [("b", expired), ("c", None)]
    assert plan.status.products.waiting == 1 and plan.waiting == {"a": "WaitingForLease"}
    (event,) = [a for a in plan.actions if isinstance(a, Event) and a.reason == "WaitingForProduct"]
    assert f"a (Lease {held.name} held by shop/other/uid-2)" in event.message  # names what holds it
    # an expired lease whose product still runs elsewhere is not taken over
    busy = Observed(leases={expired.name: expired}, busy_elsewhere=frozenset({"b"}))
    assert launches(reconcile(tj, busy, NOW)) == ["a", "c"]


def test_unfinished_foreign_job_gates_every_launch_not_only_takeovers() -> None:
    tj = make_tj(parallelism=5, products=["a", "b"])
    plan = reconcile(tj, Observed(busy_elsewhere=frozenset({"a"})), NOW)  # no Lease for "a" at all
    assert launches(plan) == ["b"] and plan.status.products.waiting == 1


def test_scale_down_launches_nothing_until_under_limit_and_kills_nothing() -> None:
    tj = make_tj(parallelism=2)
    plan = reconcile(tj, Observed(jobs=jobs_of(*(running(f"p{i}") for i in range(4)))), NOW)
    assert launches(plan) == [] and not any(isinstance(a, DeleteJob) for a in plan.actions)
    assert plan.status.products.active == 4 and plan.status.parallelism == 2


def test_suspend_and_resume() -> None:
    tj = make_tj(parallelism=2, suspend=True)
    plan = reconcile(tj, Observed(jobs=jobs_of(running("p0"))), NOW)
    assert launches(plan) == [] and plan.status.phase == "Suspended"
    assert next(c for c in plan.status.conditions if c.type == "Suspended").status == "True"
    assert any(isinstance(a, Event) and a.reason == "Suspended" for a in plan.actions)
    resumed = make_tj(parallelism=2, suspend=False).model_copy(update={"status": plan.status})
    plan2 = reconcile(resumed, Observed(jobs=jobs_of(running("p0"))), NOW)
    assert launches(plan2) == ["p1"] and plan2.status.phase == "Running"
    assert any(isinstance(a, Event) and a.reason == "Resumed" for a in plan2.actions)


def test_retry_failed_annotation_relaunches_only_failed_products() -> None:
    tj = make_tj(products=["a", "b", "c"], parallelism=3)
    jobs = jobs_of(done("a"), done("b", ok=False, reason="BackoffLimitExceeded"), done("c"))
    first = reconcile(tj, Observed(jobs=jobs), NOW).status
    assert first.phase == "Failed" and first.failed_indexes == "1"  # no product may fail (default)
    retry = tj.model_copy(
        update={
            "status": first,
            "metadata": {**tj.metadata, "annotations": {builders.ANNOTATION_RETRY_FAILED: "1"}},
        }
    )
    plan = reconcile(retry, Observed(jobs=jobs), NOW)
    assert DeleteJob("j-b", "u-b") in plan.actions and launches(plan) == []  # old Job must go first
    assert not any(isinstance(a, DeleteJob) and a.name in ("j-a", "j-c") for a in plan.actions)
    assert plan.status.failed_indexes == "" and plan.status.retry_failed == "1" and plan.status.phase == "Running"
    gone = jobs_of(jobs["a"], jobs["c"])
    plan2 = reconcile(with_status(retry, plan.status), Observed(jobs=gone), NOW)
    assert launches(plan2) == ["b"]
    new = ObservedJob(
        name="j-b", uid="u-b2", product="b", retry_round="1", finished="Complete", report=done("b").report
    )
    final = reconcile(with_status(retry, plan2.status), Observed(jobs={**gone, "b": new}), NOW).status
    assert final.phase == "Succeeded" and final.succeeded_indexes == "0-2" and final.failures == []


def test_ttl_set_once_on_folded_jobs() -> None:
    tj = make_tj(products=["a"], ttlSecondsAfterFinished=30)
    plan = reconcile(tj, Observed(jobs=jobs_of(done("a"))), NOW)
    assert SetJobTTL("j-a", 30) in plan.actions
    plan2 = reconcile(with_status(tj, plan.status), Observed(jobs=jobs_of(done("a", ttl_seconds=30))), NOW)
    assert not any(isinstance(a, SetJobTTL) for a in plan2.actions)
    # status survives the Job's deletion by TTL: nothing is relaunched
    plan3 = reconcile(with_status(tj, plan.status), Observed(), NOW)
    assert launches(plan3) == [] and plan3.status.phase == "Succeeded"


def test_completion_event_emitted_once() -> None:
    tj = make_tj(products=["a"])
    plan = reconcile(tj, Observed(jobs=jobs_of(done("a"))), NOW)
    assert any(isinstance(a, Event) and a.reason == "Complete" for a in plan.actions)
    later = reconcile(with_status(tj, plan.status), Observed(jobs=jobs_of(done("a"))), NOW + timedelta(minutes=1))
    assert not any(isinstance(a, Event) for a in later.actions)
    assert later.status == plan.status


def test_succeeded_pod_frees_the_slot_before_the_job_controller_marks_complete() -> None:
    tj = make_tj(parallelism=2, products=["a", "b", "c"])
    report = ProductReport(product="a", status="trained", error=0.1)
    early = ObservedJob(name="j-a", uid="u-a", product="a", retry_round="", active=1, pod_succeeded=True, report=report)
    jobs = jobs_of(early, running("b"))
    plan = reconcile(tj, Observed(jobs=jobs, leases={lease("a").name: lease("a")}), NOW)
    assert plan.status.succeeded_indexes == "0" and launches(plan) == ["c"]
    assert plan.status.products.active == 2  # b still running, c just launched
    assert ReleaseLease(lease("a")) in plan.actions
    # when the Job is then marked Complete, nothing is counted twice
    jobs["a"] = done("a", report=report)
    again = reconcile(with_status(tj, plan.status), Observed(jobs=jobs), NOW)
    assert again.status.results == plan.status.results


def test_failed_pod_is_not_done_until_the_job_says_so() -> None:
    tj = make_tj(parallelism=1, products=["a", "b"])
    job = ObservedJob(name="j-a", uid="u-a", product="a", retry_round="", active=0, failed_pods=1)  # retry pending
    plan = reconcile(tj, Observed(jobs=jobs_of(job)), NOW)
    assert plan.status.products.active == 1 and launches(plan) == []


def test_ttl_set_when_an_early_folded_job_completes() -> None:
    tj = make_tj(products=["a"], ttlSecondsAfterFinished=0)
    early = ObservedJob(
        name="j-a", uid="u-a", product="a", retry_round="", active=1, pod_succeeded=True, report=done("a").report
    )
    plan = reconcile(tj, Observed(jobs=jobs_of(early)), NOW)
    assert plan.status.succeeded_indexes == "0"
    assert not any(isinstance(a, SetJobTTL) for a in plan.actions)  # not finished yet: TTL would not apply
    later = reconcile(with_status(tj, plan.status), Observed(jobs=jobs_of(done("a"))), NOW)
    assert SetJobTTL("j-a", 0) in later.actions


def test_rejected_launch_fails_the_product_stalls_and_stops_launches_until_the_spec_changes() -> None:
    tj = make_tj(products=["a", "b", "c"], parallelism=1)
    plan = reconcile(tj, Observed(rejected={"a": 'spec.template...: Invalid value: "lots"'}), NOW)
    st = plan.status
    assert st.products.failed == 1 and st.failures[0].reason == "JobRejected" and "lots" in st.failures[0].message
    assert launches(plan) == [] and st.phase == "Failed"
    stalled = next(c for c in st.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "JobRejected")
    assert any(isinstance(a, Event) and a.type == "Warning" and a.reason == "JobRejected" for a in plan.actions)
    # the same generation, the rejection forgotten (operator restart): still no launches
    again = reconcile(with_status(tj, st), Observed(), NOW)
    assert launches(again) == [] and again.status.phase == "Failed"
    # a spec change (new generation) launches again
    fixed = with_status(tj, st).model_copy(update={"metadata": {**tj.metadata, "generation": 2}})
    resumed = reconcile(fixed, Observed(), NOW)
    assert launches(resumed) == ["b"]
    assert next(c for c in resumed.status.conditions if c.type == "Stalled").status == "False"


def test_pod_that_cannot_start_is_surfaced_then_fails_its_product() -> None:
    tj = make_tj(products=["a", "b", "c"], parallelism=2)
    since = NOW - timedelta(seconds=30)
    stuck = ObservedJob(
        name="j-a",
        uid="u-a",
        product="a",
        retry_round="",
        active=1,
        stuck=(Reason.CREATE_CONTAINER_CONFIG_ERROR, 'secret "db" not found', since),
    )
    held = lease("a")
    plan = reconcile(tj, Observed(jobs=jobs_of(stuck), leases={held.name: held}), NOW)
    st = plan.status
    # not counted active, shown as waiting, its Lease kept (its Job is unfinished: a Secret created
    # late, or Kueue preempting and admitting it again, lets it train); it keeps its slot (b, not c)
    assert st.products.active == 1 and st.products.waiting == 1 and launches(plan) == ["b"]
    stalled = next(c for c in st.conditions if c.type == "Stalled")
    assert stalled.reason == "CreateContainerConfigError" and 'secret "db"' in stalled.message
    assert not any(isinstance(a, ReleaseLease) for a in plan.actions)
    later = reconcile(with_status(tj, st), Observed(jobs=jobs_of(stuck)), NOW + timedelta(seconds=120))
    assert later.status.products.failed == 1 and later.status.failures[0].reason == "CreateContainerConfigError"
    assert DeleteJob("j-a", "u-a") in later.actions


def locked_job() -> ObservedJob:
    """Product a's Job, failed by its podFailurePolicy: the trainer found the product locked (exit 5)."""
    return ObservedJob(
        name="j-a",
        uid="u-a",
        product="a",
        retry_round="",
        finished="Failed",
        reason="PodFailurePolicy",
        exit_code=5,
        finished_at=NOW,
        report=ProductReport(product="a", status="locked", reason="ProductLocked"),
    )


def test_locked_product_waits_then_is_relaunched() -> None:
    tj = make_tj(products=["a"], parallelism=1)
    locked = locked_job()
    plan = reconcile(tj, Observed(jobs=jobs_of(locked)), NOW)
    assert plan.status.products.waiting == 1 and plan.status.products.failed == 0
    assert not any(isinstance(a, DeleteJob) for a in plan.actions)
    due = reconcile(with_status(tj, plan.status), Observed(jobs=jobs_of(locked)), NOW + timedelta(seconds=20))
    assert DeleteJob("j-a", "u-a") in due.actions and launches(due) == []
    gone = reconcile(with_status(tj, due.status), Observed(), NOW + timedelta(seconds=21))
    assert launches(gone) == ["a"]


def test_a_product_locked_again_and_again_is_relaunched_with_exponential_back_off() -> None:
    """A trainer whose node died holds the lock until the database notices (~1 min with the lock
    session's keepalives): relaunching every 15 s made hundreds of pods. The wait doubles per
    relaunch that found the product locked again (the daemon counts them), up to 10 minutes."""
    tj = make_tj(products=["a"], parallelism=1)
    locked = locked_job()
    waits = []
    for relaunches in range(8):
        observed = Observed(jobs=jobs_of(locked), locked_relaunches={"a": relaunches})
        waits.append(
            next(s for s in range(0, 1200, 5) if reconcile(tj, observed, NOW + timedelta(seconds=s)).relaunched_locked)
        )
    assert waits == [15, 30, 60, 120, 240, 480, 600, 600]
    due = reconcile(tj, Observed(jobs=jobs_of(locked), locked_relaunches={"a": 2}), NOW + timedelta(seconds=60))
    assert DeleteJob("j-a", "u-a") in due.actions and due.relaunched_locked == {"a"}


def test_recorded_product_whose_job_is_not_marked_finished_yet_is_not_active() -> None:
    """Recorded from its succeeded pod; on the next pass its pods are not read any more and the Job
    controller has not marked the Job Complete yet: not active, and no slot is taken."""
    tj = make_tj(parallelism=1, products=["a", "b"])
    first = reconcile(tj, Observed(jobs=jobs_of(done("a"))), NOW).status
    lagging = ObservedJob(name="j-a", uid="u-a", product="a", retry_round="", active=1)
    plan = reconcile(with_status(tj, first), Observed(jobs=jobs_of(lagging)), NOW)
    assert plan.status.products.active == 1 and launches(plan) == ["b"]  # b, not a
    p = plan.status.products
    assert p.pending + p.waiting + p.active + p.succeeded + p.failed == p.total


def test_skipped_product_is_done_and_counted_but_not_in_results() -> None:
    tj = make_tj(products=["a", "b"], parallelism=2)
    skipped = done("a", report=ProductReport(product="a", status="skipped", reason="Unchanged"))
    plan = reconcile(tj, Observed(jobs=jobs_of(skipped, done("b"))), NOW)
    st = plan.status
    assert st.phase == "Succeeded" and st.products.succeeded == 2 and st.products.skipped == 1
    assert st.skipped_indexes == "0" and st.results is not None and st.results.trained == 1
    again = reconcile(with_status(tj, st), Observed(), NOW)  # Jobs cleaned up: the record stays
    assert again.status.products.skipped == 1 and again.status == st


def test_unchanged_check_runs_first_and_skips_products_without_pods() -> None:
    from trainingjob_operator.observed import UnchangedCheck
    from trainingjob_operator.reconcile import CreateUnchangedCheck

    tj = make_tj(products=["c", "a", "b"], parallelism=3, skipUnchanged=True)
    first = reconcile(tj, Observed(), NOW)
    assert CreateUnchangedCheck("") in first.actions and launches(first) == []  # launches wait for the check
    running = UnchangedCheck(name="weekly-unchanged", uid="u-check")
    assert launches(reconcile(with_status(tj, first.status), Observed(unchanged_check=running), NOW)) == []
    done_check = UnchangedCheck(
        name="weekly-unchanged", uid="u-check", finished="Complete", unchanged=frozenset({0, 2})
    )
    plan = reconcile(with_status(tj, first.status), Observed(unchanged_check=done_check), NOW)
    st = plan.status
    assert launches(plan) == ["b"]  # a (0) and c (2) in sorted order are unchanged
    assert st.products.skipped == 2 and st.products.succeeded == 2 and st.unchanged_checked
    assert DeleteJob("weekly-unchanged", "u-check") in plan.actions
    again = reconcile(with_status(tj, st), Observed(), NOW)
    assert not any(isinstance(a, CreateUnchangedCheck) for a in again.actions)  # once per TrainingJob


def test_failed_unchanged_check_trains_everything() -> None:
    from trainingjob_operator.observed import UnchangedCheck

    tj = make_tj(products=["a"], skipUnchanged=True)
    failed = UnchangedCheck(name="c", uid="u", finished="Failed", message="database unreachable")
    plan = reconcile(tj, Observed(unchanged_check=failed), NOW)
    assert launches(plan) == ["a"] and any(isinstance(a, Event) and a.type == "Warning" for a in plan.actions)


def test_results_count_winning_families_and_products_beating_naive() -> None:
    tj = make_tj(products=["a", "b", "c"])
    reports = {
        "a": ProductReport(product="a", status="trained", family="prophet", beats_naive=True, error=0.1),
        "b": ProductReport(product="b", status="trained", family="ets", beats_naive=True, error=0.2),
        "c": ProductReport(product="c", status="trained", family="seasonal_naive", beats_naive=False, error=0.3),
    }
    st = reconcile(tj, Observed(jobs=jobs_of(*(done(p, report=r) for p, r in reports.items()))), NOW).status
    assert st.results is not None
    assert st.results.models == {"ets": 1, "prophet": 1, "seasonal_naive": 1} and st.results.beat_naive == 2


def test_uncertain_products_are_counted_in_results_and_named_in_the_complete_condition() -> None:
    tj = make_tj(products=["a", "b", "c"])
    reports = {
        "a": ProductReport(product="a", status="trained", family="prophet", beats_naive=True, uncertain=False),
        "b": ProductReport(product="b", status="trained", family="ets", beats_naive=True, uncertain=True),
        "c": ProductReport(product="c", status="trained", family="seasonal_naive", uncertain=True),
    }
    st = reconcile(tj, Observed(jobs=jobs_of(*(done(p, report=r) for p, r in reports.items()))), NOW).status
    assert st.results is not None and st.results.uncertain == 2
    complete = next(c for c in st.conditions if c.type == "Complete")
    assert complete.status == "True" and "2 uncertain" in complete.message


def test_interval_levels_and_quantiles_reach_the_trainer() -> None:
    tj = make_tj(["a"], forecast={"intervals": [80, 95], "quantiles": [0.5, 0.9]})
    env = {e["name"]: e.get("value") for e in builders.trainer_env(tj, "a")}
    assert env["TRAINER_INTERVAL_LEVELS"] == "80,95" and env["TRAINER_QUANTILES"] == "0.5,0.9"
    default = {e["name"]: e.get("value") for e in builders.trainer_env(make_tj(["a"]), "a")}
    # unset: blank (reserved variables are always set, so envFrom cannot supply them; blank is unset)
    assert default["TRAINER_INTERVAL_LEVELS"] == "80" and default["TRAINER_QUANTILES"] == ""


def test_models_and_holidays_reach_the_trainer() -> None:
    tj = make_tj(["a"], tuning={"models": ["prophet", "naive"]}, forecast={"countryHolidays": "de"})
    env = {e["name"]: e.get("value") for e in builders.trainer_env(tj, "a")}
    assert env["TRAINER_MODELS"] == "prophet,naive" and env["TRAINER_COUNTRY_HOLIDAYS"] == "DE"
