"""``python -m node_agent`` (PYTHONPATH=hack): run the node agent, or read container logs.

python -m node_agent --kubeconfig K [--node-name local-node] [--state-dir D] [--images FILE] ...
python -m node_agent logs --state-dir D -n NAMESPACE POD [-c CONTAINER] [--previous]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

DEFAULT_STATE = Path.home() / ".cache" / "trainingjob-operator" / "node-agent"


def _logs(argv: list[str]) -> int:
    from node_agent.logs import LogNotFound, read_log

    p = argparse.ArgumentParser(prog="python -m node_agent logs")
    p.add_argument("pod")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-c", "--container")
    p.add_argument("-p", "--previous", action="store_true")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("NODE_AGENT_STATE_DIR", DEFAULT_STATE)))
    a = p.parse_args(argv)
    try:
        sys.stdout.write(read_log(a.state_dir, a.namespace, a.pod, a.container, a.previous))
    except LogNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "logs":
        return _logs(args[1:])
    from node_agent.agent import Agent, Settings
    from node_agent.images import ImageMap

    p = argparse.ArgumentParser(
        prog="python -m node_agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--node-name", default="local-node")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("NODE_AGENT_STATE_DIR", DEFAULT_STATE)))
    p.add_argument("--images", action="append", default=[], help="image mapping file (JSON/YAML); repeatable")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument(
        "--restart-backoff",
        type=float,
        default=10.0,
        help="first restart delay for OnFailure/Always containers, doubled each time (max 300s)",
    )
    p.add_argument("--label", action="append", default=[], help="extra node label key=value; repeatable")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(args)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        print("node agent: must run as root (mount namespaces, bind mounts, runAsUser)", file=sys.stderr)
        return 2
    try:
        images = ImageMap.load(a.images)
    except (OSError, ValueError) as exc:
        print(f"node agent: bad image mapping: {exc}", file=sys.stderr)
        return 2
    labels = dict(item.split("=", 1) for item in a.label)
    settings = Settings(
        node_name=a.node_name,
        state_dir=a.state_dir.resolve(),
        kubeconfig=a.kubeconfig,
        images=images,
        max_pods=a.max_pods,
        workers=a.workers,
        restart_backoff=a.restart_backoff,
        labels=labels,
    )
    agent = Agent(settings)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("node_agent").info("signal %d", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
