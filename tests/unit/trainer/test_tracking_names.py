"""MLflow names and payloads (tracking.py): registered model names safe and unique per product id."""

from __future__ import annotations

import re

import pytest

from forecast_trainer.config import TrainConfig
from forecast_trainer.tracking import NAME_MAX, ProductRecord, flat_params, registered_name

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.mark.parametrize("product", ["croissant", "sku-1.2_b", "SKU_9"])
def test_plain_ids_keep_their_name(product: str) -> None:
    assert registered_name("forecast-", product) == f"forecast-{product}"


@pytest.mark.parametrize(
    "product",
    ["pain au chocolat", "a/b", "a:b", "a b", "a_b--x", "Ümlaut-Brötchen", "x" * 253, "../etc", "a'; DROP"],
)
def test_other_ids_are_made_safe(product: str) -> None:
    name = registered_name("forecast-", product)
    assert SAFE.match(name) and len(name) <= NAME_MAX and name.startswith("forecast-")
    assert "--" in name  # the hashed form: never equal to a kept plain id


def test_distinct_ids_never_share_a_name() -> None:
    ids = ["a b", "a_b", "a/b", "a:b", "a__b", "a-b", "a--b", "A b", "x" * 253, "x" * 252 + "y"]
    names = {registered_name("p-", i) for i in ids}
    assert len(names) == len(ids)


def test_flat_params() -> None:
    assert flat_params({"a": 1, "b": {"c": 0.5, "d": {"e": "x"}}}, "model.") == {
        "model.a": "1",
        "model.b.c": "0.5",
        "model.b.d.e": "x",
    }


def test_record_payload_fits_one_log_batch() -> None:
    metrics = {
        "cv": {"error": 12.5, "fold_errors": [11.0, 12.0, 14.5], "folds": 3, "seasonal_naive_error": 15.0},
        "candidates": {f: {"error": 13.0} for f in ("ets", "theta", "arima", "prophet", "seasonal_naive")},
        "watermark": {"data": {"rows": 900, "last": "2024-01-01", "hash": "abc"}},
        "tuning": {"trials": 20},
    }
    record = ProductRecord(
        product="p 1",
        model_id=42,
        checksum="0" * 64,
        model_json="{}",
        metrics=metrics,
        params={"family": "prophet", "changepoint_prior_scale": 0.05, "naive_blend": {"naive_weight": 0.2}},
        champion={"outcome": "kept", "reason": "not better", "champion_error": 10.0, "noise": 1.0},
        seconds=3.2,
    )
    cfg = TrainConfig(trainingjob="shop/weekly", run_key="uid/0")
    params = record.mlflow_params(cfg)
    assert params["family"] == "prophet" and params["model.naive_blend.naive_weight"] == "0.2"
    assert params["data.rows"] == "900"
    metric_rows = record.mlflow_metrics()
    folds = sorted((step, v) for k, v, step in metric_rows if k == "cv_fold_error")
    assert folds == [(0, 14.5), (1, 12.0), (2, 11.0)]  # step 0 = the oldest window
    assert ("cv_error_recent_window", 11.0, 0) in metric_rows
    tags = record.mlflow_tags(cfg)
    assert tags["forecast.product_id"] == "p 1" and tags["forecast.champion"] == "kept"
    assert tags["forecast.model_id"] == "42" and tags["forecast.run_key"] == "uid/0"
    assert len(params) <= 100 and len(tags) <= 100 and len(metric_rows) <= 1000  # MLflow's log_batch limits


async def test_a_call_past_its_budget_is_abandoned_not_awaited() -> None:
    import time

    from forecast_trainer.tracking import TrackingUnavailable, _with_deadline

    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="did not answer within"):
        await _with_deadline(lambda: time.sleep(5), 0.2)
    assert time.monotonic() - started < 2  # the stuck thread is a daemon; nobody waits for it


async def test_errors_become_tracking_unavailable_and_values_pass() -> None:
    from forecast_trainer.tracking import TrackingUnavailable, _with_deadline

    def refuse() -> None:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(TrackingUnavailable, match="ConnectionRefusedError"):
        await _with_deadline(refuse, 1.0)
    with pytest.raises(TrackingUnavailable, match="budget"):
        await _with_deadline(lambda: 1, 0.0)
    assert await _with_deadline(lambda: 42, 1.0) == 42


@pytest.mark.parametrize(
    ("env", "uri"),
    [
        ({"MLFLOW_TRACKING_URI": "http://m:5000"}, "http://m:5000"),
        ({"MLFLOW_TRACKING_URI": "databricks"}, "databricks"),
        ({}, None),
    ],
)
def test_mlflow_variables_fill_the_options(env: dict[str, str], uri: str | None) -> None:
    from forecast_trainer.config import mlflow_defaults

    assert mlflow_defaults({"tracking_uri": None}, env).get("tracking_uri") == uri
    assert mlflow_defaults({"tracking_uri": "http://flag"}, env)["tracking_uri"] == "http://flag"


def test_a_uri_without_scheme_is_a_config_error() -> None:
    from forecast_trainer.config import mlflow_defaults
    from forecast_trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        mlflow_defaults({}, {"MLFLOW_TRACKING_URI": "mlflow.example:5000"})
