from __future__ import annotations

from typing import Any

from trainingjob_operator.api import TrainingJob


def make_tj(products: list[str] | None = None, **spec: Any) -> TrainingJob:
    body: dict[str, Any] = {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "weekly", "namespace": "shop", "uid": "uid-1", "generation": 1},
        "spec": {
            "products": products or [f"p{i}" for i in range(10)],
            "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
            **spec,
        },
    }
    return TrainingJob.model_validate(body)
