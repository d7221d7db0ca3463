"""The real API server rejects invalid TrainingJobs at apply time, with a message a person can act on."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

VALID: dict[str, Any] = {
    "apiVersion": "training.forecast.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "valid"},
    "spec": {"products": ["a", "b"], "data": {"configMap": {"name": "sales", "key": "sales.csv"}}},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    node = body["spec"]
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return body


_DELETE = object()

INVALID = [
    ("no products", _with("products", []), "set exactly one of products (a non-empty list of ids) and allProducts"),
    ("products and allProducts", _with("allProducts", True), "set exactly one of products"),
    ("productsPerPod 0", _with("productsPerPod", 0), "spec.productsPerPod"),
    ("productsPerPod 20000", _with("productsPerPod", 20000), "spec.productsPerPod"),
    ("duplicate products", _with("products", ["a", "a"]), "Duplicate value"),
    ("empty product id", _with("products", [""]), "spec.products[0]"),
    ("parallelism 0", _with("parallelism", 0), "spec.parallelism"),
    ("parallelism 5000", _with("parallelism", 5000), "spec.parallelism"),
    ("two data sources", _with("data.postgres", {"secretRef": {"name": "db", "key": "dsn"}}), "exactly one source"),
    ("no data source", _with("data", {}), "exactly one source"),
    ("horizon 0", _with("forecast.horizonDays", 0), "spec.forecast.horizonDays"),
    ("horizon 20 years", _with("forecast.horizonDays", 7300), "spec.forecast.horizonDays"),
    ("bad frequency", _with("forecast.frequency", "H"), "spec.forecast.frequency"),
    ("bad metric", _with("tuning.metric", "r2"), "spec.tuning.metric"),
    ("maxFailed 150%", _with("maxFailedProducts", "150%"), 'got "150%"'),
    ("maxFailed -1", _with("maxFailedProducts", -1), "got -1"),
    ("product id with leading space", _with("products", [" a"]), "spec.products[0]"),
    ("product id with trailing space", _with("products", ["a "]), "spec.products[0]"),
    ("blank product id", _with("products", [" "]), "spec.products[0]"),
    ("product id with a control character", _with("products", ["a\u0001b"]), "spec.products[0]"),
    (
        "memory: lots",
        _with("template.resources", {"limits": {"memory": "lots"}}),
        'must be a quantity, e.g. 500m, 2, 1Gi; got "lots"',
    ),
    (
        "toleration effect Bogus",
        _with("template.tolerations", [{"key": "k", "effect": "Bogus"}]),
        'Unsupported value: "Bogus"',
    ),
    (
        "toleration operator Maybe",
        _with("template.tolerations", [{"operator": "Maybe"}]),
        "spec.template.tolerations[0].operator",
    ),
    ("label key bad key!", _with("template.labels", {"bad key!": "x"}), "label keys must be"),
    ("label value too long", _with("template.labels", {"ok": "v" * 64}), "spec.template.labels"),
    ("maxFailed words", _with("maxFailedProducts", "ten"), "maxFailedProducts must be"),
    (
        "sql in table name",
        _with("data", {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": "sales; DROP TABLE x"}}),
        "spec.data.postgres.table",
    ),
    ("unknown field", _with("paralelism", 3), "paralelism"),
    # Pod overrides: typed, and the operator's own pod fields cannot be overridden.
    (
        "volume named scratch",
        _with("template.volumes", [{"name": "scratch", "emptyDir": {}}]),
        "volume name scratch is the operator's",
    ),
    (
        "volume with two sources",
        _with("template.volumes", [{"name": "x", "emptyDir": {}, "secret": {"secretName": "s"}}]),
        "a volume takes exactly one of",
    ),
    (
        "mount at /tmp",
        _with(
            "template",
            {"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "/tmp"}]},
        ),
        "mountPath /tmp is the operator's",
    ),
    (
        "mount over the termination log",
        _with(
            "template",
            {
                "volumes": [{"name": "x", "emptyDir": {}}],
                "volumeMounts": [{"name": "x", "mountPath": "/dev/termination-log"}],
            },
        ),
        "mountPath /dev/termination-log is the operator's",
    ),
    *[
        (
            f"mount {case}",
            _with(
                "template",
                {
                    "volumes": [{"name": "x", "emptyDir": {}}],
                    "volumeMounts": [{"name": "x", "mountPath": path, **({"subPath": sub} if sub else {})}],
                },
            ),
            expected,
        )
        for case, path, sub, expected in (
            ("/tmp/ (trailing slash)", "/tmp/", None, "mountPath /tmp/ must be in normal form"),
            ("//tmp (double slash)", "//tmp", None, "mountPath //tmp must be in normal form"),
            ("/data/../tmp (dot-dot)", "/data/../tmp", None, "must be in normal form"),
            (
                "a file under /plan (subPath)",
                "/plan/products.json",
                "f",
                "mountPath /plan/products.json is the operator's",
            ),
            ("/dev (above the termination log)", "/dev", None, "mountPath /dev is the operator's (at, under or above"),
        )
    ],
    (
        "operator label in the template",
        _with("template.labels", {"training.forecast.dev/trainingjob-uid": "x"}),
        "label keys under training.forecast.dev/ are the operator's",
    ),
    (
        "operator annotation in the template",
        _with("template.annotations", {"training.forecast.dev/role": "unchanged-check"}),
        "annotation keys under training.forecast.dev/ are the operator's",
    ),
    (
        "mount of an undeclared volume",
        _with("template.volumeMounts", [{"name": "nope", "mountPath": "/etc/nope"}]),
        "every volumeMounts[].name must name a volume of spec.template.volumes",
    ),
    (
        "relative mount path",
        _with(
            "template",
            {"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "etc/x"}]},
        ),
        "mountPath must be an absolute path",
    ),
    (
        "env overriding the product id",
        _with("template.env", [{"name": "TRAINER_PRODUCT_ID", "value": "other"}]),
        "env TRAINER_PRODUCT_ID is set by the operator from the spec",
    ),
    (
        "env trials instead of spec.tuning.trials",
        _with("template.env", [{"name": "TRAINER_TRIALS", "value": "5"}]),
        "spec.tuning.trials for TRAINER_TRIALS",
    ),
    (
        "duplicate env",
        _with("template.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "Duplicate value",
    ),
    (
        "envFrom with both refs",
        _with("template.envFrom", [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]),
        "envFrom takes exactly one of configMapRef, secretRef",
    ),
    (
        "affinity operator Equals",
        _with(
            "template.affinity",
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Equals"}]}]
                    }
                }
            },
        ),
        'Unsupported value: "Equals"',
    ),
    ("affinity unknown field", _with("template.affinity", {"nodeAfinity": {}}), "nodeAfinity"),
    (
        "topology spread skew 0",
        _with(
            "template.topologySpreadConstraints",
            [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
        ),
        "spec.template.topologySpreadConstraints[0].maxSkew",
    ),
    (
        "configMap data, output without secret",
        _with("output", {"postgres": {"schema": "m"}}),
        "output.postgres.secretRef is required",
    ),
]


def _assert_rejected(cluster: Any, namespace: str, case: str, body: dict[str, Any], expected: str) -> None:
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", "--validate=strict", input=json.dumps(body), check=False
    )
    assert result.returncode != 0, f"{case}: accepted but should be rejected"
    assert expected in result.stderr, f"{case}: unclear message: {result.stderr}"


@pytest.mark.parametrize(("case", "body", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_rejected(
    cluster: Any, namespace: str, case: str, body: dict[str, Any], expected: str, trainingjob_crd: None
) -> None:
    _assert_rejected(cluster, namespace, case, body, expected)


def test_valid_spec_gets_defaults(cluster: Any, namespace: str, trainingjob_crd: None) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(VALID))
    got = json.loads(cluster.kubectl("get", "tj", "valid", "-n", namespace, "-o", "json").stdout)
    spec = got["spec"]
    assert spec["parallelism"] == 4 and spec["backoffLimit"] == 2 and spec["suspend"] is False
    assert spec["forecast"] == {"horizonDays": 30, "frequency": "D"}
    assert spec["tuning"]["metric"] == "smape" and spec["tuning"]["folds"] == 3
    assert spec["template"]["image"].startswith("ghcr.io/trainingjob-operator/forecast-trainer")


def test_immutable_fields(cluster: Any, namespace: str, trainingjob_crd: None) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(VALID))
    changed = _with("products", ["a", "b", "c"])
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert result.returncode != 0 and "products cannot change after creation" in result.stderr
    ok = _with("parallelism", 9)  # mutable
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(ok))
    for path, value, message in (
        ("productsPerPod", 50, "productsPerPod cannot be set or unset after creation"),
        ("allProducts", True, "set exactly one of products"),
    ):
        result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_with(path, value)), check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    every = copy.deepcopy(VALID)
    every["metadata"]["name"] = "every"
    del every["spec"]["products"]
    every["spec"].update(allProducts=True, productsPerPod=50)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(every))
    to_list = copy.deepcopy(every)
    to_list["spec"].update(allProducts=False, products=["a"])
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(to_list), check=False)
    assert result.returncode != 0 and "cannot change after creation" in result.stderr, result.stderr


def test_size_limits_are_ones_that_can_be_stored(cluster: Any, namespace: str, trainingjob_crd: None) -> None:
    """10,000 ids of 64 characters are stored (kubectl create, kubectl apply --server-side, as the
    README says); ids of 253 characters up to the 640,000-character total; past it a clear refusal
    at apply, never an etcd error. Client-side apply of a big list fails on its annotation (documented)."""
    ids64 = [f"{i:06d}-" + "x" * 57 for i in range(10000)]
    body = _with("products", ids64)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    body["metadata"]["name"] = "ssa"
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(body))
    longest = _with("products", [f"{i:06d}-" + "x" * 246 for i in range(2529)])
    longest["metadata"]["name"] = "long"
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(longest))
    over = _with("products", [f"{i:06d}-" + "x" * 246 for i in range(2600)])
    over["metadata"]["name"] = "over"
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(over), check=False)
    assert result.returncode != 0 and "at most 640000 characters of ids" in result.stderr
    too_many = _with("products", [f"sku-{i:05d}" for i in range(10001)])
    too_many["metadata"]["name"] = "toomany"
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(too_many), check=False)
    assert result.returncode != 0 and "spec.products" in result.stderr
    client_side = _with("products", [f"{i:06d}-" + "x" * 23 for i in range(10000)])
    client_side["metadata"]["name"] = "csa"
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(client_side), check=False)
    assert result.returncode != 0 and "262144" in result.stderr


def test_explain_documents_fields(cluster: Any, trainingjob_crd: None) -> None:
    out = cluster.kubectl("explain", "trainingjob.spec.tuning").stdout
    assert "automatic by product class" in out and "warmStart" in out


def test_explain_documents_pod_overrides(cluster: Any, trainingjob_crd: None) -> None:
    """Affinity, volumes and envFrom are typed: kubectl explain walks into them."""
    out = cluster.kubectl("explain", "trainingjob.spec.template.affinity.nodeAffinity").stdout
    assert "requiredDuringSchedulingIgnoredDuringExecution" in out
    out = cluster.kubectl("explain", "trainingjob.spec.template.volumes").stdout
    assert "persistentVolumeClaim" in out and "scratch, sales and products" in out
    out = cluster.kubectl("explain", "trainingjob.spec.template.envFrom.secretRef").stdout
    assert "optional" in out


SCHEDULE: dict[str, Any] = {
    "apiVersion": "training.forecast.dev/v1alpha1",
    "kind": "TrainingSchedule",
    "metadata": {"name": "nightly"},
    "spec": {"schedule": "0 2 * * *", "trainingJobTemplate": {"spec": VALID["spec"]}},
}


def _schedule_with(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(SCHEDULE)
    body["spec"].update(spec)
    return body


PG = {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}}
INVALID_SCHEDULES = [
    ("cron in words", _schedule_with(schedule="every night"), "spec.schedule"),
    ("cron with 4 fields", _schedule_with(schedule="0 2 * *"), "spec.schedule"),
    ("unknown macro", _schedule_with(schedule="@fortnightly"), "spec.schedule"),
    ("time zone not IANA", _schedule_with(timeZone="Mars/Olympus_Mons"), "spec.timeZone"),
    ("negative success history", _schedule_with(successfulRunsHistoryLimit=-1), "spec.successfulRunsHistoryLimit"),
    ("negative failed history", _schedule_with(failedRunsHistoryLimit=-1), "spec.failedRunsHistoryLimit"),
    ("negative deadline", _schedule_with(startingDeadlineSeconds=-5), "spec.startingDeadlineSeconds"),
    ("bad policy", _schedule_with(concurrencyPolicy="Sometimes"), "spec.concurrencyPolicy"),
    (
        "template without products",
        _schedule_with(trainingJobTemplate={"spec": {**VALID["spec"], "products": []}}),
        "set exactly one of products (a non-empty list of ids) and allProducts: true",
    ),
    (
        "name longer than a CronJob's",
        {**_schedule_with(), "metadata": {"name": "n" * 53}},
        "at most 52 characters",
    ),
    (
        "template with two data sources",
        _schedule_with(trainingJobTemplate={"spec": {**VALID["spec"], "data": {**VALID["spec"]["data"], **PG}}}),
        "exactly one source",
    ),
]


@pytest.mark.parametrize(("case", "body", "expected"), INVALID_SCHEDULES, ids=[c[0] for c in INVALID_SCHEDULES])
def test_invalid_schedule_is_rejected(
    cluster: Any, namespace: str, case: str, body: dict[str, Any], expected: str, trainingjob_crd: None
) -> None:
    _assert_rejected(cluster, namespace, case, body, expected)


def test_valid_schedule_gets_cronjob_defaults_and_is_explained(
    cluster: Any, namespace: str, trainingjob_crd: None
) -> None:
    body = _schedule_with(schedule="@daily", timeZone="Europe/Berlin")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", "--validate=strict", input=json.dumps(body))
    got = json.loads(cluster.kubectl("get", "tjs", "nightly", "-n", namespace, "-o", "json").stdout)["spec"]
    assert got["concurrencyPolicy"] == "Forbid" and got["suspend"] is False
    assert got["successfulRunsHistoryLimit"] == 3 and got["failedRunsHistoryLimit"] == 1
    assert got["trainingJobTemplate"]["spec"]["parallelism"] == 4  # the template is defaulted like a TrainingJob
    out = cluster.kubectl("explain", "trainingschedule.spec.concurrencyPolicy").stdout
    assert "Forbid" in out and "Replace" in out
