from __future__ import annotations

from typing import Any

from trainingjob_operator.api import TrainingJob


def make_tj(products: list[str] | None = None, uid: str = "uid-1", **spec: Any) -> TrainingJob:
    body: dict[str, Any] = {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "weekly", "namespace": "shop", "uid": uid, "generation": 1},
        "spec": {
            "products": products or [f"p{i}" for i in range(10)],
            "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
            **spec,
        },
    }
    return TrainingJob.model_validate(body)
