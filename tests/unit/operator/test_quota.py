"""A ResourceQuota that refuses product Jobs (403 "exceeded quota") is transient: the products wait
(QuotaExceeded) and launches back off; an invalid Job (422) still fails as JobRejected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.unit.operator.factories import make_tj

from trainingjob_operator.controller import reconcile_once
from trainingjob_operator.kube import KubeError, NotFound
from trainingjob_operator.reconcile import Observed

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
QUOTA = (
    'jobs.batch "weekly-0a1b2c3d4e" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, '
    "used: count/jobs.batch=20, limited: count/jobs.batch=20"
)


class Api:
    """The calls of a pass; every Job create is refused with ``status``/``message``."""

    def __init__(self, raw: dict[str, Any], status: int, message: str) -> None:
        self.raw, self.status, self.message = raw, status, message
        self.creates = 0

    async def get_trainingjob(self, namespace: str, name: str) -> dict[str, Any]:
        return self.raw

    async def patch_trainingjob_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.raw = {**self.raw, "status": status}
        return self.raw

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        raise NotFound(404, "gone")

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        raise KubeError(self.status, self.message)


def _run(status: int, message: str, passes: int) -> tuple[Api, list[tuple[str, str]]]:
    """Passes as the daemon (main.py) runs them: refused launches remembered, quota back-off applied."""
    from trainingjob_operator.quota import QuotaBackoff

    tj = make_tj(["a", "b", "c"], parallelism=2)
    raw = tj.model_dump(by_alias=True, mode="json", exclude_none=True)
    api = Api(raw, status, message)
    events: list[tuple[str, str]] = []
    rejected: dict[str, str] = {}
    backoff = QuotaBackoff()

    async def go() -> None:
        nonlocal rejected
        for i in range(passes):
            now = NOW + timedelta(seconds=2 * i)

            blocked_now = backoff.blocked(now)

            async def observe(
                tj: Any, recorded: set[str], refused: dict[str, str], blocked: dict[str, str] = blocked_now
            ) -> Observed:
                return Observed(rejected=dict(refused), **({"quota_exceeded": blocked} if blocked else {}))

            result = await reconcile_once(
                api,  # type: ignore[arg-type]
                "shop",
                "weekly",
                lambda type_, reason, msg: events.append((type_, reason)),
                observe,
                clock=lambda now=now: now,  # type: ignore[misc]
                rejected=rejected,
            )
            rejected = {**rejected, **result.outcomes.rejected}
            quota = getattr(result.outcomes, "quota_exceeded", {})  # (absent before the fix: all "rejected")
            backoff.record(quota, len(result.outcomes.created), now)

    asyncio.run(go())
    return api, events


def test_a_quota_refusal_makes_products_wait_and_launches_back_off() -> None:
    api, events = _run(403, QUOTA, passes=3)  # 0 s, 2 s, 4 s: within the first 5 s back-off
    status = api.raw["status"]
    assert status["products"]["failed"] == 0 and status.get("failures", []) == []
    assert status["products"]["waiting"] == 2  # the two refused (parallelism 2); "c" was never tried
    assert api.creates == 2  # one attempt, then the back-off holds every launch
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "QuotaExceeded"
    assert ("Warning", "QuotaExceeded") in events
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "False"  # transient: it frees up by itself


def test_an_invalid_job_is_still_rejected() -> None:
    api, _ = _run(422, 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value', 2)
    status = api.raw["status"]
    assert status["products"]["failed"] >= 1 and status["failures"][0]["reason"] == "JobRejected"


def test_the_back_off_doubles_and_resets_when_a_job_is_created() -> None:
    from trainingjob_operator.quota import QuotaBackoff

    b = QuotaBackoff()
    delays = []
    for _ in range(8):
        b.record({"a": QUOTA}, 0, NOW)
        delays.append(b.delay())
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300]
    assert b.blocked(NOW + timedelta(seconds=299)) == {"a": QUOTA} and b.blocked(NOW + timedelta(seconds=300)) == {}
    b.record({}, 1, NOW)
    assert b.attempts == 0 and b.blocked(NOW) == {}
