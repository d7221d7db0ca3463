"""``python -m localcluster up|down|status|load-images [DIR]`` (PYTHONPATH=hack; ``make cluster-up`` /
``make cluster-down``).

State dir: ``$TJO_CLUSTER_DIR``, default ~/.cache/trainingjob-operator/cluster/. Binaries:
``$TJO_K8S_BIN``, else hack/build-binaries.sh (cached; a cold build takes a while); CoreDNS:
``$TJO_COREDNS_BIN``, else hack/build-coredns.sh. Node: ``$TJO_NODE`` = kubelet (default: the real
node) or none (the control plane alone). ``up`` runs everything detached and prints
``export KUBECONFIG=<path>`` as its last line. ``load-images [DIR]`` imports the docker-archives of
DIR (default ``$TJO_IMAGES_DIR``, else hack/build-images.sh's output) into the running node, as
``kind load`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from localcluster.binaries import BinariesError
from localcluster.cluster import NODE_KINDS, ClusterError, LocalCluster, default_state_dir
from localcluster.containerd import ContainerdError
from localcluster.images import ImagesError
from localcluster.network import NetworkError
from localcluster.node import NodeError

FAILURES = (ClusterError, BinariesError, NodeError, NetworkError, ContainerdError, ImagesError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "load-images"])
    parser.add_argument("directory", nargs="?", type=Path, help="load-images: a directory of *.tar (+ images.json)")
    parser.add_argument(
        "--state-dir", type=Path, default=None, help=f"default $TJO_CLUSTER_DIR or {default_state_dir()}"
    )
    parser.add_argument("--bin-dir", type=Path, default=None, help="default $TJO_K8S_BIN or hack/build-binaries.sh")
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument("--node", choices=NODE_KINDS, default=None, help="default $TJO_NODE or kubelet")
    parser.add_argument("--fresh", action="store_true", help="up: delete the state dir first (new etcd, new certs)")
    parser.add_argument("--purge", action="store_true", help="down: also delete the state dir")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    cluster = LocalCluster(args.state_dir, args.bin_dir, node_name=args.node_name, node=args.node)
    if args.command == "load-images":
        try:
            refs = cluster.load_images(args.directory)
        except FAILURES as exc:
            print(f"load-images failed: {exc}", file=sys.stderr)
            return 1
        print("imported: " + (", ".join(refs) if refs else "nothing (every image is already in the node)"))
        return 0
    if args.command == "up":
        t0 = time.monotonic()
        try:
            if args.fresh:
                cluster.purge()
            info = cluster.start(timeout=args.timeout)
        except FAILURES as exc:
            print(f"cluster up failed: {exc}", file=sys.stderr)
            print("stopping what was started; state kept in", cluster.state_dir, file=sys.stderr)
            cluster.stop(quiet=True)
            return 1
        print(f"local cluster ready in {time.monotonic() - t0:.1f}s: {info.server} (state in {info.state_dir})")
        for name in cluster.components:
            print(f"  {name:24s} log {info.logs[name]}")
        if info.node == "kubelet":
            print(
                f"  node {info.node_name} (kubelet + containerd) at {info.node_ip}, API server at {info.host_ip}\n"
                "  images: PYTHONPATH=hack .venv/bin/python -m localcluster load-images [DIR]"
            )
        print("  stop with: make cluster-down")
        print(f"export KUBECONFIG={info.kubeconfig}")
        return 0
    if args.command == "down":
        cluster.stop()
        if args.purge:
            cluster.purge()
            print(f"local cluster stopped, {cluster.state_dir} deleted")
        else:
            print(f"local cluster stopped (state kept in {cluster.state_dir}; `down --purge` deletes it)")
        return 0
    print(json.dumps(cluster.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
