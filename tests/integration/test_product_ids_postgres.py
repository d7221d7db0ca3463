"""Issue 9 item 4 against PostgreSQL, as the pods run it: TRAINER_PRODUCT_ID names one product, verbatim.

Before, ``products: [" "]`` or ``["[]"]`` made one pod train every product in the table (five model
rows for one product's Job), and ``['["a","b"]']`` trained a and b.
"""

from __future__ import annotations

import json

import pytest
from tests.integration.sales import make_sales
from tests.unit.trainer.helpers import daily_frame, run_cli

PRODUCTS = ["a", "b", "c", '["a","b"]', "[]"]


async def make_table(conn, schema: str) -> str:
    return await make_sales(conn, schema, {product: daily_frame(60, seed=i) for i, product in enumerate(PRODUCTS)})


@pytest.mark.parametrize(
    ("product_id", "code", "status", "rows"),
    [
        ('["a","b"]', 0, "trained", 1),  # an id that looks like JSON is an id
        ("[]", 0, "trained", 1),
        ("c", 0, "trained", 1),
        ('["a"]', 3, "invalid", 0),  # not in the table: that id fails, nothing else is touched
        (" ", 2, "failed", 0),  # blank: a configuration error, never "every product"
        ("", 2, "failed", 0),
    ],
)
async def test_a_pod_trains_exactly_its_product_id(
    dsn, conn, new_schema, tmp_path, product_id: str, code: int, status: str, rows: int
) -> None:
    schema = new_schema()
    table = await make_table(conn, schema)
    term = tmp_path / "t.json"
    env = {
        "TRAINER_DATA_DSN": dsn,
        "TRAINER_DATA_TABLE": table,
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_PRODUCT_ID": product_id,
        "TRAINER_TRIALS": "0",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "7",
        "TRAINER_TERMINATION_LOG": str(term),
    }
    run = run_cli(["train"], env)
    assert run.code == code, run.stderr
    doc = json.loads(term.read_text())
    assert [(e["product"], e["status"]) for e in doc["products"]] == [(product_id, status)]
    made = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".forecast_models')
    stored = await conn.fetch(f'SELECT product_id FROM "{schema}".forecast_models') if made else []
    assert [r["product_id"] for r in stored] == [product_id] * rows
