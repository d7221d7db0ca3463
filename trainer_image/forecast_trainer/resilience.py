"""Retries with exponential backoff and a circuit breaker, for calls to databases.

Pure asyncio; the caller says which errors are transient. The breaker opens after
``failure_threshold`` consecutive transient failures and then fails calls fast (no network
round trip) until ``reset_seconds`` have passed; one probe call is then let through
(half-open) and closes the breaker again on success.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from forecast_trainer.errors import CircuitOpen, InfraUnavailable, one_line

T = TypeVar("T")


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        reason: str = "DataSourceUnavailable",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.reason = reason
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.last_error = ""

    def before_call(self) -> None:
        """Raise CircuitOpen while open; move to half-open once the reset time has passed."""
        if self.state == self.OPEN:
            if self.clock() - self.opened_at < self.reset_seconds:
                raise CircuitOpen(
                    f"{self.name} unavailable (circuit open after {self.failures} consecutive failures: "
                    f"{self.last_error})",
                    reason=self.reason,
                )
            self.state = self.HALF_OPEN

    def record_success(self) -> None:
        self.state = self.CLOSED
        self.failures = 0

    def record_failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = one_line(error, 200)
        if self.state == self.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = self.OPEN
            self.opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        return self.state == self.OPEN


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """``base * 2**attempt`` capped at ``cap``, with +-20 % jitter so retrying pods spread out."""
    jitter = (rng or random).uniform(0.8, 1.2)
    return float(min(cap, base * (2**attempt)) * jitter)


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    is_transient: Callable[[BaseException], bool],
    retries: int,
    breaker: CircuitBreaker,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    describe: Callable[[BaseException], str] = str,
) -> T:
    """Run ``call``; retry transient failures up to ``retries`` times, then raise InfraUnavailable.

    Non-transient errors propagate unchanged (the caller maps them) and do not count against
    the breaker: a missing table says nothing about whether the server is up.
    """
    attempt = 0
    while True:
        breaker.before_call()
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            text = describe(exc)
            breaker.record_failure(text)
            if attempt >= retries or breaker.is_open:
                raise InfraUnavailable(
                    f"{what}: {text} (gave up after {attempt + 1} attempt{'s' if attempt else ''})",
                    reason=breaker.reason,
                ) from exc
            await sleep(backoff_delay(attempt, base_delay, max_delay))
            attempt += 1
        else:
            breaker.record_success()
            return result
