"""containerd for the real node: its config (pure), the CNI bridge conflist (pure), and ``ctr`` helpers.

Everything containerd, runc and the CNI plugins keep lives under ``<state>/node/``: containerd's
root (images, snapshots: kept between runs, so imported images survive ``down``/``up``), its state
(tasks, the pods' network namespaces), runc's state, the CNI conf dir and IPAM data; only the
socket is in ``/run/trainingjob-operator/<key>/`` (a unix socket path must stay short).
Settings this host needs (REALNODE.md): ``restrict_oom_score_adj`` (no CAP_SYS_RESOURCE),
``SystemdCgroup = false`` (no systemd), runc (crun fails on cgroup v1 "hybrid").
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

K8S_NAMESPACE = "k8s.io"
PAUSE_IMAGE = "localhost/pause:3.10"
CNI_BIN_DIR = Path("/usr/lib/cni")
IMAGE_ID_LABEL = "dev.forecast.training/image-id"


class ContainerdError(RuntimeError):
    """A ``ctr`` call failed; the message has the command and its error output."""


# Unix socket paths are limited to ~104 bytes: the sockets live in a short folder per cluster.
RUN_DIR = Path("/run/trainingjob-operator")


@dataclass(frozen=True)
class ContainerdPaths:
    base: Path  # <state>/node
    key: str  # the cluster's key (network.state_key): names its socket folder

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.key

    @property
    def config(self) -> Path:
        return self.base / "containerd.toml"

    @property
    def root(self) -> Path:
        return self.base / "containerd" / "root"

    @property
    def state(self) -> Path:
        return self.base / "containerd" / "state"

    @property
    def runc_root(self) -> Path:
        return self.base / "containerd" / "runc"

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.base / "cni" / "networks"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these paths and names


def containerd_config(paths: ContainerdPaths, sandbox_image: str = PAUSE_IMAGE) -> str:
    """containerd 1.6's config (version 2) with every path under ``paths.base``."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {_toml_str(str(paths.root))}
state = {_toml_str(str(paths.state))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {_toml_str(str(paths.socket))}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(str(paths.base / "containerd" / "opt"))}

[{cri}]
  sandbox_image = {_toml_str(sandbox_image)}
  # no CAP_SYS_RESOURCE here: without it every pod fails "can't get final child's PID from pipe: EOF"
  restrict_oom_score_adj = true
  # the pods' network namespaces under our state dir, not /run/netns (the host's `ip netns` list)
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {_toml_str(str(paths.runc_root))}
  [{cri}.cni]
    bin_dir = {_toml_str(str(CNI_BIN_DIR))}
    conf_dir = {_toml_str(str(paths.cni_conf_dir))}
    max_conf_num = 1
"""


def bridge_conflist(network_name: str, bridge: str, pod_cidr: str, data_dir: Path) -> dict[str, Any]:
    """A CNI bridge network: the node is the pods' gateway and masquerades what leaves the pod range."""
    return {
        "cniVersion": "1.0.0",
        "name": network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def containerd_argv(paths: ContainerdPaths) -> list[str]:
    return ["containerd", f"--config={paths.config}", "--log-level=warn"]


def write_config(paths: ContainerdPaths, network_name: str, bridge: str, pod_cidr: str) -> None:
    for d in (paths.root, paths.state, paths.runc_root, paths.cni_conf_dir, paths.cni_data_dir, paths.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(containerd_config(paths))
    conflist = bridge_conflist(network_name, bridge, pod_cidr, paths.cni_data_dir)
    for old in paths.cni_conf_dir.glob("*.conflist"):
        old.unlink()
    (paths.cni_conf_dir / f"10-{network_name}.conflist").write_text(json.dumps(conflist, indent=2))


def ctr(paths: ContainerdPaths, *args: str, timeout: float = 300) -> str:
    argv = ["ctr", f"--address={paths.socket}", f"--namespace={K8S_NAMESPACE}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise ContainerdError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def image_labels(paths: ContainerdPaths) -> dict[str, dict[str, str]]:
    """Image ref -> labels, of every image in the k8s.io namespace."""
    out: dict[str, dict[str, str]] = {}
    for line in ctr(paths, "images", "ls").splitlines()[1:]:
        cols = line.split()
        if not cols:
            continue
        labels: dict[str, str] = {}
        raw = cols[-1]
        if raw != "-":
            for pair in raw.split(","):
                k, _, v = pair.partition("=")
                labels[k] = v
        out[cols[0]] = labels
    return out


def import_archive(paths: ContainerdPaths, archive: Path, image_id: str | None = None) -> list[str]:
    """``ctr images import`` of a docker-archive; returns the refs it holds. ``image_id`` is recorded
    as a label on each ref, so a later import of the same build can be skipped."""
    ctr(paths, "images", "import", str(archive))
    refs = _refs_in_archive(archive)
    if image_id:
        for ref in refs:
            ctr(paths, "images", "label", ref, f"{IMAGE_ID_LABEL}={image_id}")
    return refs


def _refs_in_archive(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return []
        manifest = json.load(member)
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


def remove_all_containers(paths: ContainerdPaths) -> int:
    """Kill every task and delete every container (pods and their sandboxes) of the k8s.io namespace;
    returns how many containers were removed. Used by ``down`` once the kubelet is stopped."""
    ids = [ln.split()[0] for ln in ctr(paths, "containers", "ls", "-q").splitlines() if ln.strip()]
    tasks = {ln.split()[0] for ln in ctr(paths, "tasks", "ls", "-q").splitlines() if ln.strip()}
    _each(paths, [["tasks", "kill", "--signal=SIGKILL", "--all", t] for t in tasks])
    _each(paths, [["tasks", "delete", "--force", t] for t in tasks])
    _each(paths, [["containers", "delete", c] for c in ids])
    return len(ids)


def _each(paths: ContainerdPaths, calls: Sequence[Sequence[str]]) -> None:
    """Run several ``ctr`` calls at once (each is a short RPC); failures are ignored (the caller
    checks the outcome: what is gone is gone)."""
    procs = [
        subprocess.Popen(
            ["ctr", f"--address={paths.socket}", f"--namespace={K8S_NAMESPACE}", *c],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for c in calls
    ]
    for p in procs:
        p.wait(timeout=60)


@dataclass
class ContainerRun:
    """One run of a container, from containerd's task events (pods deleted since count too)."""

    container_id: str
    namespace: str
    pod: str
    container: str
    start: str
    end: str | None = None
    code: int | None = None


def parse_event(line: str) -> tuple[str, str, dict[str, Any]] | None:
    """``ctr events`` line -> (timestamp, topic, event), e.g. ``2026-12-07 04:05:52.99 +0000 UTC k8s.io
    /tasks/start {"container_id": ..., "pid": ...}`` (pure)."""
    parts = line.split(" ", 6)
    if len(parts) < 7 or not parts[5].startswith("/"):
        return None
    try:
        event = json.loads(parts[6])
    except ValueError:
        return None
    return f"{parts[0]} {parts[1]}", parts[5], event if isinstance(event, dict) else {}


class ContainerEvents:
    """Records every container start and exit of a node (``ctr events`` in the background), with the
    pod and container names the kubelet labels each container with; sandboxes are left out.
    ``start()``, then ``runs()`` at any time, ``stop()`` at the end."""

    def __init__(self, paths: ContainerdPaths) -> None:
        self.paths = paths
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._runs: dict[str, ContainerRun] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        argv = ["ctr", f"--address={self.paths.socket}", f"--namespace={K8S_NAMESPACE}", "events"]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parsed = parse_event(line.strip())
            if parsed is None:
                continue
            when, topic, event = parsed
            cid = str(event.get("container_id") or "")
            if topic == "/tasks/start" and cid:
                labels = self._labels(cid)
                if labels.get("io.kubernetes.container.name"):
                    run = ContainerRun(
                        cid,
                        labels.get("io.kubernetes.pod.namespace", ""),
                        labels.get("io.kubernetes.pod.name", ""),
                        labels["io.kubernetes.container.name"],
                        when,
                    )
                    with self._lock:
                        self._runs[cid] = run
            elif topic == "/tasks/exit" and cid and event.get("id") == cid:  # not an exec in it
                with self._lock:
                    if cid in self._runs:
                        self._runs[cid].end = when
                        self._runs[cid].code = int(event.get("exit_status") or 0)

    def _labels(self, container_id: str) -> dict[str, str]:
        try:
            info = json.loads(ctr(self.paths, "containers", "info", container_id, timeout=30))
        except (ContainerdError, ValueError, subprocess.TimeoutExpired):
            return {}
        return dict(info.get("Labels") or {})

    def runs(self) -> list[ContainerRun]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.start)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._thread is not None:
            self._thread.join(10)
