"""Calibrated bands in PostgreSQL (migration 4): every level and quantile stored with the forecast, atomically."""

from __future__ import annotations

import asyncpg
import numpy as np
import pytest
from tests.unit.trainer.helpers import daily_frame

from forecast_trainer import store
from forecast_trainer.classify import classify
from forecast_trainer.config import TrainConfig
from forecast_trainer.store import ModelRecord, load, migrate, migrate_connection, save
from forecast_trainer.training import train_product
from forecast_trainer.validate import Prepared


@pytest.fixture(scope="module")
def trained():
    frame = daily_frame(200, seed=9, level=30)
    models = ("ets", "seasonal_naive", "last_value")
    cfg = TrainConfig(models=models, interval_levels=(80.0, 95.0), quantiles=(0.5, 0.9))
    prepared = Prepared("bakery-bagel-7", frame, len(frame), float((frame["y"] == 0).mean()), "D")
    return train_product(prepared, cfg, 0, None, classify(frame["y"], "D"))


def record(trained, product: str = "bakery-bagel-7") -> ModelRecord:
    return ModelRecord(
        product_id=product,
        trainingjob="default/tj",
        prophet_version="-",
        params=trained.params,
        metrics={"metric": "smape"},
        model_json=trained.model_json,
        checksum=trained.checksum,
    )


async def test_every_level_and_quantile_is_stored_per_day(db, conn, schema: str, trained) -> None:
    await migrate(db, schema)
    forecast = trained.forecast
    model_id = await save(db, schema, record(trained), forecast)
    intervals = await conn.fetch(
        f'SELECT product_id, ds, level, lower, upper FROM "{schema}".forecast_intervals '
        "WHERE model_id = $1 ORDER BY level, ds",
        model_id,
    )
    horizon = len(forecast)
    assert [r["level"] for r in intervals] == [80.0] * horizon + [95.0] * horizon
    assert {r["product_id"] for r in intervals} == {"bakery-bagel-7"}
    np.testing.assert_allclose([r["lower"] for r in intervals[horizon:]], forecast["yhat_lower_95"])
    np.testing.assert_allclose([r["upper"] for r in intervals[horizon:]], forecast["yhat_upper_95"])
    compatible = await conn.fetch(
        f'SELECT f.yhat_lower, f.yhat_upper, i.lower, i.upper FROM "{schema}".forecasts f '
        f'JOIN "{schema}".forecast_intervals i USING (model_id, ds) WHERE f.model_id = $1 AND i.level = 80',
        model_id,
    )
    assert len(compatible) == horizon
    assert all(r["yhat_lower"] == r["lower"] and r["yhat_upper"] == r["upper"] for r in compatible)
    quantiles = await conn.fetch(
        f'SELECT quantile, value FROM "{schema}".forecast_quantiles WHERE model_id = $1 ORDER BY quantile, ds',
        model_id,
    )
    assert [r["quantile"] for r in quantiles] == [0.5] * horizon + [0.9] * horizon
    np.testing.assert_allclose([r["value"] for r in quantiles[horizon:]], forecast["q90"])
    assert all(r["value"] >= 0 for r in quantiles)
    loaded, _ = await load(db, schema, model_id)  # the stored calibration gives the same bands again
    np.testing.assert_allclose(loaded.forecast(horizon)["yhat_upper_95"], forecast["yhat_upper_95"], atol=1e-6)


async def test_a_failing_band_write_rolls_back_the_model_and_its_forecast(db, conn, schema: str, trained) -> None:
    await migrate(db, schema)
    forecast = trained.forecast.copy()
    forecast.attrs["quantiles"] = [0.9, 0.9]  # violates PRIMARY KEY (model_id, quantile, ds), after the other writes
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await save(db, schema, record(trained), forecast)
    for table in ("forecast_models", "forecasts", "forecast_intervals", "forecast_quantiles"):
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}') == 0, table


async def test_a_version_3_schema_gains_the_band_tables_and_keeps_its_rows(db, conn, schema: str, trained) -> None:
    saved = store.MIGRATIONS
    try:
        store.MIGRATIONS = tuple(m for m in saved if m[0] <= 3)
        await migrate_connection(conn, schema)
    finally:
        store.MIGRATIONS = saved
    old = trained.forecast[["ds", "yhat", "yhat_lower", "yhat_upper"]]  # what a version-3 trainer wrote
    await conn.execute(
        f'INSERT INTO "{schema}".forecast_models (product_id, prophet_version, params, metrics, model_json, checksum) '
        "VALUES ('old', '-', '{}', '{}', $1, $2)",
        trained.model_json,
        trained.checksum,
    )
    assert len(old) > 0
    result = await migrate_connection(conn, schema)
    assert (result.before, result.after) == (3, store.LATEST_VERSION)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_models') == 1
    model_id = await save(db, schema, record(trained, "new"), trained.forecast)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".forecast_intervals WHERE model_id = $1', model_id) > 0
