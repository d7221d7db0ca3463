"""Trainer pods run wherever the checkout (and its venv) lives: below a private home (mode 0700, like
/root; /home/alice 0750 is the same case) with pod files under that home too, and below /tmp where
the pod's own /tmp is its scratch emptyDir (the operator's trainer pods look like that).

Each test clones this repository there (``git clone``, as a newcomer does) and gives the clone a venv
of its own, built quickly: the clone's project installed editable the way ``pip install -e`` does
(setuptools' editable finder pointing into the clone), its dependencies taken from this venv through
a ``.pth`` file instead of downloading them again. The pod runs the clone's ``forecast-trainer``
(``command``, as a mapped image's entrypoint would) as uid 65532 with a read-only root filesystem.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import RUN_AS, ClusterHandle
from tests.e2e.test_cluster_harness import apply, terminated, wait_pod_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
TRAINER_IMAGE = "ghcr.io/trainingjob-operator/forecast-trainer:dev"


def clone_with_venv(dest: Path) -> Path:
    """``git clone`` of this repository at ``dest`` with its own venv (see the module docstring)."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=60)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = dest / ".venv"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = Path(sysconfig.get_paths()["purelib"])
    finders = list(ours.glob("__editable___*_finder.py"))
    for finder in finders:  # `pip install -e` of the clone: the same finder, pointing into the clone
        (site / finder.name).write_text(finder.read_text().replace(str(ROOT), str(dest)))
    for pth in ours.glob("__editable__*.pth"):
        (site / pth.name).write_text(pth.read_text())
    if not finders:  # this venv has no editable install: a path entry does the same
        (site / "_tjo_editable.pth").write_text(f"{dest / 'operator'}\n{dest / 'trainer_image'}\n")
    (site / "_tjo_dependencies.pth").write_text(f"{ours}\n")
    script = venv / "bin" / "forecast-trainer"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom forecast_trainer.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return dest


def sales_csv(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer = Path(sys.executable).parent / "forecast-trainer"
    subprocess.run(
        [str(trainer), "sample-data", "--products", "1", "--days", "120", "--seed", "3", "--csv", str(path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    path.chmod(0o644)
    return path.read_text().splitlines()[1].split(",")[0]


def trainer_pod(name: str, clone: Path, product: str, sales: dict[str, Any]) -> dict[str, Any]:
    """Shaped like the operator's product pods: restricted, read-only root, scratch emptyDir at /tmp."""
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    mounts = [{"name": "scratch", "mountPath": "/tmp"}, {"name": "sales", "mountPath": "/data", "readOnly": True}]
    where = "import forecast_trainer, sys; print(forecast_trainer.__file__); print(sys.prefix)"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "trainer",
                    "image": TRAINER_IMAGE,
                    "command": [str(clone / ".venv" / "bin" / "forecast-trainer")],
                    "args": [
                        *("train", "--data-csv", "/data/sales.csv", "--product", product, "--trials", "0"),
                        *("--output-dir", "/tmp/out", "--log-format", "text"),
                    ],
                    "volumeMounts": mounts,
                    "securityContext": security,
                },
                {
                    "name": "where",
                    "image": TRAINER_IMAGE,
                    "command": [str(clone / ".venv" / "bin" / "python"), "-c", where],
                    "volumeMounts": mounts,
                    "securityContext": security,
                },
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "sales", **sales}],
        },
    }


def check_trained(cluster: ClusterHandle, namespace: str, clone: Path, product: str) -> None:
    pod = wait_pod_phase(cluster, namespace, "trainer", ("Succeeded", "Failed"), timeout=180)
    logs = {c: cluster.logs(namespace, "trainer", c) for c in ("trainer", "where")}
    assert pod["status"]["phase"] == "Succeeded", (pod["status"], logs)
    # the clone's own code and venv ran, not this checkout's
    assert logs["where"].split() == [
        str(clone / "trainer_image" / "forecast_trainer" / "__init__.py"),
        str(clone / ".venv"),
    ]
    report = json.loads(terminated(pod, "trainer")["message"])
    assert report["counts"]["trained"] == 1 and report["products"][0]["product"] == product, report


@pytest.fixture
def open_namespace(cluster: ClusterHandle, namespace: str) -> Iterator[str]:
    """The test namespace without Pod Security enforcement: hostPath volumes (the pod's files under
    the private home, as the cluster state under ~/.cache is) are not allowed under "restricted"."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce-", "--overwrite")
    yield namespace


def test_trainer_pod_from_a_checkout_under_a_private_home(
    cluster: ClusterHandle, open_namespace: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    clone = clone_with_venv(home / "tjo")
    product = sales_csv(home / ".cache" / "tjo" / "sales.csv")  # hidden from uid 65532 like ~/.cache
    for d in (home / ".cache", home / ".cache" / "tjo"):
        d.chmod(0o755)
    home.chmod(0o700)
    sales = {"hostPath": {"path": str(home / ".cache" / "tjo"), "type": "Directory"}}
    apply(cluster, open_namespace, trainer_pod("trainer", clone, product, sales))
    check_trained(cluster, open_namespace, clone, product)


def test_trainer_pod_from_a_checkout_under_tmp(cluster: ClusterHandle, namespace: str, tmp_path: Path) -> None:
    parent = Path(tempfile.mkdtemp(prefix="tjo-e2e-", dir="/tmp"))  # not under tmp_path: directly in /tmp
    try:
        parent.chmod(0o755)  # as `git clone ... /tmp/tjo-clone` leaves it
        clone = clone_with_venv(parent / "tjo")
        product = sales_csv(tmp_path / "sales.csv")
        cluster.kubectl(
            "create", "configmap", "sales", "-n", namespace, f"--from-file=sales.csv={tmp_path / 'sales.csv'}"
        )
        apply(cluster, namespace, trainer_pod("trainer", clone, product, {"configMap": {"name": "sales"}}))
        check_trained(cluster, namespace, clone, product)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
