"""What GitOps tools read from a live TrainingJob: kstatus (sigs.k8s.io/cli-utils, as Argo CD's and
Flux's health checks and kpt use it) through hack/kstatus, and ``kubectl wait --for=condition=Ready``.

``$TJO_KSTATUS`` is the binary (hack/test.sh exports it); when unset, hack/build-kstatus.sh reuses
its cache or builds it (needs Go).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import apply, condition, get, noop_tj, secret, tj_status, wait_for, wait_phase

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    path = os.environ.get("TJO_KSTATUS")
    if not path:
        if shutil.which("go") is None:
            pytest.skip("no kstatus binary: TJO_KSTATUS is unset and Go is not installed to build it")
        build = subprocess.run(
            ["bash", str(ROOT / "hack" / "build-kstatus.sh")], capture_output=True, text=True, check=False
        )
        if build.returncode != 0:
            pytest.fail(f"hack/build-kstatus.sh failed:\n{build.stderr}", pytrace=False)
        path = str(Path(build.stdout.strip().splitlines()[-1]) / "kstatus")
    if not os.access(path, os.X_OK):
        pytest.fail(f"TJO_KSTATUS={path} is not an executable", pytrace=False)
    return Path(path)


def kstatus(cluster: Any, binary: Path, namespace: str, name: str) -> dict[str, str]:
    """kstatus' reading of the live TrainingJob: {"status": ..., "message": ...}."""
    out = subprocess.run(
        [str(binary), "-kubeconfig", str(cluster.kubeconfig), "-namespace", namespace, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout))


def wait_kstatus(
    cluster: Any, binary: Path, namespace: str, name: str, want: str, timeout: float = 120
) -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        reading = kstatus(cluster, binary, namespace, name)
        return reading if reading["status"] == want else None

    return wait_for(f"kstatus of {name} is {want}", probe, timeout, every=0.5)


def test_running_reads_in_progress_then_current_and_kubectl_wait_ready_returns(
    cluster: Any, namespace: str, operator: OperatorProcess, kstatus_bin: Path
) -> None:
    secret(cluster, namespace)
    apply(cluster, namespace, noop_tj("ks-ok", ["a", "b", "c"], 8, parallelism=2))
    wait_for("products training", lambda: (tj_status(cluster, namespace, "ks-ok").get("products") or {}).get("active"))
    running = kstatus(cluster, kstatus_bin, namespace, "ks-ok")
    assert running["status"] == "InProgress", running
    st = tj_status(cluster, namespace, "ks-ok")
    assert condition(st, "Reconciling")["status"] == "True" and condition(st, "Ready")["status"] == "False"
    waited = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "tj/ks-ok", check=False, timeout=140
    )
    assert waited.returncode == 0, f"{waited.stderr}\n{operator.tail()}"
    done = kstatus(cluster, kstatus_bin, namespace, "ks-ok")
    assert done == {"status": "Current", "message": "Resource is Ready"}, done
    st = tj_status(cluster, namespace, "ks-ok")
    assert st["phase"] == "Succeeded" and st["results"]["meanError"] == "0.1000"  # the noop reports 0.1
    for c in st["conditions"]:
        assert c["reason"] and c["lastTransitionTime"] and c["observedGeneration"] == 1, c
    described = cluster.kubectl("describe", "tj", "ks-ok", "-n", namespace).stdout
    assert "Errors Up To:" in described and "Median Error:" in described
    # the recommended labels on what the operator created
    for kind in ("jobs", "pods"):
        for item in get(cluster, namespace, kind, selector="app.kubernetes.io/instance=ks-ok")["items"]:
            labels = item["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "trainingjob-operator", (kind, labels)
            assert (
                labels["app.kubernetes.io/component"] == "trainer" and labels["app.kubernetes.io/name"] == "trainingjob"
            )
            assert labels["training.forecast.dev/trainingjob-name"] == "ks-ok"
            assert labels["training.forecast.dev/trainingjob"] == "ks-ok"  # the selector, kept


def test_a_trainingjob_no_operator_has_acted_on_reads_in_progress(
    cluster: Any, namespace: str, trainingjob_crd: None, kstatus_bin: Path
) -> None:
    """The object as the API server returns it on create, before any operator pass: not Current
    (the CRD defaults status.observedGeneration to 0). Read from the create response, since an
    operator of this session may act on it at once."""
    created = cluster.kubectl(
        "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(noop_tj("ks-new", ["a"], 0))
    )
    assert json.loads(created.stdout)["status"] == {
        "observedGeneration": 0,
        "failedIndexes": "",
        "skippedIndexes": "",
        "succeededIndexes": "",
    }
    out = subprocess.run(
        [str(kstatus_bin), "-f", "-"], input=created.stdout, capture_output=True, text=True, check=True, timeout=60
    )
    reading = json.loads(out.stdout)
    assert reading == {
        "status": "InProgress",
        "message": "TrainingJob generation is 1, but latest observed generation is 0",
    }, reading


def test_failed_reads_failed(cluster: Any, namespace: str, operator: OperatorProcess, kstatus_bin: Path) -> None:
    secret(cluster, namespace)
    body = noop_tj("ks-bad", ["a"], 0, backoffLimit=0)
    body["spec"]["template"]["env"].append({"name": "NOOP_EXIT_CODE", "value": "1"})
    apply(cluster, namespace, body)
    st = wait_phase(cluster, namespace, "ks-bad", ("Succeeded", "Failed"))
    assert st["phase"] == "Failed", st
    reading = wait_kstatus(cluster, kstatus_bin, namespace, "ks-bad", "Failed", timeout=30)
    stalled = condition(st, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NoProductTrained"
    assert reading["message"] == stalled["message"] and "1 of 1 products failed" in reading["message"]
    assert st["failures"][0]["reason"] == "BackoffLimitExceeded"


def test_suspended_reads_in_progress_then_resumes_to_current(
    cluster: Any, namespace: str, operator: OperatorProcess, kstatus_bin: Path
) -> None:
    secret(cluster, namespace)
    apply(cluster, namespace, noop_tj("ks-sus", ["a"], 0, suspend=True))
    wait_phase(cluster, namespace, "ks-sus", ("Suspended",))
    reading = kstatus(cluster, kstatus_bin, namespace, "ks-sus")
    assert reading["status"] == "InProgress" and "No new products start" in reading["message"], reading
    cluster.kubectl("patch", "tj", "ks-sus", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_kstatus(cluster, kstatus_bin, namespace, "ks-sus", "Current")
    assert tj_status(cluster, namespace, "ks-sus")["observedGeneration"] == 2
