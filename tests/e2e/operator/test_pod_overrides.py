"""spec.template's pod overrides reach product pods on the real control plane: volumes (ConfigMap,
Secret, emptyDir) and their mounts, envFrom, imagePullSecrets, typed node affinity and topology
spread (evaluated by the real scheduler), while the operator's own pod fields stay the operator's.

The no-op image checks from inside the process that the mounted files hold what envFrom put in its
environment and that the emptyDir is writable (hack/images/noop, NOOP_CHECK_FILES), so a
pod that lacked a volume or an envFrom source would exit 7 and the product would fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.e2e.operator.helpers import (
    LABEL_TJ,
    apply,
    get,
    noop_tj,
    secret,
    wait_phase,
)

pytestmark = pytest.mark.e2e

PRODUCTS = ["sku-1", "sku-2", "sku-3"]


def _extras(cluster: Any, namespace: str) -> None:
    for kind, data in (("ConfigMap", {"data": {"greeting": "hello"}}), ("Secret", {"stringData": {"token": "s3cret"}})):
        body = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "extras"}, **data}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def _template(node: str) -> dict[str, Any]:
    return {
        "image": "localhost/tjo-noop",
        "env": [
            {"name": "NOOP_SECONDS", "value": "0"},
            {"name": "NOOP_CHECK_FILES", "value": "/etc/extras/greeting=CM_greeting,/etc/secret/token=SEC_token"},
            {"name": "NOOP_WRITE_DIR", "value": "/cache"},
            {"name": "POD_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "envFrom": [
            {"prefix": "CM_", "configMapRef": {"name": "extras"}},
            {"prefix": "SEC_", "secretRef": {"name": "extras"}},
        ],
        "volumes": [
            {"name": "extras", "configMap": {"name": "extras"}},
            {"name": "secret", "secret": {"secretName": "extras", "defaultMode": 0o440}},
            {"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "volumeMounts": [
            {"name": "extras", "mountPath": "/etc/extras", "readOnly": True},
            {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
            {"name": "cache", "mountPath": "/cache"},
        ],
        "imagePullSecrets": [{"name": "registry"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchExpressions": [{"key": LABEL_TJ, "operator": "Exists"}]},
            }
        ],
    }


def test_pod_overrides_reach_the_pods(cluster: Any, namespace: str, operator: Any) -> None:
    secret(cluster, namespace)
    _extras(cluster, namespace)
    body = noop_tj("overrides", PRODUCTS, 0)
    body["spec"]["template"] = _template(cluster.node_name)
    apply(cluster, namespace, body)
    status = wait_phase(cluster, namespace, "overrides", ("Succeeded", "Failed"), timeout=120)
    assert status["phase"] == "Succeeded", status
    assert status["products"]["succeeded"] == len(PRODUCTS)

    pods = get(cluster, namespace, "pods", selector=f"{LABEL_TJ}=overrides")["items"]
    assert pods and all(p["status"]["phase"] == "Succeeded" for p in pods)
    for pod in pods:
        spec = pod["spec"]
        volumes = {v["name"] for v in spec["volumes"]}
        assert {"scratch", "extras", "secret", "cache"} <= volumes
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] == "scratch" and mounts["/etc/extras"] == "extras" and mounts["/cache"] == "cache"
        assert [e.get("prefix") for e in container["envFrom"]] == ["CM_", "SEC_"]
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        # The operator's fields are untouched by the overrides.
        assert container["terminationMessagePath"] == "/dev/termination-log"
        assert container["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env["TRAINER_PRODUCT_ID"]["value"] in PRODUCTS
        assert env["POD_NODE"]["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}


def test_unsatisfiable_affinity_keeps_pods_pending(cluster: Any, namespace: str, operator: Any) -> None:
    """The typed affinity is what the real scheduler sees: a node that does not exist schedules nothing."""
    secret(cluster, namespace)
    body = noop_tj("nowhere", ["sku-1"], 0)
    body["spec"]["template"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["no-node"]}]}
                ]
            }
        }
    }
    apply(cluster, namespace, body)

    def unschedulable() -> bool:
        pods = get(cluster, namespace, "pods", selector=f"{LABEL_TJ}=nowhere")["items"]
        conds = [c for p in pods for c in (p.get("status") or {}).get("conditions") or []]
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds)

    cluster.wait_for("the scheduler to refuse the pod", unschedulable, timeout=60)
    pods = get(cluster, namespace, "pods", selector=f"{LABEL_TJ}=nowhere")["items"]
    assert all(not p["spec"].get("nodeName") for p in pods)
