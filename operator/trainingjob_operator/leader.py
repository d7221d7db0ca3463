"""Leader election through a coordination.k8s.io Lease, with client-go's timing rules.

Several operator replicas run; one holds the Lease ``<namespace>/<name>`` and reconciles, the
others wait until the Lease expires (the leader died or stopped renewing), then one of them takes
it over with an optimistic-concurrency update.

Timing (client-go ``leaderelection``: ``LeaseDuration > RenewDeadline > 1.2 * RetryPeriod``):

- ``duration_seconds`` (15): written into the Lease; another replica may take the Lease over once
  ``renewTime + duration`` has passed without a renewal.
- ``renew_deadline_seconds`` (10): the leader acts only until ``start of its last successful
  renewal + renew deadline``. ``is_leader`` turns False at that instant, also while a renewal
  request still hangs (a stalled API server): every attempt is bounded by what is left of the
  deadline, and the check is made against the clock, not against the last answer. So the old
  leader has stopped (at renewal + 10 s) before anyone can take over (at renewal + 15 s at the
  earliest); the 5 s in between absorb clock differences and the writes already in flight.
- ``retry_period_seconds`` (2): the leader renews this often; a standby retries this often.

A replica that lost leadership keeps trying and leads again when it next holds the Lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from trainingjob_operator.builders import format_time
from trainingjob_operator.kube import Conflict, Kube, KubeError, NotFound
from trainingjob_operator.observe import parse_time

log = logging.getLogger("trainingjob_operator.leader")
T = TypeVar("T")
JITTER_FACTOR = 1.2  # client-go's: RenewDeadline must exceed JitterFactor * RetryPeriod


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str = "trainingjob-operator-leader"
    duration_seconds: int = 15
    """leaseDurationSeconds written into the Lease: how long others wait before taking it over."""
    renew_deadline_seconds: float = 10.0
    """How long the leader keeps acting after the start of its last successful renewal."""
    retry_period_seconds: float = 2.0
    """Pause between renewals (leader) or acquisition attempts (standby)."""
    identity: str = field(
        default_factory=lambda: os.environ.get("TJO_IDENTITY") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    )
    """This replica's name in the Lease (the pod name in a Deployment: TJO_IDENTITY)."""

    def __post_init__(self) -> None:
        if not self.duration_seconds > self.renew_deadline_seconds:
            raise ValueError(
                f"leader election: lease duration ({self.duration_seconds}s) must be greater than the renew "
                f"deadline ({self.renew_deadline_seconds}s)"
            )
        if not self.renew_deadline_seconds > JITTER_FACTOR * self.retry_period_seconds:
            raise ValueError(
                f"leader election: renew deadline ({self.renew_deadline_seconds}s) must be greater than "
                f"{JITTER_FACTOR} x the retry period ({self.retry_period_seconds}s)"
            )


class NotLeader(Exception):
    """Raised by :meth:`LeaderElector.while_leader` when this replica is not (or no longer) the leader."""


def can_take(holder: str | None, renew: datetime | None, duration: int, me: str, now: datetime) -> bool:
    """Pure rule: the Lease is ours, free, or expired."""
    if not holder or holder == me or renew is None:
        return True
    return renew + timedelta(seconds=duration) < now


class LeaderElector:
    """Keeps trying to hold the leader Lease; ``is_leader`` says whether this replica may act now."""

    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        """``on_started_leading`` runs each time this replica starts leading (not on renewals),
        before anything waiting for leadership resumes; ``on_stopped_leading`` runs (synchronously)
        each time it stops leading, like client-go's ``OnStoppedLeading``: e.g. to drop the metrics
        only a leader keeps current."""
        self._on_started_leading = on_started_leading
        self.kube = kube
        self._on_stopped_leading = on_stopped_leading
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        self._leader = asyncio.Event()  # set while leading; cleared at the renew deadline at the latest
        self._not_leader = asyncio.Event()
        self._not_leader.set()
        self._valid_until = 0.0  # clock(): leading until then unless renewed
        self._ever_led = False
        self._expiry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ state

    @property
    def is_leader(self) -> bool:
        """True while this replica holds the Lease and its renew deadline has not passed; turns False
        at the deadline even when the loop is stuck in a hanging request."""
        return self._leader.is_set() and self._clock() < self._valid_until

    @property
    def seconds_left(self) -> float:
        """How long this replica may still act without another successful renewal (0 when not leader)."""
        return max(0.0, self._valid_until - self._clock()) if self._leader.is_set() else 0.0

    async def wait_leader(self) -> None:
        """Return once this replica leads."""
        while not self.is_leader:
            await self._leader.wait()
            if not self.is_leader:  # set but past its deadline: the expiry timer clears it at once
                await asyncio.sleep(0.01)

    async def while_leader(self, work: Awaitable[T]) -> T:
        """Run ``work`` and cancel it the moment leadership is lost (then raise :class:`NotLeader`):
        for passes that must not go on writing after the renew deadline."""
        if not self.is_leader:
            if asyncio.iscoroutine(work):
                work.close()
            raise NotLeader(self.config.identity)
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._not_leader.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise NotLeader(self.config.identity)

    def _became_leader(self, started: float) -> None:
        self._valid_until = started + self.config.renew_deadline_seconds
        self._ever_led = True
        if not self._leader.is_set():
            log.info("became leader (%s)", self.config.identity)
            if self._on_started_leading is not None:
                self._on_started_leading()
            self._leader.set()
            self._not_leader.clear()
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, self._valid_until - self._clock()), self._check_expiry)

    def _check_expiry(self) -> None:
        self._expiry = None
        if not self._leader.is_set():
            return
        left = self._valid_until - self._clock()
        if left > 0:  # timers may fire a little early
            self._expiry = asyncio.get_running_loop().call_later(left, self._check_expiry)
            return
        self._step_down(self._deadline_message())

    def _deadline_message(self) -> str:
        return (
            f"no successful renewal within the {self.config.renew_deadline_seconds:g}s renew deadline "
            f"(the Lease can be taken over {self.config.duration_seconds}s after its last renewal)"
        )

    def _step_down(self, why: str) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        was_leading = self._leader.is_set()
        if was_leading:
            log.warning("stopped leading (%s): %s", self.config.identity, why)
        self._leader.clear()
        self._not_leader.set()
        if was_leading and self._on_stopped_leading is not None:
            self._on_stopped_leading()

    # ------------------------------------------------------------ API calls

    def _body(self, now: datetime, transitions: int, rv: str | None) -> dict[str, Any]:
        meta: dict[str, object] = {"name": self.config.name, "namespace": self.config.namespace}
        if rv:
            meta["resourceVersion"] = rv
        stamp = format_time(now)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.config.identity,
                "leaseDurationSeconds": self.config.duration_seconds,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }

    async def try_acquire_or_renew(self, now: datetime | None = None) -> bool:
        """One attempt (unbounded: :meth:`attempt` bounds it). ``now`` is stamped as renewTime: the
        time the attempt *started*, so a late answer never extends the Lease beyond what it claims."""
        cfg = self.config
        now = now or self._wall()
        try:
            current = await self.kube.get_lease(cfg.namespace, cfg.name)
        except NotFound:
            try:
                await self.kube.create_lease(cfg.namespace, self._body(now, 0, None))
                return True
            except Conflict:
                return False
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity")
        renew = parse_time(spec.get("renewTime"))
        duration = int(spec.get("leaseDurationSeconds") or cfg.duration_seconds)
        if not can_take(holder, renew, duration, cfg.identity, now):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == cfg.identity else 1)
        body = self._body(now, transitions, current["metadata"].get("resourceVersion"))
        if holder == cfg.identity and spec.get("acquireTime"):
            body["spec"]["acquireTime"] = spec["acquireTime"]
        try:
            await self.kube.replace_lease(cfg.namespace, cfg.name, body)
            return True
        except (Conflict, NotFound):
            return False

    async def attempt(self) -> bool:
        """One acquire-or-renew attempt, bounded by the renew deadline (as leader: by what is left of
        it); updates the leadership state. Never raises (except on cancellation)."""
        cfg = self.config
        started = self._clock()
        stamp = self._wall()
        leading = self.is_leader
        budget = (self._valid_until - started) if leading else cfg.renew_deadline_seconds
        ok = False
        if budget > 0:
            try:
                async with asyncio.timeout(budget):
                    ok = await self.try_acquire_or_renew(stamp)
            except TimeoutError:
                log.warning("leader election: no answer from the API server within %.1fs", budget)
            except KubeError as exc:
                log.warning("leader election: %s", exc)
            except Exception as exc:  # connection refused/reset and the like must not end the loop
                log.warning("leader election: %s: %s", type(exc).__name__, exc)
        if ok and self._clock() < started + cfg.renew_deadline_seconds:
            log.debug("renewed leader lease (%s, renewTime %s)", cfg.identity, format_time(stamp))
            self._became_leader(started)
            return True
        if ok:
            log.warning("leader election: the Lease was written too late (%.1fs) to act on", self._clock() - started)
        if self._leader.is_set() and self._clock() >= self._valid_until:
            self._step_down(self._deadline_message())
        return False

    async def run(self) -> None:
        """Loop forever: acquire or renew every retry period; stop acting at the renew deadline."""
        try:
            while True:
                await self.attempt()
                await asyncio.sleep(self.config.retry_period_seconds)
        finally:
            self._step_down("leader election stopped")

    async def release(self) -> None:
        """On graceful shutdown: expire our Lease so a standby takes over at once (bounded in time)."""
        if not self._ever_led:
            return
        self._step_down("shutting down")
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.renew_deadline_seconds):
                current = await self.kube.get_lease(cfg.namespace, cfg.name)
                if (current.get("spec") or {}).get("holderIdentity") == cfg.identity:
                    await self.kube.patch_lease(
                        cfg.namespace,
                        cfg.name,
                        {
                            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                            "spec": {"holderIdentity": None, "renewTime": None},
                        },
                    )
        except TimeoutError:
            log.warning("releasing leadership: no answer from the API server")
        except Exception as exc:
            log.warning("releasing leadership: %s", exc)
