from __future__ import annotations

from pathlib import Path

import yaml

from trainingjob_operator import crdgen

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "trainingjob.yaml"
SCHEDULE_CRD_PATH = CRD_PATH.with_name("trainingschedule.yaml")


def test_committed_crd_is_generated_from_the_models() -> None:
    assert CRD_PATH.read_text() == crdgen.render(), (
        "crds/trainingjob.yaml is stale: run `make crds` and commit the result"
    )
    assert SCHEDULE_CRD_PATH.read_text() == crdgen.render("trainingschedule"), (
        "crds/trainingschedule.yaml is stale: run `make crds` and commit the result"
    )


def _walk(node: object, path: str = "") -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for k, v in node.items():
            out += _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, f"{path}/{i}")
    return out


def test_schema_is_structural_and_documented() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert node.get("type") != "null", path
    spec = schema["properties"]["spec"]["properties"]
    for name, field in spec.items():
        assert field.get("description"), f"spec.{name} has no description"
    for name, field in spec["tuning"]["properties"].items():
        assert field.get("description"), f"spec.tuning.{name} has no description"
    assert spec["parallelism"]["default"] == 4 and spec["parallelism"]["maximum"] == 1000
    assert spec["products"]["x-kubernetes-list-type"] == "set"
    assert spec["maxFailedProducts"]["x-kubernetes-int-or-string"] is True


def test_subresources_and_printer_columns() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.parallelism"
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == ["Phase", "Progress", "Active", "Failed", "Age"]
    assert [c["name"] for c in columns if c.get("priority")] == ["Queued", "Skipped", "Median Error"]  # -o wide
    assert crd["spec"]["names"]["shortNames"] == ["tj"] and crd["spec"]["names"]["categories"] == ["forecast"]


def test_schedule_crd_looks_like_a_cronjob() -> None:
    crd = yaml.safe_load(SCHEDULE_CRD_PATH.read_text())
    assert crd["spec"]["names"]["shortNames"] == ["tjs"] and crd["spec"]["names"]["categories"] == ["forecast"]
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Schedule",
        "Timezone",
        "Suspend",
        "Active",
        "Last Schedule",
        "Last Success",
        "Age",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(spec) == {
        "schedule",
        "timeZone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "suspend",
        "successfulRunsHistoryLimit",
        "failedRunsHistoryLimit",
        "trainingJobTemplate",
    }
    assert spec["concurrencyPolicy"]["default"] == "Forbid" and spec["successfulRunsHistoryLimit"]["default"] == 3
    template_spec = spec["trainingJobTemplate"]["properties"]["spec"]
    assert "products" in template_spec["properties"] and template_spec.get("x-kubernetes-validations")


def test_api_reference_is_current() -> None:
    from trainingjob_operator import refdoc

    path = CRD_PATH.parents[1] / "docs" / "api-reference.md"
    assert path.read_text() == refdoc.render(), "docs/api-reference.md is stale: run `make crds` and commit"


def _conditions_schema(path: Path) -> dict:  # type: ignore[type-arg]
    crd = yaml.safe_load(path.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return status["properties"]["conditions"]  # type: ignore[no-any-return]


def test_conditions_schema_is_metav1_condition_keyed_by_type() -> None:
    for path in (CRD_PATH, SCHEDULE_CRD_PATH):
        conditions = _conditions_schema(path)
        assert conditions["x-kubernetes-list-type"] == "map", path
        assert conditions["x-kubernetes-list-map-keys"] == ["type"], path
        item = conditions["items"]
        assert set(item["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}, path
        props = item["properties"]
        assert props["lastTransitionTime"] == {**props["lastTransitionTime"], "type": "string", "format": "date-time"}
        reason = props["reason"]
        assert reason["minLength"] == 1 and reason["maxLength"] == 1024
        assert reason["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        assert props["status"]["enum"] == ["True", "False", "Unknown"]
        assert props["type"]["maxLength"] == 316 and props["observedGeneration"]["minimum"] == 0


def test_status_has_no_floats() -> None:
    """Kubernetes API conventions: numbers in status are integers or decimal strings."""
    for path in (CRD_PATH, SCHEDULE_CRD_PATH):
        status = yaml.safe_load(path.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "status"
        ]
        floats = [p for p, node in _walk(status) if node.get("type") == "number"]
        assert floats == [], floats
