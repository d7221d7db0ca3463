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


def _effective_env(container: dict[str, Any], env_from: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    """What the kubelet gives the process: envFrom keys first, then env (which wins), secretKeyRefs resolved."""
    out = dict(env_from)
    for e in container["env"]:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        out[e["name"]] = secrets[ref["name"]] if ref else e["value"]
    return out


def test_reserved_variables_from_env_from_have_no_effect() -> None:
    """A team ConfigMap (envFrom) with TRAINER_* keys the operator sets only conditionally must not
    reach the trainer: TRAINER_SKIP_UNCHANGED=true would make pods of a skipUnchanged: false
    TrainingJob report skipped; TRAINER_OUTPUT_DSN would send models elsewhere."""
    from forecast_trainer.config import TRAIN_OPTIONS, resolve, train_config

    team_configmap = {
        "TRAINER_SKIP_UNCHANGED": "true",
        "TRAINER_TRIALS": "500",
        "TRAINER_MODELS": "last_value",
        "TRAINER_TIMEOUT_SECONDS": "1",
        "TRAINER_COUNTRY_HOLIDAYS": "US",
        "TRAINER_OUTPUT_DSN": "postgresql://elsewhere/db",
        "TRAINER_DATA_CSV": "/etc/other.csv",
        "TRAINER_OUTPUT_SCHEMA": "other",
    }
    tj = make_tj(template={"envFrom": [{"configMapRef": {"name": "team"}}]})
    (container,) = build_job(tj, "p1")["spec"]["template"]["spec"]["containers"]
    env = _effective_env(container, team_configmap, {"db": "postgresql://db/sales"})
    cfg = train_config(resolve(TRAIN_OPTIONS, {}, env))
    assert cfg.skip_unchanged is False
    assert cfg.trials is None and cfg.timeout_seconds is None and cfg.country_holidays is None
    plain = train_config(resolve(TRAIN_OPTIONS, {}, _effective_env(container, {}, {"db": "postgresql://db/sales"})))
    assert cfg == plain  # exactly the configuration without the ConfigMap
    assert cfg.data_csv is None and cfg.data_dsn == "postgresql://db/sales"
    assert cfg.output_dsn == "postgresql://db/sales" and cfg.output_schema == "public"
    names = {e["name"] for e in container["env"]}
    assert set(OPERATOR_ENV) - names == {"TRAINER_PRODUCT", "TRAINER_PRODUCTS_JSON"}  # blank would be an error


def test_operator_keys_in_template_labels_and_annotations_never_reach_the_job() -> None:
    """training.forecast.dev/role=unchanged-check in spec.template.annotations made every product Job
    look like the unchanged check (nothing recorded, relaunched every pass)."""
    from trainingjob_operator.observe import is_unchanged_check, job_product

    tj = make_tj(
        template={
            "labels": {"training.forecast.dev/trainingjob-uid": "other", "team": "a"},
            "annotations": {"training.forecast.dev/role": "unchanged-check", "note": "x"},
        }
    )
    job = build_job(tj, "p1")
    assert not is_unchanged_check(job) and job_product(job) == "p1"
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"]["training.forecast.dev/trainingjob-uid"] == "uid-1" and meta["labels"]["team"] == "a"
        assert "training.forecast.dev/role" not in meta["annotations"] and meta["annotations"]["note"] == "x"


def test_mounts_at_under_or_above_reserved_paths_never_reach_the_pod() -> None:
    """Only exact strings were refused: /tmp/, //tmp, a subPath file under /plan, /dev (above the
    termination log) passed. The CRD refuses them; a stored object still cannot mount them."""
    from trainingjob_operator.podtypes import VolumeMount

    tj = make_tj(template={"volumes": [{"name": "x", "emptyDir": {}}]}, skipUnchanged=True)
    tj.spec.template.volume_mounts = [
        VolumeMount(name="x", mount_path=path, sub_path=sub)
        for path, sub in (
            ("/tmp/", None),
            ("//tmp", None),
            ("/plan/products.json", "products.json"),
            ("/dev", None),
            ("/data/../tmp/x", None),
            ("/etc/extra", None),
        )
    ]
    for pod in (_pod(tj), build_plan_job(tj)["spec"]["template"]["spec"]):
        user = [m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] == "x"]
        assert user == ["/etc/extra"]
