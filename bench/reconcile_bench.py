"""Reconcile-pass benchmark (prints a table; not a test): the pure pass at 10,000 products.

Side by side in one run: the current ``observe.build`` + ``reconcile`` and the baseline, the
reconcile of commit 9368b76 (positions, a fresh ``succeeded | failed`` set per Job: O(n^2)),
loaded from git. Three states of a 10,000-product TrainingJob at parallelism 50:

  first pass    nothing observed yet (launch 50)
  mid-run       5,000 on record, 50 running Jobs, their 5,000 finished Jobs still present
  last pass     9,950 on record, 50 Jobs just finished, all 10,000 Jobs present

(Finished Jobs stay unless spec.ttlSecondsAfterFinished is set, the default.)

Target (issue 9): <= 100 ms per pass at 10,000 products.

With ``--against REF`` a third column times the same pass with the operator package of git
revision REF (extracted to a temporary folder and run in a child process of this script, state by
state, alternating with the current code): a before/after comparison of a change in one run.

Usage: .venv/bin/python bench/reconcile_bench.py [--products 10000] [--repeat 5] [--against REF]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# --against REF: a child process of this script times the operator package of REF (see main).
sys.path.insert(0, os.environ.get("TJO_BENCH_OPERATOR_DIR") or str(ROOT / "operator"))

from trainingjob_operator import builders, observe  # noqa: E402
from trainingjob_operator.api import TrainingJob, TrainingJobSpec, TrainingJobStatus  # noqa: E402
from trainingjob_operator.reconcile import reconcile  # noqa: E402
from trainingjob_operator.status import compress_indexes  # noqa: E402

BASELINE_COMMIT = "9368b76"
NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def load_baseline() -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:operator/trainingjob_operator/reconcile.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("reconcile_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reconcile_baseline"] = module
    exec(compile(source, "reconcile_baseline.py", "exec"), module.__dict__)
    return module


def make_tj(n: int, done: int, sorted_record: bool) -> TrainingJob:
    products = [f"sku-{i:06d}" for i in range(n)]
    status = TrainingJobStatus(succeeded_indexes=compress_indexes(range(done)))
    if sorted_record:
        status.index_order = "Sorted"
    body = {
        "metadata": {"name": "big", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {
            "products": products,
            "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
            "parallelism": 50,
            # One pod per product (this bench times that path); the field exists since issue 19.
            **({"productsPerPod": 1} if "products_per_pod" in TrainingJobSpec.model_fields else {}),
        },
    }
    return TrainingJob.model_validate(body).model_copy(update={"status": status})


def raw_job(product: str, finished: bool) -> dict[str, Any]:
    conds = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-23T08:59:00Z"}] if finished else []
    return {
        "metadata": {
            "name": builders.job_name("big", product),
            "uid": f"u-{product}",
            "labels": {builders.LABEL_PRODUCT_HASH: builders.product_hash(product)},
            "annotations": {builders.ANNOTATION_PRODUCT: product, builders.ANNOTATION_RETRY_ROUND: ""},
            "ownerReferences": [{"uid": "uid-1", "controller": True}],
        },
        "spec": {},
        "status": {"active": 0 if finished else 1, "conditions": conds},
    }


def pod_for(product: str) -> dict[str, Any]:
    msg = json.dumps({"products": [{"product": product, "status": "trained", "error": 0.2}]})
    return {
        "metadata": {"labels": {builders.JOB_UID_LABEL: f"u-{product}"}},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 0, "message": msg}}}],
        },
    }


def scenario(n: int, name: str) -> tuple[int, list[dict[str, Any]]]:
    """(products on record, raw Jobs present)."""
    products = [f"sku-{i:06d}" for i in range(n)]
    if name == "first pass":
        return 0, []
    if name == "mid-run":
        done = n // 2
        jobs = [raw_job(p, True) for p in products[:done]]
        jobs += [raw_job(p, False) for p in products[done : done + 50]]
        return done, jobs
    done = n - 50
    return done, [raw_job(p, True) for p in products]


def time_it(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU ms of ``fn`` (process time: the pass is pure and single-threaded, so on an idle
    machine this is its wall time; on a shared one it leaves out the waits for a core)."""
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        runs.append(time.process_time() - t0)
    return statistics.median(runs) * 1000


def current_pass(n: int, name: str) -> Callable[[], object]:
    """The current code's pass (observe.build + reconcile) in state ``name``."""
    done, jobs = scenario(n, name)
    pods = {j["metadata"]["uid"]: [pod_for(observe.job_product(j) or "")] for j in jobs}

    def current() -> object:
        tj = make_tj(n, done, sorted_record=True)
        recorded = set(tj.spec.products[:done])
        obs = observe.build(tj, recorded, jobs, lambda uid: pods.get(uid, []), [])
        return reconcile(tj, obs, NOW)

    return current


def extract_operator(ref: str, into: Path) -> Path:
    """The operator package of git revision ``ref``, extracted under ``into``."""
    archive = subprocess.run(["git", "archive", ref, "operator"], cwd=ROOT, check=True, capture_output=True).stdout
    tar = into / "operator.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as tf:
        tf.extractall(into)  # our own git archive
    return into / "operator"


def time_in_child(operator_dir: Path, n: int, name: str, repeat: int) -> float:
    """ms of the pass in state ``name`` with the operator package at ``operator_dir``."""
    out = subprocess.run(
        [sys.executable, __file__, "--products", str(n), "--repeat", str(repeat), "--only", name],
        env={**os.environ, "TJO_BENCH_OPERATOR_DIR": str(operator_dir)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.splitlines()[-1])["ms"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--against", metavar="REF", help="also time the operator package of this git revision")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # child mode: one state, the current code, JSON
    args = ap.parse_args()
    n = args.products
    if args.only:
        print(json.dumps({"ms": time_it(current_pass(n, args.only), args.repeat)}))
        return
    base = load_baseline()
    with tempfile.TemporaryDirectory(prefix="tjo-reconcile-bench-") as tmp:
        against = extract_operator(args.against, Path(tmp)) if args.against else None
        other = f" | {args.against[:16]:>16}" if against else ""
        print(f"reconcile pass at {n} products, parallelism 50 (median of {args.repeat}, CPU ms)")
        print(f"{'state':<12} | {'baseline 9368b76':>16}{other} | {'current':>8} | target <= 100 ms")
        for name in ("first pass", "mid-run", "last pass"):
            then = f" | {time_in_child(against, n, name, args.repeat):16.1f}" if against else ""
            b = time_it(baseline_pass(base, n, name), args.repeat)
            c = time_it(current_pass(n, name), args.repeat)
            verdict = "PASS" if c <= 100 else "MISS"
            print(f"{name:<12} | {b:16.1f}{then} | {c:8.1f} | {verdict}")


def baseline_pass(base: ModuleType, n: int, name: str) -> Callable[[], object]:
    """The reconcile of commit 9368b76 (positions) in state ``name``."""
    done, jobs = scenario(n, name)

    def baseline() -> object:
        tj = make_tj(n, done, sorted_record=False)
        index = {p: i for i, p in enumerate(tj.spec.products)}
        observed_jobs = {}
        for j in jobs:
            product = j["metadata"]["annotations"][builders.ANNOTATION_PRODUCT]
            finished = "Complete" if j["status"]["conditions"] else None
            observed_jobs[index[product]] = base.ObservedJob(
                name=j["metadata"]["name"],
                index=index[product],
                retry_round="",
                finished=finished,
                active=j["status"]["active"],
            )
        return base.reconcile(tj, base.Observed(jobs=observed_jobs), NOW)

    return baseline


if __name__ == "__main__":
    main()
