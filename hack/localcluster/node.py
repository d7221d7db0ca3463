"""The real node: containerd + runc + CNI bridge, the kubelet, kube-proxy and CoreDNS, in the node's
network namespace (:mod:`localcluster.network`), all files under ``<state>/node/``.

Configs are pure functions of the node's addresses and paths (:func:`kubelet_config`,
:func:`kube_proxy_config`, :func:`corefile`); :class:`RealNode` writes them, starts the processes
(detached, pid files under ``<state>/run/``) and undoes everything in :meth:`RealNode.stop`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from localcluster import cleanup, network
from localcluster.containerd import ContainerdPaths, containerd_argv, remove_all_containers, write_config
from localcluster.network import NodeNetwork
from localcluster.procs import PidRecord, spawn, stop_all

CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = "10.0.0.10"
DNS_READY_PORT = 8181
DNS_HEALTH_PORT = 8080
KUBELET_HEALTHZ_PORT = 10248
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
# PATH for the node's processes: runc, iptables, mount live in sbin; the shim in /usr/bin.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

COREDNS_RBAC: list[tuple[str, dict[str, Any]]] = [
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:coredns",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
        },
    ),
]


class NodeError(RuntimeError):
    """The real node could not be started; the message says which part and where its log is."""


TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "ip", "iptables", "buildah")


def check_tools() -> None:
    """Fail early, and say how to fix it, when a program of the node is not installed."""
    missing = [t for t in TOOLS if shutil.which(t, path=NODE_PATH) is None]
    missing += [str(p) for p in (Path("/usr/lib/cni/bridge"), Path("/usr/bin/catatonit")) if not p.exists()]
    if missing:
        raise NodeError(f"the real node needs {', '.join(missing)}: run `bash hack/node-packages.sh` as root")


@dataclass(frozen=True)
class NodePaths:
    state_dir: Path
    key: str

    @property
    def base(self) -> Path:
        return self.state_dir / "node"

    @property
    def containerd(self) -> ContainerdPaths:
        return ContainerdPaths(self.base, self.key)

    @property
    def kubelet_root(self) -> Path:
        return self.base / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.base / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.base / "kube-proxy-config.yaml"

    @property
    def corefile(self) -> Path:
        return self.base / "Corefile"

    @property
    def pod_logs(self) -> Path:
        return self.base / "pod-logs"

    @property
    def volume_plugins(self) -> Path:
        return self.base / "volume-plugins"


# ------------------------------------------------------------------ configs (pure)


def kubelet_config(
    paths: NodePaths, net: NodeNetwork, ca_cert: Path, serving: tuple[Path, Path], cgroup_root: str
) -> dict[str, Any]:
    """The KubeletConfiguration of this host (REALNODE.md): cgroupfs (no systemd), swap tolerated,
    ``oomScoreAdj: 0`` (no CAP_SYS_RESOURCE to lower it), x509 + webhook auth, no read-only port,
    every path under the state dir, no host resolv.conf (no DNS server outside the cluster), and no
    image garbage collection (imported images cannot be pulled again)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": paths.containerd.endpoint,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "protectKernelDefaults": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": "",
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.volume_plugins),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
        "kernelMemcgNotification": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusReportFrequency": "1m",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def kube_proxy_config(kubeconfig: Path, net: NodeNetwork, node_name: str) -> dict[str, Any]:
    """iptables mode; conntrack left as the kernel has it (``maxPerCore: 0``: this host may not raise
    nf_conntrack_max, and the timeouts are not ours to change)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node_name,
        "bindAddress": net.node_ip,
        "clusterCIDR": str(net.pod_cidr),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def corefile(kubeconfig: Path, net: NodeNetwork) -> str:
    """CoreDNS: the cluster domain and reverse zones from the API; nothing is forwarded anywhere."""
    return f""".:53 {{
    errors
    health {net.node_ip}:{DNS_HEALTH_PORT}
    ready {net.node_ip}:{DNS_READY_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def dns_objects(net: NodeNetwork) -> list[tuple[str, dict[str, Any]]]:
    """The ``kube-dns`` Service (10.0.0.10) and its EndpointSlice: CoreDNS on the node IP."""
    ports = [{"name": "dns", "protocol": "UDP", "port": 53}, {"name": "dns-tcp", "protocol": "TCP", "port": 53}]
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    return [
        (
            "/api/v1/namespaces/kube-system/services/kube-dns",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
                "spec": {"clusterIP": DNS_SERVICE_IP, "ports": [{**p, "targetPort": 53} for p in ports]},
            },
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns-node",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kube-dns-node",
                    "namespace": "kube-system",
                    "labels": {**labels, "kubernetes.io/service-name": "kube-dns"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [net.node_ip], "conditions": {"ready": True}}],
                "ports": ports,
            },
        ),
    ]


# ---------------------------------------------------------------------- the node


class RealNode:
    """One cluster's node: ``prepare`` (files), ``start_runtime`` (containerd + images),
    ``start_agents`` (kubelet, kube-proxy, CoreDNS), ``stop`` (everything, host left as found)."""

    def __init__(self, state_dir: Path, net: NodeNetwork, node_name: str, log_path: Callable[[str], Path]) -> None:
        self.paths = NodePaths(state_dir, net.key)
        self.net = net
        self.node_name = node_name
        self.log_path = log_path
        self.cgroup_root = f"tjo-{net.key}"
        self.holder = str(state_dir)

    def pid_path(self, component: str) -> Path:
        return self.paths.state_dir / "run" / f"{component}.pid"

    def running(self) -> dict[str, bool]:
        out = {}
        for c in NODE_COMPONENTS:
            record = PidRecord.load(self.pid_path(c))
            out[c] = record is not None and record.alive()
        return out

    # -------------------------------------------------------------- prepare

    def prepare(self, pki_ca: Path, kubelet_serving: tuple[Path, Path], kubeconfigs: dict[str, Path]) -> None:
        for d in (self.paths.base, self.paths.kubelet_root, self.paths.pod_logs, self.paths.volume_plugins):
            d.mkdir(parents=True, exist_ok=True)
        write_config(self.paths.containerd, self.net.cni_network, self.net.bridge, str(self.net.pod_cidr))
        _write_yaml(
            self.paths.kubelet_config,
            kubelet_config(self.paths, self.net, pki_ca, kubelet_serving, self.cgroup_root),
        )
        _write_yaml(
            self.paths.kube_proxy_config, kube_proxy_config(kubeconfigs["kube-proxy"], self.net, self.node_name)
        )
        self.paths.corefile.write_text(corefile(kubeconfigs["coredns"], self.net))

    def host_changes(self) -> None:
        """Record the kernel settings the kubelet will rewrite, and make the pods' cgroup root."""
        cleanup.record_sysctls(self.holder)
        cleanup.create_cgroup_root(self.cgroup_root)

    # ---------------------------------------------------------------- start

    def _spawn(self, component: str, argv: list[str]) -> None:
        env = dict(os.environ)
        env["PATH"] = NODE_PATH
        spawn(
            network.in_netns(self.net, argv),
            self.log_path(component),
            self.pid_path(component),
            env=env,
            cwd=self.paths.base,
        )

    def start_containerd(self, timeout: float = 30.0) -> None:
        record = PidRecord.load(self.pid_path("containerd"))
        if record is None or not record.alive():
            self.paths.containerd.socket.unlink(missing_ok=True)
            self._spawn("containerd", containerd_argv(self.paths.containerd))
        deadline = time.monotonic() + timeout
        while not self._containerd_answers():
            self._check_alive("containerd", "its socket")
            if time.monotonic() > deadline:
                raise NodeError(
                    f"containerd did not answer on {self.paths.containerd.socket} in {timeout:.0f}s; "
                    f"log: {self.log_path('containerd')}"
                )
            time.sleep(0.05)

    def _containerd_answers(self) -> bool:
        if not self.paths.containerd.socket.exists():
            return False
        r = subprocess.run(
            ["ctr", f"--address={self.paths.containerd.socket}", "version"], capture_output=True, check=False
        )
        return r.returncode == 0

    def start_kubelet(self, bin_dir: Path, kubeconfig: Path) -> None:
        if self._alive("kubelet"):
            return
        self._spawn(
            "kubelet",
            [
                str(bin_dir / "kubelet"),
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--node-ip={self.net.node_ip}",
                f"--hostname-override={self.node_name}",
                "--v=1",
            ],
        )

    def start_kube_proxy(self, bin_dir: Path) -> None:
        if not self._alive("kube-proxy"):
            self._spawn(
                "kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={self.paths.kube_proxy_config}", "--v=1"]
            )

    def start_coredns(self, coredns_bin: Path) -> None:
        if not self._alive("coredns"):
            self._spawn("coredns", [str(coredns_bin), "-conf", str(self.paths.corefile)])

    def dns_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.net.node_ip}:{DNS_READY_PORT}/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _alive(self, component: str) -> bool:
        record = PidRecord.load(self.pid_path(component))
        return record is not None and record.alive()

    def _check_alive(self, component: str, what: str) -> None:
        if not self._alive(component):
            raise NodeError(f"{component} exited while waiting for {what}; log: {self.log_path(component)}")

    # ------------------------------------------------------------ kubelet ops

    def stop_kubelet(self, timeout: float = 15.0) -> None:
        """Stop the kubelet only: containers keep running (a kubelet restart)."""
        stop_all([self.pid_path("kubelet")], timeout=timeout)

    def kill_kubelet(self) -> None:
        stop_all([self.pid_path("kubelet")], timeout=0)

    def kubelet_alive(self) -> bool:
        return self._alive("kubelet")

    def pods_cpu_seconds(self) -> float:
        """CPU time of everything the node's pods ran so far (the cpuacct usage of the pods' cgroup root,
        which keeps what its removed children used: finished pods count too)."""
        return cleanup.cgroup_cpu_seconds(self.cgroup_root)

    # ----------------------------------------------------------------- stop

    def stop_processes(self) -> list[str]:
        """Stop the kubelet, kube-proxy and CoreDNS, remove every pod container and sandbox, stop
        containerd and its shims. Returns notes on what needed force."""
        notes: list[str] = []
        killed = stop_all([self.pid_path(c) for c in ("kubelet", "kube-proxy", "coredns")], timeout=10)
        if self._alive("containerd") and self._containerd_answers():
            try:
                n = remove_all_containers(self.paths.containerd)
                if n:
                    notes.append(f"removed {n} containers")
            except Exception as exc:
                notes.append(f"removing containers: {exc}")
        # whatever still runs in the pods' cgroups (a container containerd lost track of) is killed
        self._kill(cleanup.cgroup_pids(self.cgroup_root))
        killed += stop_all([self.pid_path("containerd")], timeout=10)
        inode = network.netns_inode(self.net)
        if inode is not None:  # shims of containers that were left, anything else started in the namespace
            self._kill(set(cleanup.pids_in_netns(inode)) - {os.getpid()})
        return notes + [f"needed SIGKILL: {k}" for k in killed]

    def release_host(self) -> list[str]:
        """Undo the host changes once nothing runs: mounts, namespace and veth, cgroups, CNI cache,
        log symlinks, the runtime's state (images stay), kernel settings."""
        notes = [f"could not unmount {m}" for m in cleanup.unmount_under(self.paths.base)]
        network.delete(self.net)
        notes += [f"cgroup left: {d}" for d in cleanup.remove_cgroup_root(self.cgroup_root)]
        cleanup.remove_cni_cache(self.paths.state_dir)
        cleanup.remove_log_links(self.paths.state_dir)
        for d in (
            self.paths.containerd.state,
            self.paths.containerd.runc_root,
            self.paths.containerd.cni_data_dir,
            self.paths.containerd.run_dir,
        ):
            _rmtree(d)
        for name, (was, now) in cleanup.restore_sysctls(self.holder).items():
            notes.append(f"restored {name}: {was} -> {now}")
        return notes

    @staticmethod
    def _kill(pids: set[int]) -> None:
        procs = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                p.kill()
                procs.append(p)
            except psutil.Error:
                continue
        psutil.wait_procs(procs, timeout=5)


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def api_objects(net: NodeNetwork) -> list[tuple[str, dict[str, Any]]]:
    """Everything the node needs in the API (CoreDNS's RBAC, the kube-dns Service and its endpoints),
    as (path of the object, body); the caller creates or replaces them."""
    return [*COREDNS_RBAC, *dns_objects(net)]
