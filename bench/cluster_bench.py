"""Baseline figures of the local cluster (a benchmark that prints a table; not a test).

    TJO_K8S_BIN=<dir> .venv/bin/python bench/cluster_bench.py [--pods 200] [--parallelism 20] [--repeat 3]

Measures, on this machine:
- the warm binary-cache check (``hack/build-binaries.sh`` finding its cache);
- cold control-plane start: a new state dir (certificates generated, empty etcd, RBAC bootstrap),
  until /readyz, until controller-manager and scheduler are healthy, until the node is Ready;
- warm start: the same state dir again (certificates and etcd data reused);
- stop time (everything down, no process left);
- a native Indexed Job of ``--pods`` trivial pods (``true`` in ``localhost/tjo-shell``) with
  ``--parallelism``, from creation to the Complete condition: pods/second. This is the baseline
  the operator's overhead is later compared against.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster import LocalCluster, find_binaries  # noqa: E402
from localcluster.kube import Kube, KubeError  # noqa: E402

RUN_AS = 65532


def timed_cache_check() -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-binaries.sh")], capture_output=True, text=True, check=True
    ).stdout
    return time.monotonic() - t0, out.strip().splitlines()[-1]


def start(cluster: LocalCluster) -> dict[str, float]:
    cluster.timings.clear()
    t0 = time.monotonic()
    cluster.start()
    timings = dict(cluster.timings)
    timings["total"] = time.monotonic() - t0
    return timings


def stop(cluster: LocalCluster) -> float:
    t0 = time.monotonic()
    cluster.stop(quiet=True)
    return time.monotonic() - t0


def indexed_job(name: str, pods: int, parallelism: int) -> dict[str, Any]:
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": pods,
            "parallelism": parallelism,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsUser": RUN_AS, "runAsGroup": RUN_AS, "runAsNonRoot": True},
                    "containers": [
                        {
                            "name": "main",
                            "image": "localhost/tjo-shell",
                            # imported, never pulled: a tag-less ref would default to Always (no registry)
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["true"],
                            "securityContext": security,
                        }
                    ],
                }
            },
        },
    }


def run_job(cluster: LocalCluster, pods: int, parallelism: int) -> dict[str, float]:
    kube = Kube(str(cluster.kubeconfig))
    ns = f"bench-{int(time.time())}"
    kube.post(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        },
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
            break
        except KubeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    t0 = time.monotonic()
    kube.post(f"/apis/batch/v1/namespaces/{ns}/jobs", indexed_job("baseline", pods, parallelism))
    first_running = None
    while True:
        job = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/baseline")
        st = job.get("status") or {}
        if first_running is None and (st.get("active") or st.get("succeeded")):
            first_running = time.monotonic() - t0
        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
        if conds.get("Complete") == "True" or conds.get("Failed") == "True":
            break
        if time.monotonic() - t0 > 1800:
            raise TimeoutError(f"job not done after 30 min: {st}")
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    if conds.get("Complete") != "True":
        raise RuntimeError(f"job failed: {st}")
    return {"elapsed": elapsed, "first_active": first_running or 0.0, "succeeded": float(st.get("succeeded", 0))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=200)
    p.add_argument("--parallelism", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3, help="warm starts to measure")
    a = p.parse_args()

    cache_s, cache_dir = timed_cache_check()
    bin_dir = Path(os.environ["TJO_K8S_BIN"]) if os.environ.get("TJO_K8S_BIN") else find_binaries()
    rows: list[tuple[str, str]] = [("binary cache check (warm, hack/build-binaries.sh)", f"{cache_s:.2f} s")]

    with tempfile.TemporaryDirectory(prefix="tjo-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "state", bin_dir)
        try:
            cold = start(cluster)
            stop_s = stop(cluster)
            warms = []
            for i in range(a.repeat):
                warms.append(start(cluster))
                if i < a.repeat - 1:
                    stop(cluster)
            job = run_job(cluster, a.pods, a.parallelism)
        finally:
            final_stop = stop(cluster)

    def median(key: str) -> float:
        return statistics.median(w[key] for w in warms)

    rows += [
        ("cold start: certificates + state dir", f"{cold['certs']:.2f} s"),
        ("cold start: kube-apiserver /readyz", f"{cold['apiserver_ready']:.2f} s"),
        ("cold start: controller-manager + scheduler healthy", f"{cold['control_plane_ready']:.2f} s"),
        ("cold start: node Ready (whole cluster usable)", f"{cold['node_ready']:.2f} s"),
        (f"warm start: kube-apiserver /readyz (median of {a.repeat})", f"{median('apiserver_ready'):.2f} s"),
        (
            f"warm start: controller-manager + scheduler healthy (median of {a.repeat})",
            f"{median('control_plane_ready'):.2f} s",
        ),
        (f"warm start: node Ready (median of {a.repeat})", f"{median('node_ready'):.2f} s"),
        ("stop (all processes gone)", f"{statistics.median([stop_s, final_stop]):.2f} s"),
        (
            f"Indexed Job: {a.pods} trivial pods, parallelism {a.parallelism}: first pod active",
            f"{job['first_active']:.2f} s",
        ),
        (f"Indexed Job: {a.pods} trivial pods, parallelism {a.parallelism}: Complete after", f"{job['elapsed']:.1f} s"),
        ("Indexed Job throughput", f"{job['succeeded'] / job['elapsed']:.2f} pods/s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"local cluster baseline ({os.cpu_count()} CPUs, binaries {cache_dir})")
    print(f"| {'measure':<{width}} | {'value':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * 14}|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value:>12} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
