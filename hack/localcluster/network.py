"""The real node's network: a network namespace of its own, joined to the host by a veth pair.

Everything the node runs (containerd, the kubelet, kube-proxy, CoreDNS, the CNI bridge and the
pods behind it) lives in the namespace; the host keeps one veth end with a private address (the
API server and the test PostgreSQL listen there). Names and subnets derive from the state
directory, so two clusters on one machine never share any of them::

    host netns                         node netns "tjo-<key>"
    tjoh<key>  10.213.<i>.1/30  <--->  eth0 10.213.<i>.2/30 (node IP)
                                       cni0 10.214.<i>.1/24 -- pods 10.214.<i>.0/24

No default route in the namespace: pods reach the host side of the veth and the cluster's services,
nothing beyond this machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINK_BASE = ipaddress.ip_network("10.213.0.0/16")  # one /30 per cluster: 10.213.<i>.0/30
POD_BASE = ipaddress.ip_network("10.214.0.0/16")  # one /24 per cluster: 10.214.<i>.0/24
SLOTS = 256
NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    """The node's namespace or veth could not be set up; the message has the failing command."""


@dataclass(frozen=True)
class NodeNetwork:
    """Names and addresses of one cluster's node network (pure data; see :func:`plan_network`)."""

    key: str
    slot: int

    @property
    def netns(self) -> str:
        return f"tjo-{self.key}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def host_if(self) -> str:
        return f"tjoh{self.key}"

    @property
    def peer_if(self) -> str:
        """The node end's name while it is still in the host namespace (renamed eth0 inside)."""
        return f"tjon{self.key}"

    node_if = "eth0"
    bridge = "cni0"

    @property
    def link(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(LINK_BASE.network_address) + self.slot * 256, 30))

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(POD_BASE.network_address) + self.slot * 256, 24))

    @property
    def host_ip(self) -> str:
        return str(self.link.network_address + 1)

    @property
    def node_ip(self) -> str:
        return str(self.link.network_address + 2)

    @property
    def cni_network(self) -> str:
        """The CNI network name (also names its IPAM and cache entries)."""
        return f"tjo-{self.key}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "slot": self.slot}

    @classmethod
    def from_json(cls, raw: object) -> NodeNetwork | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(str(raw["key"]), int(raw["slot"]))
        except (KeyError, TypeError, ValueError):
            return None


def state_key(state_dir: Path) -> str:
    """8 hex digits naming a cluster's host-visible objects (netns, veth, cgroups) after its state dir."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


def plan_network(key: str, taken: Iterable[ipaddress.IPv4Network], previous: NodeNetwork | None = None) -> NodeNetwork:
    """The node network for ``key``: the previous run's slot when still free, else the first free slot
    from one derived from the key, so that neither its /30 nor its pod /24 overlaps ``taken`` (the
    host's routes and addresses, other clusters' links included)."""
    busy = [n for n in taken if n.prefixlen > 0]  # a default route overlaps everything and means nothing here

    def free(slot: int) -> bool:
        net = NodeNetwork(key, slot)
        return not any(net.link.overlaps(n) or net.pod_cidr.overlaps(n) for n in busy)

    if previous is not None and previous.key == key and free(previous.slot):
        return previous
    start = int(key, 16) % SLOTS
    for i in range(SLOTS):
        slot = (start + i) % SLOTS
        if free(slot):
            return NodeNetwork(key, slot)
    raise NetworkError(f"no free /30 in {LINK_BASE} with a free /24 in {POD_BASE}: every slot overlaps a host route")


def host_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks routed or addressed on the host (every routing table)."""
    out: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("default", "") or ":" in dst:
            continue
        try:
            out.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue
    for link in json.loads(_run(["ip", "-j", "-4", "addr"]).stdout or "[]"):
        for a in link.get("addr_info", []):
            try:
                out.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
            except (KeyError, ValueError):
                continue
    return out


def exists(net: NodeNetwork) -> bool:
    return net.netns_path.exists()


def create(net: NodeNetwork) -> None:
    """Create the namespace and the veth pair (idempotent: an existing complete setup is kept)."""
    if exists(net) and _link_exists(net.host_if):
        return
    delete(net)
    steps: list[Sequence[str]] = [
        ["ip", "netns", "add", net.netns],
        ["ip", "link", "add", net.host_if, "type", "veth", "peer", "name", net.peer_if, "netns", net.netns],
        ["ip", "addr", "add", f"{net.host_ip}/30", "dev", net.host_if],
        ["ip", "link", "set", net.host_if, "up"],
        ["ip", "-n", net.netns, "link", "set", net.peer_if, "name", net.node_if],
        ["ip", "-n", net.netns, "addr", "add", f"{net.node_ip}/30", "dev", net.node_if],
        ["ip", "-n", net.netns, "link", "set", net.node_if, "up"],
        ["ip", "-n", net.netns, "link", "set", "lo", "up"],
    ]
    for argv in steps:
        _run(argv)


def add_service_route(net: NodeNetwork, service_cidr: str) -> None:
    """Route the service range out of eth0, so the node's own processes can open connections to
    ClusterIPs (kube-proxy's OUTPUT rules rewrite them; without a route connect() fails first)."""
    _run(["ip", "-n", net.netns, "route", "replace", service_cidr, "via", net.host_ip, "dev", net.node_if])


def delete(net: NodeNetwork) -> None:
    """Remove the namespace (its interfaces, the bridge and the veth go with it) and the host end."""
    if exists(net):
        subprocess.run(["ip", "netns", "del", net.netns], capture_output=True, check=False)
    if _link_exists(net.host_if):
        subprocess.run(["ip", "link", "del", net.host_if], capture_output=True, check=False)


def in_netns(net: NodeNetwork, argv: Sequence[str]) -> list[str]:
    """``argv`` run in the node's network namespace only (mounts, pids and cgroups stay the host's)."""
    return ["nsenter", f"--net={net.netns_path}", "--", *argv]


def netns_inode(net: NodeNetwork) -> int | None:
    try:
        return net.netns_path.stat().st_ino
    except OSError:
        return None


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result
