"""Shard planning, the shard/discovery builders and the shard reports (issue 19 contract)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders, observe, shards
from trainingjob_operator.api import ShardCounts, TrainingJob
from trainingjob_operator.reconcile import reconcile
from trainingjob_operator.shard_report import parse_discover_report, parse_shard_report
from trainingjob_operator.status import parse_indexes


def all_products_tj(**spec: Any) -> TrainingJob:
    body: dict[str, Any] = {
        "metadata": {"name": "nightly", "namespace": "shop", "uid": "0123456789abcdef", "generation": 1},
        "spec": {"allProducts": True, "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}}, **spec},
    }
    return TrainingJob.model_validate(body)


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


# ---------------------------------------------------------------- planning


@pytest.mark.parametrize(
    ("count", "parallelism", "size"),
    [
        (4, 4, 1),
        (33, 4, 1),
        (1000, 4, 1),
        (1001, 4, 32),
        (2000, 4, 63),
        (2000, 400, 1),
        (100_000, 4, 500),
        (100_000, 100, 125),
    ],
)
def test_auto_size_is_one_up_to_1000_products_or_eight_per_slot_then_grows_to_500(
    count: int, parallelism: int, size: int
) -> None:
    assert shards.auto_size(count, parallelism) == size


def test_shard_mode_is_all_products_or_more_than_one_product_per_pod() -> None:
    assert not shards.in_shard_mode(make_tj())  # 10 products, parallelism 4: one pod each
    assert shards.in_shard_mode(make_tj(productsPerPod=2))
    assert not shards.in_shard_mode(make_tj([f"p{i}" for i in range(1000)]))  # auto: one pod each up to 1,000
    assert shards.in_shard_mode(make_tj([f"p{i}" for i in range(1001)]))  # auto: 32 per pod
    assert shards.in_shard_mode(all_products_tj(productsPerPod=1))
    started = make_tj([f"p{i}" for i in range(100)]).model_copy(deep=True)
    started.status.start_time = "2026-12-07T04:00:00Z"  # started per product before shards existed
    assert not shards.in_shard_mode(started)


def test_the_size_is_frozen_in_status_once_started() -> None:
    tj = make_tj([f"p{i}" for i in range(2000)])
    assert shards.shard_size(tj, 2000) == 63
    tj.status.shards = ShardCounts(size=63)
    tj.spec.parallelism = 100  # kubectl scale
    assert shards.shard_size(tj, 2000) == 63


@given(
    total=st.integers(0, 300),
    recorded=st.sets(st.integers(0, 299)),
    size=st.integers(1, 40),
)
def test_a_round_covers_each_unrecorded_index_in_exactly_one_shard(total: int, recorded: set[int], size: int) -> None:
    r = shards.round_indexes(total, recorded)
    n = shards.completions(len(r), size)
    seen = [i for k in range(n) for i in shards.shard_indexes(r, size, k)]
    assert seen == r == sorted(set(range(total)) - recorded)
    assert all(1 <= len(shards.shard_indexes(r, size, k)) <= size for k in range(n))


def test_products_sha256_is_sha256_of_sorted_ids_joined_by_newlines() -> None:
    expected = hashlib.sha256("A\na\nb\né".encode()).hexdigest()
    assert shards.products_sha256(["b", "é", "a", "A", "a"]) == expected


# ---------------------------------------------------------------- builders


def _round(tj: TrainingJob, indexes: str = "0-99", size: int = 10) -> builders.ShardRound:
    count = len(parse_indexes(indexes))
    rid = shards.round_id(tj, "", indexes, size)
    return builders.ShardRound(rid, indexes, size, shards.completions(count, size), "", "ab" * 32)


def test_shard_job_is_one_indexed_job_per_round_with_r_frozen_in_env() -> None:
    tj = make_tj([f"p{i}" for i in range(100)], parallelism=3, backoffLimit=2, activeDeadlineSeconds=60)
    tj.metadata["labels"] = {"kueue.x-k8s.io/queue-name": "team"}
    job = builders.build_shard_job(tj, _round(tj), suspend=False)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 10 and spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 2 and "backoffLimit" not in spec and spec["suspend"] is False
    assert "activeDeadlineSeconds" not in spec and spec["template"]["spec"]["activeDeadlineSeconds"] == 600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    env = _env(job)
    assert env["TRAINER_SHARD_INDEXES"] == "0-99" and env["TRAINER_SHARD_SIZE"] == "10"
    assert env["TRAINER_PRODUCTS_FROM"] == "file:/plan/products" and env["TRAINER_PRODUCTS_SHA256"] == "ab" * 32
    assert env["TRAINER_RUN_KEY"] == "uid-1/0" and "TRAINER_PRODUCT_ID" not in env
    meta = job["metadata"]
    assert meta["name"] == f"weekly-shards-{_round(tj).round_id}" and len(meta["name"]) <= 63
    assert meta["labels"][builders.LABEL_ROUND] == _round(tj).round_id
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team"
    assert meta["labels"][builders.LABEL_PRODUCT_HASH] == builders.SHARD_HASH
    assert meta["annotations"][builders.ANNOTATION_INDEXES] == "0-99"
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"]
    mounts = spec["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "products", "mountPath": "/plan", "readOnly": True} in mounts


def test_shard_pods_of_all_products_read_the_snapshot_or_the_source_in_trial_mode() -> None:
    tj = all_products_tj()
    assert _env(builders.build_shard_job(tj, _round(tj), False))["TRAINER_PRODUCTS_FROM"] == "snapshot"
    trial = all_products_tj(data={"configMap": {"name": "sales", "key": "sales.csv"}})
    assert _env(builders.build_shard_job(trial, _round(trial), False))["TRAINER_PRODUCTS_FROM"] == "source"


def test_per_product_pods_get_the_shard_variables_blank() -> None:
    env = _env(builders.build_job(make_tj(), "p1"))
    assert all(env[name] == "" for name in builders.SHARD_ENV)


def test_products_configmap_holds_sorted_ids_newline_separated_with_their_digest() -> None:
    tj = make_tj(["b", "a", "c"])
    cm = builders.build_products_configmap(tj)
    assert cm["data"] == {"products": "a\nb\nc"}
    assert cm["metadata"]["annotations"][builders.ANNOTATION_PRODUCTS_SHA256] == shards.products_sha256("abc")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1" and tj.uid in cm["metadata"]["name"]


def test_discovery_job_runs_discover_with_the_uid_as_run_key() -> None:
    tj = all_products_tj()
    job = builders.build_discovery_job(tj)
    assert job["metadata"]["name"] == "nightly-discover-01234567"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["discover"]
    env = _env(job)
    assert env["TRAINER_RUN_KEY"] == tj.uid and env["TRAINER_DATA_TABLE"] == "sales"
    assert job["metadata"]["labels"][builders.LABEL_PRODUCT_HASH] == builders.DISCOVERY_HASH


# ---------------------------------------------------------------- reports


def shard_message(**over: Any) -> str:
    doc: dict[str, Any] = {
        "v": 2,
        "kind": "shard",
        "shard": 3,
        "size": 10,
        "n": 10,
        "done": 6,
        "trained": "0-2,5",
        "skipped": "3",
        "locked": "",
        "failed": "4",
        "errors": [[4, "sku-4", "DataInvalid", "too few points"]],
        "errors_omitted": 0,
        "results": {"metric": "smape", "trained": 3, "errors": {"40": 2, "41": 1}, "error_sum": "0.300000"},
    }
    doc.update(over)
    return json.dumps(doc)


def test_shard_report_is_parsed_by_position() -> None:
    report = parse_shard_report(shard_message(), 3, 10)
    assert report is not None
    assert report.trained == {0, 1, 2, 5} and report.skipped == {3} and report.failed == {4}
    assert report.errors[4].product == "sku-4" and report.errors[4].reason == "DataInvalid"
    assert report.results is not None and report.results.errors == {40: 2, 41: 1}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("another shard's", shard_message(shard=4)),
        ("two outcomes for one position", shard_message(skipped="3,5")),
        ("a gap below done", shard_message(done=7)),
        ("past n", shard_message(trained="0-2,5,12")),
        ("a huge range", shard_message(trained="0-99999999999")),
        ("not JSON", "Traceback (most recent call last)"),
        ("an error for a position that did not fail", shard_message(errors=[[0, "x", "TrainerError", ""]])),
        ("v1", shard_message(v=1)),
    ],
)
def test_inconsistent_shard_reports_are_no_report(case: str, message: str) -> None:
    assert parse_shard_report(message, 3, 10) is None, case


def test_discover_report() -> None:
    good = {"v": 1, "kind": "discover", "count": 300, "products_sha256": "0f" * 32, "snapshot": True}
    report = parse_discover_report(json.dumps(good))
    assert report is not None and report.count == 300 and report.snapshot
    assert parse_discover_report(json.dumps({**good, "products_sha256": "xyz"})) is None
    assert parse_discover_report(json.dumps({**good, "count": -1})) is None


# ---------------------------------------------------------------- observe


def _raw_shard_job(tj: TrainingJob, rnd: builders.ShardRound, status: dict[str, Any]) -> dict[str, Any]:
    job = builders.build_shard_job(tj, rnd, suspend=False)
    job["metadata"]["uid"] = "job-uid-1"
    job["status"] = status
    return observe.trim_job(job)


def _raw_shard_pod(
    index: int, exit_code: int, message: str, reason: str = "Error", uid: str = "pod-1"
) -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": f"p-{uid}",
            "uid": uid,
            "labels": {builders.JOB_UID_LABEL: "job-uid-1"},
            "annotations": {observe.COMPLETION_INDEX: str(index), "other": "dropped"},
        },
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": reason,
                            "message": message,
                            "finishedAt": "2026-12-07T04:10:00Z",
                        }
                    },
                }
            ],
        },
    }
    return observe.trim_pod(pod)


def test_observe_reads_a_round_from_the_trimmed_job_and_its_pods_by_completion_index() -> None:
    tj = make_tj([f"sku-{i:03d}" for i in range(20)], productsPerPod=10)
    rnd = _round(tj, "0-19", 10)
    raw = _raw_shard_job(tj, rnd, {"completedIndexes": "0", "failedIndexes": "1", "active": 0})
    pods = [
        _raw_shard_pod(0, 0, shard_message(shard=0, n=10, done=10, trained="0-9", skipped="", failed="", errors=[])),
        _raw_shard_pod(1, 137, "", reason="OOMKilled", uid="pod-2"),
    ]
    observed = observe.build(tj, set(), [raw], lambda uid: pods if uid == "job-uid-1" else [], [])
    assert observed.shards is not None and observed.jobs == {}
    (job,) = observed.shards.jobs
    assert (job.round_id, job.indexes, job.size, job.completions) == (rnd.round_id, "0-19", 10, 2)
    assert job.completed == {0} and job.failed == {1}
    assert {p.index: p.reason for p in job.pods} == {0: "", 1: "OOMKilled"}
    plan = reconcile(tj, observed, datetime(2026, 12, 7, 4, 11, tzinfo=UTC))
    assert plan.status.succeeded_indexes == "0-9" and plan.status.failed_indexes == "10-19"
    assert {f.reason for f in plan.status.failures} == {"OOMKilled"}
    assert plan.status.shards is not None and plan.status.shards.size == 10


def test_a_per_product_trainingjob_observes_no_shards() -> None:
    assert observe.build(make_tj(), set(), [], lambda uid: [], []).shards is None


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["trained", "skipped", "locked", "invalid", "failed"]), max_size=600),
    error=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_the_trainers_shard_reports_parse_position_for_position(kinds: list[str], error: float) -> None:
    """Both sides of the contract: what forecast_trainer writes, the operator reads, whatever it had to cut."""
    from forecast_trainer.report import ProductResult
    from forecast_trainer.report import shard_message as trainer_message

    results = [
        ProductResult(product=f"p{i:05d}", status=k, metric="smape", reason="R", message="m", error=error)
        for i, k in enumerate(kinds)
    ]
    text = trainer_message(7, max(len(kinds), 1), len(kinds), results, "smape")
    report = parse_shard_report(text, 7, max(len(kinds), 1))
    assert report is not None, text
    done = report.done
    assert report.trained == {i for i, k in enumerate(kinds[:done]) if k == "trained"}
    assert report.failed == {i for i, k in enumerate(kinds[:done]) if k in ("invalid", "failed")}
    assert report.locked == {i for i, k in enumerate(kinds[:done]) if k == "locked"}
    assert all(report.errors[p].product == f"p{p:05d}" for p in report.errors)
    assert report.results is not None and report.results.trained == len(report.trained)


def test_status_shards_shows_a_round_that_ended_between_two_passes_with_its_final_counts() -> None:
    """The scale bench's smoke run saw status.shards stuck at the counts of the last pass that saw the
    round running: a round that ended before the next pass kept 'succeeded 1 of 2'."""
    tj = make_tj([f"sku-{i:03d}" for i in range(20)], productsPerPod=10)
    rnd = _round(tj, "0-19", 10)
    report = shard_message(shard=0, n=10, done=10, trained="0-9", skipped="", failed="", errors=[])
    running = _raw_shard_job(tj, rnd, {"completedIndexes": "0", "active": 1})
    pods = [_raw_shard_pod(0, 0, report)]
    now = datetime(2026, 12, 7, 4, 11, tzinfo=UTC)
    first = reconcile(tj, observe.build(tj, set(), [running], lambda uid: pods, []), now)
    assert first.status.shards is not None
    assert (first.status.shards.total, first.status.shards.succeeded, first.status.shards.active) == (2, 1, 1)
    tj.status = first.status
    done = _raw_shard_job(
        tj,
        rnd,
        {
            "completedIndexes": "0-1",
            "succeeded": 2,
            "active": 0,
            "completionTime": "2026-12-07T04:11:30Z",
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-12-07T04:11:30Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-07T04:11:30Z"},
            ],
        },
    )
    second_report = shard_message(shard=1, n=10, done=10, trained="0-9", skipped="", failed="", errors=[])
    pods = [*pods, _raw_shard_pod(1, 0, second_report, uid="pod-2")]
    plan = reconcile(
        tj, observe.build(tj, set(), [done], lambda uid: pods, []), datetime(2026, 12, 7, 4, 12, tzinfo=UTC)
    )
    assert plan.status.succeeded_indexes == "0-19" and plan.status.phase == "Succeeded"
    assert plan.status.shards is not None
    assert (plan.status.shards.total, plan.status.shards.succeeded, plan.status.shards.active) == (2, 2, 0)
