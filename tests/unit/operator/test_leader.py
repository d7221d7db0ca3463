"""Leader election against an in-memory Lease API that can be made slow or hang (a stalled API
server): the leader stops acting at its renew deadline, before another replica can take over."""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trainingjob_operator.kube import Conflict, NotFound
from trainingjob_operator.leader import LeaderElector, LeaseConfig, NotLeader, can_take
from trainingjob_operator.observe import parse_time

# Scaled-down client-go timing (15 s / 10 s / 2 s in production): lease 2 s, deadline 1 s, retry 0.2 s.
FAST = {"duration_seconds": 2, "renew_deadline_seconds": 1.0, "retry_period_seconds": 0.2}


def test_leader_can_take_only_free_own_or_expired_leases() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert can_take(None, None, 15, "me", now)
    assert can_take("me", now, 15, "me", now)
    assert not can_take("other", now - timedelta(seconds=10), 15, "me", now)
    assert can_take("other", now - timedelta(seconds=16), 15, "me", now)


def test_defaults_follow_client_go_and_bad_timings_are_refused() -> None:
    cfg = LeaseConfig("ns", identity="me")
    assert (cfg.duration_seconds, cfg.renew_deadline_seconds, cfg.retry_period_seconds) == (15, 10.0, 2.0)
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaseConfig("ns", duration_seconds=10, renew_deadline_seconds=10.0, identity="me")
    with pytest.raises(ValueError, match="retry period"):
        LeaseConfig("ns", renew_deadline_seconds=2.0, retry_period_seconds=2.0, identity="me")


class FakeLeases:
    """The Lease calls of ``Kube`` over one in-memory Lease, with resourceVersion conflicts. ``stall``
    makes every call hang until cleared (SIGSTOP of the API server); ``delay`` slows every call;
    ``error`` makes calls fail the way urllib3 does when the server is gone."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.delay = 0.0
        self.stalled = asyncio.Event()
        self.running = asyncio.Event()
        self.running.set()
        self.error: Exception | None = None
        self.writes: list[tuple[float, str]] = []  # (monotonic time the write took effect, holder)

    def stall(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    async def _enter(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.running.wait()
        if self.error is not None:
            raise self.error

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        await self._enter()
        if self.lease is None:
            raise NotFound(404, "not found")
        return copy.deepcopy(self.lease)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.lease = body
        self.writes.append((time.monotonic(), str(body["spec"].get("holderIdentity"))))
        return copy.deepcopy(body)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._enter()
        if self.lease is not None:
            raise Conflict(409, "exists")
        return self._store(body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._enter()
        if self.lease is None:
            raise NotFound(404, "not found")
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "stale")
        return self._store(body)

    async def patch_lease(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        await self._enter()
        assert self.lease is not None
        if patch["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "stale")
        body = copy.deepcopy(self.lease)
        body["spec"].update(patch["spec"])
        return self._store(body)

    def renewed_at(self) -> datetime | None:
        return parse_time((self.lease or {}).get("spec", {}).get("renewTime"))


def elector(api: FakeLeases, identity: str) -> LeaderElector:
    return LeaderElector(api, LeaseConfig("ns", identity=identity, **FAST))  # type: ignore[arg-type]


class Sampler:
    """Records (monotonic time, is_leader) of some electors every 5 ms."""

    def __init__(self, *electors: LeaderElector) -> None:
        self.electors = electors
        self.samples: list[tuple[float, tuple[bool, ...]]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), tuple(e.is_leader for e in self.electors)))
            await asyncio.sleep(0.005)

    def last_true(self, i: int, before: float = float("inf")) -> float | None:
        times = [t for t, flags in self.samples if flags[i] and t < before]
        return max(times) if times else None

    def first_true(self, i: int, after: float = 0.0) -> float | None:
        times = [t for t, flags in self.samples if flags[i] and t >= after]
        return min(times) if times else None

    def overlap(self) -> bool:
        return any(sum(flags) > 1 for _, flags in self.samples)

    def stop(self) -> None:
        self.task.cancel()


async def wait_until(what: str, probe: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_leader_renews_every_retry_period_and_keeps_leading() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    task = asyncio.ensure_future(a.run())
    try:
        await asyncio.wait_for(a.wait_leader(), 2)
        await asyncio.sleep(1.5)  # longer than the renew deadline: renewals keep it
        assert a.is_leader
        renewals = [t for t, holder in api.writes if holder == "a"]
        assert len(renewals) >= 6  # every 0.2 s (+ the request)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not a.is_leader  # a stopped election never leaves a leader behind


async def test_a_stalled_api_server_stops_the_leader_at_the_renew_deadline_before_any_takeover() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    task_a = asyncio.ensure_future(a.run())
    await asyncio.wait_for(a.wait_leader(), 2)
    task_b = asyncio.ensure_future(b.run())
    sampler = Sampler(a, b)
    try:
        await asyncio.sleep(0.5)
        api.stall()  # every request now hangs: renewals get no answer
        stalled_at = time.monotonic()
        renew_wall = api.renewed_at()
        last_write = max(t for t, holder in api.writes if holder == "a")
        assert renew_wall is not None
        await wait_until("a stops leading", lambda: not a.is_leader, within=3)
        stopped = time.monotonic()
        # is_leader turned False while the renewal request still hung, at the deadline
        # (counted from the *start* of the last successful renewal, which precedes its write).
        assert not api.running.is_set()
        assert stopped - last_write <= FAST["renew_deadline_seconds"] + 0.1
        assert stopped - stalled_at <= FAST["renew_deadline_seconds"] + 0.1
        # The lease could be taken over at renewTime + duration; a stopped well before that.
        takeover_possible = last_write + (FAST["duration_seconds"] - 0.05)
        assert stopped < takeover_possible - 0.8
        await asyncio.sleep(max(0.0, takeover_possible - time.monotonic()) + 0.2)
        api.resume()  # the server answers again; b may now take the expired Lease over (or a renew it)
        resumed = time.monotonic()
        await wait_until("someone leads", lambda: a.is_leader or b.is_leader, within=3)
        await asyncio.sleep(0.5)
    finally:
        sampler.stop()
        for t in (task_a, task_b):
            t.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert not sampler.overlap(), "two leaders at once"
    last_a = sampler.last_true(0, before=resumed)
    assert last_a is not None and last_a <= last_write + FAST["renew_deadline_seconds"] + 0.05


async def test_a_slow_api_cannot_stretch_leadership_past_the_deadline() -> None:
    """Renewals that are answered, but only after the deadline, never let the leader act late."""
    api = FakeLeases()
    a = elector(api, "a")
    task = asyncio.ensure_future(a.run())
    sampler = Sampler(a)
    try:
        await asyncio.wait_for(a.wait_leader(), 2)
        api.delay = 0.7  # each attempt: get (0.7 s) + replace (0.7 s) > the 1 s deadline
        slow_from = time.monotonic()
        await asyncio.sleep(3.0)
    finally:
        sampler.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    last = sampler.last_true(0)
    assert last is not None and last <= slow_from + FAST["renew_deadline_seconds"] + 0.05
    assert sampler.first_true(0, after=slow_from + FAST["renew_deadline_seconds"] + 0.05) is None


async def test_connection_errors_do_not_end_the_election_and_it_leads_again_afterwards() -> None:
    import urllib3

    api = FakeLeases()
    a = elector(api, "a")
    task = asyncio.ensure_future(a.run())
    try:
        await asyncio.wait_for(a.wait_leader(), 2)
        api.error = urllib3.exceptions.MaxRetryError(None, "/leases", "Connection refused")  # type: ignore[arg-type]
        await wait_until("a steps down", lambda: not a.is_leader, within=2)
        assert not task.done()
        api.error = None
        await asyncio.wait_for(a.wait_leader(), 2)  # its own Lease: renewed as soon as the API is back
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_standby_takes_over_only_after_the_lease_expired() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    task_a = asyncio.ensure_future(a.run())
    await asyncio.wait_for(a.wait_leader(), 2)
    task_b = asyncio.ensure_future(b.run())
    try:
        await asyncio.sleep(0.5)
        assert not b.is_leader
        task_a.cancel()  # the leader dies without releasing
        await asyncio.gather(task_a, return_exceptions=True)
        died = max(t for t, holder in api.writes if holder == "a")
        await asyncio.wait_for(b.wait_leader(), 4)
        took_over = time.monotonic() - died
        assert FAST["duration_seconds"] <= took_over + 0.05 <= FAST["duration_seconds"] + 0.6
    finally:
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)


async def test_release_hands_over_at_once_and_is_bounded_when_the_api_hangs() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    task_a = asyncio.ensure_future(a.run())
    await asyncio.wait_for(a.wait_leader(), 2)
    task_b = asyncio.ensure_future(b.run())
    try:
        task_a.cancel()
        await a.release()
        assert api.lease is not None and api.lease["spec"]["holderIdentity"] is None
        await asyncio.wait_for(b.wait_leader(), 1)  # no need to wait for expiry
        api.stall()
        t0 = time.monotonic()
        await b.release()  # hangs inside: bounded by the renew deadline
        assert time.monotonic() - t0 <= FAST["renew_deadline_seconds"] + 0.2 and not b.is_leader
    finally:
        api.resume()
        task_b.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)


async def test_while_leader_cancels_work_when_leadership_is_lost() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    task = asyncio.ensure_future(a.run())
    cancelled = asyncio.Event()

    async def long_pass() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    async def short_pass() -> str:
        return "done"

    try:
        await asyncio.wait_for(a.wait_leader(), 2)
        assert await a.while_leader(short_pass()) == "done"
        api.stall()
        t0 = time.monotonic()
        with pytest.raises(NotLeader):
            await a.while_leader(long_pass())
        assert cancelled.is_set() and time.monotonic() - t0 <= FAST["renew_deadline_seconds"] + 0.1
        with pytest.raises(NotLeader):
            await a.while_leader(short_pass())
    finally:
        api.resume()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_each_start_of_leadership_is_announced_once_not_each_renewal() -> None:
    """main.py distrusts every watched TrainingJob then (freshness.py): a new leader's first pass
    of each reads it from the API."""

    async def run() -> list[int]:
        api = FakeLeases()
        terms: list[int] = []
        e = LeaderElector(
            api,  # type: ignore[arg-type]
            LeaseConfig("ns", identity="a", **FAST),
            on_started_leading=lambda: terms.append(len(api.writes)),
        )
        assert await e.attempt() and await e.attempt() and await e.attempt()
        e._step_down("test")
        assert await e.attempt()
        return terms

    assert asyncio.run(run()) == [1, 4]


async def test_losing_leadership_drops_the_per_trainingjob_gauges() -> None:
    """A deposed replica must not keep exporting its last per-TrainingJob values (alerts take the
    max over replicas and would keep firing after the new leader's retry succeeded)."""
    from prometheus_client import REGISTRY

    from trainingjob_operator import metrics

    api = FakeLeases()
    a = LeaderElector(
        api,  # type: ignore[arg-type]
        LeaseConfig("ns", identity="a", **FAST),
        on_stopped_leading=metrics.forget_leader_series,
    )
    task = asyncio.ensure_future(a.run())
    tj = {"namespace": "unit-leader", "trainingjob": "nightly"}
    try:
        await asyncio.wait_for(a.wait_leader(), 2)
        metrics.observe_products("unit-leader", "nightly", {"failed": 3})
        metrics.observe_pass("unit-leader", "nightly", "Failed", {"p": "WaitingForLease"}, {})
        metrics.observe_schedule("unit-leader", "weekly", "2026-01-01T00:00:00Z", None, False)
        assert REGISTRY.get_sample_value("trainingjob_products", {**tj, "state": "failed"}) == 3
        api.stall()  # renewals hang: a stops leading at its renew deadline
        await wait_until("a stops leading", lambda: not a.is_leader, within=3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for name, labels in (
        ("trainingjob_products", {**tj, "state": "failed"}),
        ("trainingjob_phase", {**tj, "phase": "Failed"}),
        ("trainingjob_lease_waiting_products", tj),
        ("trainingjob_schedule_suspended", {"namespace": "unit-leader", "trainingschedule": "weekly"}),
    ):
        assert REGISTRY.get_sample_value(name, labels) is None, name
