"""Pure reconcile: (TrainingJob, observed Jobs, observed Leases, now) -> actions + new status.

Level-triggered and idempotent: the same observed state always yields the same plan, and
the plan never depends on the operator's memory. Products are identified by their index in
``spec.products``; ``status.succeededIndexes``/``failedIndexes`` are the durable record that
survives child Job cleanup (like an Indexed Job's ``completedIndexes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from trainingjob_operator import builders
from trainingjob_operator.api import ProductFailure, TrainingJob, TrainingJobStatus
from trainingjob_operator.status import (
    add_failure,
    add_result,
    compress_indexes,
    get_condition,
    max_failed_allowed,
    parse_indexes,
    progress_text,
    set_condition,
)
from trainingjob_operator.termination import ProductReport


@dataclass(frozen=True)
class ObservedJob:
    """What the operator needs to know of one child Job (and its last pod)."""

    name: str
    index: int
    retry_round: str
    active: int = 0
    failed_pods: int = 0
    finished: Literal["Complete", "Failed"] | None = None
    reason: str = ""
    message: str = ""
    deleting: bool = False
    ttl_seconds: int | None = None
    report: ProductReport | None = None
    exit_code: int | None = None
    pod_succeeded: bool = False
    """The trainer pod exited 0 (restartPolicy Never: the Job will complete). The Job controller marks
    the Job Complete up to ~1 s later (it batches pod updates); the product is done already."""

    @property
    def succeeded(self) -> bool:
        return self.finished == "Complete" or (self.finished is None and self.pod_succeeded)

    @property
    def running(self) -> bool:
        return self.finished is None and not self.pod_succeeded


@dataclass(frozen=True)
class ObservedLease:
    name: str
    holder: str | None
    renew_time: datetime | None
    duration_seconds: int
    resource_version: str = ""

    def expired(self, now: datetime) -> bool:
        if not self.holder or self.renew_time is None:
            return True
        return self.renew_time + timedelta(seconds=self.duration_seconds) < now


@dataclass(frozen=True)
class Observed:
    jobs: dict[int, ObservedJob] = field(default_factory=dict)
    """This TrainingJob's child Jobs by product index."""
    leases: dict[str, ObservedLease] = field(default_factory=dict)
    """Product Leases in the namespace by Lease name."""
    foreign_active: frozenset[str] = frozenset()
    """Product hashes with an unfinished Job owned by another TrainingJob in the namespace."""


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Launch:
    """Acquire the product's Lease (create, or take over an expired one), then create its Job."""

    index: int
    product: str
    takeover: ObservedLease | None = None


@dataclass(frozen=True)
class RenewLease:
    lease: ObservedLease


@dataclass(frozen=True)
class ReleaseLease:
    lease: ObservedLease


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class SetJobTTL:
    name: str
    seconds: int


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = Launch | RenewLease | ReleaseLease | DeleteJob | SetJobTTL | Event


@dataclass(frozen=True)
class Plan:
    actions: list[Action]
    status: TrainingJobStatus


@dataclass(frozen=True)
class Settings:
    lease_duration_seconds: int = 60
    renew_fraction: float = 1 / 3
    """Renew a held Lease once this fraction of its duration has passed since its renewTime."""
    max_concurrent_actions: int = 16
    """API actions of one pass in flight at once."""


# ---------------------------------------------------------------- failure classes


def classify_failure(job: ObservedJob) -> tuple[str, str]:
    """(reason, message) for a failed product Job; invalid data is never retried."""
    report = job.report
    detail = (report.message if report and report.message else "") or job.message
    if (
        job.reason == "PodFailurePolicy"
        or job.exit_code == builders.EXIT_INVALID_DATA
        or (report is not None and report.status == "invalid")
    ):
        why = report.reason if report and report.reason else "InvalidData"
        return "InvalidData", f"{why}: {detail}".strip(": ") if detail else why
    if job.reason == "DeadlineExceeded":
        return "DeadlineExceeded", detail or "the product pod ran past activeDeadlineSeconds"
    if job.reason == "BackoffLimitExceeded":
        tail = f"; last error: {detail}" if detail else ""
        code = f" (last exit code {job.exit_code})" if job.exit_code is not None else ""
        return "RetriesExhausted", f"failed {job.failed_pods} time(s){code}{tail}"
    return job.reason or "Failed", detail or "the product Job failed"


# ---------------------------------------------------------------- reconcile


def _lease_for(observed: Observed, product: str) -> ObservedLease | None:
    return observed.leases.get(builders.lease_name(product))


def reconcile(tj: TrainingJob, observed: Observed, now: datetime, settings: Settings = Settings()) -> Plan:
    spec = tj.spec
    old = tj.status
    st = old.model_copy(deep=True)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    me = builders.holder_identity(tj)
    total = len(spec.products)
    actions: list[Action] = []

    succeeded = {i for i in parse_indexes(st.succeeded_indexes) if i < total}
    failed = {i for i in parse_indexes(st.failed_indexes) if i < total}

    # Retry failed products: a new value of the retry-failed annotation starts a new round.
    retry_round = st.retry_failed or ""
    wanted_round = tj.annotations.get(builders.ANNOTATION_RETRY_FAILED, "")
    if wanted_round and wanted_round != retry_round:
        retried = sorted(failed)
        failed = set()
        retried_products = {spec.products[i] for i in retried}
        st.failures = [f for f in st.failures if f.product not in retried_products]
        st.retry_failed = retry_round = wanted_round
        st.completion_time = None
        if retried:
            actions.append(Event("Normal", "RetryFailed", f"Retrying {len(retried)} failed product(s)"))

    # Fold finished Jobs of the current round into the durable record (once: then they're indexed).
    active: set[int] = set()
    blocked_by_old_job: set[int] = set()
    for index, job in sorted(observed.jobs.items()):
        if index >= total:
            continue
        product = spec.products[index]
        if job.retry_round != retry_round and not job.succeeded:
            # A failed Job of an earlier round: it must go before the product can run again.
            # (Succeeded Jobs of earlier rounds stay: their products are not retried.)
            if job.running and not job.deleting:
                active.add(index)  # still running: let it finish, count it as active
                continue
            if not job.deleting:
                actions.append(DeleteJob(job.name))
            if index not in succeeded:
                blocked_by_old_job.add(index)
            continue
        if job.deleting:
            if job.running and index not in succeeded | failed:
                blocked_by_old_job.add(index)
            continue
        if job.running:
            if index not in succeeded | failed:
                active.add(index)
            continue
        if index not in succeeded | failed:
            if job.succeeded:
                succeeded.add(index)
                r = job.report
                st.results = add_result(
                    st.results,
                    (r.metric if r and r.metric else spec.tuning.metric),
                    r.error if r else None,
                    r.baseline_error if r else None,
                    r.beats_baseline if r else None,
                    bool(r and r.tuned),
                )
            else:
                reason, message = classify_failure(job)
                failed.add(index)
                attempts = max(job.failed_pods, 1)
                st.failures = add_failure(
                    st.failures,
                    ProductFailure(product=product, reason=reason, message=message[:512], attempts=attempts),
                )
                actions.append(Event("Warning", "ProductFailed", f"{product}: {reason}: {message}"[:1024]))

    # Finished Jobs whose product is on record get the cleanup TTL (only then: status must survive them).
    if spec.ttl_seconds_after_finished is not None:
        for index, job in sorted(observed.jobs.items()):
            recorded = index in succeeded or index in failed
            current = job.retry_round == retry_round or job.succeeded
            if job.finished and recorded and job.ttl_seconds is None and current:
                actions.append(SetJobTTL(job.name, spec.ttl_seconds_after_finished))

    # Leases: renew what our running Jobs hold, release what finished products still hold.
    for index in range(total):
        product = spec.products[index]
        lease = _lease_for(observed, product)
        if lease is None or lease.holder != me:
            continue
        if index in active:
            due = lease.renew_time is None or (now - lease.renew_time).total_seconds() >= (
                lease.duration_seconds * settings.renew_fraction
            )
            if due:
                actions.append(RenewLease(lease))
        elif index in succeeded or index in failed:
            actions.append(ReleaseLease(lease))

    done = succeeded | failed
    allowed = max_failed_allowed(spec.max_failed_products, total)
    too_many_failed = allowed is not None and len(failed) > allowed
    pending = [i for i in range(total) if i not in done and i not in active]

    # Which pending products are blocked by another TrainingJob's Lease?
    waiting: set[int] = set()
    takeover: dict[int, ObservedLease] = {}
    for index in pending:
        product = spec.products[index]
        lease = _lease_for(observed, product)
        if lease is None or lease.holder == me:
            continue
        busy_elsewhere = builders.product_hash(product) in observed.foreign_active
        if lease.expired(now) and not busy_elsewhere:
            takeover[index] = lease
        else:
            waiting.add(index)

    # Launch, in product order, up to parallelism.
    launched: list[str] = []
    if not spec.suspend and not too_many_failed:
        capacity = spec.parallelism - len(active)
        for index in pending:
            if capacity <= 0:
                break
            if index in waiting or index in blocked_by_old_job:
                continue
            product = spec.products[index]
            actions.append(Launch(index, product, takeover.get(index)))
            launched.append(product)
            active.add(index)
            capacity -= 1
    if launched:
        shown = ", ".join(launched[:5]) + (f" and {len(launched) - 5} more" if len(launched) > 5 else "")
        actions.append(Event("Normal", "Launched", f"Started {len(launched)} product Job(s): {shown}"))
    if waiting and len(waiting) > old.products.waiting:
        names = ", ".join(spec.products[i] for i in sorted(waiting)[:5])
        actions.append(
            Event(
                "Normal",
                "WaitingForLease",
                f"{len(waiting)} product(s) wait for another TrainingJob: {names}",
            )
        )

    # Counts and record.
    n_active = len(active)
    n_waiting = len(waiting - active)
    st.succeeded_indexes = compress_indexes(succeeded)
    st.failed_indexes = compress_indexes(failed)
    st.products.total = total
    st.products.succeeded = len(succeeded)
    st.products.failed = len(failed)
    st.products.active = n_active
    st.products.waiting = n_waiting
    st.products.pending = max(total - len(done) - n_active - n_waiting, 0)
    st.progress = progress_text(len(succeeded), len(failed), total)
    st.parallelism = spec.parallelism
    st.selector = builders.selector(tj)
    st.observed_generation = tj.generation
    if st.start_time is None and (launched or n_active or done):
        st.start_time = stamp

    # Phase and conditions.
    finished_all = len(done) == total
    stopping = too_many_failed and n_active == 0
    gen = tj.generation
    conds = st.conditions
    if finished_all or stopping:
        if too_many_failed or len(succeeded) == 0:
            phase = "Failed"
            reason = "MaxFailedProductsExceeded" if too_many_failed else "NoProductTrained"
            limit = f" (maxFailedProducts allows {allowed})" if too_many_failed else ""
            msg = f"{len(failed)} of {total} products failed{limit}; {len(succeeded)} trained"
            conds = set_condition(conds, "Failed", True, reason, msg, stamp, gen)
            conds = set_condition(conds, "Complete", False, reason, msg, stamp, gen)
        else:
            phase = "Succeeded"
            msg = f"{len(succeeded)} of {total} products trained" + (f"; {len(failed)} failed" if failed else "")
            conds = set_condition(conds, "Complete", True, "AllProductsFinished", msg, stamp, gen)
            conds = set_condition(conds, "Failed", False, "AllProductsFinished", msg, stamp, gen)
        conds = set_condition(conds, "Running", False, "Finished", msg, stamp, gen)
        conds = set_condition(conds, "Suspended", False, "Finished", "", stamp, gen)
        if st.completion_time is None or (old.phase not in ("Succeeded", "Failed")):
            st.completion_time = stamp
            actions.append(
                Event(
                    "Normal" if phase == "Succeeded" else "Warning",
                    "Complete" if phase == "Succeeded" else "Failed",
                    msg,
                )
            )
    else:
        st.completion_time = None
        counts = f"{len(succeeded)} trained, {len(failed)} failed, {n_active} active, {n_waiting} waiting of {total}"
        if too_many_failed:
            phase = "Running"
            conds = set_condition(
                conds,
                "Running",
                True,
                "MaxFailedProductsExceeded",
                f"Too many failed products (limit {allowed}); waiting for {n_active} running product(s) to finish",
                stamp,
                gen,
            )
        elif spec.suspend:
            phase = "Suspended"
            conds = set_condition(conds, "Running", False, "Suspended", counts, stamp, gen)
        elif n_active or done:
            phase = "Running"
            conds = set_condition(conds, "Running", True, "ProductsTraining", counts, stamp, gen)
        else:
            phase = "Pending"
            conds = set_condition(
                conds, "Running", False, "WaitingForLeases" if n_waiting else "Pending", counts, stamp, gen
            )
        suspended_msg = f"No new products start; {n_active} running product(s) finish" if spec.suspend else ""
        conds = set_condition(
            conds,
            "Suspended",
            spec.suspend,
            "SuspendedByUser" if spec.suspend else "NotSuspended",
            suspended_msg,
            stamp,
            gen,
        )
        conds = set_condition(conds, "Complete", False, "InProgress", counts, stamp, gen)
        conds = set_condition(conds, "Failed", False, "InProgress", counts, stamp, gen)
        was = get_condition(old.conditions, "Suspended")
        was_suspended = was is not None and was.status == "True"
        if spec.suspend != was_suspended:
            if spec.suspend:
                actions.append(Event("Normal", "Suspended", suspended_msg))
            elif was is not None:
                actions.append(Event("Normal", "Resumed", "New products start again"))
    st.phase = phase  # type: ignore[assignment]
    st.conditions = conds
    return Plan(actions=actions, status=st)
