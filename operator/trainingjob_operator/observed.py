"""The reconcile's inputs: what the operator observed of child Jobs, their pods and product Leases.

Products are ids and children are uids (docs/design.md, "Identity rule"): a Job is this
TrainingJob's only when its controller ownerReference carries this TrainingJob's uid, and what a
Job's pods say counts only for pods whose controller is that Job's uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from trainingjob_operator.reasons import Reason
from trainingjob_operator.termination import ProductReport


@dataclass(slots=True)
class ObservedJob:
    """What the operator needs to know of one of its child Jobs (and that Job's own pods).

    Not frozen: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    which was a third of a pass at 10,000 Jobs (bench/reconcile_bench.py). Treat it as read-only."""

    name: str
    uid: str
    product: str
    retry_round: str
    active: int = 0
    failed_pods: int = 0
    finished: Literal["Complete", "Failed"] | None = None
    reason: str = ""
    message: str = ""
    finished_at: datetime | None = None
    deleting: bool = False
    ttl_seconds: int | None = None
    report: ProductReport | None = None
    exit_code: int | None = None
    pod_succeeded: bool = False
    """A pod of this Job (by controller uid) exited 0 (restartPolicy Never: the Job will complete).
    The Job controller marks the Job Complete up to ~1 s later; the product is done already."""
    stuck: tuple[Reason, str, datetime] | None = None
    """(reason, message, since) when the Job's pod cannot start (CreateContainerConfigError, ...);
    ``since``: when the pod was scheduled, or later when its trouble was first seen."""
    locked: bool = False
    """A pod of this Job found the product locked in the output database (exit code 5, or a
    ``locked`` report), whichever pod ended last, or the Job's condition names exit code 5."""
    oom_killed: bool = False
    """The trainer container of the pod that ended last was OOMKilled (over its memory limit)."""
    pod_missing: bool = False
    """Finished, but no finished trainer pod of it observed yet (the pod watch lags the Job watch:
    a restart, an API outage) and none confirmed gone by a read of the API: not folded yet."""
    suspended: bool = False
    """``spec.suspend`` is true: a queueing system (Kueue) holds the Job until it admits it, or
    suspended it again to preempt it (its pods are deleted, not counted failed). The operator never
    suspends its Jobs itself (a suspended TrainingJob only stops launching new ones)."""

    @property
    def succeeded(self) -> bool:
        return self.finished == "Complete" or (self.finished is None and self.pod_succeeded)

    @property
    def unfinished(self) -> bool:
        return self.finished is None and not self.pod_succeeded

    @property
    def queued(self) -> bool:
        """Unfinished and suspended: waiting to be admitted (again); resumes in place, never relaunched."""
        return self.suspended and self.unfinished


@dataclass(frozen=True)
class ObservedLease:
    name: str
    holder: str | None
    renew_time: datetime | None
    duration_seconds: int
    resource_version: str = ""
    product: str | None = None

    def expired(self, now: datetime) -> bool:
        if not self.holder or self.renew_time is None:
            return True
        return self.renew_time + timedelta(seconds=self.duration_seconds) < now


@dataclass(frozen=True)
class UnchangedCheck:
    """The Job that finds products unchanged since their last model (``forecast-trainer unchanged``)."""

    name: str
    uid: str
    finished: Literal["Complete", "Failed"] | None = None
    pod_succeeded: bool = False
    unchanged: frozenset[int] | None = None
    """Indexes over the sorted product ids of the products to skip, from the pod's termination
    message (termination.parse_unchanged); None: no usable answer, train every product."""
    truncated: bool = False
    message: str = ""
    suspended: bool = False
    """Held by Kueue (like a product Job): the TrainingJob is Queued, not stuck."""
    stuck: tuple[Reason, str, datetime] | None = None
    """(reason, message, since) when the check's pod cannot start (a missing DSN Secret, a bad image)."""

    @property
    def done(self) -> bool:
        return self.finished is not None or self.pod_succeeded

    @property
    def queued(self) -> bool:
        return self.suspended and not self.done


@dataclass(frozen=True)
class Observed:
    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    """This TrainingJob's child Jobs (owner uid) by product id."""
    leases: dict[str, ObservedLease] = field(default_factory=dict)
    """Product Leases in the namespace by Lease name."""
    busy_elsewhere: frozenset[str] = frozenset()
    """Product ids with an unfinished Job not owned by this TrainingJob in the namespace, or whose
    Job name is taken by such a Job (a re-created TrainingJob of the same name)."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Product -> message: the API server refused this TrainingJob's Job for it (last attempt)."""
    unchanged_check: UnchangedCheck | None = None
    job_names: dict[str, str] = field(default_factory=dict)
    """Job name -> product annotation of every product Job in the namespace (any owner): a Job
    name held by another product's Job (a hash collision) is not this product's
    (builders.free_job_name)."""
    locked_relaunches: dict[str, int] = field(default_factory=dict)
    """Product -> how many times it was relaunched after finding its lock held (the daemon's memory;
    reconcile.locked_retry_delay doubles the wait with each)."""
    shards: ObservedShards | None = None
    """Shard mode only: the shard Jobs and the discovery Job."""
    quota_exceeded: dict[str, str] = field(default_factory=dict)
    """Product -> message: a ResourceQuota refused its Job's create and the back-off has not run out
    (controller.QuotaBackoff): it waits (QuotaExceeded) and no product launches meanwhile."""


# ---------------------------------------------------------------- shard mode (docs/design.md "Scale")


@dataclass(frozen=True)
class ShardPod:
    """A finished pod of a shard Job (by the Job's uid), for its completion index."""

    index: int
    uid: str
    finished_at: datetime | None
    exit_code: int | None
    message: str | None
    """The trainer container's termination message (the shard report)."""
    reason: str = ""
    """Why it ended when not by the trainer's own exit: OOMKilled, DeadlineExceeded, Evicted, ..."""


@dataclass(frozen=True)
class ObservedShardJob:
    """One round's Indexed Job: R and S from its annotations, the Job controller's per-index record
    (completedIndexes, failedIndexes) and the finished pods of each index."""

    name: str
    uid: str
    round_id: str
    retry_round: str
    indexes: str
    """R, compressed ranges of global indexes (the Job's training.forecast.dev/indexes annotation)."""
    size: int
    completions: int
    parallelism: int
    suspended: bool = False
    completed: frozenset[int] = frozenset()
    failed: frozenset[int] = frozenset()
    active: int = 0
    finished: Literal["Complete", "Failed"] | None = None
    reason: str = ""
    message: str = ""
    finished_at: datetime | None = None
    deleting: bool = False
    ttl_seconds: int | None = None
    pods: tuple[ShardPod, ...] = ()

    @property
    def unfinished(self) -> bool:
        return self.finished is None


@dataclass(frozen=True)
class ObservedDiscovery:
    """The Job of ``forecast-trainer discover`` (allProducts)."""

    name: str
    uid: str
    finished: Literal["Complete", "Failed"] | None = None
    message: str = ""
    """The pod's termination message (the discover report), or the Job's failure message."""
    finished_at: datetime | None = None
    suspended: bool = False


@dataclass(frozen=True)
class ObservedShards:
    """What shard mode reads besides the TrainingJob: its shard Jobs (owner uid) and discovery Job."""

    jobs: tuple[ObservedShardJob, ...] = ()
    discovery: ObservedDiscovery | None = None
