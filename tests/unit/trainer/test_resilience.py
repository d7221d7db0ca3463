from __future__ import annotations

import asyncpg
import pytest

from forecast_trainer.db import error_class
from forecast_trainer.errors import CircuitOpen, InfraUnavailable
from forecast_trainer.resilience import CircuitBreaker, backoff_delay, retry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_fails_fast_then_half_opens_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker("db", failure_threshold=2, reset_seconds=30, clock=clock)
    breaker.before_call()
    breaker.record_failure("refused")
    assert breaker.state == "closed"
    breaker.record_failure("refused")
    assert breaker.is_open
    with pytest.raises(CircuitOpen, match="circuit open"):
        breaker.before_call()
    clock.now += 31
    breaker.before_call()  # half-open: one probe allowed
    assert breaker.state == "half-open"
    breaker.record_failure("still refused")  # a failed probe re-opens at once
    assert breaker.is_open
    clock.now += 31
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0


def test_backoff_doubles_with_jitter_and_cap() -> None:
    for attempt, nominal in enumerate([0.5, 1, 2, 4, 8, 8]):
        delay = backoff_delay(attempt, 0.5, 8.0)
        assert nominal * 0.8 <= delay <= nominal * 1.2


async def test_retry_retries_transient_errors_with_backoff_then_gives_up() -> None:
    sleeps: list[float] = []
    calls = 0

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("connection refused")

    breaker = CircuitBreaker("db", failure_threshold=100)
    with pytest.raises(InfraUnavailable, match="gave up after 4 attempts") as info:
        await retry(refused, what="connect", is_transient=lambda e: True, retries=3, breaker=breaker, sleep=fake_sleep)
    assert info.value.exit_code == 4
    assert calls == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]


async def test_retry_succeeds_after_a_transient_failure() -> None:
    attempts = iter([TimeoutError("slow"), "ok"])

    async def flaky() -> str:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    async def no_sleep(_: float) -> None:
        return None

    breaker = CircuitBreaker("db")
    assert await retry(flaky, what="q", is_transient=lambda e: True, retries=2, breaker=breaker, sleep=no_sleep) == "ok"
    assert breaker.failures == 0


async def test_non_transient_errors_propagate_without_counting() -> None:
    breaker = CircuitBreaker("db", failure_threshold=1)

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry(broken, what="q", is_transient=lambda e: False, retries=5, breaker=breaker)
    assert breaker.state == "closed"


async def test_open_breaker_skips_the_call() -> None:
    breaker = CircuitBreaker("db", failure_threshold=1)
    breaker.record_failure("down")
    called = False

    async def call() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpen):
        await retry(call, what="q", is_transient=lambda e: True, retries=3, breaker=breaker)
    assert not called


def _pg_error(cls: type) -> Exception:
    return cls("message")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(), "transient"),
        (TimeoutError(), "transient"),
        (OSError("network unreachable"), "transient"),
        (_pg_error(asyncpg.exceptions.CannotConnectNowError), "transient"),
        (_pg_error(asyncpg.exceptions.TooManyConnectionsError), "transient"),
        (_pg_error(asyncpg.exceptions.SerializationError), "transient"),
        (_pg_error(asyncpg.exceptions.QueryCanceledError), "transient"),
        (_pg_error(asyncpg.exceptions.InvalidPasswordError), "infra"),
        (_pg_error(asyncpg.exceptions.InvalidCatalogNameError), "infra"),
        (_pg_error(asyncpg.exceptions.InsufficientPrivilegeError), "infra"),
        (_pg_error(asyncpg.exceptions.UndefinedTableError), "data"),
        (_pg_error(asyncpg.exceptions.UndefinedColumnError), "data"),
        (_pg_error(asyncpg.exceptions.InvalidTextRepresentationError), "data"),
        (_pg_error(asyncpg.exceptions.UniqueViolationError), "other"),
        (ValueError("bug"), "other"),
    ],
)
def test_error_classes(exc: BaseException, expected: str) -> None:
    assert error_class(exc) == expected
