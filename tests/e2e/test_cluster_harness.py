"""The local cluster itself, proven with the real controllers: Jobs, GC, RBAC, Pod Security,
Leases, kubectl, and the node's duties (env, volumes, users, termination messages, deadlines,
memory limits, unknown images, deletion, restarts), on the real node (kubelet + containerd)."""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from tests.e2e.conftest import (
    RUN_AS,
    ClusterHandle,
    restricted_container,
    restricted_pod_spec,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HACK = Path(__file__).resolve().parents[2] / "hack"


# ----------------------------------------------------------------- helpers


def job_body(name: str, script: str, *, backoff_limit: int = 0, **spec: Any) -> dict[str, Any]:
    pod_extra = spec.pop("pod", {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": restricted_pod_spec(script, **pod_extra)},
            **spec,
        },
    }


def pod_body(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": restricted_pod_spec(script, **extra)}


def apply(cluster: ClusterHandle, namespace: str, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def get_pod(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def get_job(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return cluster.api.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")


def job_pods(cluster: ClusterHandle, namespace: str, job: str) -> list[dict[str, Any]]:
    pods = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"job-name={job}"})
    return list(pods["items"])


def job_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return dict(c)
    return None


def finished_as(job: dict[str, Any]) -> str:
    cond = job_condition(job)
    assert cond is not None, job.get("status")
    return str(cond["type"])


def wait_job_finished(cluster: ClusterHandle, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    wait_for(f"job {name} finished", lambda: job_condition(get_job(cluster, namespace, name)), timeout)
    return get_job(cluster, namespace, name)


def wait_pod_phase(
    cluster: ClusterHandle, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = get_pod(cluster, namespace, name)
        return pod if (pod.get("status") or {}).get("phase") in phases else None

    return wait_for(f"pod {name} in {phases}", probe, timeout)


def terminated(pod: dict[str, Any], container: str = "main") -> dict[str, Any]:
    for cs in pod["status"]["containerStatuses"]:
        if cs["name"] == container:
            return dict(cs["state"]["terminated"])
    raise AssertionError(f"no status for container {container}: {pod['status']}")


def container_id(pod: dict[str, Any], index: int = 0) -> str:
    return str(pod["status"]["containerStatuses"][index]["containerID"])


def assert_pod_ip(cluster: ClusterHandle, ip: str) -> None:
    """Pods get addresses from the node's CNI range."""
    net = cluster.local.network
    assert net is not None and ipaddress.ip_address(ip) in net.pod_cidr, ip


# ------------------------------------------------------------ Jobs, controllers


def test_job_completes_with_logs_and_termination_message(cluster: ClusterHandle, namespace: str) -> None:
    script = "echo hello from $(hostname); printf '%s' '{\"trained\": 1}' > /dev/termination-log"
    apply(cluster, namespace, job_body("hello", script))
    job = wait_job_finished(cluster, namespace, "hello")
    assert finished_as(job) == "Complete"
    assert job["status"]["succeeded"] == 1
    (pod,) = job_pods(cluster, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    term = terminated(pod)
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert json.loads(term["message"]) == {"trained": 1}
    assert term["startedAt"] <= term["finishedAt"]
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "False" and conditions["PodScheduled"] == "True"
    assert_pod_ip(cluster, pod["status"]["podIP"])
    assert pod["status"]["startTime"]
    name = pod["metadata"]["name"]
    assert cluster.logs(namespace, name) == f"hello from {name}\n"


def test_backoff_limit_retries_a_failing_pod_then_fails(cluster: ClusterHandle, namespace: str) -> None:
    apply(cluster, namespace, job_body("flaky", "echo failing; exit 1", backoff_limit=1))
    job = wait_job_finished(cluster, namespace, "flaky", timeout=120)
    cond = job_condition(job)
    assert cond is not None and cond["type"] == "Failed" and cond["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    pods = job_pods(cluster, namespace, "flaky")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert terminated(pod)["exitCode"] == 1 and terminated(pod)["reason"] == "Error"


def test_pod_failure_policy_fail_job_on_exit_code_3(cluster: ClusterHandle, namespace: str) -> None:
    body = job_body(
        "invalid-data",
        "echo 'invalid data' >&2; exit 3",
        backoff_limit=6,
        podFailurePolicy={
            "rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
    )
    t0 = time.monotonic()
    apply(cluster, namespace, body)
    job = wait_job_finished(cluster, namespace, "invalid-data", timeout=60)
    cond = job_condition(job)
    assert cond is not None and cond["type"] == "Failed" and cond["reason"] == "PodFailurePolicy"
    assert "exit code 3" in cond["message"]
    assert len(job_pods(cluster, namespace, "invalid-data")) == 1  # no retry
    assert time.monotonic() - t0 < 30


def test_indexed_job_20_completions_parallelism_5(cluster: ClusterHandle, namespace: str) -> None:
    body = job_body(
        "indexed",
        "echo index=$JOB_COMPLETION_INDEX; date +%s.%N; sleep 0.5; date +%s.%N",
        completions=20,
        parallelism=5,
        completionMode="Indexed",
        backoff_limit=2,
    )
    apply(cluster, namespace, body)
    job = wait_job_finished(cluster, namespace, "indexed", timeout=180)
    assert finished_as(job) == "Complete"
    assert job["status"]["succeeded"] == 20 and job["status"]["completedIndexes"] == "0-19"
    pods = job_pods(cluster, namespace, "indexed")
    seen = set()
    spans = []
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        first, start, end = cluster.logs(namespace, pod["metadata"]["name"]).splitlines()
        assert first == f"index={index}"
        seen.add(int(index))
        spans.append((float(start), float(end)))
    assert seen == set(range(20))
    # never more than `parallelism` processes ran at once
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap <= 5


def test_deleting_the_owner_garbage_collects_jobs_and_kills_their_pods(cluster: ClusterHandle, namespace: str) -> None:
    owner = cluster.api.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}},
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    for name in ("child-a", "child-b"):
        body = job_body(name, "trap 'exit 0' TERM; sleep 300 & wait")
        body["metadata"]["ownerReferences"] = [ref]
        apply(cluster, namespace, body)

    def running_pods() -> list[dict[str, Any]] | None:
        pods = [p for j in ("child-a", "child-b") for p in job_pods(cluster, namespace, j)]
        ok = len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    pods = wait_for("both child pods running", running_pods)
    containers = [container_id(p) for p in pods]
    assert all(cluster.container_running(c) for c in containers)
    cluster.api.delete(f"/api/v1/namespaces/{namespace}/configmaps/owner", {"propagationPolicy": "Background"})

    def all_gone() -> bool:
        jobs = cluster.api.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
        left = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        return not jobs and not left

    wait_for("jobs and pods garbage collected", all_gone, timeout=60)
    wait_for("containers gone", lambda: not any(cluster.container_running(c) for c in containers), timeout=10)


def test_restart_policy_on_failure_restarts_in_place(cluster: ClusterHandle, namespace: str) -> None:
    # fails the first time, succeeds the second (the emptyDir outlives the container)
    script = "if [ -f /work/tried ]; then echo second; else touch /work/tried; echo first; exit 2; fi"
    body = job_body(
        "on-failure",
        script,
        backoff_limit=3,
        pod={
            "restart_policy": "OnFailure",
            "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            "volumes": [{"name": "work", "emptyDir": {}}],
        },
    )
    apply(cluster, namespace, body)
    job = wait_job_finished(cluster, namespace, "on-failure", timeout=60)
    assert finished_as(job) == "Complete"
    (pod,) = job_pods(cluster, namespace, "on-failure")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    name = pod["metadata"]["name"]
    assert cluster.logs(namespace, name) == "second\n"


# -------------------------------------------------------- API server policies


def test_service_account_without_rbac_is_forbidden(cluster: ClusterHandle, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = config["clusters"][0]["cluster"]["certificate-authority-data"]
    import base64

    ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
    request = urllib.request.Request(
        f"{cluster.server}/api/v1/namespaces/{namespace}/pods", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=ctx, timeout=10)
    assert err.value.code == 403
    body = json.loads(err.value.read())
    assert f"system:serviceaccount:{namespace}:nobody" in body["message"]
    # and the admin kubeconfig is allowed to do anything
    assert cluster.kubectl("auth", "can-i", "create", "pods", "-n", namespace).stdout.strip() == "yes"


def test_privileged_pod_is_rejected_by_pod_security(cluster: ClusterHandle, namespace: str) -> None:
    body = pod_body("privileged", "true")
    body["spec"]["containers"][0]["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr and "privileged" in result.stderr
    # so is a pod that may run as root
    root = pod_body("root", "true")
    del root["spec"]["securityContext"]["runAsNonRoot"]
    del root["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(root), check=False)
    assert result.returncode != 0 and "runAsNonRoot" in result.stderr


def test_lease_can_be_created_and_renewed(cluster: ClusterHandle, namespace: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    lease = cluster.api.post(
        path,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "product-lock"},
            "spec": {
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-01-01T00:00:00.000000Z",
                "renewTime": "2024-01-01T00:00:00.000000Z",
            },
        },
    )
    lease["spec"]["renewTime"] = "2024-01-01T00:00:10.000000Z"
    renewed = cluster.api.put(f"{path}/product-lock", lease)
    assert renewed["spec"]["renewTime"] == "2024-01-01T00:00:10.000000Z"
    # optimistic concurrency: a stale update is refused
    from localcluster.kube import KubeError

    with pytest.raises(KubeError) as err:
        cluster.api.put(f"{path}/product-lock", lease)
    assert err.value.conflict
    # and the kubelet keeps renewing its node Lease
    node_lease = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{cluster.node_name}"
    first = cluster.api.get(node_lease)["spec"]["renewTime"]
    wait_for("node lease renewed", lambda: cluster.api.get(node_lease)["spec"]["renewTime"] != first, timeout=20)


def test_kubectl_apply_get_wait_with_the_written_kubeconfig(
    cluster: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job_body("kubectl-job", "echo via kubectl")))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def kubectl(*args: str) -> str:
        result = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "created" in kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert "unchanged" in kubectl("apply", "-n", namespace, "-f", str(manifest))
    kubectl("wait", "-n", namespace, "--for=condition=Complete", "--timeout=60s", "job/kubectl-job")
    assert kubectl("get", "job", "kubectl-job", "-n", namespace, "-o", "jsonpath={.status.succeeded}") == "1"
    nodes = kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}")
    assert nodes == "True"


# ----------------------------------------------------------- the node's duties


def test_secret_and_configmap_env_and_downward_api_reach_the_process(cluster: ClusterHandle, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"dsn": "postgres://x:y@h/db"},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}},
    )
    env = [
        {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "mode is $(MODE), $$(MODE) is literal"},
    ]
    script = 'echo "$DSN|$MODE|$POD_NAME|$POD_NS|$NODE|$POD_IP|$GREETING|$(ARG)"'
    apply(cluster, namespace, pod_body("env", script, container={"env": [*env, {"name": "ARG", "value": "x"}]}))
    pod = wait_pod_phase(cluster, namespace, "env", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert_pod_ip(cluster, pod["status"]["podIP"])
    expected = f"postgres://x:y@h/db|fast|env|{namespace}|{cluster.node_name}|{pod['status']['podIP']}|"
    expected += "mode is fast, $(MODE) is literal|x\n"
    assert cluster.logs(namespace, "env") == expected


def test_volumes_user_and_read_only_root(cluster: ClusterHandle, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sales"}, "data": {"sales.csv": "ds,y\n1,2\n"}},
    )
    script = "; ".join(
        [
            "id -u; id -g",
            "cat /data/sales.csv",
            "echo scratch > /tmp/scratch.txt && cat /tmp/scratch.txt",
            "(echo x > /data/nope) 2>/dev/null || echo configmap-read-only",
            "(echo x > /etc/nope) 2>/dev/null || echo root-read-only",
            "stat -c %a /tmp",
        ]
    )
    container = {
        "volumeMounts": [
            {"name": "sales", "mountPath": "/data", "readOnly": True},
            {"name": "scratch", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    volumes = [
        {"name": "sales", "configMap": {"name": "sales"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    apply(cluster, namespace, pod_body("volumes", script, container=container, volumes=volumes))
    pod = wait_pod_phase(cluster, namespace, "volumes", ("Succeeded", "Failed"))
    log = cluster.logs(namespace, "volumes")
    assert pod["status"]["phase"] == "Succeeded", log
    lines = log.splitlines()
    assert lines[:2] == [str(RUN_AS), str(RUN_AS)]
    assert lines[2:4] == ["ds,y", "1,2"]
    assert "scratch" in lines and "configmap-read-only" in lines and "root-read-only" in lines


def test_termination_message_fallback_to_logs_on_error(cluster: ClusterHandle, namespace: str) -> None:
    container = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    apply(cluster, namespace, pod_body("fallback", "echo line1; echo 'it broke' >&2; exit 4", container=container))
    pod = wait_pod_phase(cluster, namespace, "fallback", ("Failed",))
    term = terminated(pod)
    assert term["exitCode"] == 4 and term["reason"] == "Error"
    # the CRI log interleaves stdout and stderr as the shim reads them (no order between the two)
    # and keeps the last newline
    assert sorted(term["message"].splitlines()) == ["it broke", "line1"]
    # a custom terminationMessagePath is bind-mounted too
    container = {"terminationMessagePath": "/run/msg/done"}
    apply(cluster, namespace, pod_body("custom-path", "echo -n custom > /run/msg/done", container=container))
    pod = wait_pod_phase(cluster, namespace, "custom-path", ("Succeeded", "Failed"))
    assert terminated(pod)["message"] == "custom"


def test_active_deadline_seconds_fails_the_pod(cluster: ClusterHandle, namespace: str) -> None:
    apply(cluster, namespace, pod_body("slow", "sleep 60", activeDeadlineSeconds=2))
    running = wait_pod_phase(cluster, namespace, "slow", ("Running", "Failed"))
    pod = wait_pod_phase(cluster, namespace, "slow", ("Failed",), timeout=30)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert "deadline" in pod["status"]["message"].lower()
    # the kubelet reports the container once it is killed
    pod = wait_for("container terminated", lambda: (p := get_pod(cluster, namespace, "slow")) and _terminated(p), 30)
    assert terminated(pod)["exitCode"] in (137, 143)
    if running["status"].get("containerStatuses", [{}])[0].get("containerID"):
        assert not cluster.container_running(container_id(running))


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = pod["status"].get("containerStatuses") or []
    return pod if statuses and "terminated" in statuses[0]["state"] else None


def test_memory_limit_oom_kills_the_container(cluster: ClusterHandle, namespace: str) -> None:
    script = "tail /dev/zero"  # keeps one line that never ends: memory grows without bound
    resources = {"limits": {"memory": "100Mi"}, "requests": {"memory": "100Mi"}}
    apply(cluster, namespace, pod_body("hog", script, container={"resources": resources}))
    pod = wait_pod_phase(cluster, namespace, "hog", ("Failed", "Succeeded"), timeout=30)
    term = terminated(pod)
    assert pod["status"]["phase"] == "Failed"
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    # a pod within its limit is left alone
    apply(cluster, namespace, pod_body("frugal", "sleep 1", container={"resources": resources}))
    assert wait_pod_phase(cluster, namespace, "frugal", ("Failed", "Succeeded"))["status"]["phase"] == "Succeeded"


def test_unknown_image_gets_err_image_pull(cluster: ClusterHandle, namespace: str) -> None:
    body = pod_body("unknown-image", "true")
    # a registry on this machine's loopback (none listens): a pull fails at once, nothing leaves the host
    body["spec"]["containers"][0]["image"] = "localhost/tjo-missing:1.0"
    apply(cluster, namespace, body)

    def pull_failed() -> dict[str, Any] | None:
        statuses = (get_pod(cluster, namespace, "unknown-image").get("status") or {}).get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    waiting = wait_for("image pull failure", pull_failed, timeout=60)
    assert "tjo-missing" in waiting["message"]
    assert get_pod(cluster, namespace, "unknown-image")["status"]["phase"] == "Pending"  # a kubelet retries


def test_a_deployment_without_its_image_waits_in_image_pull_back_off_not_churning(
    cluster: ClusterHandle, namespace: str
) -> None:
    """As under a kubelet (issue 21, point 1): `kubectl apply -k manifests/` on a node without the
    operator image must leave its replicas waiting, not fail them for the ReplicaSet to replace."""
    spec = restricted_pod_spec("true", restart_policy="Always")
    # an image the node does not have (the real node has the operator's, imported at start)
    spec["containers"][0]["image"] = "ghcr.io/trainingjob-operator/not-built-here:0.1.0"
    spec["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    labels = {"app": "no-image"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "no-image"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    apply(cluster, namespace, deployment)

    def waiting_pods() -> list[dict[str, Any]] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=no-image")["items"]
        reasons = [
            ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}).get("reason")
            for p in pods
        ]
        return pods if len(pods) == 2 and reasons == ["ImagePullBackOff"] * 2 else None

    first = {p["metadata"]["uid"] for p in wait_for("2 pods in ImagePullBackOff", waiting_pods, timeout=60)}
    time.sleep(10)
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=no-image")["items"]
    assert {p["metadata"]["uid"] for p in pods} == first, "the pods were replaced: churn"
    assert all(p["status"]["phase"] == "Pending" for p in pods)
    cluster.kubectl("delete", "deployment", "no-image", "-n", namespace)
    wait_for(
        "the waiting pods deleted",
        lambda: not cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=no-image")["items"],
        timeout=60,
    )


def test_missing_secret_keeps_the_pod_pending_until_it_exists(cluster: ClusterHandle, namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    apply(cluster, namespace, pod_body("waits", 'echo "token=$TOKEN"', container={"env": env}))

    def waiting_reason() -> str | None:
        statuses = (get_pod(cluster, namespace, "waits").get("status") or {}).get("containerStatuses") or []
        reason = statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None
        # ContainerCreating may come first (volumes being set up on a busy machine): wait past it.
        return reason if reason == "CreateContainerConfigError" else None

    assert wait_for("CreateContainerConfigError", waiting_reason) == "CreateContainerConfigError"
    assert get_pod(cluster, namespace, "waits")["status"]["phase"] == "Pending"
    apply(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "stringData": {"token": "t0k"}},
    )
    wait_pod_phase(cluster, namespace, "waits", ("Succeeded",), timeout=30)
    assert cluster.logs(namespace, "waits") == "token=t0k\n"


def test_deleting_a_running_pod_kills_its_process_group(cluster: ClusterHandle, namespace: str) -> None:
    # a child in the background and a shell that ignores SIGTERM: the grace period ends in SIGKILL
    apply(
        cluster,
        namespace,
        pod_body("stubborn", "trap '' TERM; sleep 300 & sleep 301; wait", terminationGracePeriodSeconds=1),
    )
    pod = wait_pod_phase(cluster, namespace, "stubborn", ("Running",))
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=true", "--timeout=30s")
    assert time.monotonic() - t0 < 15
    assert not cluster.container_running(container_id(pod))


def test_node_restart_does_not_lose_pods(cluster: ClusterHandle, namespace: str) -> None:
    # one pod that outlives the kubelet's downtime, one that finishes meanwhile
    apply(
        cluster,
        namespace,
        pod_body("long", "sleep 8; echo -n long-done > /dev/termination-log"),
        pod_body("short", "sleep 3; echo -n short-done > /dev/termination-log; exit 5"),
    )
    wait_pod_phase(cluster, namespace, "long", ("Running",))
    wait_pod_phase(cluster, namespace, "short", ("Running", "Failed"))
    long_container = container_id(get_pod(cluster, namespace, "long"))
    cluster.kill_node()  # a crash, not a polite stop
    assert cluster.container_running(long_container), "containers must survive the kubelet"
    time.sleep(4)  # "short" ends while nobody watches
    cluster.start_node()
    short = wait_pod_phase(cluster, namespace, "short", ("Failed", "Succeeded"), timeout=30)
    assert short["status"]["phase"] == "Failed"
    assert terminated(short)["exitCode"] == 5 and terminated(short)["message"] == "short-done"
    long = wait_pod_phase(cluster, namespace, "long", ("Failed", "Succeeded"), timeout=30)
    assert long["status"]["phase"] == "Succeeded"
    assert terminated(long)["message"] == "long-done"
    # a graceful restart works the same way
    apply(cluster, namespace, pod_body("again", "sleep 5"))
    wait_pod_phase(cluster, namespace, "again", ("Running", "Succeeded"))
    cluster.restart_node()
    assert wait_pod_phase(cluster, namespace, "again", ("Failed", "Succeeded"))["status"]["phase"] == "Succeeded"


def test_two_container_pod_and_node_allocatable(cluster: ClusterHandle, namespace: str) -> None:
    spec = restricted_pod_spec("echo one")
    spec["containers"].append(restricted_container("second", "echo two; exit 0"))
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "duo"}, "spec": spec})
    pod = wait_pod_phase(cluster, namespace, "duo", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded"
    assert cluster.logs(namespace, "duo", "main") == "one\n" and cluster.logs(namespace, "duo", "second") == "two\n"
    node = cluster.api.get(f"/api/v1/nodes/{cluster.node_name}")
    assert node["status"]["allocatable"]["pods"] == "110"
    assert int(node["status"]["allocatable"]["cpu"]) == (os.cpu_count() or 1)


# --------------------------------------------------------------- the CLI itself


def test_cli_up_prints_export_and_down_leaves_no_process(cluster: ClusterHandle, tmp_path: Path) -> None:
    """A second, independent cluster through ``python -m localcluster`` (what make cluster-up runs)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HACK),
        "TJO_CLUSTER_DIR": str(tmp_path / "c"),
        "TJO_K8S_BIN": str(cluster.local.bin_dir),
        "TJO_NODE": "kubelet",
    }
    up = subprocess.run(
        [sys.executable, "-m", "localcluster", "up"], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert up.returncode == 0, up.stderr
        last = up.stdout.strip().splitlines()[-1]
        kubeconfig = tmp_path / "c" / "admin.kubeconfig"
        assert last == f"export KUBECONFIG={kubeconfig}"
        nodes = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert nodes.stdout.strip() == "node/local-node"
        pids = [json.loads(p.read_text())["pid"] for p in (tmp_path / "c" / "run").glob("*.pid")]
        # the control plane (4), containerd, kubelet, kube-proxy, CoreDNS
        assert len(pids) == 8
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "localcluster", "down"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert all(gone(pid) for pid in pids)
