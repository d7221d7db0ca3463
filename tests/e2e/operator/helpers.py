"""Small helpers for operator e2e tests: TrainingJob bodies, kubectl reads, polling."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import wait_for

__all__ = ["wait_for"]
LABEL_TJ = "training.forecast.dev/trainingjob"
LABEL_HASH = "training.forecast.dev/product-hash"
FAST_TUNING = {"trials": 0, "folds": 1}


def tj_body(name: str, products: list[str], configmap: str = "sales", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "products": products,
            "data": {"configMap": {"name": configmap, "key": "sales.csv"}},
            "forecast": {"horizonDays": 7},
            "tuning": FAST_TUNING,
            **spec,
        },
    }


def apply(cluster: Any, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def get(cluster: Any, namespace: str, kind: str, name: str | None = None, selector: str | None = None) -> Any:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    return json.loads(cluster.kubectl(*args).stdout)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def trainings(cluster: Any, namespace: str, selector: str | None = None) -> list[tuple[str, datetime, datetime]]:
    """(product id, started, done) of each training that ended ``trained``, from the trainers' logs
    (pods of ``selector``, default every pod): from its ``product_started`` line, written under the
    product's lock, to its ``product_done`` line, written after the lock is released. An interval
    that contains the training: a real container starts before its lock and exits after it, so
    container lifetimes may overlap while trainings cannot."""
    out = []
    for pod in get(cluster, namespace, "pods", selector=selector)["items"]:
        started: dict[str, datetime] = {}
        for line in cluster.logs(namespace, pod["metadata"]["name"]).splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "product_started":
                started[event["product"]] = _when(event["ts"])
            elif event.get("event") == "product_done" and event.get("status") == "trained":
                out.append((event["product"], started[event["product"]], _when(event["ts"])))
    return out


def overlapping(runs: list[tuple[str, datetime, datetime]]) -> list[tuple[Any, Any]]:
    """Pairs of trainings of one product whose intervals overlap."""
    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if a[0] == b[0] and a[1] < b[2] and b[1] < a[2]]


def tj_status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "trainingjob", name).get("status") or {})


def jobs_of(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(get(cluster, namespace, "jobs", selector=f"{LABEL_TJ}={name}")["items"])


def pods_of(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(get(cluster, namespace, "pods", selector=f"{LABEL_TJ}={name}")["items"])


def leases(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    return list(get(cluster, namespace, "leases", selector=LABEL_HASH)["items"])


def wait_phase(
    cluster: Any, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 180
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = tj_status(cluster, namespace, name)
        return st if st.get("phase") in phases else None

    return wait_for(f"{name} phase in {phases}", probe, timeout, every=0.5)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == type_)


def trainer_intervals(pods: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(product hash, pod name, startedAt, finishedAt) of every trainer run that started."""
    out = []
    for pod in pods:
        h = pod["metadata"]["labels"][LABEL_HASH]
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            state = cs.get("state") or {}
            term = state.get("terminated")
            run = state.get("running")
            if term and term.get("startedAt"):
                out.append((h, pod["metadata"]["name"], term["startedAt"], term["finishedAt"]))
            elif run:
                out.append((h, pod["metadata"]["name"], run["startedAt"], "9999"))
    return out


def sample_sales_table(dsn: str, products: int, days: int) -> tuple[str, str]:
    """A fresh table of the trainer's sample sales in PostgreSQL, and a fresh output schema name."""
    suffix = uuid.uuid4().hex[:8]
    table, schema = f"sales_{suffix}", f"models_{suffix}"
    trainer = str(Path(sys.executable).parent / "forecast-trainer")
    subprocess.run(
        [trainer, "sample-data", "--products", str(products), "--days", str(days), "--dsn", dsn, "--table", table],
        check=True,
        capture_output=True,
    )
    return table, schema


# No-op image (hack/images/noop): orchestration-only TrainingJobs; their data Secret is never read.
NOOP = {"image": "localhost/tjo-noop"}


def noop_tj(name: str, products: list[str], seconds: float, **spec: Any) -> dict[str, Any]:
    body = tj_body(name, products, template={**NOOP, "env": [{"name": "NOOP_SECONDS", "value": str(seconds)}]}, **spec)
    body["spec"]["data"] = {"postgres": {"secretRef": {"name": "unused", "key": "dsn"}}}
    return body


def secret(cluster: Any, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unused"}, "stringData": {"dsn": "x"}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def succeeded_pods(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    pods = get(cluster, namespace, "pods", selector=LABEL_HASH)["items"]
    return [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]


def succeeded(cluster: Any, namespace: str, name: str) -> int:
    return int((tj_status(cluster, namespace, name).get("products") or {}).get("succeeded") or 0)
