"""A container's environment, command and args the way the kubelet computes them.

``$(VAR)`` expansion follows Kubernetes' rules (``$$`` escapes, unknown names stay as written);
``valueFrom`` supports secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef; ``envFrom``
supports configMapRef and secretRef. A missing, non-optional Secret/ConfigMap (or key) raises
:class:`ConfigError`, reported as ``CreateContainerConfigError`` like a kubelet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Json = dict[str, Any]
# (kind "secret"/"configmap", namespace, name) -> data as bytes per key, or None when it does not exist
Lookup = Callable[[str, str, str], dict[str, bytes] | None]

_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


class ConfigError(Exception):
    """The container cannot be configured yet (kubelet reason CreateContainerConfigError)."""


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``128Mi``, ``1.5G``, ``500m``, ``1e3``) as a Decimal."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"invalid quantity {value!r}")
    number, suffix = match.groups()
    try:
        return Decimal(number) * _SUFFIXES[suffix or ""]
    except InvalidOperation as exc:
        raise ValueError(f"invalid quantity {value!r}") from exc


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion (third_party/forked/golang/expansion)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            nxt = value[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = value.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = value[cursor + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(value[checkpoint:])
    return "".join(out)


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: Json, path: str, host_ip: str, pod_ip: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_REF.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_ref(container: Json, ref: Json, node_allocatable: Mapping[str, str]) -> str:
    """``resourceFieldRef``: the container's limit (or request), node allocatable when unset."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    source = resources.get("limits" if kind == "limits" else "requests") or {}
    raw = source.get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ConfigError(f"resourceFieldRef {resource}: divisor must not be 0")
    return str(math.ceil(parse_quantity(raw) / divisor))


def _ref_value(kind: str, namespace: str, ref: Json, lookup: Lookup) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = lookup(kind, namespace, name)
    label = "secret" if kind == "secret" else "configmap"
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{label} "{name}" not found')
    if key not in data:
        if optional:
            return None
        kind_name = "Secret" if kind == "secret" else "ConfigMap"
        raise ConfigError(f"couldn't find key {key} in {kind_name} {namespace}/{name}")
    return data[key].decode("utf-8", "replace")


def container_env(
    pod: Json,
    container: Json,
    lookup: Lookup,
    *,
    host_ip: str,
    pod_ip: str,
    service_env: Mapping[str, str] | None = None,
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's own environment (without the image's ENV, which it overrides)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(service_env or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            data = lookup(kind, namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{"secret" if kind == "secret" else "configmap"} "{ref.get("name")}" not found')
            for k, v in data.items():
                env[prefix + k] = v.decode("utf-8", "replace")
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item or item.get("value") is not None:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        vf = item["valueFrom"] or {}
        value: str | None
        if "secretKeyRef" in vf:
            value = _ref_value("secret", namespace, vf["secretKeyRef"], lookup)
        elif "configMapKeyRef" in vf:
            value = _ref_value("configmap", namespace, vf["configMapKeyRef"], lookup)
        elif "fieldRef" in vf:
            value = field_ref(pod, vf["fieldRef"].get("fieldPath", ""), host_ip, pod_ip)
        elif "resourceFieldRef" in vf:
            value = resource_ref(container, vf["resourceFieldRef"], node_allocatable or {})
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(vf)}")
        if value is not None:
            env[name] = value
    return env


def container_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """``$(VAR)`` in command and args refers to the container's environment."""
    return [expand(a, env) for a in argv]
