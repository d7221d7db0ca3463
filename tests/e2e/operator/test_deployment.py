"""Deployment concerns on the real control plane: manifests, least-privilege RBAC, high availability."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.operator.conftest import ROOT, OperatorProcess
from tests.e2e.operator.helpers import NOOP, apply, pods_of, tj_body, tj_status, wait_for, wait_phase

import operator_harness

pytestmark = pytest.mark.e2e
SA = "system:serviceaccount:trainingjob-system:trainingjob-operator"


def test_manifests_apply_cleanly_server_side(cluster: Any, trainingjob_crd: None) -> None:
    # A server-side dry run persists nothing, so objects in a namespace that does not exist yet
    # cannot be checked: the namespace is created for real first.
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "namespace.yaml"))
    result = cluster.kubectl("apply", "--dry-run=server", "-k", str(ROOT / "manifests"))
    assert "deployment.apps/trainingjob-operator" in result.stdout
    for overlay in ("kind", "dashboard"):  # monitoring/servicemonitor need the Prometheus Operator CRDs
        cluster.kubectl("apply", "--dry-run=server", "-k", str(ROOT / "manifests" / "overlays" / overlay))
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "samples" / "database" / "namespace.yaml"))
    samples = cluster.kubectl("apply", "--dry-run=server", "-k", str(ROOT / "manifests" / "samples")).stdout
    assert "job.batch/load-sample-data" in samples and "trainingjob.training.forecast.dev/bakery-daily" in samples


@pytest.fixture(scope="module")
def operator_sa_kubeconfig(cluster: Any, trainingjob_crd: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig holding only the operator ServiceAccount's token (RBAC from manifests/base)."""
    return operator_harness.operator_kubeconfig(
        Path(cluster.kubeconfig), tmp_path_factory.mktemp("sa") / "operator.kubeconfig"
    )


def _as_operator(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, timeout=60)


def test_operator_rbac_is_enough_and_least(
    cluster: Any, namespace: str, operator_sa_kubeconfig: Path, tmp_path: Path
) -> None:
    denied = [
        ("get", "secrets", "-n", namespace),
        ("create", "deployment", "x", "--image=nginx", "-n", namespace),
        ("delete", "pod", "any-pod", "-n", namespace),  # authorization comes before the lookup
        ("get", "nodes"),
    ]
    for args in denied:
        result = _as_operator(operator_sa_kubeconfig, *args)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), (args, result.stderr)
    who = _as_operator(operator_sa_kubeconfig, "auth", "whoami", "-o", "json")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == SA
    # blockOwnerDeletion on its Jobs and Leases needs `update` on trainingjobs/finalizers (the local
    # API server enforces it: see test_owner_references_permission_enforcement_is_on); nothing more.
    can_i = {
        args: _as_operator(operator_sa_kubeconfig, "auth", "can-i", *args, "-n", namespace).stdout.strip()
        for args in (
            ("update", "trainingjobs.training.forecast.dev", "--subresource=finalizers"),
            ("update", "trainingjobs.training.forecast.dev"),
            ("patch", "trainingjobs.training.forecast.dev", "--subresource=finalizers"),
        )
    }
    assert list(can_i.values()) == ["yes", "no", "no"], can_i
    cluster.kubectl("create", "configmap", "sales", "-n", namespace, "--from-literal=sales.csv=product_id,ds,y")
    op = OperatorProcess(str(operator_sa_kubeconfig), tmp_path)
    op.start()
    try:
        apply(cluster, namespace, tj_body("rbac", [f"p{i}" for i in range(6)], parallelism=3, template=NOOP))
        st = wait_phase(cluster, namespace, "rbac", ("Succeeded", "Failed"), timeout=120)
        assert st["phase"] == "Succeeded", op.tail()
        # No RBAC denial of the operator's identity. (Writes into namespaces that are being deleted by
        # earlier tests are refused as "forbidden ... being terminated": that is not RBAC.)
        assert f'User "{SA}" cannot' not in op.log_path.read_text(), op.tail()
    finally:
        op.stop()


def test_owner_references_permission_enforcement_is_on(cluster: Any, namespace: str, trainingjob_crd: None) -> None:
    """The local API server runs the OwnerReferencesPermissionEnforcement admission plugin (as OpenShift
    does), so the operator's e2e runs with its ServiceAccount prove it may set blockOwnerDeletion."""
    who = f"system:serviceaccount:{namespace}:default"
    cluster.kubectl("create", "role", "cm-writer", "--verb=create", "--resource=configmaps", "-n", namespace)
    sa = f"--serviceaccount={namespace}:default"
    cluster.kubectl("create", "rolebinding", "cm-writer", "-n", namespace, "--role=cm-writer", sa)

    def configmap(name: str, block: bool) -> str:
        owner = {
            "apiVersion": "training.forecast.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": "some-tj",
            "uid": "00000000-0000-0000-0000-000000000001",
            "blockOwnerDeletion": block,
        }
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [owner]}}
        return json.dumps(body)

    allowed = cluster.kubectl(
        f"--as={who}", "create", "-n", namespace, "-f", "-", input=configmap("plain", False), check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    refused = cluster.kubectl(
        f"--as={who}", "create", "-n", namespace, "-f", "-", input=configmap("blocking", True), check=False
    )
    assert refused.returncode != 0 and "cannot set blockOwnerDeletion" in refused.stderr, refused.stderr


def _leader(cluster: Any) -> str | None:
    lease = cluster.kubectl(
        "get", "lease", "-n", "trainingjob-system", "trainingjob-operator-leader", "-o", "json", check=False
    )
    if lease.returncode != 0:
        return None
    return json.loads(lease.stdout)["spec"].get("holderIdentity")


def test_standby_takes_over_when_the_leader_dies(
    cluster: Any, namespace: str, operator_sa_kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.kubectl("create", "configmap", "sales", "-n", namespace, "--from-literal=sales.csv=product_id,ds,y")
    replicas = {
        name: OperatorProcess(
            str(operator_sa_kubeconfig),
            tmp_path / name,
            {"TJO_LEADER_ELECTION_NAMESPACE": "trainingjob-system", "TJO_IDENTITY": name},
        )
        for name in ("replica-a", "replica-b")
    }
    for name, op in replicas.items():
        (tmp_path / name).mkdir()
        op.start()
    try:
        leader = wait_for("a leader", lambda: _leader(cluster) if _leader(cluster) in replicas else None, 60)
        standby = next(n for n in replicas if n != leader)
        # slow pods (1.5 s each) so the run is mid-way when the leader dies
        products = [f"p{i:02d}" for i in range(30)]
        body = tj_body("ha", products, parallelism=5, template=NOOP)
        body["spec"]["template"]["env"] = [{"name": "NOOP_SECONDS", "value": "1.5"}]
        apply(cluster, namespace, body)
        wait_for(
            "a third done",
            lambda: tj_status(cluster, namespace, "ha").get("products", {}).get("succeeded", 0) >= 10,
            120,
        )
        replicas[leader].kill()
        killed_at = time.monotonic()
        wait_for("the standby leads", lambda: _leader(cluster) == standby, 40)
        took_over = time.monotonic() - killed_at
        assert took_over <= 30, f"takeover took {took_over:.1f}s"
        st = wait_phase(cluster, namespace, "ha", ("Succeeded", "Failed"), timeout=180)
        assert st["phase"] == "Succeeded" and st["progress"] == "30/30"
        runs = Counter(
            p["metadata"]["annotations"]["training.forecast.dev/product"] for p in pods_of(cluster, namespace, "ha")
        )
        assert set(runs.values()) == {1}, f"products trained more than once: {runs}"
    finally:
        for op in replicas.values():
            op.stop()
