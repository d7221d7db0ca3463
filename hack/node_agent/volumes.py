"""Pod volumes materialised into the pod's folder, and the bind mounts of each container.

Supported: emptyDir (a folder, world-writable like a kubelet's; ``medium``/``sizeLimit`` are not
enforced), configMap, secret, downwardAPI, projected (configMap, secret, downwardAPI,
serviceAccountToken via the TokenRequest API: the ServiceAccount admission's
``kube-api-access-*`` volume works), and hostPath. Contents are written once, when the pod
starts (no live updates). Anything else fails the pod with a clear message.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from node_agent.envs import ConfigError, Lookup, expand, field_ref, resource_ref

Json = dict[str, Any]
# (serviceAccountName, audience or "", expirationSeconds) -> token
TokenSource = Callable[[str, str, int], str]

DEFAULT_MODE = 0o644
SUPPORTED = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath")


class UnsupportedVolume(Exception):
    """The agent can never provide this volume: the pod fails."""


class VolumePending(ConfigError):
    """Not yet possible (a ConfigMap or Secret is missing): retried, the pod stays Pending."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool

    @property
    def is_file(self) -> bool:
        return not self.source.is_dir()


@dataclass(frozen=True)
class Ownership:
    """Who must be able to use the pod's files: the pod's runAsUser/runAsGroup and fsGroup."""

    uid: int | None = None
    gid: int | None = None
    fs_group: int | None = None


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UnsupportedVolume(f"invalid volume item path {path!r}")
    return rel


def _write_file(root: Path, rel: str, data: bytes, mode: int, owner: Ownership) -> None:
    target = root / _safe_relative(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if owner.fs_group is not None:
        os.chown(target, -1, owner.fs_group)
        mode |= 0o440
    os.chmod(target, mode & 0o7777)


def _key_files(
    kind: str, namespace: str, source: Json, lookup: Lookup, root: Path, default_mode: int, owner: Ownership
) -> None:
    name = str(source.get("name", "") if kind == "configmap" else source.get("secretName", source.get("name", "")))
    data = lookup(kind, namespace, name)
    label = "configmap" if kind == "configmap" else "secret"
    if data is None:
        if source.get("optional"):
            return
        raise VolumePending(f'{label} "{name}" not found')
    items = source.get("items")
    mode = source.get("defaultMode", default_mode)
    if items:
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if source.get("optional"):
                    continue
                raise VolumePending(f'{label} "{name}": key "{key}" not found')
            _write_file(root, item.get("path", key), data[key], item.get("mode", mode), owner)
    else:
        for key, value in data.items():
            _write_file(root, key, value, mode, owner)


def _downward_files(
    pod: Json, items: list[Json], root: Path, default_mode: int, owner: Ownership, host_ip: str
) -> None:
    for item in items:
        if "fieldRef" in item:
            value = field_ref(pod, item["fieldRef"].get("fieldPath", ""), host_ip, host_ip)
        elif "resourceFieldRef" in item:
            cname = item["resourceFieldRef"].get("containerName", "")
            container: Json = next((c for c in pod["spec"]["containers"] if c["name"] == cname), {})
            value = resource_ref(container, item["resourceFieldRef"], {})
        else:
            raise UnsupportedVolume(f"downwardAPI item {item.get('path')!r}: needs fieldRef or resourceFieldRef")
        _write_file(root, item["path"], value.encode(), item.get("mode", default_mode), owner)


def _prepare_dir(path: Path, mode: int, owner: Ownership) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def materialize(
    pod: Json,
    pod_dir: Path,
    lookup: Lookup,
    token: TokenSource,
    owner: Ownership,
    host_ip: str = "127.0.0.1",
) -> dict[str, Path]:
    """Write every volume of ``pod`` under ``pod_dir/volumes``; returns volume name -> host path.

    Raises :class:`UnsupportedVolume` (fail the pod) or :class:`VolumePending` (retry later).
    """
    namespace = pod["metadata"]["namespace"]
    volumes_dir = pod_dir / "volumes"
    volumes_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pod_dir, 0o755)
    os.chmod(volumes_dir, 0o755)
    out: dict[str, Path] = {}
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        kinds = [k for k in vol if k != "name"]
        kind = kinds[0] if kinds else "emptyDir"
        root = volumes_dir / name
        if kind == "hostPath":
            out[name] = _host_path(vol["hostPath"])
            continue
        if kind not in SUPPORTED:
            raise UnsupportedVolume(
                f'volume "{name}": type {kind} is not supported by the local node agent '
                f"(supported: {', '.join(SUPPORTED)})"
            )
        # Content volumes are rewritten from scratch (a retry after VolumePending starts clean).
        if kind != "emptyDir" and root.exists():
            shutil.rmtree(root)
        if kind == "emptyDir":
            root.mkdir(parents=True, exist_ok=True)
            os.chown(root, owner.uid if owner.uid is not None else -1, _group(owner))
            os.chmod(root, 0o2777 if owner.fs_group is not None else 0o777)
        elif kind in ("configMap", "secret"):
            _prepare_dir(root, 0o755, owner)
            _key_files(kind.lower(), namespace, vol[kind], lookup, root, DEFAULT_MODE, owner)
        elif kind == "downwardAPI":
            _prepare_dir(root, 0o755, owner)
            spec = vol["downwardAPI"]
            _downward_files(pod, spec.get("items") or [], root, spec.get("defaultMode", DEFAULT_MODE), owner, host_ip)
        elif kind == "projected":
            _prepare_dir(root, 0o755, owner)
            _projected(pod, vol["projected"], root, lookup, token, owner, host_ip)
        out[name] = root
    return out


def _group(owner: Ownership) -> int:
    if owner.fs_group is not None:
        return owner.fs_group
    return owner.gid if owner.gid is not None else -1


def _projected(
    pod: Json, spec: Json, root: Path, lookup: Lookup, token: TokenSource, owner: Ownership, host_ip: str
) -> None:
    namespace = pod["metadata"]["namespace"]
    mode = spec.get("defaultMode", DEFAULT_MODE)
    for source in spec.get("sources") or []:
        if "configMap" in source:
            _key_files("configmap", namespace, source["configMap"], lookup, root, mode, owner)
        elif "secret" in source:
            _key_files("secret", namespace, source["secret"], lookup, root, mode, owner)
        elif "downwardAPI" in source:
            _downward_files(pod, source["downwardAPI"].get("items") or [], root, mode, owner, host_ip)
        elif "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            sa = pod["spec"].get("serviceAccountName") or "default"
            value = token(sa, sat.get("audience", ""), int(sat.get("expirationSeconds", 3600)))
            _write_file(root, sat.get("path", "token"), value.encode(), mode, owner)
        else:
            raise UnsupportedVolume(f"projected volume source {sorted(source)} is not supported by the node agent")


def _host_path(spec: Json) -> Path:
    path = Path(spec.get("path", ""))
    kind = spec.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    if not path.exists():
        raise VolumePending(f"hostPath {path} does not exist")
    return path


def container_mounts(container: Json, volumes: Mapping[str, Path], env: Mapping[str, str]) -> list[Mount]:
    """The container's bind mounts (volumeMounts, with subPath/subPathExpr), parents before children."""
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        name = vm.get("name", "")
        if name not in volumes:
            raise UnsupportedVolume(f'volumeMount "{name}" refers to no volume of the pod')
        source = volumes[name]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            source = source / _safe_relative(sub)
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
                os.chmod(source, 0o777)
        target = str(PurePosixPath("/") / vm.get("mountPath", ""))
        mounts.append(Mount(source, target, bool(vm.get("readOnly"))))
    return sorted(mounts, key=lambda m: len(PurePosixPath(m.target).parts))


def b64_data(obj: Json) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) + ``stringData``, or a ConfigMap's ``data`` + ``binaryData``, as bytes."""
    out: dict[str, bytes] = {}
    if obj.get("kind") == "Secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v or "")
    return out
