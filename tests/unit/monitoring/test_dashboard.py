"""The Grafana dashboard and the kustomize overlay of manifests/overlays/monitoring, and
docs/metrics.md against the collectors the operator and the trainer define.

The live check (a running operator's /metrics and a real trainer's Pushgateway payload) is
tests/e2e/operator/test_monitoring.py; this one needs no cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from tests.monitoring_support import (
    OVERLAY,
    Family,
    Query,
    check_docs,
    dashboard,
    dashboard_queries,
    families,
    metric_names,
    ours,
    panels,
    prometheus_rule,
    promtool_dir,
    rule_queries,
    unknown_names,
)

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def tools() -> Path:
    return promtool_dir()


def defined_families() -> dict[str, Family]:
    """The operator's collectors (its module registers them in the default registry) and a trainer
    run's registry after one trained product."""
    import trainingjob_operator.metrics  # noqa: F401 - registers the collectors
    from forecast_trainer.metrics import RunMetrics
    from forecast_trainer.report import TRAINED, ProductResult

    run = RunMetrics()
    run.observe(
        ProductResult(product="p1", status=TRAINED, metric="smape", error=1.0, baseline_error=2.0, family="prophet")
    )
    run.finish(0, 1.0, 1.0)
    return {**ours(families(generate_latest(REGISTRY).decode())), **families(run.exposition().decode())}


@pytest.fixture(scope="module")
def used(tools: Path) -> dict[Query, set[str]]:
    return metric_names(tools, dashboard_queries() + rule_queries())


def test_kustomize_renders_the_overlay() -> None:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(OVERLAY)], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
    cm = docs[("ConfigMap", "trainingjob-operator-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "trainingjob-system"
    assert json.loads(cm["data"]["trainingjob-operator.json"]) == dashboard()
    rule = docs[("PrometheusRule", "trainingjob-operator")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == prometheus_rule()["spec"]
    monitor = docs[("ServiceMonitor", "trainingjob-operator")]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert ("Deployment", "trainingjob-operator") in docs  # the overlay installs the operator too


def test_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "trainingjob-operator" and board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels(board) if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles must be unique (docs/metrics.md names them)"
    for p in panels(board):
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_the_issue_asks_for_these_panels_and_alerts() -> None:
    titles = {p["title"] for p in panels(dashboard())}
    assert {
        "Products by state per TrainingJob",
        "Launch rate",
        "Lease waits",
        "Failures by reason",
        "Reconcile latency",
        "Trainer seconds per product",
        "Model error vs baseline (CV)",
    } <= titles
    alerts = {q.where.removeprefix("alert: ") for q in rule_queries()}
    assert alerts == {
        "TrainingJobFailed",
        "TrainingJobProductsWaitingOnLease",
        "TrainingJobOperatorReconcileErrors",
        "TrainingJobOperatorDown",
        "TrainingScheduleNoRecentSuccess",
    }


def test_queries_parse_and_name_only_defined_metrics(used: dict[Query, set[str]]) -> None:
    assert all(names for names in used.values()), [q.where for q, n in used.items() if not n]
    assert unknown_names(used, defined_families()) == []


def test_a_misspelt_metric_is_caught(tools: Path) -> None:
    query = Query("panel: typo", "sum(rate(trainingjob_jobs_lanched_total[5m]))")
    assert unknown_names(metric_names(tools, [query]), defined_families()) == [
        "panel: typo: trainingjob_jobs_lanched_total"
    ]


def test_docs_list_every_metric_with_its_panels_and_alerts(used: dict[Query, set[str]]) -> None:
    assert check_docs(defined_families(), used) == []
