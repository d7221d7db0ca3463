"""docs/kind-quickstart.md as a test, on the real node (kubelet + containerd).

Its shell blocks run as written, in order, with ``bash -e -o pipefail`` from the root of the
checkout against the session's cluster; only the lines that build the images and load them into
kind (``docker build ...``, ``kind ...``) are left out: the cluster imported what ``make images``
built (hack/build-images.sh, ``TJO_IMAGES_DIR``) when it started, which is what those lines do on
kind. Everything else is the user's path: ``kubectl apply -k manifests/overlays/kind`` (CRDs, RBAC,
the operator Deployment with 2 replicas from its image), ``rollout status``, the samples
(PostgreSQL from its image, the sample-data Job, a TrainingJob of 20 products), the wait for
Complete, the forecasts read back from the in-cluster database with ``kubectl exec``.

Then what the quickstart promises and a platform engineer checks: both operator pods Ready (their
probes pass), one of them the leader (the leader-election Lease names it), every product trained
by a real trainer container, forecasts stored for each, and ``kubectl logs`` of a trainer pod.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.doc_blocks import ROOT, shell_blocks
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.real_node]

QUICKSTART = ROOT / "docs" / "kind-quickstart.md"
REPLACED = re.compile(r"^\s*(docker build|kind (create|load) )")
"""The lines the project's image command replaces (images are imported at cluster start)."""
OPERATOR_NS = "trainingjob-system"
DEMO_NS = "forecast-demo"
TIMEOUT = float(os.environ.get("TJO_QUICKSTART_TIMEOUT", "2400"))


def runnable(script: str) -> tuple[str, list[str]]:
    """The block without the lines that build images or create/load into kind, and those lines."""
    kept: list[str] = []
    replaced: list[str] = []
    for line in script.splitlines():
        (replaced if REPLACED.match(line) else kept).append(line)
    return "\n".join(kept) + "\n", replaced


def test_only_image_building_and_kind_lines_are_replaced() -> None:
    """What the test leaves out is exactly the docker/kind steps (pure: a doc edit that adds another
    step outside the cluster must come with a way to run it here)."""
    blocks = shell_blocks(QUICKSTART)
    assert blocks, "docs/kind-quickstart.md has no shell block"
    replaced = [line.strip() for b in blocks for line in runnable(b.text)[1]]
    assert replaced == [
        "docker build -t ghcr.io/trainingjob-operator/operator:0.1.0 .",
        "docker build -t ghcr.io/trainingjob-operator/forecast-trainer:0.1.0 -f trainer_image/Dockerfile .",
        "kind create cluster --name forecast",
        "kind load docker-image --name forecast ghcr.io/trainingjob-operator/operator:0.1.0",
        "kind load docker-image --name forecast ghcr.io/trainingjob-operator/forecast-trainer:0.1.0",
    ]


def _run(script: str, kubeconfig: Path, timeout: float) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"exit {result.returncode}\n--- script\n{script}\n{tail}"
    return result.stdout


@pytest.fixture
def quickstart_kubeconfig(cluster: Any, tmp_path: Path) -> Iterator[Path]:
    """A copy of the admin kubeconfig (as kind writes one); afterwards the quickstart's objects are
    removed in an order that lets the operator drop its finalizers, the CRDs kept."""
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    yield kubeconfig
    for kind in ("trainingschedules", "trainingjobs"):
        cluster.kubectl("-n", DEMO_NS, "delete", kind, "--all", "--wait=true", "--timeout=120s", check=False)
    cluster.kubectl("delete", "-k", "manifests/samples", "--ignore-not-found", "--wait=false", check=False, timeout=180)
    cluster.kubectl(
        "-n",
        OPERATOR_NS,
        "delete",
        "deployment",
        "trainingjob-operator",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
        check=False,
    )
    cluster.kubectl("delete", "namespace", OPERATOR_NS, "--ignore-not-found", "--wait=false", check=False)
    for kind in ("clusterrole", "clusterrolebinding"):
        cluster.kubectl(
            "delete", kind, "-l", "app.kubernetes.io/name=trainingjob-operator", "--ignore-not-found", check=False
        )


def test_the_kind_quickstart_runs_as_written_on_the_real_node(cluster: Any, quickstart_kubeconfig: Path) -> None:
    blocks = shell_blocks(QUICKSTART)
    install, forecasts = blocks[0], blocks[1]

    # 1-4. images (imported at cluster start), CRD + operator, rollout, samples, Complete
    try:
        _run(runnable(install.text)[0], quickstart_kubeconfig, TIMEOUT)
    except AssertionError as exc:
        status = cluster.kubectl("-n", DEMO_NS, "get", "tj", "bakery-daily", "-o", "jsonpath={.status}", check=False)
        raise AssertionError(f"{exc}\n--- TrainingJob status\n{status.stdout[-6000:]}") from None

    # The operator: 2 replicas Ready (liveness/readiness probes pass), exactly one leader
    deploy = cluster.kubectl_json("-n", OPERATOR_NS, "get", "deployment", "trainingjob-operator")
    assert deploy["status"].get("readyReplicas") == 2, deploy["status"]
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert containers[0]["command"][:2] == ["kopf", "run"] and not containers[0].get("args")
    pods = cluster.kubectl_json("-n", OPERATOR_NS, "get", "pods", "-l", "app.kubernetes.io/name=trainingjob-operator")
    running = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert len(running) == 2, [p["status"].get("phase") for p in pods["items"]]
    for pod in running:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready.get("Ready") == "True", (pod["metadata"]["name"], ready)
        assert all(cs.get("restartCount", 0) == 0 for cs in pod["status"]["containerStatuses"]), pod["status"]
    leases = cluster.kubectl_json("-n", OPERATOR_NS, "get", "leases")["items"]
    holders = {lease["spec"].get("holderIdentity", "") for lease in leases}
    names = {p["metadata"]["name"] for p in running}
    assert any(any(name in holder for name in names) for holder in holders), (holders, names)

    # The TrainingJob: Complete, every product trained by a real trainer container
    tj = cluster.kubectl_json("-n", DEMO_NS, "get", "tj", "bakery-daily")
    conds = {c["type"]: c["status"] for c in tj["status"]["conditions"]}
    assert tj["status"]["phase"] == "Succeeded" and conds["Complete"] == "True", tj["status"]
    assert tj["status"]["products"]["succeeded"] == 20, tj["status"]["products"]

    # Forecasts in the in-cluster database, as the quickstart reads them (kubectl exec psql)
    out = _run(forecasts.text, quickstart_kubeconfig, 120)
    rows = dict(re.findall(r"^\s*(bakery-[\w-]+)\s*\|\s*(\d+)\s*$", out, re.M))
    assert len(rows) == 20 and all(int(n) >= 30 for n in rows.values()), out

    # kubectl logs of a trainer pod (a real container's output through the kubelet)
    trainer_pods = cluster.kubectl_json(
        "-n", DEMO_NS, "get", "pods", "-l", "training.forecast.dev/trainingjob=bakery-daily"
    )["items"]
    done = [p for p in trainer_pods if p["status"].get("phase") == "Succeeded"]
    assert done, [p["status"].get("phase") for p in trainer_pods]
    pod = done[0]
    spec = pod["spec"]["containers"][0]
    assert spec["image"].startswith("ghcr.io/trainingjob-operator/forecast-trainer:")
    logs = cluster.kubectl("-n", DEMO_NS, "logs", pod["metadata"]["name"]).stdout
    assert "bakery-" in logs, logs[-2000:]

    # What a platform engineer does next: drain a node (PodDisruptionBudget) and lose the leader
    pdb_holds_one_operator_pod(cluster)
    leader_fails_over_when_its_pod_is_deleted(cluster)


def _operator_pods(cluster: Any) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json("-n", OPERATOR_NS, "get", "pods", "-l", "app.kubernetes.io/name=trainingjob-operator")
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def _evict(cluster: Any, pod: str) -> subprocess.CompletedProcess[str]:
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}})
    path = f"/api/v1/namespaces/{OPERATOR_NS}/pods/{pod}/eviction"
    return cluster.kubectl("create", "--raw", path, "-f", "-", input=body, check=False)


def pdb_holds_one_operator_pod(cluster: Any) -> None:
    """minAvailable 1: a drain evicts one operator pod; the other stays until a replacement is Ready."""
    first, second = sorted(p["metadata"]["name"] for p in _operator_pods(cluster))
    allowed = _evict(cluster, first)
    assert allowed.returncode == 0, allowed.stderr
    refused = _evict(cluster, second)
    assert refused.returncode != 0 and "disruption budget" in refused.stderr, (refused.stdout, refused.stderr)
    wait_for(
        "the Deployment back at 2 Ready operator pods",
        lambda: len([p for p in _operator_pods(cluster) if _ready(p)]) == 2,
        timeout=180,
    )


def _leader(cluster: Any) -> str | None:
    names = {p["metadata"]["name"] for p in _operator_pods(cluster) if _ready(p)}
    for lease in cluster.kubectl_json("-n", OPERATOR_NS, "get", "leases")["items"]:
        holder = lease["spec"].get("holderIdentity") or ""
        for name in names:
            if name in holder:
                return name
    return None


def leader_fails_over_when_its_pod_is_deleted(cluster: Any) -> None:
    """The leader pod deleted (a node drain, a rollout): the standby replica takes the Lease."""
    leader = wait_for("an operator pod leading", lambda: _leader(cluster), timeout=120)
    started = time.monotonic()
    cluster.kubectl("-n", OPERATOR_NS, "delete", "pod", leader, "--wait=false")

    def another() -> str | None:
        now = _leader(cluster)
        return now if now and now != leader else None

    new = wait_for("another operator pod leading", another, timeout=120)
    print(f"leader {leader} deleted: {new} led after {time.monotonic() - started:.1f} s")
