"""PostgreSQL access with asyncpg: a small pool, connect/statement timeouts, retries, a breaker.

Errors are sorted into classes the trainer acts on:
  transient  -> retried with backoff, then InfraUnavailable (exit 4)
  infra      -> InfraUnavailable at once (wrong password, no such database, no privilege)
  data       -> DataInvalid (missing table/column, values the database cannot convert)
  anything else propagates as an unexpected error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from forecast_trainer.config import DbSettings
from forecast_trainer.errors import ConfigError, DataInvalid, InfraUnavailable, one_line
from forecast_trainer.resilience import CircuitBreaker, retry

T = TypeVar("T")

# SQLSTATE classes/codes, see https://www.postgresql.org/docs/current/errcodes-appendix.html
_TRANSIENT_CLASSES = ("08", "53", "40")
_TRANSIENT_CODES = ("57014", "57P01", "57P02", "57P03", "55P03")
_INFRA_CLASSES = ("28", "3D")
_INFRA_CODES = ("42501",)
_DATA_CODES = ("42P01", "42703", "3F000", "42883", "42804")
_DATA_CLASSES = ("22",)


def sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def error_class(exc: BaseException) -> str:
    """'transient' | 'infra' | 'data' | 'config' | 'other' for an exception from asyncpg or the network."""
    import asyncpg

    state = sqlstate(exc)
    if state:
        if state in _TRANSIENT_CODES or state[:2] in _TRANSIENT_CLASSES:
            return "transient"
        if state in _INFRA_CODES or state[:2] in _INFRA_CLASSES:
            return "infra"
        if state in _DATA_CODES or state[:2] in _DATA_CLASSES:
            return "data"
        return "other"
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return "config"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | OSError | ConnectionError):
        return "transient"
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError | asyncpg.exceptions.InterfaceError):
        return "transient" if "closed" in str(exc) or "does not exist" in str(exc) else "other"
    return "other"


def describe(exc: BaseException) -> str:
    """A short, secret-free text for an error (asyncpg messages carry no passwords)."""
    text = one_line(str(exc), 200) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def is_transient(exc: BaseException) -> bool:
    return error_class(exc) == "transient"


class Database:
    """One PostgreSQL database: an asyncpg pool guarded by retries and a circuit breaker."""

    def __init__(self, dsn: str, settings: DbSettings, *, role: str) -> None:
        self.dsn = dsn
        self.settings = settings
        self.role = role  # "data source" / "output database": used in messages, never the DSN
        reason = "DataSourceUnavailable" if role == "data source" else "OutputUnavailable"
        self.breaker = CircuitBreaker(role, failure_threshold=max(2, settings.retries + 1), reason=reason)
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        async def connect() -> Any:
            return await asyncio.wait_for(
                asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=2,
                    timeout=self.settings.connect_timeout,
                    command_timeout=self.settings.query_timeout,
                ),
                timeout=self.settings.connect_timeout * 2 + 1,
            )

        try:
            self.pool = await self._retry(connect, f"cannot connect to the {self.role}")
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid PostgreSQL URL for the {self.role}: {type(exc).__name__}") from None

    async def connect(self, what: str, server_settings: dict[str, str] | None = None) -> Any:
        """A dedicated connection outside the pool (e.g. to hold a session-level lock), retried like the pool."""
        import asyncpg

        async def connect() -> Any:
            return await asyncio.wait_for(
                asyncpg.connect(
                    self.dsn,
                    timeout=self.settings.connect_timeout,
                    command_timeout=self.settings.query_timeout,
                    server_settings=server_settings,
                ),
                timeout=self.settings.connect_timeout * 2 + 1,
            )

        try:
            return await self._retry(connect, what)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid PostgreSQL URL for the {self.role}: {type(exc).__name__}") from None

    async def retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()`` with this database's retries, breaker and error mapping (see the module doc)."""
        return await self._retry(call, what)

    async def close(self) -> None:
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), timeout=5)
            except Exception:
                self.pool.terminate()
            self.pool = None

    async def _retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        try:
            return await retry(
                call,
                what=what,
                is_transient=is_transient,
                retries=self.settings.retries,
                breaker=self.breaker,
                describe=describe,
            )
        except (InfraUnavailable, DataInvalid, ConfigError):
            raise
        except Exception as exc:
            kind = error_class(exc)
            if kind == "infra":
                raise InfraUnavailable(f"{what}: {describe(exc)}", reason=self.breaker.reason) from exc
            if kind == "data":
                raise DataInvalid(f"{what}: {describe(exc)}", reason="DataSourceInvalid") from exc
            if kind == "config":
                raise ConfigError(f"invalid PostgreSQL URL for the {self.role}: {describe(exc)}") from exc
            raise

    async def run(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` with a pooled connection, retried as a whole on transient errors."""
        if self.pool is None:
            await self.open()

        async def attempt() -> T:
            async with self.pool.acquire(timeout=self.settings.connect_timeout) as conn:
                return await work(conn)

        return await self._retry(attempt, what)
