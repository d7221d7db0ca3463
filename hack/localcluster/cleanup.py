"""What the real node changes on the host, recorded before ``up`` and undone by ``down``.

- kernel settings the kubelet rewrites (``setupKernelTunables``): recorded machine-wide in
  /run/trainingjob-operator/sysctls.json by the first cluster up, restored by the last one down
  (several clusters may run at once: none may record what another's kubelet wrote);
- the cgroup root of the node's pods (``/tjo-<key>`` in every cgroup v1 hierarchy): removed
  bottom-up once every process in it is gone;
- mounts under the state dir (kubelet volumes, container root filesystems, sandbox /dev/shm,
  the pods' network namespaces): unmounted deepest first;
- CNI cache files of the cluster's network (``/var/lib/cni/results/<network>-*``) and the kubelet's
  ``/var/log/containers`` symlinks into the state dir.

:func:`host_snapshot` is what the e2e test compares before ``up`` and after ``down``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

# vm.*/kernel.* are global (not per network namespace): the kubelet's rewrites reach the host.
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Read by the snapshot test: the above plus host-namespace networking the node must not touch.
WATCHED_SYSCTLS = (
    *KUBELET_SYSCTLS,
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Machine-wide, shared by every cluster on the host (see record_sysctls).
SYSCTL_RECORD = Path("/run/trainingjob-operator/sysctls.json")
# Folders at fixed paths that a kubelet (device-plugin socket, /var/log/containers links), containerd
# (shim sockets in /run/containerd/s) or the CNI plugins (result cache) create whatever their config says.
HOST_DIRS = (
    Path("/var/lib/kubelet"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/cni"),
    Path("/var/lib/cni/results"),
    Path("/var/log/containers"),
    Path("/run/containerd"),
    Path("/run/containerd/s"),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
# podman's build-time network (image builds run beside clusters): its bridge and veths come and go
PODMAN_LINKS = ("podman", "veth", "cni-podman")
CNI_CACHE = Path("/var/lib/cni/results")
CONTAINER_LOG_LINKS = Path("/var/log/containers")


PROC_SYS = Path("/proc/sys")


def _sysctl_path(name: str) -> Path:
    return PROC_SYS.joinpath(*name.split("."))


def read_sysctls(names: Iterable[str]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            continue
    return out


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_sysctls(holder: str, path: Path = SYSCTL_RECORD) -> None:
    """Take part in the machine-wide record of the kubelet-touched settings (and of which of the
    folders a kubelet or containerd makes at fixed paths exist). The first cluster up records the
    host's values; later ones (another engineer's, CI's) only add themselves as holders, so nobody
    records values a running kubelet wrote."""
    with _locked(path):
        record = _load_record(path)
        if not record["holders"]:
            record["values"] = read_sysctls(KUBELET_SYSCTLS)
            record["created"] = [str(d) for d in HOST_DIRS if not d.exists()]
        if holder not in record["holders"]:
            record["holders"].append(holder)
        path.write_text(json.dumps(record, indent=2))


def restore_sysctls(holder: str, path: Path = SYSCTL_RECORD) -> dict[str, tuple[str, str]]:
    """Leave the record; the last cluster down writes back the recorded values that differ now.
    Returns name -> (was, restored)."""
    with _locked(path):
        record = _load_record(path)
        if holder in record["holders"]:
            record["holders"].remove(holder)
        if record["holders"]:
            path.write_text(json.dumps(record, indent=2))
            return {}
        changed = {}
        for name, value in dict(record.get("values") or {}).items():
            now = read_sysctls([name]).get(name)
            if now is not None and now != value:
                _sysctl_path(name).write_text(str(value))
                changed[name] = (now, str(value))
        _remove_created(record.get("created") or [])
        path.unlink(missing_ok=True)
        path.with_suffix(".lock").unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
        return changed


def _remove_created(paths: list[str]) -> None:
    """The fixed-path folders that did not exist before the first cluster: emptied of what only a
    kubelet puts there (its device-plugin socket), removed when nothing else is in them."""
    for p in sorted((Path(x) for x in paths), key=lambda q: len(q.parts), reverse=True):
        if p.name == "device-plugins":
            (p / "kubelet.sock").unlink(missing_ok=True)
        try:
            p.rmdir()
        except OSError:
            continue


def _load_record(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
        return {
            "values": dict(raw.get("values") or {}),
            "holders": [str(h) for h in raw.get("holders") or []],
            "created": [str(c) for c in raw.get("created") or []],
        }
    except (OSError, ValueError, AttributeError):
        return {"values": {}, "holders": [], "created": []}


# ------------------------------------------------------------------ cgroups


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies the kubelet and runc use (hybrid hosts: not the unified one)."""
    out = []
    for entry in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        if entry.is_symlink() or not entry.is_dir() or entry.name == "unified":
            continue
        if (entry / "cgroup.procs").exists():
            out.append(entry)
    return out


def create_cgroup_root(name: str) -> None:
    """``/<name>`` in every hierarchy (the kubelet refuses a cgroupRoot that does not exist)."""
    for h in cgroup_hierarchies():
        d = h / name
        d.mkdir(exist_ok=True)
        if h.name.startswith("cpuset") or "cpuset" in h.name.split(","):
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (d / f).read_text().strip():
                    (d / f).write_text((h / f).read_text())


def cgroup_cpu_seconds(name: str) -> float:
    """``cpuacct.usage`` of ``/<name>`` in seconds (cgroup v1 charges every ancestor, so it includes
    the children removed since); 0 when there is no such cgroup."""
    for h in cgroup_hierarchies():
        usage = h / name / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
    return 0.0


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for h in cgroup_hierarchies():
        base = h / name
        if not base.is_dir():
            continue
        for procs in base.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    return pids


def remove_cgroup_root(name: str) -> list[Path]:
    """rmdir the cgroup tree under ``/<name>`` in every hierarchy, deepest first; returns what is left."""
    left = []
    for h in cgroup_hierarchies():
        base = h / name
        if not base.is_dir():
            continue
        dirs = sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, base]:
            try:
                d.rmdir()
            except OSError:
                left.append(d)
    return left


# ------------------------------------------------------------------- mounts


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` (from /proc/self/mountinfo), deepest first."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].encode().decode("unicode_escape")
        if mp == prefix or mp.startswith(prefix + "/"):
            points.append(mp)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_under(directory: Path) -> list[str]:
    """Unmount everything below ``directory`` (lazily: a busy mount goes once unused); returns the
    mount points that could not be unmounted."""
    failed: list[str] = []
    for _ in range(3):  # a bind mount may be stacked: repeat until nothing is left
        points = mounts_under(directory)
        if not points:
            return []
        failed = []
        for mp in points:
            r = subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
            if r.returncode != 0:
                failed.append(mp)
    return failed


# -------------------------------------------------------------- leftovers


def remove_cni_cache(state_dir: Path) -> int:
    """The CNI plugins' result cache files (/var/lib/cni/results) of this cluster's pods: a sandbox
    removed without a CNI DEL leaves them. A file is ours when the network namespace it names lies
    in our state dir (containerd keeps the pods' namespaces there)."""
    prefix = str(state_dir.resolve()) + "/"
    n = 0
    for f in CNI_CACHE.iterdir() if CNI_CACHE.is_dir() else []:
        try:
            sandboxes = [
                i.get("sandbox", "") for i in json.loads(f.read_text()).get("result", {}).get("interfaces", [])
            ]
        except (OSError, ValueError, AttributeError):
            continue
        if any(str(sb).startswith(prefix) for sb in sandboxes):
            f.unlink(missing_ok=True)
            n += 1
    return n


def remove_log_links(directory: Path) -> int:
    """The kubelet's /var/log/containers symlinks that point into ``directory``."""
    n = 0
    prefix = str(directory.resolve()) + "/"
    for link in CONTAINER_LOG_LINKS.glob("*.log") if CONTAINER_LOG_LINKS.is_dir() else []:
        try:
            if link.is_symlink() and os.readlink(link).startswith(prefix):
                link.unlink()
                n += 1
        except OSError:
            continue
    return n


def pids_in_netns(inode: int) -> list[int]:
    """Processes whose network namespace is the one with ``inode`` (containerd's shims, mostly)."""
    out = []
    for p in psutil.pids():
        try:
            if os.stat(f"/proc/{p}/ns/net").st_ino == inode:
                out.append(p)
        except OSError:
            continue
    return out


# ----------------------------------------------------------------- snapshot


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def host_snapshot(state_dir: Path, key: str) -> dict[str, object]:
    """What the cluster of ``state_dir`` (objects named ``tjo*<key>``) could leave behind on the host;
    compare before ``up`` and after ``down``. Objects of *other* clusters on the machine (another
    ``tjo*<key>``) and podman's transient build links are left out, so that concurrent runs do
    not disturb the comparison; what a node leaks on the host otherwise shows (a ``cni0`` bridge,
    a ``kubepods`` cgroup, KUBE-/CNI- chains, /var/lib/kubelet or /run/containerd mounts)."""
    state = str(state_dir.resolve())
    other = re.compile(r"tjo[hn-]?(?!" + key + r")[0-9a-f]{8}")

    def run(*argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout

    def ours(text: str) -> bool:
        return not other.search(text)

    saved = run("iptables-save")
    rules = [
        ln
        for ln in saved.splitlines()
        if ln.startswith("-") and ("KUBE-" in ln or key in ln or "10.213." in ln or "10.214." in ln)
    ]
    chains = sorted(ln.split()[0] for ln in saved.splitlines() if ln.startswith(":") and ours(ln))
    chains = [c for c in chains if c.startswith((":KUBE-", ":CNI-")) or key in c]
    links = sorted(
        name
        for link in json.loads(run("ip", "-j", "link") or "[]")
        if ours(name := link["ifname"]) and not name.startswith(PODMAN_LINKS)
    )
    netns = sorted(n for n in run("ip", "netns", "list").split() if ours(n) and n.startswith(("tjo", "cni-")))
    mounts = sorted(
        mp
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if (mp := line.split()[4]).startswith(state)
        or key in mp
        or mp.startswith(("/var/lib/kubelet", "/run/containerd", "/run/netns/cni-"))
    )
    cgroups = sorted(
        str(p.relative_to(CGROUP_ROOT))
        for h in cgroup_hierarchies()
        for p in h.iterdir()
        if p.is_dir() and ours(p.name) and (p.name.startswith("tjo") or "kubepods" in p.name)
    )
    procs = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if state in cmd or str(p.info.get("cwd") or "").startswith(state):
            procs.append(f"{p.info['pid']} {cmd[:200]}")
    return {
        "sysctls": read_sysctls(WATCHED_SYSCTLS),
        "links": links,
        "netns": netns,
        "iptables_rules": rules,
        "iptables_chains": chains,
        "mounts": mounts,
        "cgroups": cgroups,
        "cgroup_processes": sorted(cgroup_pids(f"tjo-{key}")),
        "host_dirs": sorted(str(d) for d in HOST_DIRS if d.exists()),
        "cni_cache": sorted(f.name for f in (CNI_CACHE.iterdir() if CNI_CACHE.is_dir() else []) if state in _read(f)),
        "processes": sorted(procs),
    }
