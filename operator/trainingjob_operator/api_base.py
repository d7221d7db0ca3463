"""Shared pieces of the API models: the base model, CEL helpers and common patterns/schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
QUANTITY_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "maxLength": 40,
    "x-kubernetes-validations": [
        {
            "rule": "type(self) == int || isQuantity(self)",
            "message": "must be a quantity, e.g. 500m, 2, 1Gi",
            "messageExpression": "'must be a quantity, e.g. 500m, 2, 1Gi; got \"' + string(self) + '\"'",
        }
    ],
}
"""A resource quantity (checked by the API server's CEL ``isQuantity``, as a pod's resources are)."""


def cel(*rules: tuple[str, str] | tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    """JSON-schema extras carrying CEL rules as ``(rule, message)`` pairs, or ``(rule, message,
    messageExpression)`` when the message should show the offending value."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out["x-kubernetes-validations"] = [
            {"rule": r[0], "message": r[1], **({"messageExpression": r[2]} if len(r) > 2 else {})} for r in rules
        ]
    return out


def immutable(what: str) -> dict[str, Any]:
    return cel(("self == oldSelf", f"{what} cannot change after creation; create a new TrainingJob instead"))


class ApiModel(BaseModel):
    """Base for API types: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
