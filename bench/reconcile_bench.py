"""Reconcile-pass benchmark (prints a table; not a test): the pure pass at 10,000 products.

Side by side in one run: the current ``observe.build`` + ``reconcile`` and the baseline, the
reconcile of commit 9368b76 (positions, a fresh ``succeeded | failed`` set per Job: O(n^2)),
loaded from git. Three states of a 10,000-product TrainingJob at parallelism 50:

  first pass    nothing observed yet (launch 50)
  mid-run       5,000 on record, 50 running Jobs, their 5,000 finished Jobs still present
  last pass     9,950 on record, 50 Jobs just finished, all 10,000 Jobs present

(Finished Jobs stay unless spec.ttlSecondsAfterFinished is set, the default.)

Target (issue 9): <= 100 ms per pass at 10,000 products.

Usage: .venv/bin/python bench/reconcile_bench.py [--products 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from trainingjob_operator import builders, observe  # noqa: E402
from trainingjob_operator.api import TrainingJob, TrainingJobStatus  # noqa: E402
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
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = load_baseline()
    n = args.products
    print(f"reconcile pass at {n} products, parallelism 50 (median of {args.repeat}, ms)")
    print(f"{'state':<12} | {'baseline 9368b76':>16} | {'current':>8} | target <= 100 ms")
    for name in ("first pass", "mid-run", "last pass"):
        done, jobs = scenario(n, name)
        pods = {j["metadata"]["uid"]: [pod_for(observe.job_product(j) or "")] for j in jobs}

        def current(done: int = done, jobs: list[dict[str, Any]] = jobs, pods: dict[str, Any] = pods) -> object:
            tj = make_tj(n, done, sorted_record=True)
            recorded = set(tj.spec.products[:done])
            obs = observe.build(tj, recorded, jobs, lambda uid: pods.get(uid, []), [])
            return reconcile(tj, obs, NOW)

        def baseline(done: int = done, jobs: list[dict[str, Any]] = jobs) -> object:
            tj = make_tj(n, done, sorted_record=False)
            index = {p: i for i, p in enumerate(tj.spec.products)}
            observed_jobs = {}
            for j in jobs:
                product = j["metadata"]["annotations"][builders.ANNOTATION_PRODUCT]
                finished = "Complete" if j["status"]["conditions"] else None
                observed_jobs[index[product]] = base.ObservedJob(
                    name=j["metadata"]["name"], index=index[product], retry_round="", finished=finished,
                    active=j["status"]["active"],
                )
            return base.reconcile(tj, base.Observed(jobs=observed_jobs), NOW)

        b, c = time_it(baseline, args.repeat), time_it(current, args.repeat)
        verdict = "PASS" if c <= 100 else "MISS"
        print(f"{name:<12} | {b:16.1f} | {c:8.1f} | {verdict}")


if __name__ == "__main__":
    main()
