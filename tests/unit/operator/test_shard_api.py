"""The shard fields of the API (allProducts, productsPerPod, status.shards/discovery) and their CEL
rules, evaluated with a CEL interpreter on the generated CRD (the API server's own evaluation of
the same rules runs in tests/e2e/operator/test_crd_validation.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from trainingjob_operator.api import TrainingJob

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "trainingjob.yaml"
LIST = {"products": ["a", "b"], "data": {"configMap": {"name": "sales", "key": "sales.csv"}}, "allProducts": False}
ALL = {"allProducts": True, "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}}}


def _spec_rules() -> list[dict[str, str]]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return list(spec["x-kubernetes-validations"])


def _failures(spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Messages of the spec-level rules that ``spec`` breaks (transition rules only with ``old``)."""
    env = celpy.Environment()
    out = []
    for rule in _spec_rules():
        if "oldSelf" in rule["rule"] and old is None:
            continue
        activation = {"self": celpy.json_to_cel(spec)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            out.append(rule["message"])
    return out


@pytest.mark.parametrize(
    ("case", "spec", "message"),
    [
        ("neither products nor allProducts", {**LIST, "products": []}, "exactly one of products"),
        ("products absent, allProducts false", {k: v for k, v in LIST.items() if k != "products"}, "exactly one"),
        ("both", {**LIST, "allProducts": True}, "exactly one of products"),
    ],
)
def test_exactly_one_of_products_and_all_products_is_required(case: str, spec: dict[str, Any], message: str) -> None:
    assert any(message in m for m in _failures(spec)), case


@pytest.mark.parametrize("spec", [LIST, ALL, {**ALL, "productsPerPod": 100}])
def test_list_or_all_products_is_accepted(spec: dict[str, Any]) -> None:
    assert _failures(spec) == []
    assert _failures(spec, old=spec) == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (LIST, {**ALL, "data": LIST["data"]}, "products and allProducts cannot change"),
        (ALL, {**ALL, "allProducts": False, "products": ["a"]}, "products and allProducts cannot change"),
        (ALL, {**ALL, "productsPerPod": 10}, "productsPerPod cannot be set or unset"),
        ({**ALL, "productsPerPod": 10}, ALL, "productsPerPod cannot be set or unset"),
    ],
)
def test_the_product_set_and_shard_size_are_immutable(old: dict[str, Any], new: dict[str, Any], message: str) -> None:
    assert any(message in m for m in _failures(new, old=old))


def test_field_rules_bound_products_per_pod_and_keep_it_immutable() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    per_pod = spec["productsPerPod"]
    assert (per_pod["minimum"], per_pod["maximum"]) == (1, 10000)
    assert per_pod["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert spec["allProducts"]["default"] is False
    assert "minItems" not in spec["products"] and spec["products"]["maxItems"] == 10000


def test_status_carries_shards_and_discovery() -> None:
    body = {
        "metadata": {"name": "x", "namespace": "ns", "uid": "u"},
        "spec": ALL,
        "status": {
            "shards": {"size": 50, "total": 6, "succeeded": 2, "failed": 1, "active": 3},
            "discovery": {"products": 300, "sha256": "ab" * 32, "time": "2026-12-07T04:00:00Z"},
        },
    }
    tj = TrainingJob.model_validate(body)
    assert tj.spec.products == [] and tj.spec.all_products
    assert tj.status.shards is not None and tj.status.shards.size == 50
    assert tj.status.discovery is not None and tj.status.discovery.products == 300
    dumped = tj.status.model_dump(by_alias=True, mode="json")
    assert dumped["shards"]["total"] == 6 and dumped["discovery"]["sha256"] == "ab" * 32
