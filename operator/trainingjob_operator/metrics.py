"""Prometheus collectors of the operator (prefix ``trainingjob_``), served on :8080/metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILE_SECONDS = Histogram(
    "trainingjob_reconcile_duration_seconds",
    "Duration of one reconcile pass (observe, decide, act).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "trainingjob_reconcile_errors_total", "Failed API actions during reconcile, by action kind.", ["kind"]
)
JOBS_LAUNCHED = Counter("trainingjob_jobs_launched_total", "Product Jobs created.")
LEASE_WAITS = Counter(
    "trainingjob_lease_waits_total", "Launches deferred because another TrainingJob held the product Lease."
)
PRODUCTS = Gauge("trainingjob_products", "Products by state per TrainingJob.", ["namespace", "trainingjob", "state"])
STATES = ("pending", "waiting", "queued", "active", "succeeded", "failed")


def observe_products(namespace: str, name: str, counts: dict[str, int]) -> None:
    for state in STATES:
        PRODUCTS.labels(namespace=namespace, trainingjob=name, state=state).set(counts.get(state, 0))


def forget(namespace: str, name: str) -> None:
    for state in STATES:
        try:
            PRODUCTS.remove(namespace, name, state)
        except KeyError:
            pass


def serve(port: int) -> None:
    start_http_server(port)
