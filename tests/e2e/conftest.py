"""End-to-end fixtures: a real local control plane plus the node agent, started once per session.

The control plane is etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
from the Kubernetes Go modules (hack/build-binaries.sh), with RBAC, Pod Security admission and
the real Job controller, garbage collector and scheduler; the node agent (hack/node_agent)
runs pods as local processes. Nothing is mocked. See docs/local-cluster.md.

Binaries: ``$TJO_K8S_BIN`` (hack/test.sh exports it). When unset, hack/build-binaries.sh
reuses its cache or builds them (needs Go; a cold build takes minutes). A set but broken
``TJO_K8S_BIN``, or a failing build, FAILS the session; only when neither the variable nor Go
is available are e2e tests skipped.

Fixtures
--------
``cluster`` (session) -> :class:`ClusterHandle`:

- ``kubeconfig``: Path of the admin kubeconfig (system:masters, embedded certs).
- ``server``: the API server URL (``https://127.0.0.1:<port>``).
- ``kubectl(*args, input=None, check=True, timeout=120)`` -> ``CompletedProcess[str]``
  (``--kubeconfig`` is added; ``check`` raises AssertionError with stderr).
- ``kubectl_json(*args)``: ``kubectl ... -o json`` parsed.
- ``api_client()`` -> a new ``kubernetes.client.ApiClient`` with the admin credentials.
- ``api``: a ``node_agent.kube.Kube`` (admin): ``get/post/patch/delete(path)`` with plain dicts.
- ``logs(namespace, pod, container=None, previous=False)`` -> str: the container's
  stdout+stderr (from the node agent's files; ``kubectl logs`` has no kubelet to talk to).
- ``stop_node_agent()``, ``start_node_agent()``, ``restart_node_agent()``, ``kill_node_agent()``
  (SIGKILL), ``node_agent_alive()``: containers keep running while the agent is down and are
  adopted when it comes back.
- ``wait_for(what, probe, timeout=60, every=0.2)``: poll until ``probe()`` is truthy.
- ``node_name`` (``local-node``), ``agent_state_dir``, ``local`` (the :class:`LocalCluster`).

``namespace`` (function) -> str: a fresh namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` whose ``default`` ServiceAccount exists;
deleted afterwards without waiting.

Images the node agent runs: ``localhost/tjo-shell`` (``args: ["<shell script>"]``, run by
``/bin/sh -c``) and ``ghcr.io/trainingjob-operator/forecast-trainer`` (the trainer of this
repository's venv). Other images fail with ErrImagePull. Restricted pods need a non-root
``runAsUser``: see :func:`restricted_pod_spec`. OnFailure/Always restarts back off 2 s, 4 s, ...
in this session (``--restart-backoff 2``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from localcluster import BinariesError, ClusterError, LocalCluster, can_build, find_binaries
from node_agent.kube import Kube
from node_agent.logs import read_log

T = TypeVar("T")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
SHELL_IMAGE = "localhost/tjo-shell"
RUN_AS = 65532
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def restricted_container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A ``localhost/tjo-shell`` container running ``script`` that passes Pod Security "restricted"."""
    return {
        "name": name,
        "image": SHELL_IMAGE,
        "args": [script],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **extra,
    }


def restricted_pod_spec(script: str, restart_policy: str = "Never", **extra: Any) -> dict[str, Any]:
    """A pod spec (one container ``main``) for restricted namespaces, running as uid/gid 65532."""
    container_extra = extra.pop("container", {})
    return {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [restricted_container("main", script, **container_extra)],
        **extra,
    }


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class ClusterHandle:
    local: LocalCluster

    @property
    def kubeconfig(self) -> Path:
        return self.local.kubeconfig

    @property
    def server(self) -> str:
        return self.local.server

    @property
    def node_name(self) -> str:
        return self.local.node_name

    @property
    def agent_state_dir(self) -> Path:
        return self.local.agent_state_dir

    def __post_init__(self) -> None:
        self.api = Kube(str(self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBECTL, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def api_client(self) -> k8s_client.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        return read_log(self.agent_state_dir, namespace, pod, container, previous)

    def stop_node_agent(self) -> None:
        self.local.stop_node_agent()

    def kill_node_agent(self) -> None:
        self.local.kill_node_agent()

    def start_node_agent(self) -> None:
        self.local.start_node_agent()
        self.local.wait_node_ready()

    def restart_node_agent(self) -> None:
        self.local.restart_node_agent()

    def node_agent_alive(self) -> bool:
        return self.local.node_agent_alive()

    wait_for = staticmethod(wait_for)


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    try:
        if os.environ.get("TJO_K8S_BIN") or can_build():
            return find_binaries()
    except BinariesError as exc:
        pytest.fail(f"control plane binaries: {exc}", pytrace=False)
    pytest.skip("no control plane binaries: TJO_K8S_BIN is unset and Go is not installed to build them")


@pytest.fixture(scope="session")
def cluster(k8s_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), k8s_bin_dir, node_agent_args=["--restart-backoff", "2"])
    try:
        local.start()
    except ClusterError as exc:
        local.stop(quiet=True)
        pytest.fail(f"local cluster did not start: {exc}", pytrace=False)
    try:
        yield ClusterHandle(local)
    finally:
        local.stop(quiet=True)


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED_LABELS}}
    cluster.api.post("/api/v1/namespaces", body)

    def has_default_sa() -> bool:
        try:
            cluster.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return True
        except Exception:
            return False

    wait_for(f"ServiceAccount default in {name}", has_default_sa, timeout=30, every=0.1)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
