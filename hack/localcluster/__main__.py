"""``python -m localcluster up|down|status`` (PYTHONPATH=hack; ``make cluster-up`` / ``make cluster-down``).

State dir: ``$TJO_CLUSTER_DIR``, default ~/.cache/trainingjob-operator/cluster/. Binaries:
``$TJO_K8S_BIN``, else hack/build-binaries.sh (cached; a cold build takes a while).
``up`` runs everything detached and prints ``export KUBECONFIG=<path>`` as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from localcluster.binaries import BinariesError
from localcluster.cluster import COMPONENTS, ClusterError, LocalCluster, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--state-dir", type=Path, default=None, help=f"default $TJO_CLUSTER_DIR or {default_state_dir()}"
    )
    parser.add_argument("--bin-dir", type=Path, default=None, help="default $TJO_K8S_BIN or hack/build-binaries.sh")
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument("--no-node-agent", action="store_true", help="up: control plane only")
    parser.add_argument("--fresh", action="store_true", help="up: delete the state dir first (new etcd, new certs)")
    parser.add_argument("--purge", action="store_true", help="down: also delete the state dir")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args(argv)

    cluster = LocalCluster(args.state_dir, args.bin_dir, node_name=args.node_name, node_agent=not args.no_node_agent)
    if args.command == "up":
        t0 = time.monotonic()
        try:
            if args.fresh:
                cluster.purge()
            info = cluster.start(timeout=args.timeout)
        except (ClusterError, BinariesError) as exc:
            print(f"cluster up failed: {exc}", file=sys.stderr)
            print("stopping what was started; state kept in", cluster.state_dir, file=sys.stderr)
            cluster.stop(quiet=True)
            return 1
        print(f"local cluster ready in {time.monotonic() - t0:.1f}s: {info.server} (state in {info.state_dir})")
        for name in COMPONENTS:
            if name != "node-agent" or cluster.with_node_agent:
                print(f"  {name:24s} log {info.logs[name]}")
        if cluster.with_node_agent:
            print(
                f"  node {info.node_name}; container logs: PYTHONPATH=hack python -m node_agent logs "
                f"--state-dir {info.agent_state_dir} -n NAMESPACE POD"
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
