"""spec.template's pod overrides: they reach the Job's pod template, typed and camelCased, and the
operator's own fields (env it sets, its volumes and mount paths) cannot be overridden."""

from __future__ import annotations

from typing import Any

from trainingjob_operator.api import TrainingJob
from trainingjob_operator.builders import build_job, build_plan_job, trainer_env
from trainingjob_operator.crdgen import openapi_schema
from trainingjob_operator.podtypes import OPERATOR_ENV, OPERATOR_MOUNT_PATHS, OPERATOR_VOLUMES, EnvVar

from .factories import make_tj

TEMPLATE: dict[str, Any] = {
    "env": [{"name": "EXTRA", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
    "envFrom": [{"prefix": "S_", "secretRef": {"name": "creds"}}],
    "volumes": [
        {"name": "extra", "configMap": {"name": "cm", "items": [{"key": "k", "path": "dir/k.txt"}]}},
        {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
    ],
    "volumeMounts": [{"name": "extra", "mountPath": "/etc/extra", "readOnly": True}],
    "imagePullSecrets": [{"name": "registry"}],
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["b"]}]}}
            ]
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}}
            ]
        },
    },
}


def _pod(tj: TrainingJob) -> dict[str, Any]:
    return dict(build_job(tj, "p1")["spec"]["template"]["spec"])


def test_overrides_reach_the_pod_spec_as_the_pod_api_spells_them() -> None:
    pod = _pod(make_tj(template=TEMPLATE))
    (c,) = pod["containers"]
    assert c["envFrom"] == TEMPLATE["envFrom"]
    assert {"name": "extra", "mountPath": "/etc/extra", "readOnly": True} in c["volumeMounts"]
    assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]
    names = [v["name"] for v in pod["volumes"]]
    assert names[0] == "scratch" and {"extra", "models"} <= set(names)
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["topologySpreadConstraints"] == TEMPLATE["topologySpreadConstraints"]
    assert pod["affinity"] == TEMPLATE["affinity"]
    assert c["env"][-1] == TEMPLATE["env"][0]


def test_no_overrides_no_extra_fields() -> None:
    pod = _pod(make_tj())
    for key in ("imagePullSecrets", "topologySpreadConstraints", "affinity"):
        assert key not in pod
    assert "envFrom" not in pod["containers"][0]


def test_unchanged_check_pod_gets_the_same_overrides() -> None:
    tj = make_tj(template=TEMPLATE, skipUnchanged=True)
    pod = build_plan_job(tj)["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == TEMPLATE["envFrom"]
    assert {"products", "extra", "models"} <= {v["name"] for v in pod["volumes"]}


def _every_option_tj() -> TrainingJob:
    return make_tj(
        skipUnchanged=True,
        output={"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "schema": "m"}},
        tuning={"trials": 3, "timeoutSeconds": 60, "models": ["prophet"]},
        forecast={"countryHolidays": "DE"},
    )


def test_every_variable_the_operator_sets_is_reserved() -> None:
    """The CRD's list of refused env names must cover what the builders set (no drift)."""
    tj = _every_option_tj()
    set_by_operator = {e["name"] for e in trainer_env(tj, "p1", "1")}
    set_by_operator |= {e["name"] for e in build_plan_job(tj)["spec"]["template"]["spec"]["containers"][0]["env"]}
    csv = make_tj(data={"configMap": {"name": "sales", "key": "sales.csv"}})
    set_by_operator |= {e["name"] for e in trainer_env(csv, "p1")}
    assert set_by_operator <= set(OPERATOR_ENV), set_by_operator - set(OPERATOR_ENV)


def test_every_volume_and_path_the_operator_uses_is_reserved() -> None:
    csv = make_tj(data={"configMap": {"name": "sales", "key": "sales.csv"}})
    pods = [_pod(csv), build_plan_job(_every_option_tj())["spec"]["template"]["spec"]]
    for pod in pods:
        assert {v["name"] for v in pod["volumes"]} <= set(OPERATOR_VOLUMES)
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts | {pod["containers"][0]["terminationMessagePath"]} <= set(OPERATOR_MOUNT_PATHS)


def test_a_stored_object_with_a_reserved_variable_cannot_override_it() -> None:
    """Objects stored before the CRD refused them: the operator's value stays the only one."""
    tj = make_tj()
    tj.spec.template.env = [EnvVar(name="TRAINER_PRODUCT_ID", value="someone-else"), EnvVar(name="OK", value="1")]
    env = trainer_env(tj, "p1")
    ids = [e for e in env if e["name"] == "TRAINER_PRODUCT_ID"]
    assert ids == [{"name": "TRAINER_PRODUCT_ID", "value": "p1"}]
    assert {"name": "OK", "value": "1"} in env


def test_affinity_and_volumes_are_typed_in_the_crd() -> None:
    """No preserve-unknown-fields left in the template: kubectl explain can describe every field."""
    template = openapi_schema()["properties"]["spec"]["properties"]["template"]

    def unknown_fields(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            here = [path] if node.get("x-kubernetes-preserve-unknown-fields") else []
            return here + [p for k, v in node.items() for p in unknown_fields(v, f"{path}.{k}")]
        return []

    assert unknown_fields(template, "template") == []
    props = template["properties"]
    assert "nodeAffinity" in props["affinity"]["properties"]
    assert props["volumes"]["x-kubernetes-list-map-keys"] == ["name"]
