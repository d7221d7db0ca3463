"""The real node's (kubelet + containerd) start, pod start latency and stop, in one run (not a test).

    TJO_K8S_BIN=<dir> TJO_IMAGES_DIR=<dir with tjo-shell.tar> .venv/bin/python bench/node_bench.py [--pods 20]

On a fresh state dir: cold ``up`` (certificates, empty etcd; for the real node
also an empty containerd: the pause image and the project's images are imported), node Ready after
``up`` began, then ``--pods`` pods created one after the other (``sleep 30`` in ``localhost/tjo-shell``),
each timed from its POST to the API showing it Running (median, p90, max), ``down``, then a warm
``up`` (same state dir: certificates, etcd data and containerd's images reused) and ``down`` again.
Prints one markdown table. (Its baseline until issue 17, the process-based node agent, is gone; its
last figures beside the kubelet's are in docs/local-cluster.md.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))


from localcluster import LocalCluster, find_binaries  # noqa: E402
from localcluster.kube import Kube  # noqa: E402

RUN_AS = 65532
SECURE = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def pod_spec(script: str) -> dict[str, Any]:
    """A restricted pod running ``script`` in the shell image (the e2e suite's restricted_pod_spec)."""
    return {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "securityContext": {"runAsUser": RUN_AS, "runAsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "main",
                "image": "localhost/tjo-shell",
                "imagePullPolicy": "IfNotPresent",
                "args": [script],
                "securityContext": SECURE,
            }
        ],
    }


def timed(fn: Any) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def pod_latencies(kube: Kube, pods: int) -> list[float]:
    ns = "bench"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
            break
        except Exception:
            time.sleep(0.1)
    out = []
    for i in range(pods):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}"},
            "spec": pod_spec("sleep 30"),
        }
        t0 = time.monotonic()
        kube.post(f"/api/v1/namespaces/{ns}/pods", body)
        while kube.get(f"/api/v1/namespaces/{ns}/pods/p{i}").get("status", {}).get("phase") != "Running":
            if time.monotonic() - t0 > 120:
                raise RuntimeError(f"pod p{i} not Running after 120 s")
            time.sleep(0.02)
        out.append(time.monotonic() - t0)
    return out


def measure(kind: str, bin_dir: Path, pods: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix=f"tjo-node-bench-{kind}-") as tmp:
        cluster = LocalCluster(Path(tmp) / "state", bin_dir, node=kind)
        t0 = time.monotonic()
        cluster.start(timeout=300)
        cold = time.monotonic() - t0
        node_ready = cluster.timings.get("node_ready", float("nan"))
        lat = pod_latencies(Kube(str(cluster.kubeconfig)), pods)
        down = timed(lambda: cluster.stop(quiet=True))
        cluster.timings.clear()
        warm = timed(lambda: cluster.start(timeout=300))
        warm_ready = cluster.timings.get("node_ready", float("nan"))
        down_warm = timed(lambda: cluster.stop(quiet=True))
    lat.sort()
    return {
        "cold up (whole cluster usable)": f"{cold:.2f} s",
        "cold up: node Ready after": f"{node_ready:.2f} s",
        "warm up (whole cluster usable)": f"{warm:.2f} s",
        "warm up: node Ready after": f"{warm_ready:.2f} s",
        f"pod create -> Running, median of {pods}": f"{statistics.median(lat):.2f} s",
        f"pod create -> Running, p90 of {pods}": f"{lat[int(0.9 * (len(lat) - 1))]:.2f} s",
        f"pod create -> Running, max of {pods}": f"{lat[-1]:.2f} s",
        f"down with {pods} pods running": f"{down:.2f} s",
        "down (warm, no pods)": f"{down_warm:.2f} s",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--nodes", default="kubelet", help="node kinds (one column each)")
    args = parser.parse_args()
    bin_dir = find_binaries()
    kinds = args.nodes.split(",")
    results = {k: measure(k, bin_dir, args.pods) for k in kinds}
    rows = list(results[kinds[0]])
    width = max(len(r) for r in rows)
    header = f"| {'measure':{width}s} | " + " | ".join(f"{k:>12s}" for k in kinds) + " |"
    print(header)
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * 14 for _ in kinds) + "|")
    for r in rows:
        print(f"| {r:{width}s} | " + " | ".join(f"{results[k][r]:>12s}" for k in kinds) + " |")


if __name__ == "__main__":
    main()
