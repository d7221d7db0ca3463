"""The real node (kubelet + containerd + runc + CNI bridge + kube-proxy + CoreDNS): what only a real
runtime enforces, and that the host is left as found."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import RUN_AS, SHELL_IMAGE, ClusterHandle, missing_images, restricted_pod_spec, wait_for

from localcluster import LocalCluster
from localcluster.cleanup import host_snapshot
from localcluster.network import state_key

pytestmark = [pytest.mark.e2e, pytest.mark.real_node, pytest.mark.timeout(300)]


def run_pod(cluster: ClusterHandle, namespace: str, name: str, script: str, **extra: Any) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": restricted_pod_spec(script, **extra)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    return body


def wait_finished(cluster: ClusterHandle, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} finished", probe, timeout)


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def test_node_is_ready_with_its_private_address_and_a_real_runtime(cluster: ClusterHandle) -> None:
    node = cluster.kubectl_json("get", "node", cluster.node_name)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    info = cluster.local.info()
    assert addresses["InternalIP"] == info.node_ip
    assert info.node_ip and info.node_ip.startswith("10.213.")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.33.")


def test_restricted_pod_runs_confined(cluster: ClusterHandle, namespace: str) -> None:
    """uid/gid 65532, no capabilities, no_new_privs, seccomp filter, read-only root: as the kernel sees it."""
    script = (
        "id -u; id -g; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
        "if touch /rootfs-write 2>/dev/null; then echo root-writable; else echo root-read-only; fi; "
        "touch /tmp/scratch && echo tmp-writable"
    )
    run_pod(
        cluster,
        namespace,
        "confined",
        script,
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        volumes=[{"name": "tmp", "emptyDir": {}}],
    )
    pod = wait_finished(cluster, namespace, "confined")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    out = cluster.logs(namespace, "confined").split("\n")
    assert out[0] == str(RUN_AS) and out[1] == str(RUN_AS)
    fields = dict(line.split(":\t") for line in out[2:5])
    assert fields == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
    assert out[5:7] == ["root-read-only", "tmp-writable"]


def test_pod_reaches_the_api_server_as_kubernetes_default(cluster: ClusterHandle, namespace: str) -> None:
    """DNS (CoreDNS) + the Service VIP (kube-proxy) + the lease endpoint (API server on the veth):
    a plain HTTP request on the TLS port gets Go's answer from the API server."""
    script = (
        "getent hosts kubernetes.default.svc.cluster.local; "
        "exec 3<>/dev/tcp/kubernetes.default/443; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
    )
    run_pod(cluster, namespace, "api", f"bash -c {json.dumps(script)}")
    pod = wait_finished(cluster, namespace, "api")
    out = cluster.logs(namespace, "api")
    assert pod["status"]["phase"] == "Succeeded", out
    assert out.split()[0] == "10.0.0.1"
    assert "Client sent an HTTP request to an HTTPS server" in out
    endpoints = cluster.kubectl_json("get", "endpoints", "kubernetes", "-n", "default")
    assert endpoints["subsets"][0]["addresses"][0]["ip"] == cluster.host_address


def test_service_names_resolve_in_pods(cluster: ClusterHandle, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "probe"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "nothing"}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(service))
    ip = cluster.kubectl_json("get", "service", "probe", "-n", namespace)["spec"]["clusterIP"]
    run_pod(cluster, namespace, "dns", f"getent hosts probe; getent hosts probe.{namespace}.svc.cluster.local")
    pod = wait_finished(cluster, namespace, "dns")
    out = cluster.logs(namespace, "dns")
    assert pod["status"]["phase"] == "Succeeded", out
    assert [line.split()[0] for line in out.splitlines()] == [ip, ip]


def test_kubectl_logs_and_exec_reach_the_kubelet(cluster: ClusterHandle, namespace: str) -> None:
    run_pod(cluster, namespace, "talk", "echo started; sleep 300", terminationGracePeriodSeconds=1)
    wait_for(
        "pod talk running",
        lambda: cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/talk")["status"].get("phase") == "Running",
        60,
    )
    wait_for("log line", lambda: cluster.kubectl("logs", "-n", namespace, "talk").stdout == "started\n", 30)
    exec_out = cluster.kubectl("exec", "-n", namespace, "talk", "--", "cat", "/proc/1/cmdline").stdout
    assert "sleep 300" in exec_out.replace("\0", " ")


def test_resource_quota_is_enforced(cluster: ClusterHandle, namespace: str) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-pod"},
        "spec": {"hard": {"pods": "1"}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(quota))
    # the resourcequota controller computes status.used; until then admission refuses everything
    wait_for(
        "quota status",
        lambda: cluster.kubectl_json("get", "resourcequota", "one-pod", "-n", namespace).get("status", {}).get("used"),
        60,
    )
    run_pod(cluster, namespace, "first", "sleep 30", terminationGracePeriodSeconds=1)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "second"},
        "spec": restricted_pod_spec("sleep 30"),
    }
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "exceeded quota: one-pod" in result.stderr


def test_container_over_its_memory_limit_is_oom_killed(cluster: ClusterHandle, namespace: str) -> None:
    # `tail` keeps a line that never ends: memory grows until the cgroup's limit
    run_pod(
        cluster,
        namespace,
        "hog",
        "tail /dev/zero",
        container={"resources": {"limits": {"memory": "48Mi", "cpu": "500m"}}},
    )
    pod = wait_finished(cluster, namespace, "hog", timeout=120)
    term = terminated(pod)
    assert pod["status"]["phase"] == "Failed"
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137


def test_active_deadline_kills_a_real_container(cluster: ClusterHandle, namespace: str) -> None:
    t0 = time.monotonic()
    run_pod(cluster, namespace, "late", "sleep 600", activeDeadlineSeconds=5, terminationGracePeriodSeconds=2)
    pod = wait_finished(cluster, namespace, "late", timeout=90)
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert time.monotonic() - t0 < 60
    wait_for(
        "container terminated",
        lambda: (
            "terminated"
            in cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/late")["status"]["containerStatuses"][0]["state"]
        ),
        30,
    )


def test_pods_reach_a_postgresql_on_the_host_address(cluster: ClusterHandle, namespace: str) -> None:
    """hack/postgres.sh with TJO_PG_LISTEN=<host address>: a pod's SSLRequest gets PostgreSQL's 'N'."""
    from pg_harness import PostgresServer

    server = PostgresServer(listen=(cluster.host_address,))
    server.start()
    try:
        script = (
            f"exec 3<>/dev/tcp/{cluster.host_address}/{server.port}; "
            "printf '\\000\\000\\000\\010\\004\\322\\026\\057' >&3; head -c1 <&3; echo"
        )
        run_pod(cluster, namespace, "pg", f"bash -c {json.dumps(script)}")
        pod = wait_finished(cluster, namespace, "pg")
        out = cluster.logs(namespace, "pg")
        assert pod["status"]["phase"] == "Succeeded", out
        assert out == "N\n"
    finally:
        server.stop()


def test_down_leaves_the_host_as_found(cluster: ClusterHandle, tmp_path: Path) -> None:
    """A second cluster beside the session's: up, a pod, down; host snapshots before and after are equal."""
    state = Path(tempfile.mkdtemp(prefix="tjo-e2e-", dir="/tmp")) / "second"  # short: the kubelet's sockets
    key = state_key(state)
    before = host_snapshot(state, key)
    other = LocalCluster(state, cluster.local.bin_dir, node="kubelet")
    try:
        info = other.start(timeout=180)
        assert info.node_ip != cluster.local.info().node_ip
        assert not missing_images(other, [SHELL_IMAGE])
        kubectl = ["kubectl", f"--kubeconfig={info.kubeconfig}"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": restricted_pod_spec("sleep 300", terminationGracePeriodSeconds=1),
        }
        import subprocess

        subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True, capture_output=True
        )
        wait_for(
            "pod running in the second cluster",
            lambda: (
                json.loads(
                    subprocess.run([*kubectl, "get", "pod", "p", "-o", "json"], capture_output=True, text=True).stdout
                    or "{}"
                )
                .get("status", {})
                .get("phase")
                == "Running"
            ),
            90,
        )
        during = host_snapshot(state, key)
        assert during["processes"] and during["cgroups"] and during["netns"], during
    finally:
        other.stop(quiet=True)
    after = host_snapshot(state, key)
    shutil.rmtree(state.parent, ignore_errors=True)
    # the fixed-path folders (/run/containerd/s, /var/lib/cni/results, ...) are machine-wide: the last
    # cluster down removes those that did not exist before the first one up (here the session's is up;
    # tests/unit/localcluster covers that rule)
    diff = {k: (before[k], after[k]) for k in before if before[k] != after[k] and k != "host_dirs"}
    assert not diff, json.dumps(diff, indent=1, default=str)
    assert not os.path.exists(f"/run/netns/tjo-{key}")
