"""Uncached reads of the pending pods of Jobs that may be stuck (a pod that cannot start), bounded.

The operator's pod cache holds only finished pods (the watch's field selector). A Job whose pod is
not ready after a while (observe.may_be_stuck) gets its pods read straight from the API, but:

- only scheduled pods (``spec.nodeName`` set): a pod waiting for the scheduler or an autoscaler is
  not stuck, and a namespace of 500 Pending Jobs waiting for capacity costs no pod payload;
- at most every :data:`PROBE_INTERVAL_SECONDS` per Job (a pass in between reuses the last answer:
  the stuck-pod wait is minutes, the interval seconds);
- concurrently, at most :data:`PROBE_CONCURRENCY` reads at once (they were sequential: 500 Pending
  Jobs x 10 ms per list was 5 s per pass; bench/probe_bench.py).

It also remembers when each pod's trouble (observe's stuck reasons, or ErrImagePull) was first seen,
so the stuck clock starts then, not at pod creation. That memory is the operator's, not the API's: a
restarted operator starts the clock again (it waits longer, never less).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from trainingjob_operator.builders import JOB_UID_LABEL
from trainingjob_operator.kube import Obj
from trainingjob_operator.reasons import POD_TROUBLE_REASONS

PROBE_INTERVAL_SECONDS = 10.0
PROBE_CONCURRENCY = 16
SCHEDULED_PENDING_PODS = "status.phase=Pending,spec.nodeName!="
"""Field selector of the probe: pods bound to a node that have not started."""


class PodLister(Protocol):
    async def list_pods(self, namespace: str, label_selector: str, field_selector: str | None = None) -> list[Obj]: ...


@dataclass
class _Probe:
    at: datetime
    pods: list[Obj]


@dataclass
class PodProbes:
    """Per-TrainingJob probe state: the last answer per Job uid and when each pod's trouble began."""

    interval_seconds: float = PROBE_INTERVAL_SECONDS
    concurrency: int = PROBE_CONCURRENCY
    _last: dict[str, _Probe] = field(default_factory=dict)
    _first_seen: dict[str, datetime] = field(default_factory=dict)

    @property
    def first_seen(self) -> Mapping[str, datetime]:
        """Pod uid -> when its trouble (a stuck waiting reason or ErrImagePull) was first seen."""
        return self._first_seen

    def _due(self, uid: str, now: datetime) -> bool:
        last = self._last.get(uid)
        return last is None or (now - last.at).total_seconds() >= self.interval_seconds

    async def read(
        self, kube: PodLister, namespace: str, job_uids: Iterable[str], now: datetime
    ) -> dict[str, list[Obj]]:
        """Scheduled pending pods by Job uid, for ``job_uids`` (the Jobs that may be stuck now)."""
        wanted = list(dict.fromkeys(job_uids))
        self._last = {uid: probe for uid, probe in self._last.items() if uid in wanted}
        due = [uid for uid in wanted if self._due(uid, now)]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def probe(uid: str) -> None:
            async with semaphore:
                pods = await kube.list_pods(namespace, f"{JOB_UID_LABEL}={uid}", field_selector=SCHEDULED_PENDING_PODS)
            self._last[uid] = _Probe(now, pods)

        await asyncio.gather(*(probe(uid) for uid in due))
        out = {uid: self._last[uid].pods for uid in wanted if uid in self._last}
        self._remember(out.values(), now)
        return out

    def _remember(self, answers: Iterable[list[Obj]], now: datetime) -> None:
        troubled: set[str] = set()
        for pods in answers:
            for pod in pods:
                uid = str((pod.get("metadata") or {}).get("uid") or "")
                if uid and _trouble(pod):
                    troubled.add(uid)
                    self._first_seen.setdefault(uid, now)
        self._first_seen = {uid: t for uid, t in self._first_seen.items() if uid in troubled}


def _trouble(pod: Obj) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in POD_TROUBLE_REASONS:
            return True
    return False
