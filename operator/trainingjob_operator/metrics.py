"""Prometheus collectors of the operator (prefix ``trainingjob_``), served on :8080/metrics
(``TJO_METRICS_PORT``).

docs/metrics.md lists each one with the dashboard panels and alerts that use it
(manifests/overlays/monitoring); a test fails when that list and what is exported differ.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

# No ``<counter>_created`` / ``<histogram>_created`` series: a creation time per series is noise
# to every query here, and docs/metrics.md lists exactly what /metrics exports.
disable_created_metrics()

RECONCILE_SECONDS = Histogram(
    "trainingjob_reconcile_duration_seconds",
    "Duration of one reconcile pass (observe, decide, act).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "trainingjob_reconcile_errors_total",
    "Failed API actions during reconcile, by action kind (Pass, SchedulePass: a whole pass failed).",
    ["kind"],
)
JOBS_LAUNCHED = Counter("trainingjob_jobs_launched_total", "Product Jobs created.")
LEASE_WAITS = Counter(
    "trainingjob_lease_waits_total", "Launches deferred because another TrainingJob held the product Lease."
)
PRODUCTS = Gauge("trainingjob_products", "Products by state per TrainingJob.", ["namespace", "trainingjob", "state"])
STATES = ("pending", "waiting", "queued", "active", "succeeded", "failed")
PHASE = Gauge(
    "trainingjob_phase",
    "1 for the TrainingJob's current phase, 0 for the others.",
    ["namespace", "trainingjob", "phase"],
)
PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
LEASE_WAITING = Gauge(
    "trainingjob_lease_waiting_products",
    "Products that cannot start because another TrainingJob holds them (its product Lease or an unfinished Job).",
    ["namespace", "trainingjob"],
)
LEASE_WAIT_REASONS = frozenset({"WaitingForLease", "ProductBusy"})
"""The reconciler's waiting reasons that mean "held by another TrainingJob" (reconcile.blocked_elsewhere)."""
PRODUCT_FAILURES = Counter(
    "trainingjob_product_failures_total",
    "Products recorded failed, by reason (the reason in status.failures: InvalidData, BackoffLimitExceeded, ...).",
    ["namespace", "trainingjob", "reason"],
)
SCHEDULE_LAST_SUCCESS = Gauge(
    "trainingjob_schedule_last_success_timestamp_seconds",
    "Unix time the TrainingSchedule's last successful run finished (status.lastSuccessfulTime; absent before one).",
    ["namespace", "trainingschedule"],
)
SCHEDULE_CREATED = Gauge(
    "trainingjob_schedule_created_timestamp_seconds",
    "Unix time the TrainingSchedule was created.",
    ["namespace", "trainingschedule"],
)
SCHEDULE_SUSPENDED = Gauge(
    "trainingjob_schedule_suspended", "1 when the TrainingSchedule is suspended.", ["namespace", "trainingschedule"]
)
UNCERTAIN = Gauge(
    "trainingjob_uncertain_products",
    "Trained products whose CV gain over the best naive baseline is within fold noise (status.results.uncertain).",
    ["namespace", "trainingjob"],
)
_failure_reasons: dict[tuple[str, str], set[str]] = {}
"""Reasons counted per TrainingJob, so ``forget`` can remove their series."""


def observe_products(namespace: str, name: str, counts: Mapping[str, int], uncertain: int = 0) -> None:
    for state in STATES:
        PRODUCTS.labels(namespace=namespace, trainingjob=name, state=state).set(counts.get(state, 0))
    UNCERTAIN.labels(namespace=namespace, trainingjob=name).set(uncertain)


def observe_pass(
    namespace: str, name: str, phase: str | None, waiting: Mapping[str, str], new_failures: Mapping[str, str]
) -> None:
    """Phase, Lease waits and newly recorded failures of one reconcile pass (after its status write)."""
    for p in PHASES:
        PHASE.labels(namespace=namespace, trainingjob=name, phase=p).set(1 if p == phase else 0)
    held = sum(1 for why in waiting.values() if why in LEASE_WAIT_REASONS)
    LEASE_WAITING.labels(namespace=namespace, trainingjob=name).set(held)
    for reason, n in Tally(new_failures.values()).items():
        PRODUCT_FAILURES.labels(namespace=namespace, trainingjob=name, reason=reason).inc(n)
        _failure_reasons.setdefault((namespace, name), set()).add(reason)


def forget(namespace: str, name: str) -> None:
    """Remove a deleted TrainingJob's series."""
    for collector, values in (
        (PRODUCTS, STATES),
        (PHASE, PHASES),
        (PRODUCT_FAILURES, tuple(_failure_reasons.pop((namespace, name), ()))),
    ):
        for value in values:
            try:
                collector.remove(namespace, name, value)
            except KeyError:
                pass
    for gauge in (LEASE_WAITING, UNCERTAIN):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass


LEADER_GAUGES = (PRODUCTS, PHASE, LEASE_WAITING, SCHEDULE_LAST_SUCCESS, SCHEDULE_CREATED, SCHEDULE_SUSPENDED)
"""Per-object gauges only the leader keeps current (counters stay: they only ever count up)."""


def forget_leader_series() -> None:
    """Remove every per-TrainingJob and per-TrainingSchedule gauge: called when this replica stops
    leading, so alerts (``max by``) read only the leader's values, never a deposed replica's last ones."""
    for gauge in LEADER_GAUGES:
        gauge.clear()


def _unix(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def observe_schedule(
    namespace: str, name: str, created: str | None, last_successful: str | None, suspended: bool
) -> None:
    """One TrainingSchedule's series (RFC 3339 times as in its metadata and status)."""
    created_at = _unix(created)
    if created_at is not None:
        SCHEDULE_CREATED.labels(namespace=namespace, trainingschedule=name).set(created_at)
    success = _unix(last_successful)
    if success is not None:
        SCHEDULE_LAST_SUCCESS.labels(namespace=namespace, trainingschedule=name).set(success)
    SCHEDULE_SUSPENDED.labels(namespace=namespace, trainingschedule=name).set(1 if suspended else 0)


def forget_schedule(namespace: str, name: str) -> None:
    for collector in (SCHEDULE_LAST_SUCCESS, SCHEDULE_CREATED, SCHEDULE_SUSPENDED):
        try:
            collector.remove(namespace, name)
        except KeyError:
            pass


def serve(port: int) -> None:
    start_http_server(port)
