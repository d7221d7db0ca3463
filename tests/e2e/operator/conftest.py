"""Fixtures for the operator's end-to-end tests on the real local control plane.

Builds on tests/e2e/conftest.py (``cluster``, ``namespace``). Adds:

- ``trainingjob_crd``: the generated CRD applied once per session (and Established).
- ``operator``: the operator running as a local process (``kopf run -m trainingjob_operator.main``,
  hack/operator_harness.py) against the cluster, once per session, with ``stop()``, ``kill()``,
  ``start()`` for restart tests.
- ``sales_csv``: a factory for a ConfigMap of sample sales CSV in the test namespace.
- ``kueue`` (module): Kueue's manager (hack/build-kueue.sh, ``TJO_KUEUE_BIN``) running as a local
  process against the cluster with its CRDs and webhooks (hack/localcluster/kueue.py); its webhook
  configurations are removed when the module's tests are done.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import operator_harness
from localcluster import BinariesError, can_build
from localcluster.kueue import Kueue, find_kueue

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def trainingjob_crd(cluster: Any) -> None:
    for crd in ("trainingjob.yaml", "trainingschedule.yaml"):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / crd))
    for name in ("trainingjobs", "trainingschedules"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}.training.forecast.dev")


STUCK_POD_SECONDS = 20
"""How long a product pod that cannot start waits before its product fails (120 s by default)."""


class OperatorProcess(operator_harness.OperatorProcess):
    """The operator as a local process, the way the README runs it; verbose, and with a short
    resync period and stuck-pod wait for the tests (``extra_env`` overrides them)."""

    def __init__(self, kubeconfig: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        defaults = {"TJO_RESYNC_SECONDS": "3", "TJO_STUCK_POD_SECONDS": str(STUCK_POD_SECONDS)}
        super().__init__(kubeconfig, log_dir, {**defaults, **(extra_env or {})}, verbose=True)


@pytest.fixture(scope="session")
def operator(
    cluster: Any, trainingjob_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(str(cluster.kubeconfig), tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def kueue(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    """Kueue for this module's tests; like the control plane: a set but broken ``TJO_KUEUE_BIN`` or a
    failed build fails, only without both the variable and Go are the tests skipped."""
    if not (os.environ.get("TJO_KUEUE_BIN") or can_build()):
        pytest.skip("no Kueue: TJO_KUEUE_BIN is unset and Go is not installed to build it")
    try:
        kueue_dir = find_kueue()
    except BinariesError as exc:
        pytest.fail(f"kueue: {exc}", pytrace=False)
    proc = Kueue(cluster.kubeconfig, tmp_path_factory.mktemp("kueue"), kueue_dir)
    try:
        proc.start()
    except RuntimeError as exc:
        proc.stop()
        pytest.fail(f"kueue did not start: {exc}", pytrace=False)
    yield proc
    proc.stop()


def sample_rows(products: int, days: int, seed: int = 7) -> list[dict[str, Any]]:
    """Rows from the trainer's own deterministic sample-data generator (product_id, ds, y)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.csv"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "forecast-trainer"),
                "sample-data",
                "--products",
                str(products),
                "--days",
                str(days),
                "--seed",
                str(seed),
                "--csv",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        with path.open() as f:
            return list(csv.DictReader(f))


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["product_id", "ds", "y"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({"product_id": r["product_id"], "ds": r["ds"], "y": r["y"]})
    return buf.getvalue()


@pytest.fixture
def sales_csv(cluster: Any, namespace: str) -> Callable[..., list[str]]:
    """Create ConfigMap ``name`` with sample CSV; returns the product ids (good ones, then extras)."""

    def make(
        name: str = "sales", products: int = 10, days: int = 150, extra_rows: list[dict[str, Any]] | None = None
    ) -> list[str]:
        rows = sample_rows(products, days) + (extra_rows or [])
        ids = list(dict.fromkeys(r["product_id"] for r in rows))
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"sales.csv": to_csv(rows)}}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cm))
        return ids

    return make


def few_points(product: str, n: int = 10) -> list[dict[str, Any]]:
    """``n`` daily rows of a product with a weekly pattern (valid data when n >= 30)."""
    import datetime as dt

    start = dt.date(2024, 1, 1)
    return [
        {"product_id": product, "ds": (start + dt.timedelta(days=i)).isoformat(), "y": 5 + (i % 7) * 2 + i / 50}
        for i in range(n)
    ]
