"""The operator's metrics wiring: per-pass gauges, failures by reason, schedules, and forgetting."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from trainingjob_operator import metrics


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_pass_sets_phase_lease_waits_and_counts_new_failures_by_reason() -> None:
    key = {"namespace": "unit-metrics", "trainingjob": "tj"}
    waiting = {"a": "WaitingForLease", "b": "ProductBusy", "c": "ProductLocked", "d": "ErrImagePull"}
    metrics.observe_pass("unit-metrics", "tj", "Running", waiting, {"e": "InvalidData", "f": "InvalidData"})
    assert value("trainingjob_phase", **key, phase="Running") == 1
    assert value("trainingjob_phase", **key, phase="Failed") == 0
    assert value("trainingjob_lease_waiting_products", **key) == 2  # a Lease or Job of another TrainingJob
    assert value("trainingjob_product_failures_total", **key, reason="InvalidData") == 2
    metrics.observe_pass("unit-metrics", "tj", "Failed", {}, {"g": "BackoffLimitExceeded"})
    assert value("trainingjob_phase", **key, phase="Failed") == 1
    assert value("trainingjob_phase", **key, phase="Running") == 0
    assert value("trainingjob_lease_waiting_products", **key) == 0
    assert value("trainingjob_product_failures_total", **key, reason="InvalidData") == 2
    assert value("trainingjob_product_failures_total", **key, reason="BackoffLimitExceeded") == 1
    metrics.observe_products("unit-metrics", "tj", {"failed": 3}, uncertain=4)
    assert value("trainingjob_uncertain_products", **key) == 4
    metrics.forget("unit-metrics", "tj")
    for name, extra in (
        ("trainingjob_phase", {"phase": "Failed"}),
        ("trainingjob_lease_waiting_products", {}),
        ("trainingjob_product_failures_total", {"reason": "InvalidData"}),
        ("trainingjob_products", {"state": "failed"}),
        ("trainingjob_uncertain_products", {}),
    ):
        assert value(name, **key, **extra) is None, name


def test_schedule_series_and_forgetting_them() -> None:
    key = {"namespace": "unit-metrics", "trainingschedule": "nightly"}
    metrics.observe_schedule("unit-metrics", "nightly", "2026-01-01T00:00:00Z", None, False)
    assert value("trainingjob_schedule_created_timestamp_seconds", **key) == 1767225600
    assert value("trainingjob_schedule_last_success_timestamp_seconds", **key) is None  # none yet
    assert value("trainingjob_schedule_suspended", **key) == 0
    metrics.observe_schedule("unit-metrics", "nightly", "2026-01-01T00:00:00Z", "2026-01-02T02:30:00Z", True)
    assert value("trainingjob_schedule_last_success_timestamp_seconds", **key) == 1767225600 + 86400 + 9000
    assert value("trainingjob_schedule_suspended", **key) == 1
    metrics.forget_schedule("unit-metrics", "nightly")
    assert value("trainingjob_schedule_created_timestamp_seconds", **key) is None
    assert value("trainingjob_schedule_last_success_timestamp_seconds", **key) is None


def test_no_created_series_are_exported() -> None:
    metrics.JOBS_LAUNCHED.inc(0)
    metrics.RECONCILE_SECONDS.observe(0.01)
    exposition = generate_latest(REGISTRY).decode()
    created = [line for line in exposition.splitlines() if line.startswith("trainingjob_") and "_created" in line]
    assert created == [], created
