"""Days and months of PostgreSQL timestamps (issue 10 item 10), read from a real server.

A ``timestamptz`` has no zone of its own; the trainer cuts it into days in the session's
TimeZone, exactly as ``ds::date`` or psql would show it to the same user, unless
--business-timezone names a zone. ``date`` and ``timestamp`` columns are taken as stored.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from tests.unit.trainer.helpers import run_cli

from forecast_trainer.config import DbSettings
from forecast_trainer.data import Columns, PostgresSource
from forecast_trainer.validate import Rules, prepare

PLUS_TWO = timezone(timedelta(hours=2))  # Africa/Johannesburg: +02:00 all year, no DST
ZONE = "Africa/Johannesburg"


def with_settings(dsn: str, **settings: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in settings.items())
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


async def make_table(conn, schema: str, starts: list[datetime]) -> str:
    """One product sold at each local midnight (+02:00) of ``starts``, in three column types."""
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".sales (product_id text, at timestamptz, day date, local timestamp, y float8)'
    )
    rows = [("p", t, t.date(), t.replace(tzinfo=None), float(5 + i % 7)) for i, t in enumerate(starts)]
    await conn.copy_records_to_table("sales", schema_name=schema, records=rows)
    return f"{schema}.sales"


def local_midnights(count: int, freq: str, start: str = "2024-03-01") -> list[datetime]:
    return [d.to_pydatetime().replace(tzinfo=PLUS_TWO) for d in pd.date_range(start, periods=count, freq=freq)]


async def prepared(dsn: str, table: str, column: str, rules: Rules):
    source = PostgresSource(dsn, table, Columns(time=column), DbSettings(retries=0))
    try:
        return prepare("p", await source.history("p"), rules)
    finally:
        await source.close()


@pytest.mark.parametrize(
    ("session_zone", "business_zone", "first_day"),
    [
        (ZONE, None, "2024-03-01"),  # the database speaks local time: local days
        ("UTC", None, "2024-02-29"),  # a UTC session sees 22:00 the day before, and so does the trainer
        ("UTC", ZONE, "2024-03-01"),  # --business-timezone: local days whatever the session says
        (ZONE, "UTC", "2024-02-29"),  # ...or UTC days, if that is what the business wants
        ("America/New_York", ZONE, "2024-03-01"),
    ],
)
async def test_timestamptz_days_follow_the_session_timezone_or_the_business_timezone(
    dsn, conn, schema, session_zone: str, business_zone: str | None, first_day: str
) -> None:
    table = await make_table(conn, schema, local_midnights(60, "D"))
    got = await prepared(with_settings(dsn, timezone=session_zone), table, "at", Rules(business_timezone=business_zone))
    assert got.frame["ds"].iloc[0] == pd.Timestamp(first_day) and len(got.frame) == 60
    assert got.frame["y"].iloc[0] == 5.0  # each day kept its own sale


@pytest.mark.parametrize(("session_zone", "first_month"), [(ZONE, "2021-01-01"), ("UTC", "2020-12-01")])
async def test_timestamptz_months_at_local_midnight(dsn, conn, schema, session_zone: str, first_month: str) -> None:
    table = await make_table(conn, schema, local_midnights(36, "MS", "2021-01-01"))
    got = await prepared(with_settings(dsn, timezone=session_zone), table, "at", Rules(frequency="MS"))
    assert got.frame["ds"].iloc[0] == pd.Timestamp(first_month) and len(got.frame) == 36
    assert got.frame["y"].tolist()[:3] == [5.0, 6.0, 7.0]  # no month got two sales, none was left empty


@pytest.mark.parametrize("column", ["day", "local"])
@pytest.mark.parametrize("business_zone", [None, "Pacific/Kiritimati", "Etc/GMT+12"])
async def test_date_and_timestamp_columns_are_taken_as_stored(dsn, conn, schema, column, business_zone) -> None:
    table = await make_table(conn, schema, local_midnights(60, "D"))
    got = await prepared(
        with_settings(dsn, timezone="America/New_York"), table, column, Rules(business_timezone=business_zone)
    )
    assert got.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01")


async def test_a_non_iso_datestyle_on_the_server_changes_nothing(dsn, conn, schema) -> None:
    table = await make_table(conn, schema, local_midnights(60, "D"))
    odd = with_settings(dsn, timezone=ZONE, DateStyle="SQL,DMY")
    for column in ("at", "day", "local"):
        got = await prepared(odd, table, column, Rules())
        assert got.frame["ds"].iloc[0] == pd.Timestamp("2024-03-01"), column


async def test_train_with_business_timezone_forecasts_the_local_days_after_the_history(
    dsn, conn, new_schema, tmp_path
) -> None:
    schema = new_schema()
    table = await make_table(conn, schema, local_midnights(60, "D"))
    term = tmp_path / "t.json"
    env = {
        "TRAINER_DATA_DSN": with_settings(dsn, timezone="UTC"),
        "TRAINER_DATA_TABLE": table,
        "TRAINER_TIME_COLUMN": "at",
        "TRAINER_OUTPUT_SCHEMA": schema,
        "TRAINER_PRODUCT_ID": "p",
        "TRAINER_TRIALS": "0",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "7",
        "TRAINER_TERMINATION_LOG": str(term),
    }
    for zone, first_forecast in ((None, "2024-04-29"), (ZONE, "2024-04-30")):
        run = run_cli(["train"], {**env, **({"TRAINER_BUSINESS_TIMEZONE": zone} if zone else {})})
        assert run.code == 0, run.stderr
        model_id = json.loads(term.read_text())["products"][0]["model_id"]
        first = await conn.fetchval(f'SELECT min(ds) FROM "{schema}".forecasts WHERE model_id = $1', model_id)
        assert first == datetime.fromisoformat(first_forecast), zone
    bad = run_cli(["train"], {**env, "TRAINER_BUSINESS_TIMEZONE": "Europe/Atlantis"})
    assert bad.code == 2 and "TRAINER_BUSINESS_TIMEZONE" in bad.stderr
