"""What a reconcile pass decides: API actions and events, and the plan that carries them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainingjob_operator.api import TrainingJobStatus
from trainingjob_operator.builders import ShardRound
from trainingjob_operator.observed import ObservedLease


@dataclass(frozen=True)
class Launch:
    """Acquire the product's Lease (create, or take over an expired one), then create its Job.
    The Lease is released again when the Job is not created."""

    product: str
    takeover: ObservedLease | None = None
    job_name: str = ""
    """The Job's name (builders.free_job_name: salted when another product's Job holds the plain
    one); empty: builders.job_name."""


@dataclass(frozen=True)
class RenewLease:
    lease: ObservedLease


@dataclass(frozen=True)
class ReleaseLease:
    lease: ObservedLease


@dataclass(frozen=True)
class ReclaimLease:
    """Create the product's Lease again for its unfinished Job of ours: the Lease is gone (deleted by
    hand or by a GitOps prune, or a colliding claim that had taken its name went with its owner)
    while the Job ran or waited (Kueue, a pod that cannot start). A create, so never someone
    else's Lease: when the name is taken, nothing happens."""

    product: str


@dataclass(frozen=True)
class DeleteJob:
    """Delete a child Job by name, only if it is still the one observed (uid precondition), in the
    foreground: the Job stays (and keeps its product busy) until its pods are gone."""

    name: str
    uid: str = ""


@dataclass(frozen=True)
class SetJobTTL:
    name: str
    seconds: int


@dataclass(frozen=True)
class CreateUnchangedCheck:
    """Create the product-list ConfigMap and the Job of ``forecast-trainer unchanged``."""

    retry_round: str = ""
    """The round whose run key the check gets: a model stored under it is this run's, not unchanged."""


@dataclass(frozen=True)
class CreateDiscovery:
    """Create the Job of ``forecast-trainer discover`` (allProducts)."""


@dataclass(frozen=True)
class CreateShardRound:
    """Create the products ConfigMap (list mode) and the Indexed Job of a round (a repeat is a 409)."""

    round: ShardRound
    suspend: bool = False


@dataclass(frozen=True)
class PatchJob:
    """Patch a shard Job (parallelism from kubectl scale, suspend), only if still the one observed."""

    name: str
    uid: str
    patch: dict[str, object]


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = (
    Launch
    | RenewLease
    | ReleaseLease
    | ReclaimLease
    | DeleteJob
    | SetJobTTL
    | CreateUnchangedCheck
    | CreateDiscovery
    | CreateShardRound
    | PatchJob
    | Event
)


@dataclass(frozen=True)
class Plan:
    actions: list[Action]
    status: TrainingJobStatus
    waiting: dict[str, str] = field(default_factory=dict)
    """Products that cannot start now -> why (for metrics: status keeps only the count)."""
    new_failures: dict[str, str] = field(default_factory=dict)
    """Products this pass recorded failed -> reason (for metrics: status keeps only the last 20)."""
    relaunched_locked: frozenset[str] = frozenset()
    """Products whose Job found them locked in the output database and is deleted to launch again
    (the daemon counts these relaunches: Observed.locked_relaunches sets the next wait)."""
