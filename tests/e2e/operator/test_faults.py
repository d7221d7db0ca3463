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
    apply,
    condition,
    get,
    jobs_of,
    leases,
    noop_tj,
    pods_of,
    secret,
    tj_body,
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


@pytest.mark.parametrize(("policy", "reason"), [("IfNotPresent", "ImagePullBackOff"), ("Never", "ErrImageNeverPull")])
def test_missing_image_is_stalled_then_fails_the_product(
    cluster: Any, namespace: str, operator: OperatorProcess, policy: str, reason: str
) -> None:
    """An image the node does not have and no registry serves: the real kubelet's pull fails
    (IfNotPresent: ErrImagePull, then ImagePullBackOff) or is refused (Never: ErrImageNeverPull). The
    TrainingJob says Stalled with that reason, then fails the product after the stuck-pod time."""
    secret(cluster, namespace)
    body = noop_tj("noimage", ["a"], 0)
    body["spec"]["template"].update(image="localhost/tjo-not-built:0", imagePullPolicy=policy)
    started = time.monotonic()
    apply(cluster, namespace, body)
    st = wait_for(f"Stalled {reason}", lambda: stalled(cluster, namespace, "noimage", reason), timeout=120)
    print(f"Stalled {reason} after {time.monotonic() - started:.1f} s")
    assert st["products"]["active"] == 0 and st["products"]["waiting"] == 1
    assert "tjo-not-built" in condition(st, "Stalled")["message"]
    st = wait_phase(cluster, namespace, "noimage", ("Failed",), timeout=STUCK_POD_SECONDS + 120)
    print(f"Failed after {time.monotonic() - started:.1f} s")
    assert st["failures"][0]["reason"] == reason, st["failures"]
    wait_for("Lease released", lambda: leases(cluster, namespace) == [] or None, timeout=30)
    reasons = {(e["type"], e["reason"]) for e in events_for(cluster, namespace, "noimage")}
    assert ("Warning", reason) in reasons


def test_trainer_over_its_memory_limit_is_oom_killed_and_retried_only_to_its_backoff_limit(
    cluster: Any, namespace: str, operator: OperatorProcess, sales_csv: Any
) -> None:
    """The real trainer under a 48Mi limit: its imports alone pass it, the kernel's OOM killer ends
    the container (exit 137, reason OOMKilled), the Job retries it backoffLimit times, and the
    product fails as OOMKilled with what to change, not as a bare exit code; nothing runs after."""
    products = sales_csv(products=1)
    limits = {"memory": "48Mi", "cpu": "500m"}
    body = tj_body("oom", products, backoffLimit=1, template={"resources": {"limits": limits}})
    apply(cluster, namespace, body)
    ended: dict[str, tuple[str | None, int | None]] = {}  # pod uid -> (reason, exit code) of its trainer

    def finished() -> dict[str, Any] | None:
        for pod in pods_of(cluster, namespace, "oom"):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated")
                if term:
                    ended[pod["metadata"]["uid"]] = (term.get("reason"), term.get("exitCode"))
        st = tj_status(cluster, namespace, "oom")
        return st if st.get("phase") in ("Failed", "Succeeded") else None

    st = wait_for("oom finished", finished, timeout=240, every=0.5)
    assert st["phase"] == "Failed", st
    failure = st["failures"][0]
    assert failure["reason"] == "OOMKilled", failure
    assert "limits.memory" in failure["message"]
    assert sorted(ended.values()) == [("OOMKilled", 137)] * 2, ended
    time.sleep(5)  # the product is failed: no third pod
    assert all(p["metadata"]["uid"] in ended for p in pods_of(cluster, namespace, "oom"))


def test_a_lease_deleted_mid_training_is_claimed_again(cluster: Any, namespace: str, operator: OperatorProcess) -> None:
    """``kubectl delete lease`` (or a GitOps prune) while the product trains: the operator's next
    pass re-creates the Lease for its unfinished Job (no other TrainingJob may start the product
    meanwhile), and the product is trained once and its Lease released at the end."""
    secret(cluster, namespace)
    apply(cluster, namespace, noop_tj("pruned", ["a"], 40))
    wait_for(
        "the pod running",
        lambda: [p for p in pods_of(cluster, namespace, "pruned") if p["status"].get("phase") == "Running"] or None,
        timeout=60,
    )
    (held,) = wait_for("the Lease held", lambda: leases(cluster, namespace) or None, timeout=30)
    deleted = time.monotonic()
    cluster.kubectl("delete", "lease", "-n", namespace, held["metadata"]["name"])

    def claimed_again() -> list[dict[str, Any]] | None:
        return [x for x in leases(cluster, namespace) if x["metadata"]["uid"] != held["metadata"]["uid"]] or None

    (again,) = wait_for("the Lease re-created", claimed_again, timeout=60)
    print(f"\nLease re-created {time.monotonic() - deleted:.1f} s after its deletion")
    assert again["metadata"]["name"] == held["metadata"]["name"]
    assert again["spec"]["holderIdentity"] == held["spec"]["holderIdentity"]
    assert tj_status(cluster, namespace, "pruned")["products"]["active"] == 1
    st = wait_phase(cluster, namespace, "pruned", ("Succeeded", "Failed"), timeout=120)
    assert st["phase"] == "Succeeded" and st["products"]["succeeded"] == 1, st
    assert len(jobs_of(cluster, namespace, "pruned")) == 1
    wait_for("Lease released", lambda: leases(cluster, namespace) == [] or None, timeout=30)
