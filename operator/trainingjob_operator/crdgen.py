"""Generate the TrainingJob CustomResourceDefinition from the pydantic API models.

    python -m trainingjob_operator.crdgen > crds/trainingjob.yaml

The OpenAPI v3 schema is structural: ``$ref``s are inlined, ``anyOf [X, null]`` becomes
``nullable: true``, ``int | str`` becomes ``x-kubernetes-int-or-string``, titles are dropped.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from trainingjob_operator import api, schedule_api

JsonSchema = dict[str, Any]

_DROP_KEYS = {"title"}


def _resolve(node: Any, defs: dict[str, JsonSchema]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            merged = copy.deepcopy(defs[name])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            rules = merged.get("x-kubernetes-validations", []) + extra.pop("x-kubernetes-validations", [])
            merged.update(extra)
            if rules:
                merged["x-kubernetes-validations"] = rules
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _structural(node: Any) -> Any:
    """Rewrite pydantic's JSON schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in _DROP_KEYS}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        nullable = len(non_null) != len(any_of)
        types = sorted(s.get("type", "") for s in non_null)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(non_null) == 1:
            inner = non_null[0]
            for k, v in inner.items():
                if k not in _DROP_KEYS:
                    node.setdefault(k, v)
        else:
            raise ValueError(f"cannot express anyOf {any_of!r} structurally")
        if nullable:
            node["nullable"] = True
    if "const" in node:  # a one-value Literal: OpenAPI v3 (structural) has enum, not const
        node["enum"] = [node.pop("const")]
    if node.get("default", 0) is None:
        del node["default"]
    props = node.get("properties")
    if isinstance(props, dict):
        node["properties"] = {k: _structural(v) for k, v in props.items()}
        node.setdefault("type", "object")
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"])
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        node["additionalProperties"] = _structural(ap)
    elif ap is False:
        del node["additionalProperties"]
    elif ap is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        node["type"] = "object"
    if "x-kubernetes-validations" in node:
        node["x-kubernetes-validations"] = list(node["x-kubernetes-validations"])
    return node


def _defaults_for_objects(node: Any) -> Any:
    """Objects with a default_factory get ``default: {}`` so the API server fills nested defaults."""
    if isinstance(node, dict):
        for v in (node.get("properties") or {}).values():
            _defaults_for_objects(v)
        if isinstance(node.get("items"), dict):
            _defaults_for_objects(node["items"])
    return node


def model_schema(model: type[BaseModel]) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _defaults_for_objects(_structural(_resolve(raw, defs)))


def openapi_schema() -> JsonSchema:
    return _object_schema(api.TrainingJobSpec, api.TrainingJobStatus, api.TrainingJob.__doc__ or "")


def _object_schema(spec_model: type[BaseModel], status_model: type[BaseModel], doc: str) -> JsonSchema:
    spec = model_schema(spec_model)
    for name in ("forecast", "tuning", "template"):
        if name in spec["properties"]:
            spec["properties"][name]["default"] = {}
    spec.pop("description", None)
    status = model_schema(status_model)
    status.pop("description", None)
    # Until the operator's first pass, an object reads status.observedGeneration 0 (the API server
    # applies defaults when it reads from etcd), so kstatus-based tools see "generation 1, observed
    # 0": InProgress. Without it they read an object with no conditions as Current.
    status["default"] = {"observedGeneration": 0}
    return {
        "type": "object",
        "description": doc,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {**spec, "description": spec_model.__doc__},
            "status": {**status, "description": status_model.__doc__},
        },
    }


def _drop_transition_rules(node: Any) -> None:
    """Remove CEL rules that compare with ``oldSelf`` (immutability of a TrainingJob's fields)."""
    if isinstance(node, dict):
        rules = node.get("x-kubernetes-validations")
        if rules is not None:
            kept = [r for r in rules if "oldSelf" not in r["rule"]]
            if kept:
                node["x-kubernetes-validations"] = kept
            else:
                del node["x-kubernetes-validations"]
        for value in node.values():
            _drop_transition_rules(value)
    elif isinstance(node, list):
        for value in node:
            _drop_transition_rules(value)


def schedule_openapi_schema() -> JsonSchema:
    schema = _object_schema(
        schedule_api.TrainingScheduleSpec,
        schedule_api.TrainingScheduleStatus,
        schedule_api.TrainingSchedule.__doc__ or "",
    )
    template = schema["properties"]["spec"]["properties"]["trainingJobTemplate"]["properties"]
    _drop_transition_rules(template)  # a schedule's template may change (products, data, output)
    for name in ("forecast", "tuning", "template"):
        template["spec"]["properties"][name]["default"] = {}
    template["metadata"]["default"] = {}
    # As CronJob's 52: run names and the run label (a label value: 63) have room for the suffix.
    schema["x-kubernetes-validations"] = [
        {
            "rule": f"size(self.metadata.name) <= {schedule_api.MAX_NAME_LENGTH}",
            "message": f"a TrainingSchedule name may have at most {schedule_api.MAX_NAME_LENGTH} characters "
            "(its runs are named <schedule>-<unix minutes> and labelled with it), as a CronJob's",
        }
    ]
    return schema


SCHEDULE_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule", "description": "Cron schedule."},
    {"name": "Timezone", "type": "string", "jsonPath": ".spec.timeZone", "description": "Time zone of the schedule."},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "description": "No new runs."},
    {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount", "description": "Runs not finished."},
    {
        "name": "Last Schedule",
        "type": "date",
        "jsonPath": ".status.lastScheduleTime",
        "description": "Scheduled time of the last run.",
    },
    {
        "name": "Last Success",
        "type": "date",
        "jsonPath": ".status.lastSuccessfulTime",
        "description": "When the last successful run finished.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def schedule_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{schedule_api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": schedule_api.KIND,
                "listKind": f"{schedule_api.KIND}List",
                "plural": schedule_api.PLURAL,
                "singular": schedule_api.SINGULAR,
                "shortNames": schedule_api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schedule_openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": SCHEDULE_PRINTER_COLUMNS,
                }
            ],
        },
    }


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the run."},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Finished (succeeded+failed) products over total.",
    },
    {
        "name": "Active",
        "type": "integer",
        "jsonPath": ".status.products.active",
        "description": "Training now.",
    },
    {
        "name": "Queued",
        "type": "integer",
        "jsonPath": ".status.products.queued",
        "description": "Product Jobs held by a queue (Kueue), not admitted yet.",
        "priority": 1,
    },
    {
        "name": "Skipped",
        "type": "integer",
        "jsonPath": ".status.products.skipped",
        "description": "Skipped as unchanged (counted in progress).",
        "priority": 1,
    },
    {
        "name": "Failed",
        "type": "integer",
        "jsonPath": ".status.products.failed",
        "description": "Failed products.",
    },
    {
        "name": "Median Error",
        "type": "string",
        "jsonPath": ".status.results.medianError",
        "description": "Median CV error of the trained products (status.results.metric).",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.parallelism",
                            "statusReplicasPath": ".status.parallelism",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = "# Generated by `python -m trainingjob_operator.crdgen` from trainingjob_operator/api.py. Do not edit.\n"
SCHEDULE_HEADER = (
    "# Generated by `python -m trainingjob_operator.crdgen trainingschedule` from trainingjob_operator/schedule_api.py."
    " Do not edit.\n"
)


_YAML11_BOOLS = {"y", "n", "yes", "no", "on", "off", "true", "false"}


class _Dumper(yaml.SafeDumper):
    """Quotes strings that YAML 1.1 readers (Go's yaml, kubectl) would take for booleans, e.g. ``y``."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if value.lower() in _YAML11_BOOLS else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(kind: str = "trainingjob") -> str:
    if kind == "trainingschedule":
        return SCHEDULE_HEADER + yaml.dump(schedule_crd(), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "trainingjob"))


if __name__ == "__main__":
    main()
