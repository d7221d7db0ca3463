"""Integration tests against a real PostgreSQL (TJO_TEST_DSN, set by hack/test.sh / .ci/run).

Skipped only when TJO_TEST_DSN is unset. Every test works in its own freshly created schema(s),
dropped afterwards, so tests never collide with each other or with other suites.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from forecast_trainer.config import DbSettings
from forecast_trainer.db import Database
from forecast_trainer.logs import quiet_libraries

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def dsn() -> str:
    value = os.environ.get("TJO_TEST_DSN")
    if not value:
        pytest.skip("TJO_TEST_DSN is not set (hack/test.sh starts PostgreSQL and sets it)")
    quiet_libraries()
    return value


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def new_schema(dsn: str) -> AsyncIterator[Callable[[], str]]:
    """A factory of unique schema names; every schema it named is dropped at the end."""
    names: list[str] = []

    def make() -> str:
        names.append(f"t_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    connection = await asyncpg.connect(dsn)
    try:
        for name in names:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture
async def schema(new_schema: Callable[[], str]) -> str:
    return new_schema()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn, DbSettings(connect_timeout=5, query_timeout=30, retries=1), role="output database")
    try:
        yield database
    finally:
        await database.close()
