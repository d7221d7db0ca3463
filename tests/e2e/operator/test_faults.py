"""Faults surface and recover on the real control plane (issue 10): refused Jobs, pods that cannot
start, not-retried exit codes and deadlines each become a Warning Event and a condition within a
minute, the product not counted active and its Lease released."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.e2e.operator.conftest import STUCK_POD_SECONDS, OperatorProcess
from tests.e2e.operator.helpers import (
    condition,
    get,
    jobs_of,
    leases,
    noop_tj,
    pods_of,
    secret,
    tj_status,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.e2e


def events_for(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in get(cluster, namespace, "events")["items"] if e["involvedObject"].get("name") == name]


def stalled(cluster: Any, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    st = tj_status(cluster, namespace, name)
    cond = next((c for c in st.get("conditions") or [] if c["type"] == "Stalled"), None)
    return st if cond and cond["status"] == "True" and cond["reason"] == reason else None


def test_job_the_api_server_refuses_is_surfaced_at_once(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    secret(cluster, namespace)
    body = noop_tj("refused", ["a", "b", "c"], 0, parallelism=2)
    body["spec"]["template"]["serviceAccountName"] = "Not_A_Valid_Name"  # schema-valid, Job-invalid
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    st = wait_for("Stalled JobRejected", lambda: stalled(cluster, namespace, "refused", "JobRejected"), timeout=60)
    assert time.monotonic() - started < 60
    assert st["products"]["active"] == 0 and st["products"]["failed"] >= 1
    assert "serviceAccountName" in condition(st, "Stalled")["message"]
    assert st["failures"][0]["reason"] == "JobRejected"
    st = wait_phase(cluster, namespace, "refused", ("Failed",), timeout=30)
    assert condition(st, "Failed")["reason"] == "JobRejected"
    assert jobs_of(cluster, namespace, "refused") == [] and leases(cluster, namespace) == []
    reasons = {(e["type"], e["reason"]) for e in events_for(cluster, namespace, "refused")}
    assert ("Warning", "JobRejected") in reasons and ("Normal", "Launched") not in reasons


def test_missing_secret_is_surfaced_then_fails_the_product(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    body = noop_tj("nosecret", ["a"], 0)  # the Secret "unused" does not exist here
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    st = wait_for(
        "Stalled CreateContainerConfigError",
        lambda: stalled(cluster, namespace, "nosecret", "CreateContainerConfigError"),
        timeout=60,
    )
    assert time.monotonic() - started < 60
    assert '"unused"' in condition(st, "Stalled")["message"]
    assert st["products"]["active"] == 0 and st["products"]["waiting"] == 1
    assert leases(cluster, namespace) != []  # its Job is unfinished: the claim stays until it ends
    st = wait_phase(cluster, namespace, "nosecret", ("Failed",), timeout=STUCK_POD_SECONDS + 60)
    wait_for("Lease released", lambda: leases(cluster, namespace) == [] or None, timeout=20)
    assert st["failures"][0]["reason"] == "CreateContainerConfigError"
    assert '"unused"' in st["failures"][0]["message"]
    wait_for("Job deleted", lambda: jobs_of(cluster, namespace, "nosecret") == [] or None, timeout=60)
    reasons = {(e["type"], e["reason"]) for e in events_for(cluster, namespace, "nosecret")}
    assert ("Warning", "CreateContainerConfigError") in reasons


@pytest.mark.parametrize(("code", "reason"), [(2, "InvalidConfig"), (3, "InvalidData")])
def test_not_retriable_exit_codes_fail_at_once(
    cluster: Any, namespace: str, operator: OperatorProcess, code: int, reason: str
) -> None:
    secret(cluster, namespace)
    body = noop_tj("noretry", ["a"], 0, backoffLimit=3)
    body["spec"]["template"]["env"].append({"name": "NOOP_EXIT_CODE", "value": str(code)})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    st = wait_phase(cluster, namespace, "noretry", ("Failed",), timeout=60)
    assert st["failures"][0]["reason"] == reason, st["failures"]
    assert len(pods_of(cluster, namespace, "noretry")) == 1  # never retried


def test_active_deadline_fails_with_deadline_exceeded_and_is_not_retried(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    secret(cluster, namespace)
    body = noop_tj("deadline", ["a"], 60, backoffLimit=3, activeDeadlineSeconds=3)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    st = wait_phase(cluster, namespace, "deadline", ("Failed",), timeout=60)
    assert st["failures"][0]["reason"] == "DeadlineExceeded", st["failures"]
    job = jobs_of(cluster, namespace, "deadline")[0]
    assert any(c["reason"] == "DeadlineExceeded" for c in job["status"]["conditions"])
    assert job["status"].get("failed", 0) <= 1  # its one pod was stopped, none started again
