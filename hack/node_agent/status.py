"""Pure builders of what a kubelet reports: pod status (phase, conditions, container statuses),
termination messages, node status and the node Lease. No I/O here; unit tested on plain data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

Json = dict[str, Any]

# kubelet limits (pkg/kubelet/container): a termination message file is read up to 4 KiB;
# FallbackToLogsOnError uses the last 80 lines of the log, at most 2 KiB.
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
HOST_IP = "127.0.0.1"

StateName = Literal["waiting", "running", "terminated"]


def rfc3339(ts: float) -> str:
    """Seconds since the epoch -> ``2024-01-02T03:04:05Z`` (metav1.Time precision)."""
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(ts: float) -> str:
    """Seconds since the epoch -> metav1.MicroTime (``...05.123456Z``), as Leases use."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    message: str
    started_at: float | None
    finished_at: float
    container_id: str = ""


@dataclass(frozen=True)
class ContainerView:
    """What the agent knows about one container, enough to build its containerStatus."""

    name: str
    image: str
    state: StateName
    reason: str = ""  # waiting reason
    message: str = ""  # waiting message
    started_at: float | None = None  # running since
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_count: int = 0
    container_id: str = ""


def terminated_reason(exit_code: int, oom_killed: bool = False, start_error: bool = False) -> str:
    if oom_killed:
        return "OOMKilled"
    if start_error:
        return "StartError"
    return "Completed" if exit_code == 0 else "Error"


def exit_code_of(wait_status_code: int | None, signal_number: int | None) -> int:
    """A runtime's exit code: the process's code, or 128 + the signal that killed it."""
    if signal_number:
        return 128 + signal_number
    return int(wait_status_code or 0)


def _tail(text: str, lines: int, max_bytes: int) -> str:
    tail = "\n".join(text.splitlines()[-lines:])
    data = tail.encode()
    if len(data) > max_bytes:
        data = data[-max_bytes:]
    return data.decode("utf-8", "ignore")


def termination_message(file_content: bytes | None, policy: str | None, exit_code: int, log_text: str = "") -> str:
    """``state.terminated.message``: the termination message file (first 4 KiB); with
    ``FallbackToLogsOnError`` and a failure and an empty file, the log tail instead."""
    message = (file_content or b"")[:MAX_MESSAGE_BYTES].decode("utf-8", "replace")
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        return _tail(log_text, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
    return message


def _terminated_json(t: Terminated) -> Json:
    out: Json = {"exitCode": t.exit_code, "reason": t.reason, "finishedAt": rfc3339(t.finished_at)}
    out["startedAt"] = rfc3339(t.started_at) if t.started_at is not None else None
    if t.message:
        out["message"] = t.message
    if t.container_id:
        out["containerID"] = t.container_id
    return out


def container_status(c: ContainerView) -> Json:
    state: Json
    if c.state == "running":
        state = {"running": {"startedAt": rfc3339(c.started_at or 0)}}
    elif c.state == "terminated" and c.terminated is not None:
        state = {"terminated": _terminated_json(c.terminated)}
    else:
        waiting: Json = {"reason": c.reason or "ContainerCreating"}
        if c.message:
            waiting["message"] = c.message
        state = {"waiting": waiting}
    out: Json = {
        "name": c.name,
        "image": c.image,
        "imageID": c.image,
        "state": state,
        "lastState": {"terminated": _terminated_json(c.last_terminated)} if c.last_terminated else {},
        "ready": c.state == "running",
        "started": c.state == "running",
        "restartCount": c.restart_count,
    }
    cid = c.container_id or (c.terminated.container_id if c.terminated else "")
    if cid:
        out["containerID"] = cid
    return out


def pod_phase(containers: list[ContainerView], restart_policy: str) -> str:
    """The phase a kubelet derives from its containers (kubelet's getPhase, without init containers)."""
    if not containers:
        return "Pending"
    pending = running = succeeded = failed = 0
    for c in containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated" and c.terminated is not None:
            if c.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif c.last_terminated is not None:
            running += 1  # waiting to be restarted: still a running pod
        else:
            pending += 1
    if pending and not running:
        return "Pending"
    if running or pending:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if restart_policy == "OnFailure":
        return "Succeeded" if failed == 0 else "Running"
    return "Failed" if failed else "Succeeded"


def _condition(type_: str, ok: bool, now: str, existing: dict[str, Json], reason: str = "", message: str = "") -> Json:
    status = "True" if ok else "False"
    old = existing.get(type_)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now
    cond: Json = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_conditions(existing: list[Json] | None, phase: str, containers: list[ContainerView], now: float) -> list[Json]:
    """The kubelet-owned conditions (others, like PodScheduled or DisruptionTarget, are left alone:
    a strategic merge patch merges conditions by type)."""
    by_type = {c.get("type", ""): c for c in existing or []}
    ts = rfc3339(now)
    terminal = phase in ("Succeeded", "Failed")
    sandbox = not terminal
    unready = [c.name for c in containers if c.state != "running"]
    if terminal:
        ready_reason, ready_message = "PodCompleted", ""
    elif unready:
        ready_reason, ready_message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    else:
        ready_reason, ready_message = "", ""
    all_ready = not terminal and not unready and bool(containers)
    return [
        _condition("PodReadyToStartContainers", sandbox, ts, by_type),
        _condition("Initialized", True, ts, by_type, "PodCompleted" if terminal else ""),
        _condition("ContainersReady", all_ready, ts, by_type, ready_reason, ready_message),
        _condition("Ready", all_ready, ts, by_type, ready_reason, ready_message),
    ]


def pod_status_patch(
    pod: Json,
    containers: list[ContainerView],
    now: float,
    *,
    phase: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    start_time: float | None = None,
    pod_ip: str | None = HOST_IP,
    host_ip: str = HOST_IP,
) -> Json:
    """A strategic merge patch for ``pods/status`` with everything a kubelet owns.

    ``phase`` overrides the derived phase (e.g. Failed for DeadlineExceeded); ``reason`` and
    ``message`` are the pod-level ones (None clears them).
    """
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    phase = phase or pod_phase(containers, spec.get("restartPolicy", "Always"))
    body: Json = {
        "phase": phase,
        "conditions": pod_conditions(status.get("conditions"), phase, containers, now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "containerStatuses": [container_status(c) for c in containers],
        "reason": reason,
        "message": message,
    }
    if pod_ip:
        body["podIP"] = pod_ip
        body["podIPs"] = [{"ip": pod_ip}]
    existing_start = status.get("startTime")
    if existing_start:
        body["startTime"] = existing_start
    elif start_time is not None:
        body["startTime"] = rfc3339(start_time)
    return {"status": body}


def semantic(patch: Json) -> Json:
    """The patch minus timestamps that change on every call (to skip no-op updates)."""
    status = dict(patch.get("status") or {})
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []
    ]
    return status


def node_object(name: str, labels: dict[str, str]) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
    }


def node_status(
    *,
    cpu: int,
    memory_bytes: int,
    pods: int,
    ephemeral_bytes: int,
    hostname: str,
    node_info: dict[str, str],
    now: float,
    existing: list[Json] | None = None,
    ready: bool = True,
) -> Json:
    by_type = {c.get("type", ""): c for c in existing or []}
    ts = rfc3339(now)

    def cond(type_: str, ok: bool, reason: str, message: str) -> Json:
        status = "True" if ok else "False"
        old = by_type.get(type_)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else ts
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": since,
        }

    resources = {
        "cpu": str(cpu),
        "memory": f"{memory_bytes // 1024}Ki",
        "pods": str(pods),
        "ephemeral-storage": f"{ephemeral_bytes // 1024}Ki",
    }
    return {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", False, "KubeletHasSufficientMemory", "node agent has sufficient memory"),
                cond("DiskPressure", False, "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
                cond("PIDPressure", False, "KubeletHasSufficientPID", "node agent has sufficient PID available"),
                cond(
                    "Ready",
                    ready,
                    "KubeletReady" if ready else "KubeletNotReady",
                    "node agent is posting ready status" if ready else "node agent is stopping",
                ),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": node_info,
        }
    }


def node_lease(name: str, node_uid: str, holder: str, duration: int, now: float) -> Json:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": micro_time(now)},
    }
