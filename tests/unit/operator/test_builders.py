from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders


def test_job_name_is_deterministic_and_short() -> None:
    assert builders.job_name("weekly", "p1") == builders.job_name("weekly", "p1")
    assert builders.job_name("weekly", "p1") != builders.job_name("weekly", "p2")
    long = "x" * 253
    name = builders.job_name(long, "p1")
    assert len(name) <= 63
    assert builders.job_name(long, "p1") != builders.job_name("x" * 252 + "y", "p1")


def test_job_manifest_contract() -> None:
    tj = make_tj(
        ["sku-1", "sku-2"],
        backoffLimit=4,
        activeDeadlineSeconds=600,
        output={"postgres": {"schema": "models"}},
    )
    job = builders.build_job(tj, "sku-2", "r1")
    meta = job["metadata"]
    assert meta["name"] == builders.job_name("weekly", "sku-2")
    assert meta["labels"][builders.LABEL_PRODUCT_HASH] == builders.product_hash("sku-2")
    assert meta["annotations"][builders.ANNOTATION_PRODUCT] == "sku-2"
    assert meta["annotations"][builders.ANNOTATION_RETRY_ROUND] == "r1"
    ref = meta["ownerReferences"][0]
    assert ref["controller"] is True and ref["uid"] == "uid-1" and ref["kind"] == "TrainingJob"
    spec = job["spec"]
    assert spec["backoffLimit"] == 4
    assert spec["activeDeadlineSeconds"] == 600  # on the Job: a deadline fails it with DeadlineExceeded
    rules = spec["podFailurePolicy"]["rules"]
    # config error, invalid data, product locked elsewhere: never retried by the Job
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2, 3, 5]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and "activeDeadlineSeconds" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["terminationMessagePolicy"] == "File"
    env = {e["name"]: e for e in c["env"]}
    assert env["TRAINER_PRODUCT_ID"]["value"] == "sku-2" and "TRAINER_PRODUCT" not in env
    assert env["TRAINER_RUN_KEY"]["value"] == "uid-1/r1"  # TrainingJob uid and retry round
    assert env["TRAINER_DATA_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "dsn"}
    assert "value" not in env["TRAINER_DATA_DSN"]
    assert env["TRAINER_OUTPUT_SCHEMA"]["value"] == "models"
    assert env["TRAINER_TRIALS"]["value"] == ""  # automatic by class (set blank: envFrom cannot set it)


def test_configmap_source_mounts_csv_file() -> None:
    tj = make_tj(["a"], data={"configMap": {"name": "sales", "key": "sales.csv"}}, tuning={"trials": 0})
    job = builders.build_job(tj, "a")
    pod = job["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "sales")
    assert vol["configMap"] == {"name": "sales", "items": [{"key": "sales.csv", "path": "sales.csv"}]}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["TRAINER_DATA_CSV"] == "/data/sales.csv" and env["TRAINER_TRIALS"] == "0"
    assert env["TRAINER_DATA_DSN"] == ""  # set blank: no envFrom key can point the pod at a database


def test_lease_manifest() -> None:
    tj = make_tj(["a"])
    now = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    lease = builders.build_lease(tj, "a", now, 60)
    assert lease["metadata"]["name"] == f"tj-product-{builders.product_hash('a')}"
    assert lease["spec"]["holderIdentity"] == "shop/weekly/uid-1"
    assert lease["spec"]["renewTime"] == "2026-01-02T03:04:05.006000Z"
    assert lease["metadata"]["ownerReferences"][0]["controller"] is False


def test_typed_tolerations_reach_the_pod_as_plain_json() -> None:
    tj = make_tj(["a"], template={"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]})
    pod = builders.build_job(tj, "a")["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    import json

    json.dumps(pod)  # serialisable as the API client sends it


def test_unchanged_check_job_reads_the_product_list_from_a_configmap() -> None:
    tj = make_tj(["b", "a"], skipUnchanged=True)
    assert builders.needs_unchanged_check(tj)
    cm = builders.build_plan_configmap(tj)
    assert cm["data"]["products.json"] == '["a", "b"]'
    job = builders.build_plan_job(tj)
    c = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert c["args"] == ["unchanged"] and env["TRAINER_PRODUCTS_FILE"]["value"] == "/plan/products.json"
    assert "TRAINER_PRODUCT_ID" not in env
    assert job["metadata"]["labels"][builders.LABEL_PRODUCT_HASH] == "unchanged"
    assert not builders.needs_unchanged_check(make_tj(["a"]))


def test_unchanged_check_has_the_run_key_of_the_product_pods_of_its_round() -> None:
    """A model an earlier attempt of this run stored is this run's (trained), never "unchanged":
    the check can only tell when it has the run key the product pods write under."""
    tj = make_tj(["b", "a"], skipUnchanged=True)
    for retry_round in ("", "2026-11-30"):
        check = {e["name"]: e.get("value") for e in _container(builders.build_plan_job(tj, retry_round))["env"]}
        pod = {e["name"]: e.get("value") for e in _container(builders.build_job(tj, "a", retry_round))["env"]}
        assert check["TRAINER_RUN_KEY"] == pod["TRAINER_RUN_KEY"] == builders.run_key(tj, retry_round)
    assert builders.run_key(tj, "") != builders.run_key(tj, "2026-11-30")


def _container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_everything_created_carries_the_recommended_labels() -> None:
    user = {"app.kubernetes.io/part-of": "bakery", "team": "x"}
    tj = make_tj(["sku-1"], skipUnchanged=True, template={"labels": user})
    now = datetime(2026, 11, 23, tzinfo=UTC)
    made = {
        "trainer": builders.build_job(tj, "sku-1"),
        "unchanged-check": builders.build_plan_job(tj),
        "product-list": builders.build_plan_configmap(tj),
        "product-lease": builders.build_lease(tj, "sku-1", now, 60),
    }
    for component, obj in made.items():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "trainingjob", component
        assert labels["app.kubernetes.io/instance"] == "weekly" and labels["app.kubernetes.io/component"] == component
        assert labels["app.kubernetes.io/managed-by"] == "trainingjob-operator"
        if obj["kind"] == "Job":
            assert obj["spec"]["template"]["metadata"]["labels"] == labels  # and so their pods
    job = made["trainer"]["metadata"]["labels"]
    assert job["app.kubernetes.io/part-of"] == "bakery" and job["team"] == "x"  # the user's template labels win
    assert job[builders.LABEL_TRAININGJOB] == job[builders.LABEL_TRAININGJOB_NAME] == "weekly"
    assert job[builders.LABEL_TRAININGJOB_UID] == "uid-1"
    assert builders.selector(tj) == "training.forecast.dev/trainingjob=weekly"  # unchanged: old Jobs still match
    assert builders.LABEL_TRAININGJOB not in made["product-lease"]["metadata"]["labels"]


def test_operator_labels_cannot_be_overridden_by_template_labels() -> None:
    tj = make_tj(["a"], template={"labels": {builders.LABEL_TRAININGJOB: "other", builders.LABEL_TRAININGJOB_UID: "x"}})
    labels = builders.build_job(tj, "a")["metadata"]["labels"]
    assert labels[builders.LABEL_TRAININGJOB] == "weekly" and labels[builders.LABEL_TRAININGJOB_UID] == "uid-1"
