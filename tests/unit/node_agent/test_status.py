"""Pure builders of the node agent's pod and node status."""

from __future__ import annotations

from typing import Any

import pytest

from node_agent.status import (
    ContainerView,
    Terminated,
    container_status,
    exit_code_of,
    micro_time,
    node_lease,
    node_status,
    parse_time,
    pod_conditions,
    pod_phase,
    pod_status_patch,
    rfc3339,
    semantic,
    terminated_reason,
    termination_message,
)

T0 = 1_700_000_000.0


def done(code: int, reason: str = "", message: str = "") -> Terminated:
    return Terminated(code, reason or ("Completed" if code == 0 else "Error"), message, T0, T0 + 5)


def running(name: str = "main") -> ContainerView:
    return ContainerView(name, "img", "running", started_at=T0)


def exited(code: int, name: str = "main") -> ContainerView:
    return ContainerView(name, "img", "terminated", terminated=done(code))


def waiting(name: str = "main", reason: str = "ContainerCreating") -> ContainerView:
    return ContainerView(name, "img", "waiting", reason=reason)


def pod(restart_policy: str = "Never", status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"restartPolicy": restart_policy},
        "status": status or {},
    }


def test_times() -> None:
    assert rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert micro_time(T0 + 0.25) == "2023-11-14T22:13:20.250000Z"
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time(None) is None


@pytest.mark.parametrize(
    ("code", "oom", "start_error", "reason"),
    [
        (0, False, False, "Completed"),
        (1, False, False, "Error"),
        (137, True, False, "OOMKilled"),
        (128, False, True, "StartError"),
        (143, False, False, "Error"),
    ],
)
def test_terminated_reason(code: int, oom: bool, start_error: bool, reason: str) -> None:
    assert terminated_reason(code, oom_killed=oom, start_error=start_error) == reason


def test_exit_code_of_signals() -> None:
    assert exit_code_of(3, None) == 3
    assert exit_code_of(None, 9) == 137
    assert exit_code_of(None, 15) == 143


def test_termination_message_file_wins_and_is_capped() -> None:
    assert termination_message(b'{"a": 1}', "File", 1, "log") == '{"a": 1}'
    assert len(termination_message(b"x" * 10_000, "File", 0)) == 4096


def test_termination_message_fallback_to_logs_only_on_error_with_empty_file() -> None:
    log = "\n".join(f"line {i}" for i in range(200))
    msg = termination_message(b"", "FallbackToLogsOnError", 2, log)
    assert msg.splitlines()[-1] == "line 199" and len(msg.splitlines()) <= 80 and len(msg.encode()) <= 2048
    assert termination_message(b"", "FallbackToLogsOnError", 0, log) == ""
    assert termination_message(b"", "File", 2, log) == ""
    assert termination_message(b"file", "FallbackToLogsOnError", 2, log) == "file"


def test_container_status_shapes() -> None:
    r = container_status(ContainerView("main", "img:1", "running", started_at=T0, container_id="nodeagent://7"))
    assert r["state"] == {"running": {"startedAt": "2023-11-14T22:13:20Z"}}
    assert r["ready"] is True and r["started"] is True and r["containerID"] == "nodeagent://7"
    t = container_status(
        ContainerView(
            "main",
            "img:1",
            "terminated",
            terminated=done(3, message="bad data"),
            restart_count=1,
            last_terminated=done(1),
        )
    )
    assert t["state"]["terminated"] == {
        "exitCode": 3,
        "reason": "Error",
        "message": "bad data",
        "startedAt": "2023-11-14T22:13:20Z",
        "finishedAt": "2023-11-14T22:13:25Z",
    }
    assert t["lastState"]["terminated"]["exitCode"] == 1 and t["restartCount"] == 1 and t["ready"] is False
    w = container_status(ContainerView("main", "x", "waiting", reason="ErrImagePull", message="nope"))
    assert w["state"] == {"waiting": {"reason": "ErrImagePull", "message": "nope"}} and w["lastState"] == {}


@pytest.mark.parametrize(
    ("views", "policy", "phase"),
    [
        ([], "Never", "Pending"),
        ([waiting()], "Never", "Pending"),
        ([running()], "Never", "Running"),
        ([running("a"), exited(1, "b")], "Never", "Running"),
        ([exited(0)], "Never", "Succeeded"),
        ([exited(0, "a"), exited(2, "b")], "Never", "Failed"),
        ([exited(1)], "OnFailure", "Running"),
        ([exited(0)], "OnFailure", "Succeeded"),
        ([exited(0)], "Always", "Running"),
        (
            [ContainerView("main", "i", "waiting", reason="CrashLoopBackOff", last_terminated=done(1))],
            "OnFailure",
            "Running",
        ),
    ],
)
def test_pod_phase(views: list[ContainerView], policy: str, phase: str) -> None:
    assert pod_phase(views, policy) == phase


def test_conditions_running_pod_is_ready() -> None:
    conds = {c["type"]: c for c in pod_conditions(None, "Running", [running()], T0)}
    assert set(conds) == {"PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}
    assert all(c["status"] == "True" for c in conds.values())


def test_conditions_pending_and_completed() -> None:
    pending = {c["type"]: c for c in pod_conditions(None, "Pending", [waiting()], T0)}
    assert pending["Ready"]["status"] == "False" and pending["Ready"]["reason"] == "ContainersNotReady"
    assert pending["Ready"]["message"] == "containers with unready status: [main]"
    done_ = {c["type"]: c for c in pod_conditions(None, "Succeeded", [exited(0)], T0)}
    assert done_["Ready"]["reason"] == "PodCompleted" and done_["PodReadyToStartContainers"]["status"] == "False"


def test_conditions_keep_transition_time_while_status_unchanged() -> None:
    before = pod_conditions(None, "Running", [running()], T0)
    after = {c["type"]: c for c in pod_conditions(before, "Running", [running()], T0 + 60)}
    assert after["Ready"]["lastTransitionTime"] == rfc3339(T0)
    flipped = {c["type"]: c for c in pod_conditions(before, "Succeeded", [exited(0)], T0 + 60)}
    assert flipped["Ready"]["lastTransitionTime"] == rfc3339(T0 + 60)


def test_pod_status_patch_running() -> None:
    patch = pod_status_patch(pod(), [running()], T0, start_time=T0)
    st = patch["status"]
    assert st["phase"] == "Running" and st["podIP"] == "127.0.0.1" and st["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert st["startTime"] == rfc3339(T0) and st["reason"] is None and st["message"] is None
    # only kubelet-owned conditions: PodScheduled stays the scheduler's
    assert "PodScheduled" not in {c["type"] for c in st["conditions"]}


def test_pod_status_patch_keeps_existing_start_time_and_accepts_overrides() -> None:
    existing = pod(status={"startTime": "2020-01-01T00:00:00Z"})
    patch = pod_status_patch(
        existing, [exited(137)], T0, phase="Failed", reason="DeadlineExceeded", message="too slow", start_time=T0
    )
    st = patch["status"]
    assert st["startTime"] == "2020-01-01T00:00:00Z"
    assert (st["phase"], st["reason"], st["message"]) == ("Failed", "DeadlineExceeded", "too slow")


def test_semantic_ignores_transition_times() -> None:
    a = pod_status_patch(pod(), [running()], T0, start_time=T0)
    b = pod_status_patch(pod(), [running()], T0 + 30, start_time=T0)
    assert semantic(a) == semantic(b)
    c = pod_status_patch(pod(), [exited(0)], T0 + 30, start_time=T0)
    assert semantic(a) != semantic(c)


def test_node_status_and_lease() -> None:
    st = node_status(
        cpu=2,
        memory_bytes=4 * 2**30,
        pods=110,
        ephemeral_bytes=10 * 2**30,
        hostname="h",
        node_info={"kubeletVersion": "v1.33.13"},
        now=T0,
    )["status"]
    assert st["allocatable"] == {"cpu": "2", "memory": "4194304Ki", "pods": "110", "ephemeral-storage": "10485760Ki"}
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    lease = node_lease("n1", "uid-1", "n1", 40, T0)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-1"}
    assert lease["spec"] == {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": micro_time(T0)}
