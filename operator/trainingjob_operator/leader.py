"""Leader election through a coordination.k8s.io Lease (client-go semantics).

Several operator replicas run; one holds the Lease ``<namespace>/<name>`` and reconciles, the
others watch but do nothing until the Lease expires (the leader died or stopped renewing),
then one of them takes it over with an optimistic-concurrency update.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from trainingjob_operator.builders import format_time
from trainingjob_operator.kube import Conflict, Kube, KubeError, NotFound
from trainingjob_operator.observe import parse_time

log = logging.getLogger("trainingjob_operator.leader")


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str = "trainingjob-operator-leader"
    duration_seconds: int = 15
    renew_every_seconds: float = 5.0
    identity: str = field(
        default_factory=lambda: os.environ.get("TJO_IDENTITY") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    )
    """This replica's name in the Lease (the pod name in a Deployment: TJO_IDENTITY)."""


def can_take(holder: str | None, renew: datetime | None, duration: int, me: str, now: datetime) -> bool:
    """Pure rule: the Lease is ours, free, or expired."""
    if not holder or holder == me or renew is None:
        return True
    return renew + timedelta(seconds=duration) < now


class LeaderElector:
    """Keeps trying to hold the leader Lease; ``is_leader`` says whether this replica may act."""

    def __init__(self, kube: Kube, config: LeaseConfig) -> None:
        self.kube = kube
        self.config = config
        self._leader = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_leader(self) -> None:
        await self._leader.wait()

    def _body(self, now: datetime, transitions: int, rv: str | None) -> dict[str, object]:
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

    async def try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now = datetime.now(UTC)
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
            body["spec"]["acquireTime"] = spec["acquireTime"]  # type: ignore[index]
        try:
            await self.kube.replace_lease(cfg.namespace, cfg.name, body)
            return True
        except (Conflict, NotFound):
            return False

    async def run(self) -> None:
        """Loop forever: acquire or renew; step down when renewal fails past the deadline."""
        last_ok: datetime | None = None
        while True:
            try:
                ok = await self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("leader election: %s", exc)
                ok = False
            now = datetime.now(UTC)
            if ok:
                last_ok = now
                if not self._leader.is_set():
                    log.info("became leader (%s)", self.config.identity)
                    self._leader.set()
            elif self._leader.is_set() and (
                # Step down before the Lease can expire for others (client-go's renew deadline).
                last_ok is None or now - last_ok > timedelta(seconds=self.config.duration_seconds * 2 / 3)
            ):
                log.warning("lost leadership (%s)", self.config.identity)
                self._leader.clear()
            await asyncio.sleep(self.config.renew_every_seconds)

    async def release(self) -> None:
        """On graceful shutdown: expire our Lease so a standby takes over at once."""
        if not self.is_leader:
            return
        self._leader.clear()
        cfg = self.config
        try:
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
        except KubeError as exc:
            log.warning("releasing leadership: %s", exc)
