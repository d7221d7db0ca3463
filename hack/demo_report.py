"""The demo's closing report: what the TrainingJob did and where its results are.

    python hack/demo_report.py --dsn DSN --namespace NS --name TJ --out DIR

Reads the TrainingJob's status (kubectl) and the models and forecasts it wrote (PostgreSQL),
verifies one model's checksum by loading it, and plots that product's history, fit and forecast.

Its exit status is the demo's (``make demo`` ends with it): 0 only when the TrainingJob Succeeded
and the report could read its results; 1 otherwise (Failed, still running, or the report failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd

from forecast_trainer import forecaster
from forecast_trainer import model as models
from forecast_trainer.plot import plot_forecast


def tj_status(namespace: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["kubectl", "get", "tj", name, "-n", namespace, "-o", "json"], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out).get("status") or {})


async def report(
    dsn: str, namespace: str, name: str, status: dict[str, Any], out: Path, schema: str, table: str
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT DISTINCT ON (product_id) id, product_id, metrics::text AS metrics, trained_at "
            f'FROM "{schema}".forecast_models WHERE trainingjob = $1 ORDER BY product_id, trained_at DESC',
            f"{namespace}/{name}",
        )
        models_by_product = {r["product_id"]: (r["id"], json.loads(r["metrics"])) for r in rows}
        errors = [m["cv"]["error"] for _, m in models_by_product.values() if m.get("cv", {}).get("error") is not None]
        naive = [
            m["cv"]["seasonal_naive_error"]
            for _, m in models_by_product.values()
            if m.get("cv", {}).get("seasonal_naive_error") is not None
        ]
        beats = sum(1 for _, m in models_by_product.values() if m.get("beats_baseline"))
        tuned = sum(1 for _, m in models_by_product.values() if (m.get("tuning") or {}).get("tuned"))
        n_forecasts = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".forecasts f JOIN "{schema}".forecast_models m ON m.id = f.model_id '
            f"WHERE m.trainingjob = $1",
            f"{namespace}/{name}",
        )
        products = status.get("products") or {}
        metric = (status.get("results") or {}).get("metric", "smape")
        print(
            f"TrainingJob {namespace}/{name}: {status.get('phase')}, {products.get('succeeded', 0)} of "
            f"{products.get('total', 0)} products trained, {products.get('failed', 0)} failed"
        )
        for failure in status.get("failures") or []:
            print(f"  failed: {failure['product']}: {failure['reason']}: {failure['message']}")
        if errors:
            print(
                f"CV {metric}: median {statistics.median(errors):.3f} (model) vs "
                f"{statistics.median(naive):.3f} (seasonal naive); model beats seasonal naive on "
                f"{beats} of {len(models_by_product)} products; tuning beat Prophet's defaults on {tuned}"
            )
        print(
            f"Results in PostgreSQL: {len(models_by_product)} models in {schema}.forecast_models, "
            f"{n_forecasts} forecast rows in {schema}.forecasts"
        )
        print(
            f"  psql '{dsn}' -c \"SELECT product_id, ds, yhat, yhat_lower, yhat_upper FROM {schema}.forecasts LIMIT 5\""
        )
        if not models_by_product:
            return
        product = sorted(models_by_product)[0]
        model_id, _ = models_by_product[product]
        row = await conn.fetchrow(
            f'SELECT model_json, checksum FROM "{schema}".forecast_models WHERE id = $1', model_id
        )
        loaded = forecaster.load(row["model_json"], row["checksum"])  # refuses a checksum mismatch
        history = pd.DataFrame(
            [dict(r) for r in await conn.fetch(f"SELECT ds, y FROM {table} WHERE product_id = $1 ORDER BY ds", product)]
        )
        history["ds"] = pd.to_datetime(history["ds"])
        history["y"] = history["y"].astype(float)
        forecast = pd.DataFrame(
            [
                dict(r)
                for r in await conn.fetch(
                    f'SELECT ds, yhat, yhat_lower, yhat_upper FROM "{schema}".forecasts '
                    "WHERE model_id = $1 ORDER BY ds",
                    model_id,
                )
            ]
        )
        forecast["ds"] = pd.to_datetime(forecast["ds"])
        fitted = in_sample_fit(loaded, history["ds"])
        png = out / f"forecast-{product}.png"
        csv = out / f"forecast-{product}.csv"
        title = f"{product}: history, fit and {len(forecast)}-day forecast"
        plot_forecast(str(png), history, fitted, forecast, title)
        forecast.to_csv(csv, index=False)
        print(f"Plot of {product} (model {model_id}, {loaded.family}, checksum verified): {png}")
        print(f"Its forecast as CSV: {csv}")
    finally:
        await conn.close()


def in_sample_fit(loaded: forecaster.LoadedModel, ds: Any) -> Any:
    """The in-sample fit of a stored Prophet model (the line drawn over the history), else None:
    the other families (and the naive part of a blend) have no in-sample fit worth drawing."""
    if loaded.family != "prophet":
        return None
    prophet_json = loaded.document["state"]["prophet_json"]
    return models.fitted_history(forecaster.prophet_from_json(prophet_json), ds)


def verdict(status: dict[str, Any]) -> tuple[int, str]:
    """The demo's exit status and closing line, from the TrainingJob's status alone."""
    phase = status.get("phase") or "unknown"
    products = status.get("products") or {}
    counts = (
        f"{products.get('succeeded', 0)} of {products.get('total', 0)} products trained, "
        f"{products.get('failed', 0)} failed"
    )
    if phase == "Succeeded":
        return 0, f"demo succeeded: TrainingJob Succeeded, {counts}"
    return 1, f"demo FAILED: TrainingJob phase {phase} (not Succeeded), {counts}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--schema", default="public")
    ap.add_argument("--table", default="sales")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        status = tj_status(a.namespace, a.name)
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        print(f"demo FAILED: cannot read TrainingJob {a.namespace}/{a.name}: {detail}", file=sys.stderr)
        return 1
    code, message = verdict(status)
    try:
        asyncio.run(report(a.dsn, a.namespace, a.name, status, a.out, a.schema, a.table))
    except Exception as exc:  # the report is best effort; a failed one fails the demo
        print(f"report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if code == 0:
            code, message = 1, f"demo FAILED: its results could not be read ({type(exc).__name__}: {exc})"
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
