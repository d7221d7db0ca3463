"""Conditions: metav1.Condition shape, transitions, the reason vocabulary, and what kstatus reads.

The kstatus reading below follows sigs.k8s.io/cli-utils v0.37.2 pkg/kstatus/status (generic.go,
status.go): Reconciling=True -> InProgress, Stalled=True -> Failed (the first of them in list
order), else Ready=True -> Current and Ready=False -> InProgress. The e2e test
(tests/e2e/operator/test_kstatus.py) checks the same on live objects with the real library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from tests.unit.operator.factories import make_tj

from trainingjob_operator import refdoc
from trainingjob_operator.api import Condition, TrainingJob, TrainingJobStatus
from trainingjob_operator.observed import Observed, ObservedJob
from trainingjob_operator.reasons import CAMEL_CASE, DESCRIPTIONS, Reason
from trainingjob_operator.reconcile import Event, Launch, reconcile
from trainingjob_operator.status import CONDITION_TYPES, set_condition
from trainingjob_operator.termination import ProductReport

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def with_status(tj: TrainingJob, status: TrainingJobStatus) -> TrainingJob:
    return tj.model_copy(update={"status": status})


def running(p: str) -> ObservedJob:
    return ObservedJob(name=f"j-{p}", uid=f"u-{p}", product=p, retry_round="", active=1)


def done(p: str, ok: bool = True) -> ObservedJob:
    report = ProductReport(product=p, status="trained", error=0.1) if ok else None
    finished = "Complete" if ok else "Failed"
    reason = "" if ok else "BackoffLimitExceeded"
    return ObservedJob(
        name=f"j-{p}", uid=f"u-{p}", product=p, retry_round="", finished=finished, reason=reason, report=report
    )


def kstatus(status: TrainingJobStatus, generation: int = 1) -> str:
    """kstatus' reading of a TrainingJob with this status (cli-utils v0.37.2, generic rules)."""
    if status.observed_generation is not None and status.observed_generation != generation:
        return "InProgress"
    for c in status.conditions:
        if c.type == "Reconciling" and c.status == "True":
            return "InProgress"
        if c.type == "Stalled" and c.status == "True":
            return "Failed"
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    if ready is None or ready.status == "True":
        return "Current"
    return "InProgress"


def conditions_of(status: TrainingJobStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


# ---------------------------------------------------------------- shape


def test_condition_is_shaped_like_metav1_condition() -> None:
    ok = {
        "type": "Ready",
        "status": "True",
        "reason": "AllProductsFinished",
        "lastTransitionTime": "2026-11-23T09:00:00Z",
    }
    cond = Condition.model_validate(ok)
    assert cond.message == "" and cond.observed_generation is None
    for bad in (
        {**ok, "reason": ""},
        {**ok, "reason": "not camel case"},
        {**ok, "status": "Yes"},
        {k: v for k, v in ok.items() if k != "lastTransitionTime"},
        {k: v for k, v in ok.items() if k != "reason"},
        {**ok, "observedGeneration": -1},
    ):
        with pytest.raises(ValidationError):
            Condition.model_validate(bad)


def test_every_pass_writes_every_condition_with_observed_generation() -> None:
    tj = make_tj(parallelism=2).model_copy(update={"metadata": {**make_tj().metadata, "generation": 3}})
    st = reconcile(tj, Observed(), NOW).status
    assert [c.type for c in st.conditions] == list(CONDITION_TYPES)
    for c in st.conditions:
        assert c.observed_generation == 3 and c.last_transition_time == "2026-11-23T09:00:00Z"
        assert CAMEL_CASE.match(c.reason), c
    assert st.observed_generation == 3


def test_last_transition_time_changes_only_when_status_changes() -> None:
    conds = set_condition([], "Running", True, Reason.PENDING, "m", "t1", 1)
    conds = set_condition(conds, "Running", True, Reason.PRODUCTS_TRAINING, "m2", "t2", 2)
    (c,) = conds
    assert (c.last_transition_time, c.reason, c.message, c.observed_generation) == ("t1", "ProductsTraining", "m2", 2)
    conds = set_condition(conds, "Running", False, Reason.FINISHED, "", "t3", 2)
    assert conds[0].last_transition_time == "t3" and conds[0].status == "False"


def test_transition_times_survive_passes_that_change_nothing() -> None:
    tj = make_tj(products=["a", "b"], parallelism=2)
    first = reconcile(tj, Observed(), NOW).status
    later = reconcile(
        with_status(tj, first), Observed(jobs={"a": running("a"), "b": running("b")}), NOW + timedelta(minutes=5)
    )
    assert [c.last_transition_time for c in later.status.conditions] == [
        c.last_transition_time for c in first.conditions
    ]
    finished = reconcile(
        with_status(tj, later.status), Observed(jobs={"a": done("a"), "b": done("b")}), NOW + timedelta(minutes=9)
    ).status
    flipped = {c.type for c in finished.conditions if c.last_transition_time != "2026-11-23T09:00:00Z"}
    assert flipped == {"Running", "Complete", "Ready", "Reconciling"}  # Failed, Suspended, Stalled stay False


# ---------------------------------------------------------------- what tools read


def test_running_reads_in_progress() -> None:
    tj = make_tj(products=["a", "b", "c"], parallelism=2)
    st = reconcile(tj, Observed(), NOW).status
    assert st.phase == "Running" and kstatus(st) == "InProgress"
    c = conditions_of(st)
    assert c["Reconciling"] == ("True", "ProductsTraining") and c["Ready"] == ("False", "InProgress")
    assert c["Stalled"] == ("False", "NotStalled")


def test_pending_reads_in_progress() -> None:
    tj = make_tj(products=["a"], parallelism=1, suspend=False)
    st = reconcile(tj, Observed(busy_elsewhere=frozenset({"a"})), NOW).status
    assert st.phase == "Pending" and kstatus(st) == "InProgress"
    assert conditions_of(st)["Reconciling"] == ("True", "WaitingForProducts")


def test_complete_reads_current_and_ready() -> None:
    tj = make_tj(products=["a", "b"], parallelism=2, maxFailedProducts=1)
    st = reconcile(tj, Observed(jobs={"a": done("a"), "b": done("b", ok=False)}), NOW).status
    assert st.phase == "Succeeded" and kstatus(st) == "Current"
    c = conditions_of(st)
    assert c["Ready"] == ("True", "AllProductsFinished") and c["Complete"] == ("True", "AllProductsFinished")
    assert c["Reconciling"] == ("False", "Finished") and c["Stalled"] == ("False", "NotStalled")


@pytest.mark.parametrize(
    ("spec", "jobs", "reason"),
    [
        ({"maxFailedProducts": 0}, {"a": done("a", ok=False), "b": done("b")}, "MaxFailedProductsExceeded"),
        ({}, {"a": done("a", ok=False), "b": done("b", ok=False)}, "NoProductTrained"),
    ],
)
def test_failed_reads_failed(spec: dict[str, object], jobs: dict[str, ObservedJob], reason: str) -> None:
    tj = make_tj(products=["a", "b"], parallelism=2, **spec)
    st = reconcile(tj, Observed(jobs=jobs), NOW).status
    assert st.phase == "Failed" and kstatus(st) == "Failed"
    c = conditions_of(st)
    assert c["Failed"] == ("True", reason) and c["Stalled"] == ("True", reason) and c["Ready"] == ("False", reason)
    assert c["Reconciling"] == ("False", "Finished")


def test_unset_max_failed_means_no_product_may_fail_but_every_product_runs() -> None:
    """3 of 6 failed, maxFailedProducts unset: Failed, Complete=False, Ready=False (as a Job without
    maxFailedIndexes), and the failures did not stop the other products from launching."""
    products = ["a", "b", "c", "d", "e", "f"]
    tj = make_tj(products=products, parallelism=6)
    midway = reconcile(tj, Observed(jobs={"a": done("a", ok=False), "b": done("b", ok=False)}), NOW)
    launched = {a.product for a in midway.actions if isinstance(a, Launch)}
    assert launched == {"c", "d", "e", "f"} and midway.status.phase == "Running"
    jobs = {p: done(p, ok=p in ("d", "e", "f")) for p in products}
    st = reconcile(tj, Observed(jobs=jobs), NOW).status
    assert st.phase == "Failed" and kstatus(st) == "Failed"
    c = conditions_of(st)
    assert c["Failed"] == ("True", "ProductsFailed") and c["Complete"] == ("False", "ProductsFailed")
    assert c["Ready"] == ("False", "ProductsFailed")
    failed = next(x for x in st.conditions if x.type == "Failed")
    assert failed.message == "3 of 6 products failed (maxFailedProducts is unset: no product may fail); 3 trained"


def test_all_skipped_is_not_reported_as_trained() -> None:
    jobs = {
        p: ObservedJob(
            name=f"j-{p}",
            uid=f"u-{p}",
            product=p,
            retry_round="",
            finished="Complete",
            report=ProductReport(product=p, status="skipped"),
        )
        for p in ("a", "b")
    }
    st = reconcile(make_tj(products=["a", "b"], parallelism=2), Observed(jobs=jobs), NOW).status
    complete = next(x for x in st.conditions if x.type == "Complete")
    assert st.phase == "Succeeded" and complete.message == "0 trained, 2 skipped (unchanged) of 2 products"


@pytest.mark.parametrize(
    ("spec", "trial"),
    [
        ({"data": {"configMap": {"name": "sales", "key": "sales.csv"}}}, True),
        (
            {
                "data": {"configMap": {"name": "sales", "key": "sales.csv"}},
                "output": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
            },
            False,
        ),
        ({}, False),
    ],
)
def test_configmap_data_without_output_is_trial_mode_and_says_so(spec: dict[str, object], trial: bool) -> None:
    tj = make_tj(products=["a", "b"], parallelism=2, **spec)
    first = reconcile(tj, Observed(), NOW)
    events = [a for a in first.actions if isinstance(a, Event) and a.reason == "NothingStored"]
    assert (conditions_of(first.status).get("TrialMode") == ("True", "NothingStored")) is trial
    assert len(events) == (1 if trial else 0)
    done_pass = reconcile(with_status(tj, first.status), Observed(jobs={"a": done("a"), "b": done("b")}), NOW)
    assert not [a for a in done_pass.actions if isinstance(a, Event) and a.reason == "NothingStored"]
    complete = next(x for x in done_pass.status.conditions if x.type == "Complete")
    assert done_pass.status.phase == "Succeeded"
    assert ("nothing stored" in complete.message) is trial


def test_rejected_job_reads_failed() -> None:
    tj = make_tj(products=["a", "b"], parallelism=1)
    st = reconcile(tj, Observed(rejected={"a": "forbidden"}), NOW).status
    assert kstatus(st) == "Failed" and conditions_of(st)["Stalled"] == ("True", "JobRejected")


def test_pod_that_cannot_start_reads_failed_until_it_is_fixed() -> None:
    tj = make_tj(products=["a", "b"], parallelism=1)
    stuck = ObservedJob(
        name="j-a",
        uid="u-a",
        product="a",
        retry_round="",
        active=1,
        stuck=(Reason.CREATE_CONTAINER_CONFIG_ERROR, 'secret "db" not found', NOW),
    )
    st = reconcile(tj, Observed(jobs={"a": stuck}), NOW).status
    assert st.phase == "Pending" and kstatus(st) == "Failed"
    c = conditions_of(st)
    assert c["Stalled"] == ("True", "CreateContainerConfigError") and c["Reconciling"] == ("False", "Stalled")
    fixed = reconcile(with_status(tj, st), Observed(jobs={"a": running("a")}), NOW + timedelta(seconds=5)).status
    assert kstatus(fixed) == "InProgress" and conditions_of(fixed)["Stalled"] == ("False", "NotStalled")


def test_suspended_reads_in_progress_with_reason_suspended() -> None:
    tj = make_tj(products=["a", "b"], parallelism=2, suspend=True)
    idle = reconcile(tj, Observed(), NOW).status
    assert idle.phase == "Suspended" and kstatus(idle) == "InProgress"
    c = conditions_of(idle)
    assert c["Ready"] == ("False", "Suspended") and c["Reconciling"] == ("False", "Suspended")
    assert c["Suspended"] == ("True", "SuspendedByUser")
    finishing = reconcile(with_status(tj, idle), Observed(jobs={"a": running("a")}), NOW).status
    assert kstatus(finishing) == "InProgress" and conditions_of(finishing)["Reconciling"] == (
        "True",
        "ProductsFinishing",
    )


def test_a_spec_change_not_yet_observed_reads_in_progress() -> None:
    tj = make_tj(products=["a"], parallelism=1)
    st = reconcile(tj, Observed(jobs={"a": done("a")}), NOW).status
    assert kstatus(st, generation=1) == "Current" and kstatus(st, generation=2) == "InProgress"


# ---------------------------------------------------------------- the vocabulary


def test_every_reason_is_camel_case_and_described_in_the_reference() -> None:
    doc = refdoc.render()
    for reason in Reason:
        assert CAMEL_CASE.match(reason.value), reason
        assert reason in DESCRIPTIONS, f"{reason} has no description"
        assert f"| `{reason.value}` |" in doc, f"{reason} is missing from docs/api-reference.md"


def test_every_reason_a_pass_writes_is_in_the_vocabulary() -> None:
    """A table of situations; set_condition and _record_failure take a Reason (mypy checks the
    call sites), and this checks what actually lands in status."""
    vocabulary = {r.value for r in Reason}
    tj = make_tj(products=["a", "b", "c"], parallelism=3, maxFailedProducts=1)
    deadline = ObservedJob(
        name="j-c", uid="u-c", product="c", retry_round="", finished="Failed", reason="DeadlineExceeded"
    )
    odd = ObservedJob(name="j-b", uid="u-b", product="b", retry_round="", finished="Failed", reason="SomethingNew")
    situations = [
        Observed(),
        Observed(jobs={"a": done("a"), "b": done("b", ok=False)}),
        Observed(jobs={"a": done("a"), "b": odd, "c": deadline}),
        Observed(rejected={"a": "forbidden"}),
        Observed(busy_elsewhere=frozenset({"a", "b", "c"})),
    ]
    for observed in situations:
        for t in (tj, make_tj(products=["a", "b", "c"], suspend=True)):
            st = reconcile(t, observed, NOW).status
            written = {c.reason for c in st.conditions} | {f.reason for f in st.failures}
            assert written <= vocabulary, written - vocabulary
    st = reconcile(tj, situations[2], NOW).status
    assert {f.reason for f in st.failures} == {"JobFailed", "DeadlineExceeded"}
    assert any("SomethingNew" in f.message for f in st.failures)
