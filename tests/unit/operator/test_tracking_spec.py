"""spec.tracking.mlflow -> pod env (builders.tracking_env), status counts and the Tracked condition."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.observed import Observed, ObservedJob
from trainingjob_operator.reconcile import reconcile
from trainingjob_operator.termination import ProductReport, parse_report

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def env_of(tj: TrainingJob) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in builders.trainer_env(tj, "p0")}


def test_no_tracking_no_mlflow_env() -> None:
    env = env_of(make_tj())
    assert not [k for k in env if k.startswith("MLFLOW_")]
    assert env.get("TRAINER_PIN_CHAMPION", "") == ""  # reserved: set blank (unset) when not pinned


def test_inline_uri_and_default_experiment() -> None:
    env = env_of(make_tj(tracking={"mlflow": {"trackingUri": "http://mlflow.ml:5000"}}))
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.ml:5000"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "shop/weekly"
    assert env["TRAINER_REGISTERED_MODEL_PREFIX"] == "forecast-"
    assert env["TRAINER_TRACKING_BUDGET_SECONDS"] == "15"


def test_secret_uri_and_credentials_only_by_reference() -> None:
    ref = {"name": "mlflow", "uriKey": "uri", "usernameKey": "user", "passwordKey": "pass", "tokenKey": "token"}
    tj = make_tj(tracking={"mlflow": {"secretRef": ref, "experimentName": "bakery", "budgetSeconds": 5}})
    env = env_of(tj)
    for variable, key in (
        ("MLFLOW_TRACKING_URI", "uri"),
        ("MLFLOW_TRACKING_USERNAME", "user"),
        ("MLFLOW_TRACKING_PASSWORD", "pass"),
        ("MLFLOW_TRACKING_TOKEN", "token"),
    ):
        assert env[variable] == {"secretKeyRef": {"name": "mlflow", "key": key}}
    assert env["MLFLOW_EXPERIMENT_NAME"] == "bakery" and env["TRAINER_TRACKING_BUDGET_SECONDS"] == "5"


def test_schedule_runs_share_the_schedule_experiment_and_pin_annotation() -> None:
    tj = make_tj(tracking={"mlflow": {"trackingUri": "http://m:5000"}})
    tj = tj.model_copy(
        update={
            "metadata": {
                **tj.metadata,
                "labels": {builders.LABEL_SCHEDULE: "nightly"},
                "annotations": {builders.ANNOTATION_PIN_CHAMPION: "true"},
            }
        }
    )
    env = env_of(tj)
    assert env["MLFLOW_EXPERIMENT_NAME"] == "shop/nightly"
    assert env["TRAINER_SCHEDULE"] == "shop/nightly" and env["TRAINER_PIN_CHAMPION"] == "true"


def test_template_env_does_not_override_the_tracking_spec() -> None:
    tj = make_tj(
        tracking={"mlflow": {"trackingUri": "http://m:5000"}},
        template={"env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://other"}, {"name": "X", "value": "1"}]},
    )
    names = [e["name"] for e in builders.trainer_env(tj, "p0")]
    assert names.count("MLFLOW_TRACKING_URI") == 1 and "X" in names
    assert env_of(tj)["MLFLOW_TRACKING_URI"] == "http://m:5000"


@pytest.mark.parametrize(
    "mlflow",
    [
        {"trackingUri": "http://user:pw@m:5000"},  # credentials belong in a Secret
        {"trackingUri": "ftp://m"},
        {"registeredModelPrefix": "a/b", "trackingUri": "http://m"},
        {"budgetSeconds": 0, "trackingUri": "http://m"},
    ],
)
def test_invalid_tracking_specs_are_refused(mlflow: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_tj(tracking={"mlflow": mlflow})


def test_report_fields_parsed() -> None:
    message = '{"products": [{"product": "p0", "status": "trained", "champion": "kept", "tracking": "skipped"}]}'
    report = parse_report(message, "p0")
    assert report is not None and report.champion == "kept" and report.tracking == "skipped"


def done(p: str, champion: str, tracking: str) -> ObservedJob:
    report = ProductReport(product=p, status="trained", error=0.1, champion=champion, tracking=tracking)
    return ObservedJob(name=f"j-{p}", uid=f"u-{p}", product=p, retry_round="", finished="Complete", report=report)


def test_status_counts_champions_and_tracking_and_says_tracking_was_skipped() -> None:
    tj = make_tj(["a", "b", "c"], tracking={"mlflow": {"trackingUri": "http://m:5000"}})
    jobs = {"a": done("a", "promoted", "logged"), "b": done("b", "kept", "skipped"), "c": done("c", "first", "logged")}
    plan = reconcile(tj, Observed(jobs=jobs), NOW)
    results = plan.status.results
    assert results is not None and results.champions is not None and results.tracking is not None
    assert (results.champions.promoted, results.champions.kept, results.champions.first) == (1, 1, 1)
    assert (results.tracking.logged, results.tracking.skipped) == (2, 1)
    tracked = {c.type: c for c in plan.status.conditions}["Tracked"]
    assert tracked.status == "False" and tracked.reason == "TrackingSkipped" and "1 of 3" in tracked.message


def test_no_tracked_condition_without_tracking() -> None:
    tj = make_tj(["a"])
    plan = reconcile(tj, Observed(jobs={"a": done("a", "first", "off")}), NOW)
    assert "Tracked" not in {c.type for c in plan.status.conditions}
    assert plan.status.results is not None and plan.status.results.tracking is None
