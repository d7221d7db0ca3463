"""The sales table the integration tests read: (product_id text, ds date, y double precision)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


async def make_sales(conn: Any, schema: str, products: Mapping[str, Any], table: str = "sales") -> str:
    """Create ``schema.table`` holding each product's frame (columns ds, y); returns its qualified name."""
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'CREATE TABLE "{schema}"."{table}" (product_id text, ds date, y double precision)')
    records = [(p, d.date(), float(v)) for p, f in products.items() for d, v in zip(f["ds"], f["y"], strict=True)]
    await conn.copy_records_to_table(table, schema_name=schema, records=records)
    return f"{schema}.{table}"
