"""The docs are tests: the README's and docs/*.md's shell blocks marked ``<!-- docs-test: run -->``
run exactly as written (tests/doc_blocks.py reads them), one document at a time, in document
order, with ``bash -e -o pipefail`` from the root of the checkout, against the local cluster.

What a reader of the README has by step 3 is made here the way the skipped blocks say it is made
elsewhere (README, "The docs are tests"):

- the CRDs, and the operator's Namespace, ServiceAccount and RBAC from ``manifests/``; the operator
  runs as a local process with that ServiceAccount's token (the Deployment from its image is what
  tests/e2e/test_kind_quickstart.py runs);
- the project's own sample data: a fresh database on the session's PostgreSQL (the ``database``
  fixture; the Secret names it at the cluster's host address, where pods reach it) holding
  ``forecast-trainer migrate`` + ``sample-data --products 20 --days 1095 --seed 42`` in ``sales``
  (what ``manifests/samples/database``'s Job runs), the namespace ``forecast-demo`` (restricted)
  and its Secret ``sales-db`` (key ``dsn``).

Each document gets its own copy of the admin kubeconfig (a ``kubectl config set-context`` in one
stays there) and, after it ran, its TrainingJobs and TrainingSchedules in ``forecast-demo`` are
deleted, so every document starts from the same state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from tests.doc_blocks import ROOT, Block, documents, shell_blocks
from tests.e2e.conftest import Database

import operator_harness

pytestmark = pytest.mark.e2e

NAMESPACE = "forecast-demo"
BLOCK_TIMEOUT = float(os.environ.get("TJO_DOCS_BLOCK_TIMEOUT", "1800"))
VENV_BIN = ROOT / ".venv" / "bin"


def _runnable_docs() -> list[Any]:
    out = []
    for path in documents():
        blocks = [b for b in shell_blocks(path) if b.mark == "run"]
        if blocks:
            out.append(pytest.param(blocks, id=path.relative_to(ROOT).as_posix()))
    return out


@dataclass
class DocsEnv:
    kubeconfig: Path
    dsn: str
    """The sample database, for the test process (pods get it at the host address)."""
    work: Path


def _database_dsn(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _psql(dsn: str, sql: str) -> None:
    subprocess.run(["psql", dsn, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


@pytest.fixture(scope="module")
def docs_env(cluster: Any, database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsEnv]:
    work = tmp_path_factory.mktemp("docs")
    admin = Path(cluster.kubeconfig)
    # 1. CRDs, and the operator's Namespace/ServiceAccount/RBAC from manifests/ (README step 1 minus
    #    the Deployment); the operator as a local process with that ServiceAccount's token.
    for crd in ("trainingjob.yaml", "trainingschedule.yaml"):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / crd))
    for name in ("trainingjobs", "trainingschedules"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}.training.forecast.dev")
    op_kubeconfig = operator_harness.operator_kubeconfig(admin, work / "operator.kubeconfig")
    operator = operator_harness.OperatorProcess(str(op_kubeconfig), work, verbose=False)
    operator.start()
    # 2. The sample database (README step 2): its own database on the test server.
    db_name = f"tjo_docs_{uuid.uuid4().hex[:8]}"
    _psql(database.dsn, f"CREATE DATABASE {db_name}")
    dsn = _database_dsn(database.dsn, db_name)
    pod_dsn = _database_dsn(database.pod_dsn, db_name)
    trainer = str(VENV_BIN / "forecast-trainer")
    subprocess.run([trainer, "migrate", "--output-dsn", dsn], check=True, capture_output=True)
    sample = ["sample-data", "--products", "20", "--days", "1095", "--seed", "42", "--dsn", dsn, "--table", "sales"]
    subprocess.run([trainer, *sample], check=True, capture_output=True)
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "sales-db", f"--from-literal=dsn={pod_dsn}")
    deadline = time.monotonic() + 60
    while cluster.kubectl("-n", NAMESPACE, "get", "sa", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, "no default ServiceAccount in forecast-demo"
        time.sleep(0.3)
    try:
        yield DocsEnv(admin, dsn, work)
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        subprocess.run(
            ["psql", database.dsn, "-AtX", "-c", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"], check=False
        )


def run_block(block: Block, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )


@pytest.mark.parametrize("blocks", _runnable_docs())
def test_doc_runs_as_written(blocks: list[Block], docs_env: DocsEnv, cluster: Any) -> None:
    path = blocks[0].path
    kubeconfig = docs_env.work / f"{path.replace('/', '_')}.kubeconfig"
    shutil.copyfile(docs_env.kubeconfig, kubeconfig)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        for block in blocks:
            started = time.monotonic()
            result = run_block(block, env)
            print(f"{block.where}: exit {result.returncode} in {time.monotonic() - started:.1f} s")
            assert result.returncode == 0, (
                f"{block.where} failed (exit {result.returncode}) as written:\n{block.text}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
    finally:
        cluster.kubectl("-n", NAMESPACE, "delete", "tj,tjs", "--all", "--wait=false", check=False)
