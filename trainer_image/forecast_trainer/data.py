"""Where sales history comes from: a long-format CSV file or a PostgreSQL table.

Both sources hand out *raw* per-product frames with columns ``ds`` and ``y`` exactly as stored
(strings from CSV; from PostgreSQL the timestamp as the server renders it in ISO style, typed
values for ``y``); ``validate.py`` parses and checks them, so the rules are the same for both.

PostgreSQL ``timestamptz`` values are read as text, which the server renders in the session's
``TimeZone`` with its offset (``2024-03-01 00:00:00+02``): a day is the day a user of that
database sees in psql (``ds::date``), not the UTC day. ``date`` and ``timestamp`` columns come
as they are stored. The product id is compared exactly (``WHERE product::text = $1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from forecast_trainer.config import DbSettings
from forecast_trainer.db import Database
from forecast_trainer.errors import ConfigError, DataInvalid
from forecast_trainer.sqlident import check_identifier, check_table, qualified, quote


@dataclass(frozen=True)
class Columns:
    product: str = "product_id"
    time: str = "ds"
    value: str = "y"


class DataSource(Protocol):
    async def products(self) -> list[str]:
        """Every product id in the source, in a stable order."""
        ...

    async def history(self, product: str) -> Any:
        """Raw rows of one product as a DataFrame with columns ds, y (DataInvalid/NoData if none)."""
        ...

    async def close(self) -> None: ...


def _no_data(product: str, where: str) -> DataInvalid:
    return DataInvalid(f"product {product!r}: no rows in {where}", reason="NoData")


class CsvSource:
    """A long-format CSV (``product_id,ds,y`` by default) read once and split by product."""

    def __init__(self, path: str, columns: Columns) -> None:
        self.path = path
        self.columns = columns
        self._groups: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._groups is not None:
            return self._groups
        import pandas as pd

        if not os.path.exists(self.path):
            raise ConfigError(f"data CSV {self.path!r} does not exist")
        if os.path.isdir(self.path):
            raise ConfigError(f"data CSV {self.path!r} is a directory")
        try:
            frame = pd.read_csv(
                self.path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
                encoding="utf-8-sig",
            )
        except pd.errors.EmptyDataError:
            raise DataInvalid(f"data CSV {self.path!r} is empty", reason="EmptyData") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataInvalid(f"data CSV {self.path!r} is not valid CSV: {exc}", reason="MalformedCsv") from None
        except PermissionError:
            raise ConfigError(f"data CSV {self.path!r} is not readable") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        wanted = [self.columns.product, self.columns.time, self.columns.value]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            have = ", ".join(frame.columns[:10])
            raise DataInvalid(
                f"data CSV {self.path!r} has no column(s) {', '.join(missing)} (it has: {have}); "
                "set --product-column/--time-column/--value-column",
                reason="MissingColumns",
            )
        if frame.empty:
            raise DataInvalid(f"data CSV {self.path!r} has a header but no rows", reason="EmptyData")
        frame = frame[wanted].rename(
            columns={self.columns.product: "product", self.columns.time: "ds", self.columns.value: "y"}
        )
        frame = frame[frame["product"].notna()]
        frame["product"] = frame["product"].str.strip()
        self._groups = {str(p): g[["ds", "y"]].reset_index(drop=True) for p, g in frame.groupby("product", sort=False)}
        return self._groups

    async def products(self) -> list[str]:
        return list(self._load())

    async def history(self, product: str) -> Any:
        groups = self._load()
        if product not in groups:
            raise _no_data(product, f"data CSV {self.path!r}")
        return groups[product]

    async def close(self) -> None:
        self._groups = None


class PostgresSource:
    """``SELECT ds, y FROM <table> WHERE <product column> = $1`` with quoted, validated identifiers."""

    def __init__(
        self, dsn: str, table: str, columns: Columns, settings: DbSettings, db: Database | None = None
    ) -> None:
        schema, name = check_table(table, "--data-table")
        self.table_sql = qualified(schema, name)
        self.table_name = table
        self.product_sql = quote(check_identifier(columns.product, "--product-column"))
        self.time_sql = quote(check_identifier(columns.time, "--time-column"))
        self.value_sql = quote(check_identifier(columns.value, "--value-column"))
        self.db = db or Database(dsn, settings, role="data source")

    async def products(self) -> list[str]:
        sql = (
            f"SELECT DISTINCT {self.product_sql}::text AS product FROM {self.table_sql} "
            f"WHERE {self.product_sql} IS NOT NULL ORDER BY 1"
        )

        async def work(conn: Any) -> list[str]:
            return [r["product"] for r in await conn.fetch(sql)]

        return await self.db.run(f"cannot list products of table {self.table_name!r}", work)

    async def history(self, product: str) -> Any:
        return (await self._read(product, watermark=False))[0]

    async def history_and_watermark(self, product: str) -> tuple[Any, Any]:
        """The history and its watermark (watermark.py), read in ONE repeatable-read snapshot.

        The model is then trained on exactly the rows the watermark describes: a row appended
        meanwhile changes the next run's watermark, so that run trains again.
        """
        return await self._read(product, watermark=True)

    async def _read(self, product: str, *, watermark: bool) -> tuple[Any, Any]:
        import pandas as pd

        sql = (
            f"SELECT {self.time_sql}::text AS ds, {self.value_sql} AS y FROM {self.table_sql} "
            f"WHERE {self.product_sql}::text = $1"
        )

        async def work(conn: Any) -> tuple[list[Any], Any]:
            isolation = "repeatable_read" if watermark else None
            async with conn.transaction(isolation=isolation, readonly=True):
                # ISO output whatever the server's DateStyle; the session TimeZone is kept.
                await conn.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
                mark = None
                if watermark:
                    from forecast_trainer.watermark import one_watermark

                    mark = await one_watermark(conn, self, product)
                return list(await conn.fetch(sql, product)), mark

        rows, mark = await self.db.run(f"cannot read history of product {product!r}", work)
        if not rows:
            raise _no_data(product, f"table {self.table_name!r}")
        return pd.DataFrame({"ds": [r["ds"] for r in rows], "y": [r["y"] for r in rows]}), mark

    async def close(self) -> None:
        await self.db.close()


class Prefetch:
    """Histories (and data watermarks) of a shard's products, loaded ``batch`` products per query.

    Shard mode with a PostgreSQL source: one ``WHERE product = ANY($1)`` query and one GROUP BY
    for the watermarks per batch, in one repeatable-read snapshot (so each model records exactly
    the data it was trained on), instead of two statements per product. A product is handed out
    once and then forgotten, so at most one batch is held in memory.
    """

    def __init__(self, source: PostgresSource, products: list[str], batch: int = 100) -> None:
        self.source = source
        self.order = list(products)
        self.position = {p: i for i, p in enumerate(self.order)}
        self.batch = max(1, batch)
        self.loaded: dict[str, tuple[Any, Any]] = {}
        self.queries = 0  # batches read (tests and the benchmark check it)

    async def get(self, product: str) -> tuple[Any, Any]:
        """(raw history, watermark) of ``product``; DataInvalid/NoData when it has no rows."""
        if product not in self.loaded:
            start = self.position.get(product)
            if start is None:
                return await self.source.history_and_watermark(product)
            await self._load(self.order[start : start + self.batch])
        found = self.loaded.pop(product, None)
        if found is None:
            raise _no_data(product, f"table {self.source.table_name!r}")
        return found

    async def _load(self, chunk: list[str]) -> None:
        import pandas as pd

        from forecast_trainer.watermark import SESSION_SQL, batch_sql, from_row

        s = self.source
        rows_sql = (
            f"SELECT {s.product_sql}::text AS product, {s.time_sql}::text AS ds, {s.value_sql} AS y "
            f"FROM {s.table_sql} WHERE {s.product_sql}::text = ANY($1::text[])"
        )
        marks_sql = batch_sql(s.table_sql, s.product_sql, s.time_sql, s.value_sql)

        async def work(conn: Any) -> tuple[list[Any], list[Any]]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(SESSION_SQL)
                return list(await conn.fetch(rows_sql, chunk)), list(await conn.fetch(marks_sql, chunk))

        rows, marks = await s.db.run(f"cannot read the history of {len(chunk)} product(s) from {s.table_name!r}", work)
        self.queries += 1
        ds: dict[str, list[Any]] = {}
        ys: dict[str, list[Any]] = {}
        for r in rows:
            product = r["product"]
            if product not in ds:
                ds[product], ys[product] = [], []
            ds[product].append(r["ds"])
            ys[product].append(r["y"])
        watermarks = {m["product"]: from_row(m) for m in marks}
        for product in chunk:
            if product in ds:
                self.loaded[product] = (pd.DataFrame({"ds": ds[product], "y": ys[product]}), watermarks.get(product))
