"""Start and stop a real Kubernetes control plane and its node.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes built
from the Kubernetes Go modules (hack/build-binaries.sh). The node is real: containerd + the
kubelet + kube-proxy + CoreDNS in a network namespace of its own (:mod:`localcluster.node`);
``TJO_NODE=none`` (or ``node="none"``) starts the control plane alone.
Everything lives in one state directory (certificates, kubeconfigs, etcd data, logs, pid files),
so ``up`` in one process and ``down`` in another work together:

    <state>/pki/                   CA, serving cert, client certs, service-account key pair
    <state>/admin.kubeconfig       system:masters; the one people and tests use
    <state>/{controller-manager,scheduler,node}.kubeconfig
    <state>/etcd/                  etcd data
    <state>/logs/<component>.log   one log per component
    <state>/run/<component>.pid    pid + start time of each detached process
    <state>/node/                  the real node: containerd (images, state), kubelet root, CNI, configs
    <state>/cluster.json           ports, the node kind and network, the binaries used
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcluster import certs, network
from localcluster.binaries import find_binaries, find_coredns
from localcluster.images import archives_in, load_images, load_pause, project_images_dir
from localcluster.kubeconfig import kubeconfig, write_kubeconfig
from localcluster.network import NodeNetwork
from localcluster.node import NODE_COMPONENTS, RealNode, api_objects, check_tools
from localcluster.procs import PidRecord, spawn, stop_all

SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_NODE = "local-node"
# Every controller kube-controller-manager runs by default (resourcequota, endpointslice, ...), as on
# kind; the node lifecycle controller among them lifts the not-ready taint TaintNodesByCondition puts
# on new Nodes (NodeRestriction forbids a node to change its own taints).
CONTROLLERS = ("*",)
NODE_KINDS = ("kubelet", "none")
MAX_STATE_DIR = 64
# Who wrote what (create/update/patch/delete, metadata only) -> <state>/logs/audit.log: lets benchmarks
# count the API writes of one identity (e.g. the operator's ServiceAccount).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
COMPONENTS = (*CONTROL_PLANE, *NODE_COMPONENTS)


def default_node_kind() -> str:
    kind = os.environ.get("TJO_NODE", "kubelet") or "kubelet"
    if kind == "agent":
        raise ValueError("TJO_NODE=agent: the process-based node agent is gone; the node is the real kubelet")
    if kind not in NODE_KINDS:
        raise ValueError(f"TJO_NODE={kind!r}: expected one of {', '.join(NODE_KINDS)}")
    return kind


class ClusterError(RuntimeError):
    """The cluster could not be started or reached; the message says why and where the logs are."""


def default_state_dir() -> Path:
    env = os.environ.get("TJO_CLUSTER_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trainingjob-operator" / "cluster"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


@dataclass
class Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0
    scheduler: int = 0

    def fill(self, previous: Ports | None) -> None:
        """Reuse the previous run's ports when still free (a stable kubeconfig), else pick free ones."""
        taken: set[int] = set()
        for name in asdict(self):
            old = getattr(previous, name, 0) if previous else 0
            port = old if old and old not in taken and _port_free(old) else _free_port(taken)
            taken.add(port)
            setattr(self, name, port)


@dataclass
class ClusterInfo:
    """What a started cluster offers its users."""

    kubeconfig: Path
    server: str
    state_dir: Path
    bin_dir: Path
    logs: dict[str, Path]
    node_name: str
    node: str = "kubelet"
    node_ip: str | None = None
    host_ip: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class LocalCluster:
    """The control plane and the node (``node="kubelet"|"none"``, default ``$TJO_NODE`` or
    ``kubelet``) of one state directory.

    >>> cluster = LocalCluster(Path("/tmp/c"), bin_dir)   # doctest: +SKIP
    >>> info = cluster.start()                            # returns when /readyz is ok and the node is Ready
    >>> info.kubeconfig                                   # admin kubeconfig
    >>> cluster.stop()                                    # no process left behind
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        bin_dir: Path | None = None,
        *,
        node_name: str = DEFAULT_NODE,
        node: str | None = None,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self._bin_dir = bin_dir
        self.node_name = node_name
        self.node_kind = node or default_node_kind()
        if self.node_kind not in NODE_KINDS:
            raise ValueError(f"node={self.node_kind!r}: expected one of {', '.join(NODE_KINDS)}")
        self.timings: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def components(self) -> tuple[str, ...]:
        """The processes this cluster runs."""
        node = {"kubelet": NODE_COMPONENTS, "none": ()}[self.node_kind]
        return (*CONTROL_PLANE, *node)

    @property
    def network(self) -> NodeNetwork | None:
        """The real node's network of the last start (from cluster.json)."""
        return NodeNetwork.from_json(self._meta().get("network"))

    @property
    def real_node(self) -> RealNode | None:
        net = self.network
        return RealNode(self.state_dir, net, self.node_name, self.log_path) if net is not None else None

    # ------------------------------------------------------------------ paths

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        return self.state_dir / "node.kubeconfig"

    @property
    def meta_path(self) -> Path:
        return self.state_dir / "cluster.json"

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    def pid_path(self, component: str) -> Path:
        return self.state_dir / "run" / f"{component}.pid"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_binaries()
        return self._bin_dir

    def _meta(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.meta_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _ports(self) -> Ports | None:
        raw = self._meta().get("ports")
        if not isinstance(raw, dict):
            return None
        try:
            return Ports(**{k: int(v) for k, v in raw.items()})
        except TypeError:
            return None

    @property
    def server(self) -> str:
        ports = self._ports()
        if ports is None:
            raise ClusterError(f"no cluster was started in {self.state_dir}")
        return f"https://{self._meta().get('host', '127.0.0.1')}:{ports.apiserver}"

    def info(self) -> ClusterInfo:
        return ClusterInfo(
            kubeconfig=self.kubeconfig,
            server=self.server,
            state_dir=self.state_dir,
            bin_dir=Path(self._meta().get("bin_dir") or self.bin_dir),
            logs={c: self.log_path(c) for c in self.components},
            node_name=self.node_name,
            node=self.node_kind,
            node_ip=self.network.node_ip if self.network and self.node_kind == "kubelet" else None,
            host_ip=self.network.host_ip if self.network and self.node_kind == "kubelet" else None,
            timings=dict(self.timings),
        )

    # ----------------------------------------------------------------- status

    def running(self) -> dict[str, bool]:
        out = {}
        for c in COMPONENTS:
            record = PidRecord.load(self.pid_path(c))
            out[c] = record is not None and record.alive()
        return out

    def is_up(self) -> bool:
        state = self.running()
        if self._meta().get("node") != self.node_kind:
            return False
        if not all(state[c] for c in self.components) or not self.kubeconfig.exists():
            return False
        try:
            return self._api_get("/readyz", timeout=2) == "ok"
        except (OSError, ClusterError):
            return False

    # ------------------------------------------------------------------ start

    def start(self, timeout: float = 300.0) -> ClusterInfo:
        """Start everything (or find it already running) and wait until it is usable (``timeout``: a
        failure threshold; a loaded 2-CPU machine took 90 s and more to bring the controller-manager up)."""
        if self.is_up():
            return self.info()
        self.stop(quiet=True)  # leftovers of a crashed run would hold ports and etcd's lock
        t0 = time.monotonic()
        bin_dir = self.bin_dir
        for d in ("logs", "run", "etcd", "certs"):
            (self.state_dir / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir / "etcd", 0o700)
        node: RealNode | None = None
        host = "127.0.0.1"
        if self.node_kind == "kubelet":
            check_tools()
            # the kubelet's sockets live under <state>/node/kubelet/ (e.g. pod-resources/kubelet.sock)
            if len(str(self.state_dir)) > MAX_STATE_DIR:
                raise ClusterError(
                    f"state dir {self.state_dir} is too long for the real node's unix sockets "
                    f"(at most {MAX_STATE_DIR} characters): choose a shorter TJO_CLUSTER_DIR"
                )
            # the node's network first: the API server listens on the host side of its veth
            net = network.plan_network(network.state_key(self.state_dir), network.host_networks(), self.network)
            # recorded before anything is created, so a failed start is undone by stop()
            self.meta_path.write_text(json.dumps({**self._meta(), "node": "kubelet", "network": net.to_json()}))
            network.create(net)
            network.add_service_route(net, SERVICE_CIDR)
            node = RealNode(self.state_dir, net, self.node_name, self.log_path)
            host = net.host_ip
        identities = {
            "admin": certs.ADMIN,
            "controller-manager": certs.CONTROLLER_MANAGER,
            "scheduler": certs.SCHEDULER,
            "node": certs.node_identity(self.node_name),
        }
        if node is not None:
            identities |= {"kube-proxy": certs.KUBE_PROXY, "coredns": certs.COREDNS}
        extra = [certs.APISERVER_KUBELET_CLIENT] if node is not None else []
        pki = certs.ensure_pki(self.pki_dir, [*identities.values(), *extra], extra_ips=(host,) if node else ())
        ports = Ports()
        ports.fill(self._ports())
        server = f"https://{host}:{ports.apiserver}"
        for stem, identity in identities.items():
            cfg = kubeconfig(
                server, pki.ca_cert, pki.client_cert(identity.stem), pki.client_key(identity.stem), identity.user
            )
            write_kubeconfig(self.state_dir / f"{stem}.kubeconfig", cfg)
        (self.state_dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        meta: dict[str, Any] = {
            "ports": asdict(ports),
            "bin_dir": str(bin_dir),
            "node_name": self.node_name,
            "node": self.node_kind,
            "host": host,
        }
        if node is not None:
            meta["network"] = node.net.to_json()
        self.meta_path.write_text(json.dumps(meta, indent=2))
        self.timings["certs"] = time.monotonic() - t0

        # etcd, the API server and the node at once (the API server retries etcd, the node retries the
        # API server), so their start-up work overlaps instead of adding up. The controller-manager
        # and the scheduler once the API server is ready: they give up (exit) when it does not
        # answer their /healthz within ~20 s, which an RBAC bootstrap on a loaded machine can exceed.
        self._spawn("etcd", self._etcd_argv(bin_dir, ports))
        self._spawn("kube-apiserver", self._apiserver_argv(bin_dir, ports, pki))
        if node is not None:
            self._start_real_node(node, bin_dir, pki, t0)
        self._wait("kube-apiserver /readyz", lambda: self._api_get("/readyz", timeout=2) == "ok", timeout, t0)
        self.timings["apiserver_ready"] = time.monotonic() - t0
        self._spawn("kube-controller-manager", self._controller_manager_argv(bin_dir, ports, pki))
        self._spawn("kube-scheduler", self._scheduler_argv(bin_dir, ports))
        if node is not None:
            self._start_dns(node, t0, timeout)
        self._wait(
            "kube-controller-manager /healthz",
            lambda: self._healthz(ports.controller_manager),
            timeout,
            t0,
        )
        self._wait("kube-scheduler /healthz", lambda: self._healthz(ports.scheduler), timeout, t0)
        self.timings["control_plane_ready"] = time.monotonic() - t0
        if self.node_kind != "none":
            self.wait_node_ready(timeout=max(10.0, timeout - (time.monotonic() - t0)))
            self.timings["node_ready"] = time.monotonic() - t0
        if node is not None:
            self._wait("CoreDNS /ready", node.dns_ready, timeout, t0)
            self.timings["dns_ready"] = time.monotonic() - t0
        return self.info()

    def _start_real_node(self, node: RealNode, bin_dir: Path, pki: certs.Pki, t0: float) -> None:
        """containerd (+ the pause image and the project's images), the kubelet and kube-proxy; they
        retry the API server while it starts."""
        serving = certs.ensure_kubelet_serving(pki, self.node_name, node.net.node_ip)
        node.prepare(
            pki.ca_cert,
            serving,
            {"kube-proxy": self.state_dir / "kube-proxy.kubeconfig", "coredns": self.state_dir / "coredns.kubeconfig"},
        )
        node.host_changes()
        node.start_containerd()
        self.timings["containerd_ready"] = time.monotonic() - t0
        load_pause(node.paths.containerd)
        node.start_kubelet(bin_dir, self.node_kubeconfig)
        node.start_kube_proxy(bin_dir)
        self.timings["kubelet_started"] = time.monotonic() - t0
        self.load_images()
        self.timings["images_loaded"] = time.monotonic() - t0

    def _start_dns(self, node: RealNode, t0: float, timeout: float) -> None:
        for path, body in api_objects(node.net):
            self._api_put(path, body)
        node.start_coredns(find_coredns())
        self.timings["coredns_started"] = time.monotonic() - t0

    def load_images(self, directory: Path | None = None) -> list[str]:
        """Import the project's images (``directory``, else ``$TJO_IMAGES_DIR`` or hack/build-images.sh's
        output) into the running node's containerd; returns the refs imported (unchanged ones are skipped)."""
        node = self.real_node
        if node is None or self.node_kind != "kubelet":
            raise ClusterError("load-images needs a running real node (TJO_NODE=kubelet)")
        directory = directory or project_images_dir()
        if directory is None:
            return []
        result = load_images(node.paths.containerd, archives_in(directory))
        return result.imported

    def _spawn(self, component: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._procs[component] = spawn(
            argv, self.log_path(component), self.pid_path(component), env=env, cwd=self.state_dir
        )

    def _etcd_argv(self, bin_dir: Path, ports: Ports) -> list[str]:
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        return [
            str(bin_dir / "etcd"),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # A throw-away test cluster: durability is not worth the fsync latency.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, bin_dir: Path, ports: Ports, pki: certs.Pki) -> list[str]:
        host = str(self._meta().get("host", "127.0.0.1"))
        if host == "127.0.0.1":
            # the Endpoints of the "kubernetes" Service may not point at loopback; no pod needs them
            node_flags = ["--endpoint-reconciler-type=none"]
        else:
            # the real node: pods reach the API server at the host side of the node's veth through
            # the "kubernetes" Service (kube-proxy), and it reaches the kubelet for logs/exec
            node_flags = [
                "--endpoint-reconciler-type=lease",
                f"--kubelet-client-certificate={pki.client_cert(certs.APISERVER_KUBELET_CLIENT.stem)}",
                f"--kubelet-client-key={pki.client_key(certs.APISERVER_KUBELET_CLIENT.stem)}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        return [
            str(bin_dir / "kube-apiserver"),
            f"--advertise-address={host}",
            f"--bind-address={host}",
            f"--secure-port={ports.apiserver}",
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            f"--cert-dir={self.state_dir / 'certs' / 'kube-apiserver'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # added to the default set, which already has NamespaceLifecycle, LimitRanger,
            # DefaultTolerationSeconds, TaintNodesByCondition, Priority, ResourceQuota, ...
            # OwnerReferencesPermissionEnforcement (on in OpenShift): setting blockOwnerDeletion
            # needs `update` on the owner's finalizers subresource, so e2e tests prove our RBAC.
            "--enable-admission-plugins=NodeRestriction,PodSecurity,ServiceAccount,OwnerReferencesPermissionEnforcement",
            # privileged pods are allowed by the API server, so Pod Security admission is what
            # rejects them in namespaces that enforce "baseline" or "restricted"
            "--allow-privileged=true",
            *node_flags,
            f"--audit-policy-file={self.state_dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.log_path('audit')}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
            "--audit-log-maxbackup=1",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_argv(self, bin_dir: Path, ports: Ports, pki: certs.Pki) -> list[str]:
        return [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.state_dir / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={self.state_dir / 'certs' / 'kube-controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--cluster-name=tjo-local",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-job-syncs=10",
            "--node-monitor-period=1s",
            "--profiling=false",
            "--v=1",
        ]

    def _scheduler_argv(self, bin_dir: Path, ports: Ports) -> list[str]:
        return [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.state_dir / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            f"--cert-dir={self.state_dir / 'certs' / 'kube-scheduler'}",
            "--leader-elect=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
            "--v=1",
        ]

    # ------------------------------------------------- single components (fault tests)

    def component_argv(self, component: str) -> list[str]:
        """The command line ``start`` used for a control-plane component of this (started) cluster."""
        ports = self._ports()
        if ports is None:
            raise ClusterError(f"no cluster was started in {self.state_dir}")
        bin_dir = Path(self._meta().get("bin_dir") or self.bin_dir)
        pki = certs.Pki(self.pki_dir)
        argv = {
            "etcd": lambda: self._etcd_argv(bin_dir, ports),
            "kube-apiserver": lambda: self._apiserver_argv(bin_dir, ports, pki),
            "kube-controller-manager": lambda: self._controller_manager_argv(bin_dir, ports, pki),
            "kube-scheduler": lambda: self._scheduler_argv(bin_dir, ports),
        }
        if component not in argv:
            raise ValueError(f"not a control-plane component: {component} (one of {', '.join(CONTROL_PLANE)})")
        return argv[component]()

    def stop_component(self, component: str, timeout: float = 10.0, kill: bool = False) -> None:
        """Stop one control-plane component (SIGTERM, SIGKILL after ``timeout``; ``kill``: SIGKILL at once),
        e.g. to test how everything else rides out an API server outage."""
        if component not in CONTROL_PLANE:
            raise ValueError(f"not a control-plane component: {component}")
        stop_all([self.pid_path(component)], timeout=0 if kill else timeout)
        self._reap(component)

    def start_component(self, component: str, timeout: float = 60.0) -> float:
        """Start one stopped control-plane component again with its original command line; returns when
        it is healthy (the API server: /readyz), after how many seconds."""
        t0 = time.monotonic()
        record = PidRecord.load(self.pid_path(component))
        if record is None or not record.alive():
            self._spawn(component, self.component_argv(component))
        ports = self._ports()
        assert ports is not None
        probes: dict[str, Callable[[], bool]] = {
            "etcd": lambda: True,
            "kube-apiserver": lambda: self._api_get("/readyz", timeout=2) == "ok",
            "kube-controller-manager": lambda: self._healthz(ports.controller_manager),
            "kube-scheduler": lambda: self._healthz(ports.scheduler),
        }
        self._wait(f"{component} healthy", probes[component], timeout, t0)
        return time.monotonic() - t0

    def pause_component(self, component: str) -> None:
        """SIGSTOP a component (a stalled process: connections stay open, nothing is answered)."""
        self._signal_component(component, signal.SIGSTOP)

    def resume_component(self, component: str) -> None:
        """SIGCONT a component paused with :meth:`pause_component`."""
        self._signal_component(component, signal.SIGCONT)

    def _signal_component(self, component: str, sig: int) -> None:
        record = PidRecord.load(self.pid_path(component))
        if record is None or not record.alive():
            raise ClusterError(f"{component} is not running")
        os.kill(record.pid, sig)

    # ------------------------------------------------- the node's kubelet (fault tests)

    def _node(self) -> RealNode:
        node = self.real_node
        if self.node_kind != "kubelet" or node is None:
            raise ClusterError("this cluster has no node (node='none' or never started)")
        return node

    def stop_node(self) -> None:
        """Stop the kubelet: containers keep running."""
        self._node().stop_kubelet()

    def kill_node(self) -> None:
        """SIGKILL the kubelet: a crash."""
        self._node().kill_kubelet()

    def start_node(self) -> None:
        self._node().start_kubelet(Path(self._meta().get("bin_dir") or self.bin_dir), self.node_kubeconfig)

    def restart_node(self, wait_ready: bool = True) -> None:
        self.stop_node()
        self.start_node()
        if wait_ready:
            self.wait_node_ready()

    def node_alive(self) -> bool:
        node = self.real_node
        return self.node_kind == "kubelet" and node is not None and node.kubelet_alive()

    def wait_node_ready(self, timeout: float = 30.0) -> None:
        """Until the node is Ready with no NoSchedule taint (pods can be scheduled)."""
        t0 = time.monotonic()
        self._wait(f"node {self.node_name} Ready and untainted", self._node_schedulable, timeout, t0)

    def _node_schedulable(self) -> bool:
        try:
            node = json.loads(self._api_get(f"/api/v1/nodes/{self.node_name}", timeout=2))
        except (OSError, ClusterError, ValueError):
            return False
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", [])
        )
        taints = node.get("spec", {}).get("taints") or []
        blocking = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        return ready and not blocking

    # ------------------------------------------------------------------- stop

    def stop(self, quiet: bool = False) -> list[str]:
        """Stop the node (its pods, containerd, kubelet, kube-proxy, CoreDNS), then the control plane,
        then undo the node's host changes (namespace, veth, mounts, cgroups, kernel settings). Returns
        what needed SIGKILL."""
        node = self.real_node
        notes = node.stop_processes() if node is not None else []
        killed: list[str] = []
        # scheduler and controller-manager first, then the API server, etcd last
        killed += stop_all([self.pid_path(c) for c in ("kube-scheduler", "kube-controller-manager")], timeout=10)
        killed += stop_all([self.pid_path("kube-apiserver")], timeout=20)
        killed += stop_all([self.pid_path("etcd")], timeout=10)
        for c in CONTROL_PLANE:
            self._reap(c)
        if node is not None:
            notes += node.release_host()
        if killed and not quiet:
            print(f"needed SIGKILL: {', '.join(killed)}", file=sys.stderr)
        if notes and not quiet:
            print("\n".join(notes), file=sys.stderr)
        return killed

    def purge(self) -> None:
        """Stop everything and delete the state directory (etcd data, certificates, logs)."""
        self.stop(quiet=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _reap(self, component: str) -> None:
        proc = self._procs.pop(component, None)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # ---------------------------------------------------------------- helpers

    def _ssl_context(self) -> ssl.SSLContext:
        pki = certs.Pki(self.pki_dir)
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.client_cert(certs.ADMIN.stem)), str(pki.client_key(certs.ADMIN.stem)))
        return ctx

    def _api_get(self, path: str, timeout: float = 5) -> str:
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"GET {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc

    def _api_put(self, path: str, body: dict[str, Any]) -> None:
        """Create the object at ``path`` or replace it (its resourceVersion taken from the current one)."""
        ctx = self._ssl_context()
        try:
            current = json.loads(self._api_get(path, timeout=5))
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            method, url = "PUT", self.server + path
        except ClusterError as exc:
            if "HTTP 404" not in str(exc):
                raise
            method, url = "POST", self.server + path.rsplit("/", 1)[0]
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx):
                return
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc

    @staticmethod
    def _healthz(port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the component's self-signed serving cert, on loopback
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=ctx) as resp:
                return bool(resp.read() == b"ok")
        except OSError:
            return False

    def _wait(self, what: str, probe: Callable[[], bool], timeout: float, t0: float) -> None:
        delay = 0.05
        while True:
            for c, alive in self.running().items():
                expected = c in self.components
                if not alive and expected and (c in self._procs or PidRecord.load(self.pid_path(c)) is not None):
                    raise ClusterError(f"{c} exited while waiting for {what}:\n{self.tail(c)}")
            try:
                if probe():
                    return
            except (OSError, ClusterError, ValueError):
                pass
            if time.monotonic() - t0 > timeout:
                logs = "\n".join(f"  {c}: {self.log_path(c)}" for c in self.components)
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs:\n{logs}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def tail(self, component: str, lines: int = 30) -> str:
        try:
            text = self.log_path(component).read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path(component)})"
        return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])

    def status(self) -> dict[str, Any]:
        meta = self._meta()
        procs = {}
        for c in self.components:
            record = PidRecord.load(self.pid_path(c))
            procs[c] = {
                "pid": record.pid if record else None,
                "alive": bool(record and record.alive()),
                "log": str(self.log_path(c)),
            }
        ready = False
        if meta.get("ports"):
            try:
                ready = self._api_get("/readyz", timeout=2) == "ok"
            except (OSError, ClusterError):
                ready = False
        return {
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server if meta.get("ports") else None,
            "node": meta.get("node"),
            "network": meta.get("network"),
            "ready": ready,
            "ports": dict(meta.get("ports") or {}),
            "components": procs,
        }
