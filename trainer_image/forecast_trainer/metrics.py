"""Prometheus metrics of a training run, in the trainer's own CollectorRegistry.

A trainer pod is a batch job: nothing scrapes it, so with ``--pushgateway`` the registry is
pushed once at the end of the run (grouped by trainingjob and a hash of the product list, so
pods do not overwrite each other). A push failure is logged and never fails the run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest, push_to_gateway

PREFIX = "forecast_trainer"
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class RunMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.products = Counter(f"{PREFIX}_products", "Products processed, by final status", ["status"], registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Products not trained, by reason", ["reason"], registry=r)
        self.duration = Histogram(
            f"{PREFIX}_product_duration_seconds",
            "Wall time per product (load, validate, tune, fit, persist)",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.trials = Counter(f"{PREFIX}_trials", "Optuna trials run, by outcome", ["state"], registry=r)
        self.tuned = Counter(
            f"{PREFIX}_tuned_products", "Trained products whose tuned parameters beat the defaults", registry=r
        )
        self.baseline_losses = Counter(
            f"{PREFIX}_baseline_wins",
            "Trained products no model beat on CV: a naive baseline was at least as good",
            registry=r,
        )
        self.families = Counter(
            f"{PREFIX}_model_family", "Trained products by the model family that won", ["family"], registry=r
        )
        self.cv_error = Gauge(
            f"{PREFIX}_cv_error",
            "Cross-validation error of the chosen model, the defaults and the baselines",
            ["product", "metric", "model"],
            registry=r,
        )
        self.run_duration = Gauge(f"{PREFIX}_run_duration_seconds", "Wall time of the whole run", registry=r)
        self.exit_code = Gauge(f"{PREFIX}_exit_code", "Exit code of the run", registry=r)
        self.last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds", "Unix time the run finished with exit code 0", registry=r
        )

    def observe(self, result: Any) -> None:
        """Record one product's ProductResult."""
        self.products.labels(result.status).inc()
        self.duration.labels(result.status).observe(max(0.0, float(result.seconds)))
        if result.status == "skipped":  # unchanged since its last model: not an error
            return
        if result.status != "trained":
            self.errors.labels(result.reason or "Unknown").inc()
            return
        details = result.details.get("tuning", {}) if isinstance(result.details, dict) else {}
        completed = int(details.get("completed", 0))
        pruned = int(details.get("pruned", 0))
        failed = int(details.get("failed", 0))
        for state, count in (("complete", completed), ("pruned", pruned), ("failed", failed)):
            if count:
                self.trials.labels(state).inc(count)
        if result.tuned:
            self.tuned.inc()
        if result.beats_naive is False or result.beats_baseline is False:
            self.baseline_losses.inc()
        if result.family:
            self.families.labels(result.family).inc()
        for model, value in (
            ("chosen", result.error),
            ("defaults", result.default_error),
            ("seasonal_naive", result.baseline_error),
        ):
            if value is not None:
                self.cv_error.labels(result.product, result.metric, model).set(value)

    def finish(self, code: int, seconds: float, now: float) -> None:
        self.exit_code.set(code)
        self.run_duration.set(seconds)
        if code == 0:
            self.last_success.set(now)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def push(self, gateway: str, trainingjob: str | None, products: list[str], timeout: float = 10.0) -> None:
        """PUT the registry to the Pushgateway (raises on failure; the caller logs it)."""
        digest = hashlib.sha256("\n".join(products).encode("utf-8")).hexdigest()[:12]
        push_to_gateway(
            gateway,
            job="forecast-trainer",
            registry=self.registry,
            grouping_key={"trainingjob": trainingjob or "none", "products": digest},
            timeout=timeout,
        )
