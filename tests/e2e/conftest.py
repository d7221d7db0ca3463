"""End-to-end fixtures: a real local control plane and its node, started once per session.

The control plane is etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
from the Kubernetes Go modules (hack/build-binaries.sh), with RBAC, Pod Security admission and
every default controller. The node is real: kubelet + containerd + runc + CNI bridge +
kube-proxy + CoreDNS (hack/localcluster/node.py). Nothing is mocked. See docs/local-cluster.md.

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
- ``api``: a ``localcluster.kube.Kube`` (admin): ``get/post/patch/delete(path)`` with plain dicts.
- ``logs(namespace, pod, container=None, previous=False)`` -> str: the container's
  stdout+stderr (``kubectl logs``).
- ``stop_node()``, ``start_node()``, ``restart_node()``, ``kill_node()`` (SIGKILL),
  ``node_alive()``: the kubelet; containers keep running while it is down.
- ``wait_for(what, probe, timeout=60, every=0.2)``: poll until ``probe()`` is truthy.
- ``node_name`` (``local-node``), ``host_address`` (where pods reach the host: the host side of the
  node's veth), ``local`` (the :class:`LocalCluster`).

``database`` (session) -> :class:`Database`: a throw-away PostgreSQL (hack/postgres.sh through
``pg_harness.PostgresServer``) listening on loopback and on ``host_address``: ``dsn`` for the
test process, ``pod_dsn`` for pods (they cannot reach the host's 127.0.0.1 on the real node).

``namespace`` (function) -> str: a fresh namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` whose ``default`` ServiceAccount exists;
deleted afterwards without waiting.

Images (hack/build-images.sh, imported at start from ``$TJO_IMAGES_DIR`` or the script's output):
``localhost/tjo-shell`` (entrypoint ``/bin/sh -c``, so ``args: ["<shell script>"]``),
``localhost/tjo-noop`` (hack/images/noop: a trainer-shaped no-op for orchestration tests), the
trainer ``ghcr.io/trainingjob-operator/forecast-trainer:<version>``, the operator and PostgreSQL.
There is no registry: other images fail with ErrImagePull. Restricted pods need a non-root
``runAsUser``: see :func:`restricted_pod_spec`.
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
from localcluster.containerd import ctr, image_labels
from localcluster.images import ImagesError, _normalize
from localcluster.kube import Kube
from pg_harness import PostgresServer
from trainingjob_operator.api import DEFAULT_TRAINER_IMAGE

T = TypeVar("T")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
SHELL_IMAGE = "localhost/tjo-shell"
NOOP_IMAGE = "localhost/tjo-noop"
TRAINER_IMAGE = DEFAULT_TRAINER_IMAGE
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
        # imported, never pulled: there is no registry (a tag-less ref would default to Always)
        "imagePullPolicy": "IfNotPresent",
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
    def node(self) -> str:
        """``kubelet`` (the only node there is)."""
        return self.local.node_kind

    @property
    def host_address(self) -> str:
        """Where pods reach services of the host (the API server, a test PostgreSQL)."""
        host = self.local.info().host_ip
        assert host is not None, "the cluster has no node"
        return host

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
        args = ["logs", "-n", namespace, pod, *(["-c", container] if container else []), f"--previous={previous}"]
        return self.kubectl(*args).stdout

    def stop_node(self) -> None:
        self.local.stop_node()

    def kill_node(self) -> None:
        self.local.kill_node()

    def start_node(self) -> None:
        self.local.start_node()
        self.local.wait_node_ready()

    def restart_node(self) -> None:
        self.local.restart_node()

    def node_alive(self) -> bool:
        return self.local.node_alive()

    def container_running(self, container_id: str) -> bool:
        """Whether a container (``containerStatuses[].containerID``) still runs: its task in the node's
        containerd."""
        _, _, ident = container_id.partition("://")
        node = self.local.real_node
        assert node is not None, "no real node"
        tasks = ctr(node.paths.containerd, "tasks", "ls").splitlines()[1:]
        return any(t.split()[0] == ident and t.split()[-1] == "RUNNING" for t in tasks)

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
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), k8s_bin_dir, node="kubelet")
    try:
        local.start(timeout=180)
    except (ClusterError, ImagesError, RuntimeError) as exc:
        local.stop(quiet=True)
        pytest.fail(f"local cluster did not start: {exc}", pytrace=False)
    missing = missing_images(local, [SHELL_IMAGE, NOOP_IMAGE, TRAINER_IMAGE])
    if missing:
        local.stop(quiet=True)
        pytest.fail(
            f"the node lacks {', '.join(missing)}: build the images (make images, hack/build-images.sh) "
            "or point TJO_IMAGES_DIR at a directory of docker-archives",
            pytrace=False,
        )
    try:
        yield ClusterHandle(local)
    finally:
        local.stop(quiet=True)


def missing_images(local: LocalCluster, refs: list[str]) -> list[str]:
    node = local.real_node
    assert node is not None, "the cluster has no node"
    have = image_labels(node.paths.containerd)
    return [r for r in refs if _normalize(r) not in have]


@dataclass(frozen=True)
class Database:
    server: PostgresServer
    dsn: str
    """For the test process (127.0.0.1)."""
    pod_dsn: str
    """For pods: the same server at the cluster's host address."""


@pytest.fixture(scope="session")
def database(cluster: ClusterHandle) -> Iterator[Database]:
    server = PostgresServer(listen=(cluster.host_address,))
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {exc.stderr}", pytrace=False)
    try:
        yield Database(server, server.dsn, server.dsn_for(cluster.host_address))
    finally:
        server.stop()


def create_namespace(cluster: ClusterHandle, name: str) -> str:
    """A namespace of the restricted profile, once its ServiceAccount ``default`` exists (pods need it)."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED_LABELS}}
    cluster.api.post("/api/v1/namespaces", body)

    def has_default_sa() -> bool:
        try:
            cluster.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return True
        except Exception:
            return False

    wait_for(f"ServiceAccount default in {name}", has_default_sa, timeout=30, every=0.1)
    return name


def delete_namespace(cluster: ClusterHandle, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    name = create_namespace(cluster, f"{base}-{uuid.uuid4().hex[:5]}")
    yield name
    delete_namespace(cluster, name)
