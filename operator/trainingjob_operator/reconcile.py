"""Pure reconcile: (TrainingJob, observed children, now) -> actions + new status.

Level-triggered and idempotent: the same observed state always yields the same plan, and the plan
never depends on the operator's memory. Identity rule (docs/design.md): a product is its id, never
its position, and a child is its uid, never its name. ``status.succeededIndexes``/``failedIndexes``
are a compact record over the products *sorted by id* (``spec.products`` is a set: its order means
nothing, and a GitOps tool may re-sort it), so the record survives reordering and child cleanup.

:func:`reconcile` reads as a table of contents: one pure helper per phase, all sharing one
per-pass :class:`PassState` (cf. the Job controller's ``syncJobCtx``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from trainingjob_operator import builders
from trainingjob_operator.actions import (
    Action,
    CreateUnchangedCheck,
    DeleteJob,
    Event,
    Launch,
    Plan,
    ReclaimLease,
    ReleaseLease,
    RenewLease,
    SetJobTTL,
)
from trainingjob_operator.api import ProductFailure, TrainingJob, TrainingJobStatus
from trainingjob_operator.conditions import launches_stopped_by_rejection, phase_and_conditions
from trainingjob_operator.failures import classify_failure, is_locked
from trainingjob_operator.observed import Observed, ObservedJob, ObservedLease, UnchangedCheck
from trainingjob_operator.reasons import Reason
from trainingjob_operator.status import (
    add_failure,
    add_result,
    compress_indexes,
    max_failed_allowed,
    parse_indexes,
    progress_text,
)

__all__ = [
    "Action",
    "CreateUnchangedCheck",
    "DeleteJob",
    "Event",
    "Launch",
    "Observed",
    "ObservedJob",
    "ObservedLease",
    "PassState",
    "Plan",
    "ReclaimLease",
    "ReleaseLease",
    "RenewLease",
    "SetJobTTL",
    "Settings",
    "classify_failure",
    "read_record",
    "read_skipped",
    "reconcile",
    "record_order",
]

INDEX_ORDER: Literal["Sorted"] = "Sorted"
"""status.indexOrder: the indexes refer to the products sorted by id (code point order)."""


@dataclass(frozen=True)
class Settings:
    lease_duration_seconds: int = 60
    renew_fraction: float = 1 / 3
    """Renew a held Lease once this fraction of its duration has passed since its renewTime."""
    max_concurrent_actions: int = 16
    """API actions of one pass in flight at once."""
    locked_retry_seconds: int = 15
    """After a trainer found its product locked in the output database, relaunch this much later;
    doubled for each relaunch of the product that found it locked again, up to ``locked_retry_max_seconds``
    (the holder may be a trainer whose node died: the database frees its lock within ~1 minute)."""
    locked_retry_max_seconds: int = 600
    stuck_pod_seconds: int = 120
    """A product pod that cannot start (missing Secret, bad image) fails its product after this long."""
    pod_report_grace_seconds: int = 60
    """A finished Job whose finished pod is not observed (nor confirmed gone) is folded only this
    long after it finished, from its condition alone; until then it holds its slot and Lease."""


@dataclass
class PassState:
    """Everything one pass derives, phase by phase (products are ids throughout)."""

    tj: TrainingJob
    observed: Observed
    now: datetime
    settings: Settings
    status: TrainingJobStatus
    me: str
    stamp: str
    retry_round: str
    succeeded: set[str]
    failed: set[str]
    skipped: set[str] = field(default_factory=set)
    """Of ``succeeded``: skipped as unchanged since their last model (no training, no results)."""
    active: set[str] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)
    """Products whose unfinished Job is suspended by a queueing system (Kueue): not active, but their
    Job exists, holds its parallelism slot and the product's Lease, and resumes when admitted."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Products that cannot start now -> why (another TrainingJob, a lock, a pod that cannot start)."""
    blocked: set[str] = field(default_factory=set)
    """Products with an unfinished Job of their own that must go first (old round, being deleted)."""
    takeover: dict[str, ObservedLease] = field(default_factory=dict)
    stalled: list[tuple[Reason, str]] = field(default_factory=list)
    """(reason, message) of problems only a person can fix (rejected Jobs, pods that cannot start)."""
    launched: set[str] = field(default_factory=set)
    new_failures: dict[str, str] = field(default_factory=dict)
    """Products recorded failed by this pass -> reason."""
    stuck: set[str] = field(default_factory=set)
    """Products whose pod cannot start: not active, but they hold their parallelism slot (a missing
    Secret would otherwise start every product, each stuck the same way)."""
    relaunched_locked: set[str] = field(default_factory=set)
    """Products whose locked Job this pass deletes to launch again (the daemon counts them)."""
    check_queued: bool = False
    """The unchanged check's Job is held by Kueue: the TrainingJob is Queued (not merely Pending)."""
    actions: list[Action] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.succeeded) + len(self.failed)

    def recorded(self, product: str) -> bool:
        return product in self.succeeded or product in self.failed

    def running(self, product: str) -> bool:
        """The product has an unfinished Job of its own: training (active) or queued."""
        return product in self.active or product in self.queued


# ---------------------------------------------------------------- the durable record


def record_order(products: Iterable[str]) -> list[str]:
    """The order status indexes refer to: products sorted by id."""
    return sorted(set(products))


def read_record(tj: TrainingJob) -> tuple[set[str], set[str]]:
    """(succeeded, failed) product ids from status indexes.

    Indexes written before ``indexOrder`` existed refer to ``spec.products`` order (then immutable).
    """
    order = record_order(tj.spec.products) if tj.status.index_order == INDEX_ORDER else tj.spec.products
    total = len(order)

    def ids(text: str) -> set[str]:
        return {order[i] for i in parse_indexes(text) if i < total}

    return ids(tj.status.succeeded_indexes), ids(tj.status.failed_indexes)


def read_skipped(tj: TrainingJob) -> set[str]:
    if tj.status.index_order != INDEX_ORDER or not tj.status.skipped_indexes:
        return set()
    order = record_order(tj.spec.products)
    return {order[i] for i in parse_indexes(tj.status.skipped_indexes) if i < len(order)}


def write_record(st: PassState) -> None:
    order = record_order(st.tj.spec.products)
    position = {p: i for i, p in enumerate(order)}
    st.status.succeeded_indexes = compress_indexes(position[p] for p in st.succeeded)
    st.status.failed_indexes = compress_indexes(position[p] for p in st.failed)
    st.status.skipped_indexes = compress_indexes(position[p] for p in st.skipped & st.succeeded)
    st.status.index_order = INDEX_ORDER


# ---------------------------------------------------------------- phases


def start_retry_round(st: PassState) -> None:
    """A new value of the retry-failed annotation starts a round that retries the failed products."""
    wanted = st.tj.annotations.get(builders.ANNOTATION_RETRY_FAILED, "")
    if not wanted or wanted == st.retry_round:
        return
    retried = st.failed
    st.failed = set()
    st.status.failures = [f for f in st.status.failures if f.product not in retried]
    st.status.retry_failed = st.retry_round = wanted
    st.status.completion_time = None
    if retried:
        st.actions.append(Event("Normal", "RetryFailed", f"Retrying {len(retried)} failed product(s)"))


def _record_success(st: PassState, job: ObservedJob) -> None:
    st.succeeded.add(job.product)
    r = job.report
    if r is not None and r.status == "skipped":
        st.skipped.add(job.product)  # a current model already exists: nothing to add to the results
        return
    metric = r.metric if r and r.metric else st.tj.spec.tuning.metric
    st.status.results = add_result(
        st.status.results,
        metric,
        r.error if r else None,
        r.baseline_error if r else None,
        r.beats_baseline if r else None,
        bool(r and r.tuned),
        r.family if r else None,
        r.beats_naive if r else None,
        r.uncertain if r else None,
        r.champion if r else None,
        r.tracking if r else None,
    )


def _record_failure(st: PassState, product: str, reason: Reason, message: str, attempts: int) -> None:
    st.failed.add(product)
    st.new_failures[product] = reason.value
    failure = ProductFailure(product=product, reason=reason.value, message=message[:512], attempts=attempts)
    st.status.failures = add_failure(st.status.failures, failure)
    st.actions.append(Event("Warning", "ProductFailed", f"{product}: {reason}: {message}"[:1024]))


def _fold_current(st: PassState, job: ObservedJob) -> None:
    """A Job of the current round: running, finished (record it once), locked or stuck."""
    product = job.product
    if job.deleting:
        if job.unfinished and not st.recorded(product):
            st.blocked.add(product)
        return
    if job.unfinished:
        if st.recorded(product):
            return  # recorded from its pod; the Job controller has not marked the Job finished yet
        if job.queued:
            st.queued.add(product)
        elif job.stuck is not None:
            _fold_stuck(st, job)
        else:
            st.active.add(product)
        return
    if st.recorded(product):
        return
    if job.pod_missing and not _report_overdue(st, job):
        st.active.add(product)  # its pod's exit code and report are on their way: fold them then
        return
    if job.succeeded:
        if job.report is not None and job.report.status in ("trained", "skipped"):
            _record_success(st, job)
        else:
            found = f"status {job.report.status!r}" if job.report else "no entry for it"
            _record_failure(
                st,
                product,
                Reason.MISSING_REPORT,
                f"the trainer exited 0 but its termination message has {found}; no model is recorded",
                max(job.failed_pods, 0) + 1,
            )
        return
    if is_locked(job):
        _fold_locked(st, job)
        return
    reason, message = classify_failure(job)
    _record_failure(st, product, reason, message, max(job.failed_pods, 1))


def _report_overdue(st: PassState, job: ObservedJob) -> bool:
    """The finished pod of a finished Job is past due: fold the Job from its condition alone."""
    grace = timedelta(seconds=st.settings.pod_report_grace_seconds)
    return job.finished_at is None or st.now >= job.finished_at + grace


def locked_retry_delay(settings: Settings, relaunches: int) -> float:
    """Seconds before relaunching a product found locked, after ``relaunches`` earlier relaunches
    that found it locked too: 15, 30, 60, ... up to 10 minutes."""
    return float(min(settings.locked_retry_seconds * 2 ** min(relaunches, 16), settings.locked_retry_max_seconds))


def _fold_locked(st: PassState, job: ObservedJob) -> None:
    """The trainer found the product locked in the output database (another namespace trains it):
    wait (longer each time it was locked again), then delete the Job and launch again."""
    delay = locked_retry_delay(st.settings, st.observed.locked_relaunches.get(job.product, 0))
    due = job.finished_at is None or st.now >= job.finished_at + timedelta(seconds=delay)
    if due:
        st.actions.append(DeleteJob(job.name, job.uid))
        st.blocked.add(job.product)
        st.relaunched_locked.add(job.product)
    st.waiting[job.product] = "ProductLocked"


def _fold_stuck(st: PassState, job: ObservedJob) -> None:
    """A pod that cannot start (CreateContainerConfigError, image errors): not active; a person must
    act. Past ``stuck_pod_seconds`` its product fails and the Job goes."""
    assert job.stuck is not None
    reason, message, since = job.stuck
    st.stalled.append((reason, f"{job.product}: {message}"))
    if since is not None and st.now >= since + timedelta(seconds=st.settings.stuck_pod_seconds):
        _record_failure(
            st,
            job.product,
            reason,
            f"{message} (the pod could not start for {st.settings.stuck_pod_seconds} s)",
            max(job.failed_pods, 0) + 1,
        )
        st.actions.append(DeleteJob(job.name, job.uid))
    else:
        st.waiting[job.product] = reason
        st.stuck.add(job.product)


def fold_finished(st: PassState) -> None:
    """Fold this TrainingJob's Jobs into the record: each finished product is recorded once."""
    for job in st.observed.jobs.values():
        if job.retry_round != st.retry_round and not job.succeeded:
            # A failed Job of an earlier round: it must go before the product runs again (succeeded
            # Jobs of earlier rounds stay: their products are not retried).
            if job.unfinished and not job.deleting:
                if not st.recorded(job.product):
                    # still running (or queued): let it finish; a pod that cannot start is stuck as
                    # in the current round (else it would count active, and never end)
                    if job.queued:
                        st.queued.add(job.product)
                    elif job.stuck is not None:
                        _fold_stuck(st, job)
                    else:
                        st.active.add(job.product)
                continue
            if not job.deleting:
                st.actions.append(DeleteJob(job.name, job.uid))
            if job.product not in st.succeeded:
                st.blocked.add(job.product)
            continue
        _fold_current(st, job)


def check_unchanged(st: PassState) -> bool:
    """Skip products unchanged since their last model without a pod each: one Job checks them all
    first (``forecast-trainer unchanged``). True while launches must wait for it."""
    tj = st.tj
    if not builders.needs_unchanged_check(tj) or st.status.unchanged_checked:
        return False
    check = st.observed.unchanged_check
    if check is None:
        st.actions.append(CreateUnchangedCheck(st.retry_round))
        return True
    if not check.done:
        st.check_queued = check.queued
        return check.stuck is None or not check_gives_up(st, check)
    if check.unchanged is not None and (check.finished == "Complete" or check.pod_succeeded):
        order = record_order(tj.spec.products)
        unchanged = {order[i] for i in check.unchanged if i < len(order)}
        # Only products this TrainingJob has not started: one with a Job of its own (skipUnchanged
        # turned on mid-run) is training, queued or waiting to relaunch, and keeps its Lease and slot.
        fresh = unchanged - st.succeeded - st.failed - st.observed.jobs.keys()
        st.succeeded |= fresh
        st.skipped |= fresh
        note = "; the list was too long for the check's message: products check themselves" if check.truncated else ""
        st.actions.append(
            Event(
                "Normal",
                "Unchanged",
                f"{len(fresh)} of {len(order)} products unchanged since their last model: skipped{note}",
            )
        )
    else:
        # Train everything; each product pod still skips itself when unchanged (TRAINER_SKIP_UNCHANGED).
        st.actions.append(
            Event("Warning", "UnchangedCheckFailed", f"checking for unchanged products failed: {check.message}"[:1024])
        )
    st.status.unchanged_checked = st.stamp
    st.actions.append(DeleteJob(check.name, check.uid))
    return False


def check_gives_up(st: PassState, check: UnchangedCheck) -> bool:
    """The check's pod cannot start (a missing DSN Secret, a bad image): Stalled with its reason (and
    a Warning Event) while the stuck-pod wait runs; past it, give the check up and train every
    product (True). Not fail: skipping is an optimisation and every product pod still skips itself
    when unchanged; a cause the check shares with the product pods (the same image and Secrets)
    then stops them the same way, with the same reason, and fails their products after the same
    wait, so the run (and a Forbid schedule behind it) ends instead of staying Pending for ever."""
    assert check.stuck is not None
    reason, message, since = check.stuck
    wait = st.settings.stuck_pod_seconds
    if st.now < since + timedelta(seconds=wait):
        st.stalled.append((reason, f"unchanged check: {message}"))
        return False
    st.actions.append(
        Event(
            "Warning",
            "UnchangedCheckFailed",
            f"the unchanged check's pod could not start for {wait} s ({reason}: {message}); training every "
            "product (each pod still skips itself when unchanged)"[:1024],
        )
    )
    st.status.unchanged_checked = st.stamp
    st.actions.append(DeleteJob(check.name, check.uid))
    return True


def fold_rejected(st: PassState) -> None:
    """Launches the API server refused (invalid Job, forbidden): the product fails, a person must act."""
    for product, message in sorted(st.observed.rejected.items()):
        if st.recorded(product) or st.running(product):
            continue
        _record_failure(st, product, Reason.JOB_REJECTED, message, 1)
        st.stalled.append((Reason.JOB_REJECTED, f"{product}: {message}"))


def ttl_actions(st: PassState) -> None:
    """Finished Jobs whose product is on record get the cleanup TTL (only then: status must outlive them)."""
    ttl = st.tj.spec.ttl_seconds_after_finished
    if ttl is None:
        return
    for job in st.observed.jobs.values():
        current = job.retry_round == st.retry_round or job.succeeded
        if job.finished and st.recorded(job.product) and job.ttl_seconds is None and current and not job.deleting:
            st.actions.append(SetJobTTL(job.name, ttl))


def lease_actions(st: PassState) -> None:
    """Renew what our unfinished Jobs hold, re-create what they lost; release what products without
    one still hold."""
    held: set[str] = set()
    for lease in st.observed.leases.values():
        if lease.holder != st.me or lease.product is None:
            continue
        held.add(lease.product)
        if lease.product in st.launched:
            continue
        if st.running(lease.product) or lease.product in st.stuck:
            # A Job whose pod cannot start yet keeps its claim too: a Secret created late, or Kueue
            # preempting it and admitting it again, lets its pod train later (the Job is unfinished).
            age = None if lease.renew_time is None else (st.now - lease.renew_time).total_seconds()
            if age is None or age >= lease.duration_seconds * st.settings.renew_fraction:
                st.actions.append(RenewLease(lease))
        elif lease.product not in st.blocked:
            # Recorded, waiting (locked, another's) or not started: not ours to hold.
            # A product whose own old Job is still unfinished keeps it until that Job is gone.
            st.actions.append(ReleaseLease(lease))
    for product in sorted((st.active | st.queued | st.stuck) - st.launched - held):
        # Our Job is unfinished but its Lease is gone: claim the free name again (another product's
        # Lease under it, a collision, is left alone; so is another holder's claim of this product).
        if builders.lease_name(product) not in st.observed.leases:
            st.actions.append(ReclaimLease(product))


def leases_by_product(leases: Iterable[ObservedLease]) -> dict[str, list[ObservedLease]]:
    """Product Leases by their product annotation, whatever their name: a Lease named by an earlier
    release (a 10-digit hash) still locks its product after an upgrade, and a Lease of another
    product under this product's name (a hash collision) does not."""
    out: dict[str, list[ObservedLease]] = {}
    for lease in leases:
        if lease.product is not None:
            out.setdefault(lease.product, []).append(lease)
    return out


def blocked_elsewhere(st: PassState, pending: list[str]) -> None:
    """Pending products another TrainingJob holds: an unfinished Job of it, or a live Lease."""
    busy = st.observed.busy_elsewhere
    by_product = leases_by_product(st.observed.leases.values()) if pending else {}
    for product in pending:
        if product in busy:
            st.waiting[product] = "ProductBusy"
            continue
        for lease in by_product.get(product, ()):
            if lease.holder == st.me:
                continue
            if not lease.expired(st.now):
                st.waiting[product] = "WaitingForLease"
                break
            if lease.name == builders.lease_name(product):
                st.takeover[product] = lease
            # An expired Lease under an earlier release's name is no claim: the launch creates
            # the product's Lease under its current name (its holder releases the old one).
        if product in st.waiting:
            st.takeover.pop(product, None)


def lease_name_taken(st: PassState, product: str) -> bool:
    """Another product's Lease holds this product's Lease name (a hash collision): the product
    waits; that Lease is never taken over (its product's Job may still run, even when it expired),
    its holder releases it when that product is done, or the garbage collector with its holder.
    Asked only of products about to launch (a hash each: not of every pending product)."""
    if not st.observed.leases:
        return False
    at_name = st.observed.leases.get(builders.lease_name(product))
    if at_name is None or at_name.product == product:
        return False
    st.waiting[product] = "WaitingForLease"
    return True


def quota_waits(st: PassState, pending: list[str]) -> bool:
    """Products a ResourceQuota refused wait (QuotaExceeded) while the back-off runs, and nothing
    launches meanwhile (transient: never recorded failed, unlike a refused, invalid Job)."""
    refused = st.observed.quota_exceeded
    for product in pending:
        if product in refused:
            st.waiting[product] = Reason.QUOTA_EXCEEDED
    return bool(refused)


def launches(st: PassState, pending: list[str], stop: bool) -> None:
    """Launch pending products in spec order, up to parallelism."""
    spec = st.tj.spec
    if spec.suspend or stop:
        return
    capacity = spec.parallelism - len(st.active) - len(st.queued) - len(st.stuck)
    for product in pending:
        if capacity <= 0:
            break
        if product in st.waiting or product in st.blocked or lease_name_taken(st, product):
            continue
        name = builders.free_job_name(st.tj.name, product, st.observed.job_names)
        st.actions.append(Launch(product, st.takeover.get(product), name))
        st.active.add(product)
        st.launched.add(product)
        capacity -= 1


def count_products(st: PassState) -> None:
    s = st.status
    total = len(st.tj.spec.products)
    waiting = len(set(st.waiting) - st.active - st.queued - st.succeeded - st.failed)
    s.products.total = total
    s.products.succeeded = len(st.succeeded)
    s.products.skipped = len(st.skipped & st.succeeded)
    s.products.failed = len(st.failed)
    s.products.active = len(st.active)
    s.products.queued = len(st.queued)
    s.products.waiting = waiting
    s.products.pending = max(total - st.done - len(st.active) - len(st.queued) - waiting, 0)
    s.progress = progress_text(len(st.succeeded), len(st.failed), total)
    s.parallelism = st.tj.spec.parallelism
    s.selector = builders.selector(st.tj)
    s.observed_generation = st.tj.generation
    if s.start_time is None and (st.active or st.queued or st.done):
        s.start_time = st.stamp


def what_holds(st: PassState, product: str) -> str:
    """Who a waiting product waits for, as the WaitingForProduct Event says it."""
    why = st.waiting.get(product)
    if why == "WaitingForLease":
        lease = st.observed.leases.get(builders.lease_name(product))
        holder = lease.holder if lease is not None and lease.holder else "another TrainingJob"
        return f"Lease {builders.lease_name(product)} held by {holder}"
    if why == "ProductBusy":
        return "an unfinished Job of another TrainingJob in this namespace"
    return "locked in the output database by a trainer of another namespace"


def waiting_event(st: PassState, old: TrainingJobStatus) -> None:
    waiting = sorted(p for p, why in st.waiting.items() if why in ("ProductBusy", "WaitingForLease", "ProductLocked"))
    if waiting and len(waiting) > old.products.waiting:
        names = "; ".join(f"{p} ({what_holds(st, p)})" for p in waiting[:5])
        more = f"; and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        st.actions.append(
            Event(
                "Normal",
                "WaitingForProduct",
                f"{len(waiting)} product(s) wait for another TrainingJob or trainer to finish them: {names}{more}"[
                    :1024
                ],
            )
        )


# ---------------------------------------------------------------- reconcile


def reconcile(tj: TrainingJob, observed: Observed, now: datetime, settings: Settings = Settings()) -> Plan:
    if observed.shards is not None:
        # Shard mode (allProducts, or several products per pod): its own pure module, sharing this
        # one's PassState, settings and conditions (imported here: it imports this module).
        from trainingjob_operator.reconcile_shards import reconcile_shards

        return reconcile_shards(tj, observed, now, settings)
    old = tj.status
    succeeded, failed = read_record(tj)
    st = PassState(
        tj=tj,
        observed=observed,
        now=now,
        settings=settings,
        status=old.model_copy(deep=True),
        me=builders.holder_identity(tj),
        stamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        retry_round=old.retry_failed or "",
        succeeded=succeeded,
        failed=failed,
        skipped=read_skipped(tj),
    )
    # 1. A new retry-failed value starts a round.
    start_retry_round(st)
    # 2. Fold finished Jobs of this TrainingJob (by uid) and refused launches into the record; with
    #    skipUnchanged, first find the products that need no training at all.
    fold_finished(st)
    fold_rejected(st)
    checking = check_unchanged(st)
    # 3. Cleanup TTL on recorded Jobs.
    ttl_actions(st)
    # 4. Who else holds pending products, whether a ResourceQuota is full (back-off); then launch
    #    up to parallelism.
    pending = [p for p in tj.spec.products if not st.recorded(p) and not st.running(p)]
    blocked_elsewhere(st, pending)
    allowed = max_failed_allowed(tj.spec.max_failed_products, len(tj.spec.products))
    too_many_failed = allowed is not None and len(st.failed) > allowed
    quota_full = quota_waits(st, pending)
    stop = too_many_failed or launches_stopped_by_rejection(st) or checking or quota_full
    launches(st, pending, stop)
    # 5. Product Leases: renew the running, release the rest.
    lease_actions(st)
    # 6. Counts, the compact record, phase and conditions.
    count_products(st)
    write_record(st)
    waiting_event(st, old)
    phase_and_conditions(st, old, allowed, too_many_failed)
    return Plan(
        actions=st.actions,
        status=st.status,
        waiting=st.waiting,
        new_failures=st.new_failures,
        relaunched_locked=frozenset(st.relaunched_locked),
    )
