from __future__ import annotations

import http.server
import io
import json
import logging
import threading

from forecast_trainer.logs import get_logger, setup_logging
from forecast_trainer.metrics import RunMetrics
from forecast_trainer.progress import BarProgress, Progress, make_progress
from forecast_trainer.report import FAILED, INVALID, TRAINED, ProductResult


def results() -> list[ProductResult]:
    ok = ProductResult(
        product="p1",
        status=TRAINED,
        metric="smape",
        error=10.0,
        default_error=12.0,
        baseline_error=15.0,
        beats_baseline=False,
        family="prophet",
        beats_naive=False,
        tuned=True,
        trials=20,
        seconds=3.0,
        details={"tuning": {"completed": 12, "pruned": 7, "failed": 1}},
    )
    bad = ProductResult(product="p2", status=INVALID, metric="smape", reason="TooFewPoints", seconds=0.1)
    down = ProductResult(product="p3", status=FAILED, metric="smape", reason="DataSourceUnavailable", infra=True)
    return [ok, bad, down]


def sample(metrics: RunMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_registry_contents() -> None:
    metrics = RunMetrics()
    for r in results():
        metrics.observe(r)
    metrics.finish(4, 12.5, 1_700_000_000.0)
    assert sample(metrics, "forecast_trainer_products_total", {"status": "trained"}) == 1
    assert sample(metrics, "forecast_trainer_products_total", {"status": "invalid"}) == 1
    assert sample(metrics, "forecast_trainer_errors_total", {"reason": "TooFewPoints"}) == 1
    assert sample(metrics, "forecast_trainer_errors_total", {"reason": "DataSourceUnavailable"}) == 1
    assert sample(metrics, "forecast_trainer_trials_total", {"state": "pruned"}) == 7
    assert sample(metrics, "forecast_trainer_trials_total", {"state": "complete"}) == 12
    assert sample(metrics, "forecast_trainer_tuned_products_total") == 1
    assert sample(metrics, "forecast_trainer_baseline_wins_total") == 1
    assert sample(metrics, "forecast_trainer_model_family_total", {"family": "prophet"}) == 1
    labels = {"product": "p1", "metric": "smape", "model": "seasonal_naive"}
    assert sample(metrics, "forecast_trainer_cv_error", labels) == 15.0
    assert sample(metrics, "forecast_trainer_product_duration_seconds_count", {"status": "trained"}) == 1
    assert sample(metrics, "forecast_trainer_exit_code") == 4
    assert sample(metrics, "forecast_trainer_last_success_timestamp_seconds") == 0
    assert b"forecast_trainer_run_duration_seconds 12.5" in metrics.exposition()


def test_push_to_a_pushgateway_over_http() -> None:
    received: dict[str, object] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received["path"] = self.path
            received["body"] = self.rfile.read(length).decode()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        metrics = RunMetrics()
        metrics.observe(results()[0])
        metrics.finish(0, 1.0, 1_700_000_000.0)
        metrics.push(f"127.0.0.1:{server.server_port}", "ns/job", ["p1"])
    finally:
        server.shutdown()
    assert str(received["path"]).startswith("/metrics/job/forecast-trainer/")
    assert "trainingjob" in str(received["path"])
    assert "forecast_trainer_products_total" in str(received["body"])
    assert "forecast_trainer_last_success_timestamp_seconds 1.7e+09" in str(received["body"])


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_logs_are_one_object_per_line() -> None:
    stream = io.StringIO()
    assert setup_logging("auto", stream=stream) == "json"  # not a TTY
    get_logger("t").info("hello %s", "world", extra={"fields": {"event": "x", "product": "p"}})
    doc = json.loads(stream.getvalue().strip())
    assert doc["msg"] == "hello world" and doc["event"] == "x" and doc["level"] == "info"
    setup_logging("text", stream=io.StringIO())


def test_text_logs_on_a_tty_and_a_progress_bar() -> None:
    stream = FakeTty()
    assert setup_logging("auto", stream=stream) == "text"
    progress = make_progress("text", stream)
    assert isinstance(progress, BarProgress)
    progress.start(2)
    progress.product_started("bakery-croissant-001")
    progress.trial("bakery-croissant-001", 3, 30)
    progress.product_done("bakery-croissant-001", "trained", {})
    progress.finish()
    text = stream.getvalue()
    assert "trial 3/30" in text and "1/2 products" in text and "[" in text
    assert not isinstance(make_progress("json", stream), BarProgress)
    assert isinstance(make_progress("text", io.StringIO()), Progress)
    logging.getLogger("forecast_trainer").handlers.clear()
