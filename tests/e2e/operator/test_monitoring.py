"""The dashboard and alerts of manifests/overlays/monitoring name only metrics that are really
exported: a live operator's /metrics after a real TrainingJob (one product with invalid data, two
trained by the real trainer) and a TrainingSchedule's run, plus the Pushgateway payload the real
trainer pods PUT to an HTTP server standing in for the Pushgateway at the cluster's host address
(where pods reach the host). docs/metrics.md must list exactly what both export."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.operator.conftest import OperatorProcess, few_points
from tests.e2e.operator.helpers import apply, get, noop_tj, secret, tj_body, wait_for, wait_phase
from tests.monitoring_support import (
    check_docs,
    dashboard_queries,
    families,
    merged,
    metric_names,
    ours,
    promtool_dir,
    rule_queries,
    unknown_names,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


class Pushes:
    """Every push (method, path, body) an HTTP server received, as a Pushgateway would."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def bodies(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def pushgateway(cluster: Any) -> Iterator[tuple[str, Pushes]]:
    """A Pushgateway stand-in at the cluster's host address (pods cannot reach the host's loopback)."""
    pushes = Pushes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _store(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            with pushes.lock:
                pushes.received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _store

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((cluster.host_address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{cluster.host_address}:{server.server_port}", pushes
    server.shutdown()


def sample(scrape: str, name: str, labels: dict[str, str]) -> float | None:
    for fam in text_string_to_metric_families(scrape):
        for s in fam.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return None


def run_schedule(cluster: Any, namespace: str) -> None:
    """A TrainingSchedule (yearly, so only the manual run) whose run-now run succeeds."""
    secret(cluster, namespace)
    body = {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingSchedule",
        "metadata": {"name": "nightly", "annotations": {"training.forecast.dev/run-now": "1"}},
        "spec": {"schedule": "0 0 1 1 *", "trainingJobTemplate": {"spec": noop_tj("x", ["a"], 0)["spec"]}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    wait_for(
        "the schedule's run succeeded",
        lambda: (get(cluster, namespace, "trainingschedule", "nightly").get("status") or {}).get("lastSuccessfulTime"),
        180,
        every=1,
    )


def test_dashboard_and_alerts_use_only_exported_metrics(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    sales_csv: Callable[..., list[str]],
    pushgateway: tuple[str, Pushes],
) -> None:
    tools: Path = promtool_dir()
    address, pushes = pushgateway
    products = sales_csv(products=2, extra_rows=few_points("bad-a"))
    env = [{"name": "TRAINER_PUSHGATEWAY", "value": address}]
    body = tj_body("watched", products, parallelism=3, maxFailedProducts=0, template={"env": env})
    apply(cluster, namespace, body)
    run_schedule(cluster, namespace)
    st = wait_phase(cluster, namespace, "watched", ("Succeeded", "Failed"), timeout=360)
    assert st["phase"] == "Failed" and st["products"]["succeeded"] == 2, st

    def scraped() -> str | None:
        text = operator.metrics()
        key = {"namespace": namespace, "trainingjob": "watched"}
        done = sample(text, "trainingjob_phase", {**key, "phase": "Failed"}) == 1
        return text if done and sample(text, "trainingjob_products", {**key, "state": "succeeded"}) == 2 else None

    scrape = wait_for("the operator's metrics show the failed TrainingJob", scraped, 30, every=0.5)
    key = {"namespace": namespace, "trainingjob": "watched"}
    assert sample(scrape, "trainingjob_product_failures_total", {**key, "reason": "InvalidData"}) == 1
    assert sample(scrape, "trainingjob_lease_waiting_products", key) == 0
    schedule = {"namespace": namespace, "trainingschedule": "nightly"}
    assert (sample(scrape, "trainingjob_schedule_last_success_timestamp_seconds", schedule) or 0) > 1.7e9
    assert sample(scrape, "trainingjob_schedule_suspended", schedule) == 0

    # One push per trainer pod (the product with invalid data pushes too: its run ended).
    received = wait_for("three pushes", lambda: (lambda b: b if len(b) >= 3 else None)(pushes.bodies()), 30)
    for method, path, _ in received:
        assert method == "PUT" and path.startswith("/metrics/job/forecast-trainer/"), path
        assert "/trainingjob@base64/" in path and "/products/" in path, path
    payloads = [b for _, _, b in received]
    assert sum(sample(b, "forecast_trainer_cv_error", {"model": "chosen"}) is not None for b in payloads) == 2
    trained = [sample(b, "forecast_trainer_product_duration_seconds_count", {"status": "trained"}) for b in payloads]
    assert sorted(t or 0 for t in trained) == [0, 1, 1]

    exported = {**ours(families(scrape)), **merged(*payloads)}
    used = metric_names(tools, dashboard_queries() + rule_queries())
    assert unknown_names(used, exported) == [], "queries naming metrics nobody exports"
    assert check_docs(exported, used) == []
