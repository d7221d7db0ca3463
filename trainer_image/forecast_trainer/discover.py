"""``forecast-trainer discover``: every product of the data source, for ``spec.allProducts``.

Lists the product ids of the data source (PostgreSQL table, CSV file or a mounted ConfigMap
CSV), sorts them by Python's str order (the global order of shard mode: index ``i`` = position
``i``), and, when there is an output database and a snapshot key (``--snapshot-key``, default:
the TrainingJob uid in ``--run-key``), writes them to ``<schema>.run_products`` in one
transaction (COPY; a rerun replaces the same key's rows). Shard pods then read their slice by
index (``--products-from snapshot``) instead of each running a DISTINCT over the history.

Termination message (at most 4096 bytes)::

  {"v": 1, "kind": "discover", "count": N, "products_sha256": "<hex>", "snapshot": true|false}

plus ``exit_code``, and ``reason``/``message`` when it failed. The digest is shard.products_sha256
of the sorted list. No pandas is imported for a PostgreSQL source.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from forecast_trainer.config import TrainConfig, snapshot_key_of
from forecast_trainer.errors import EXIT_OK, TrainerError, one_line
from forecast_trainer.logs import get_logger
from forecast_trainer.report import LIMIT, write_termination
from forecast_trainer.shard import products_sha256

log = get_logger("discover")


@dataclass(frozen=True)
class Discovery:
    products: list[str]  # sorted, distinct
    digest: str
    snapshot: bool
    seconds: float


def discover_message(
    count: int, digest: str, snapshot: bool, exit_code: int = EXIT_OK, reason: str | None = None, message: str = ""
) -> str:
    doc: dict[str, Any] = {
        "v": 1,
        "kind": "discover",
        "count": count,
        "products_sha256": digest,
        "snapshot": snapshot,
        "exit_code": exit_code,
    }
    if reason:
        doc["reason"] = reason
        doc["message"] = one_line(message, 1000)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text if len(text.encode("utf-8")) <= LIMIT else text[:LIMIT]  # pragma: no cover - bounded above


async def list_products(source: Any) -> list[str]:
    """Every product id of the source, sorted by Python's str order, without repeats."""
    return sorted(set(await source.products()))


async def discover(cfg: TrainConfig, key: str | None) -> Discovery:
    """List the source, write the snapshot when there is somewhere to write it (module doc)."""
    from forecast_trainer.data import Columns, CsvSource, DataSource, PostgresSource
    from forecast_trainer.db import Database

    started = time.monotonic()
    columns = Columns(cfg.product_column, cfg.time_column, cfg.value_column)
    output: Database | None = None
    if cfg.output_dsn:
        output = Database(
            cfg.output_dsn, cfg.db, role="data source" if cfg.output_dsn == cfg.data_dsn else "output database"
        )
    source: DataSource
    if cfg.data_csv:
        source = CsvSource(cfg.data_csv, columns)
    else:
        assert cfg.data_dsn is not None
        shared = output if cfg.output_dsn == cfg.data_dsn else None
        source = PostgresSource(cfg.data_dsn, cfg.data_table, columns, cfg.db, db=shared)
    try:
        ids = await list_products(source)
        snapshot = False
        if output is not None and key is not None:
            from forecast_trainer import store

            await store.migrate(output, cfg.output_schema)

            async def work(conn: Any) -> None:
                await store.write_snapshot(conn, cfg.output_schema, key, ids)

            await output.run(f"cannot write the discovered product list (key {key!r})", work)
            snapshot = True
        elif output is not None:
            log.warning("no --snapshot-key or --run-key: the product list is not written to run_products")
        return Discovery(ids, products_sha256(ids), snapshot, time.monotonic() - started)
    finally:
        await source.close()
        if output is not None:
            await output.close()


def run_discover(cfg: TrainConfig, snapshot_key: str | None) -> int:
    """Run ``discover``; the termination message is written in every case."""
    try:
        found = asyncio.run(discover(cfg, snapshot_key or snapshot_key_of(cfg.run_key)))
    except TrainerError as exc:
        write_termination(cfg.termination_log, discover_message(0, "", False, exc.exit_code, exc.reason, exc.message))
        raise
    write_termination(cfg.termination_log, discover_message(len(found.products), found.digest, found.snapshot))
    log.info(
        "discovered %d product(s)%s",
        len(found.products),
        " (written to run_products)" if found.snapshot else "",
        extra={"fields": {"event": "discovered", "count": len(found.products), "products_sha256": found.digest}},
    )
    where = f"run_products of schema {cfg.output_schema!r}" if found.snapshot else "nowhere (no snapshot)"
    print(f"{len(found.products)} product(s), sha256 {found.digest}, list in {where} ({found.seconds:.2f} s)")
    return EXIT_OK
