"""Pure reconcile of shard mode (issue 19; docs/design.md "Scale"): (TrainingJob, observed shard
Jobs and pods, now) -> actions + new status.

Products are recorded by *global index* (position in the product ids sorted by str order) in
status.succeededIndexes/failedIndexes/skippedIndexes: an index is recorded once, when the Job
controller says its shard is complete or failed for good, from its pods' reports; re-folding the same
observed state changes nothing. One round = one Indexed Job freezing R (the indexes it trains) and S;
a TrainingJob never has two rounds' Jobs unfinished at once. Level-triggered: nothing here depends on
the operator's memory (the locked back-off is read from the finished Jobs that found products locked).

:func:`reconcile_shards` reads as a table of contents, one pure helper per phase.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trainingjob_operator import builders, histogram, shards
from trainingjob_operator.actions import (
    Action,
    CreateDiscovery,
    CreateShardRound,
    DeleteJob,
    Event,
    PatchJob,
    Plan,
    SetJobTTL,
)
from trainingjob_operator.api import (
    ChampionCounts,
    DiscoveryStatus,
    ProductFailure,
    ResultsSummary,
    ShardCounts,
    TrackingCounts,
    TrainingJob,
    TrainingJobStatus,
)
from trainingjob_operator.conditions import phase_and_conditions
from trainingjob_operator.observed import Observed, ObservedShardJob, ObservedShards, ShardPod
from trainingjob_operator.reasons import Reason
from trainingjob_operator.reconcile import INDEX_ORDER, PassState, Settings, locked_retry_delay, record_order
from trainingjob_operator.shard_report import ShardReport, ShardResults, parse_discover_report, parse_shard_report
from trainingjob_operator.status import (
    MAX_FAILURES,
    add_failure,
    compress_indexes,
    histogram_buckets,
    histogram_counts,
    max_failed_allowed,
    parse_indexes,
    progress_text,
    set_condition,
)

KUEUE_QUEUE_LABEL = builders.KUEUE_LABELS[0]


@dataclass
class ShardPass:
    """Everything one pass derives (products are global indexes throughout)."""

    tj: TrainingJob
    shards: ObservedShards
    now: datetime
    settings: Settings
    status: TrainingJobStatus
    stamp: str
    retry_round: str
    total: int
    size: int
    succeeded: set[int]
    failed: set[int]
    skipped: set[int]
    order: list[str] | None = None
    """The sorted product ids in list mode (None with allProducts: ids come from the reports)."""
    active: int = 0
    queued: set[int] = field(default_factory=set)
    held: dict[int, datetime] = field(default_factory=dict)
    """Indexes found locked -> when they may run again (the locked back-off)."""
    in_flight: set[int] = field(default_factory=set)
    """Indexes of an unfinished round's R not on record yet (training, or their shard not started)."""
    unfolded: bool = False
    """A finished shard's pod report is still on its way: no new round until it is folded."""
    new_failures: dict[int, str] = field(default_factory=dict)
    failure_events: int = 0
    discovery_failed: str | None = None
    actions: list[Action] = field(default_factory=list)

    def recorded(self, index: int) -> bool:
        return index in self.succeeded or index in self.failed

    @property
    def done(self) -> int:
        return len(self.succeeded) + len(self.failed)


# ---------------------------------------------------------------- the durable record


def product_count(tj: TrainingJob) -> int | None:
    """How many products: the list's, or what discovery found (None until it reported)."""
    if not tj.spec.all_products:
        return len(set(tj.spec.products))
    return tj.status.discovery.products if tj.status.discovery is not None else None


def _indexes(text: str, total: int) -> set[int]:
    return {i for i in parse_indexes(text) if i < total}


def _product_id(sp: ShardPass, index: int, reported: str | None = None) -> str:
    if reported:
        return reported
    if sp.order is not None and index < len(sp.order):
        return sp.order[index]
    return f"#{index}"  # allProducts: the id is in run_products / run_outcomes (psql), not here


def _record_failure(sp: ShardPass, index: int, product: str, reason: str, message: str, attempts: int) -> None:
    sp.failed.add(index)
    sp.new_failures[index] = reason
    failure = ProductFailure(product=product, reason=reason, message=message[:512], attempts=attempts)
    sp.status.failures = add_failure(sp.status.failures, failure)
    # Events stay bounded: one per failure up to MAX_FAILURES failed products, then a summary per pass.
    if len(sp.failed) <= MAX_FAILURES:
        sp.actions.append(Event("Warning", "ProductFailed", f"{product}: {reason}: {message}"[:1024]))
    else:
        sp.failure_events += 1


def add_shard_results(results: ResultsSummary | None, r: ShardResults) -> ResultsSummary:
    """Fold one shard's aggregated results into the summary (once per newly recorded shard index)."""
    out = (results or ResultsSummary(metric=r.metric)).model_copy(deep=True)
    out.metric = r.metric
    out.trained += r.trained
    out.tuned += r.tuned
    out.beat_baseline += r.beat_baseline
    out.beat_naive += r.beat_naive
    out.uncertain += r.uncertain
    if r.models:
        merged = dict(out.models)
        for family, n in r.models.items():
            merged[family] = merged.get(family, 0) + n
        out.models = dict(sorted(merged.items()))
    if r.champions:
        out.champions = out.champions or ChampionCounts()
        for key in ("promoted", "kept", "first"):
            setattr(out.champions, key, getattr(out.champions, key) + r.champions.get(key, 0))
    if r.tracking:
        out.tracking = out.tracking or TrackingCounts()
        for key in ("logged", "skipped"):
            setattr(out.tracking, key, getattr(out.tracking, key) + r.tracking.get(key, 0))
    if r.errors:
        counts = histogram_counts(out.error_histogram)
        for bucket, n in r.errors.items():
            counts[bucket] = counts.get(bucket, 0) + n
        error_sum = float(out.error_sum) + r.error_sum
        out.error_sum = histogram.fixed_text(error_sum)
        out.error_histogram = histogram_buckets(counts)
        median = histogram.median(counts)
        out.median_error = None if median is None else histogram.decimal_text(median)
        out.mean_error = histogram.decimal_text(error_sum / max(sum(counts.values()), 1))
    if r.baseline_errors:
        baseline = histogram_counts(out.baseline_histogram)
        for bucket, n in r.baseline_errors.items():
            baseline[bucket] = baseline.get(bucket, 0) + n
        out.baseline_histogram = histogram_buckets(baseline)
        median = histogram.median(baseline)
        out.median_baseline_error = None if median is None else histogram.decimal_text(median)
    return out


# ---------------------------------------------------------------- phases


def start_retry_round(sp: ShardPass) -> None:
    """A new value of the retry-failed annotation un-records the failed indexes: the next round retries them."""
    wanted = sp.tj.annotations.get(builders.ANNOTATION_RETRY_FAILED, "")
    if not wanted or wanted == sp.retry_round:
        return
    retried = len(sp.failed)
    sp.failed = set()
    sp.status.failures = []
    sp.status.retry_failed = sp.retry_round = wanted
    sp.status.completion_time = None
    if retried:
        sp.actions.append(Event("Normal", "RetryFailed", f"Retrying {retried} failed product(s)"))


def discover(sp: ShardPass) -> bool:
    """allProducts: the discovery pod lists the source's products once. True when the count is known."""
    if sp.status.discovery is not None:
        return True
    job = sp.shards.discovery
    if job is None:
        sp.actions.append(CreateDiscovery())
        return False
    report = parse_discover_report(job.message) if job.finished == "Complete" else None
    if report is not None:
        stamp = job.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ") if job.finished_at else sp.stamp
        sp.status.discovery = DiscoveryStatus(products=report.count, sha256=report.products_sha256, time=stamp)
        sp.total = report.count
        sp.actions.append(Event("Normal", "Discovered", f"{report.count} products in the data source"))
        return True
    if job.finished is not None:
        why = "its report is missing or unreadable" if job.finished == "Complete" else job.message or "it failed"
        sp.status.discovery = None
        sp.actions.append(
            Event("Warning", "DiscoveryFailed", f"listing the data source's products failed: {why}"[:1024])
        )
        sp.discovery_failed = why
    return False


def _pods_by_index(job: ObservedShardJob) -> dict[int, list[ShardPod]]:
    out: dict[int, list[ShardPod]] = {}
    for pod in job.pods:
        out.setdefault(pod.index, []).append(pod)
    for pods in out.values():
        pods.sort(key=lambda p: (p.finished_at is None, p.finished_at or datetime.min, p.uid))
    return out


def _pod_failure(job: ObservedShardJob, last: ShardPod | None, complete: bool) -> tuple[str, str]:
    """(reason, message) for a position of a shard without an outcome."""
    if complete:
        return Reason.MISSING_REPORT.value, "the shard pod exited 0 but its report has no outcome for this product"
    if last is not None and last.reason == "OOMKilled":
        return Reason.OOM_KILLED.value, (
            "the shard pod used more memory than its limit and was OOMKilled: raise "
            "spec.template.resources.limits.memory"
        )
    if last is not None and last.reason == "DeadlineExceeded":
        return (
            Reason.DEADLINE_EXCEEDED.value,
            "the shard pod ran past its deadline (activeDeadlineSeconds x shard size)",
        )
    if job.reason == "PodFailurePolicy" or (last is not None and last.exit_code == builders.EXIT_CONFIG_ERROR):
        return Reason.INVALID_CONFIG.value, job.message or "the trainer rejected its configuration (exit code 2)"
    if job.reason == "DeadlineExceeded":
        return Reason.DEADLINE_EXCEEDED.value, job.message or "the shard Job ran past its deadline"
    code = f" (last exit code {last.exit_code})" if last is not None and last.exit_code is not None else ""
    return Reason.BACKOFF_LIMIT_EXCEEDED.value, f"the shard's pod failed {job.name}{code}: {job.message}".rstrip(": ")


def _fold_index(
    sp: ShardPass, job: ObservedShardJob, r: Sequence[int], k: int, pods: list[ShardPod], current: bool
) -> None:
    """Record the products of shard ``k`` (complete or failed for good) from its pods' reports: a
    position trained (or skipped) by any pod is succeeded; one the last pod found locked waits for the
    back-off; one reported failed, or without an outcome, is failed. Already-recorded indexes stay."""
    gis = shards.shard_indexes(r, job.size, k)
    complete = k in job.completed
    reports: list[ShardReport] = [
        rep for rep in (parse_shard_report(p.message, k, job.size) for p in pods) if rep is not None
    ]
    last = pods[-1] if pods else None
    last_report = reports[-1] if reports else None
    trained = set().union(*(rep.trained for rep in reports)) if reports else set()
    skipped = set().union(*(rep.skipped for rep in reports)) - trained if reports else set()
    locked = (last_report.locked if last_report is not None else frozenset()) - trained - skipped
    newly_trained = False
    for pos, gi in enumerate(gis):
        if sp.recorded(gi):
            continue
        if pos in trained or pos in skipped:
            sp.succeeded.add(gi)
            newly_trained |= pos in trained
            if pos in skipped:
                sp.skipped.add(gi)
            continue
        if not current:
            continue  # an earlier retry round's failures are retried by this round, never re-recorded
        if pos in locked:
            delay = locked_retry_delay(sp.settings, _times_locked(sp, gi) - 1)
            sp.held[gi] = max(sp.held.get(gi, sp.now), (job.finished_at or sp.now) + timedelta(seconds=delay))
            continue
        error = next((rep.errors[pos] for rep in reversed(reports) if pos in rep.errors), None)
        if error is not None:
            _record_failure(sp, gi, _product_id(sp, gi, error.product), error.reason, error.message, len(pods))
        else:
            reason, message = _pod_failure(job, last, complete)
            _record_failure(sp, gi, _product_id(sp, gi), reason, message, len(pods))
    if newly_trained and last_report is not None and last_report.results is not None:
        sp.status.results = add_shard_results(sp.status.results, _best_results(reports))


def _best_results(reports: list[ShardReport]) -> ShardResults:
    """The results of the pod that got furthest (a retried pod re-reports what an earlier one committed)."""
    best = max(reports, key=lambda rep: (rep.done, len(rep.trained)))
    return best.results or ShardResults()


def _times_locked(sp: ShardPass, gi: int) -> int:
    """In how many shard Jobs ``gi`` was found locked by its shard's last pod (the back-off doubles
    with each)."""
    n = 0
    for job in sp.shards.jobs:
        r = sorted(parse_indexes(job.indexes))
        at = bisect.bisect_left(r, gi)
        if at == len(r) or r[at] != gi:
            continue
        k = at // job.size
        for pod in _pods_by_index(job).get(k, [])[-1:]:
            rep = parse_shard_report(pod.message, k, job.size)
            if rep is not None and at - k * job.size in rep.locked:
                n += 1
    return max(n, 1)


def fold_shard_jobs(sp: ShardPass) -> None:
    """Fold every shard Job of this TrainingJob: each shard the Job controller finished is recorded
    once; an unfinished Job is the round in flight."""
    grace = timedelta(seconds=sp.settings.pod_report_grace_seconds)
    for job in sp.shards.jobs:
        r = sorted(i for i in parse_indexes(job.indexes) if i < sp.total)
        current = job.retry_round == sp.retry_round
        pods = _pods_by_index(job)
        overdue = job.finished_at is not None and sp.now >= job.finished_at + grace
        ended = [k for k in range(job.completions) if k not in job.completed and k not in job.failed]
        # Shards the Job controller finished, then (once the Job ended: FailJob on a config error)
        # the shards it never finished, whose pods it stopped: these fail, but what their pods
        # committed first is recorded from their reports.
        for k in [*sorted(job.completed | job.failed), *(ended if job.finished is not None and current else [])]:
            if k not in pods and not overdue:
                sp.unfolded = True  # the Job controller counted the index before we saw its pod
                continue
            _fold_index(sp, job, r, k, pods.get(k, []), current)
        if job.unfinished:
            sp.in_flight |= {gi for gi in r if not sp.recorded(gi)}
            if job.suspended and not sp.tj.spec.suspend:
                sp.queued |= {gi for gi in r if not sp.recorded(gi)}
            else:
                sp.active += job.active


def unfinished_jobs(sp: ShardPass) -> list[ObservedShardJob]:
    return [j for j in sp.shards.jobs if j.unfinished]


def round_job(sp: ShardPass) -> ObservedShardJob | None:
    """The Job status.shards describes: this retry round's unfinished Job, else its last finished one
    (a round that ended between two passes shows its final counts, not the last ones seen running)."""
    jobs = [j for j in sp.shards.jobs if j.retry_round == sp.retry_round and not j.deleting]
    unfinished = [j for j in jobs if j.unfinished]
    if unfinished:
        return unfinished[0]
    finished = [(j.finished_at, j) for j in jobs if j.finished_at is not None]
    return max(finished, key=lambda pair: pair[0])[1] if finished else None


def steer_round(sp: ShardPass, too_many_failed: bool) -> None:
    """The round in flight follows the spec: kubectl scale -> parallelism, suspend -> suspend (a Job
    Kueue manages is resumed by Kueue), past maxFailedProducts -> deleted."""
    spec = sp.tj.spec
    for job in unfinished_jobs(sp):
        if job.deleting:
            continue
        if too_many_failed:
            sp.actions.append(DeleteJob(job.name, job.uid))
            continue
        patch: dict[str, object] = {}
        if job.parallelism != spec.parallelism:
            patch["parallelism"] = spec.parallelism
        if spec.suspend and not job.suspended:
            patch["suspend"] = True
        elif not spec.suspend and job.suspended and not sp.tj.labels.get(KUEUE_QUEUE_LABEL):
            patch["suspend"] = False
        if patch:
            sp.actions.append(PatchJob(job.name, job.uid, {"spec": patch}))


def next_round(sp: ShardPass, stop: bool) -> None:
    """No round in flight: a new one of every index not on record and not held by the locked back-off."""
    if stop or sp.unfolded or unfinished_jobs(sp) or sp.tj.spec.suspend:
        return
    held = {gi for gi, until in sp.held.items() if sp.now < until}
    r = shards.round_indexes(sp.total, sp.succeeded | sp.failed, held)
    if not r:
        return
    text = compress_indexes(r)
    digest = (
        sp.status.discovery.sha256 if sp.status.discovery is not None else shards.products_sha256(sp.tj.spec.products)
    )
    # The same R again (a locked product found locked once more) is a new round: the first id no
    # observed Job has (a repeat of this pass before its Job is seen is a 409, not a second round).
    taken = {j.round_id for j in sp.shards.jobs}
    salt = 0
    while (round_id := shards.round_id(sp.tj, sp.retry_round, text, sp.size, salt)) in taken:
        salt += 1
    rnd = builders.ShardRound(
        round_id=round_id,
        indexes=text,
        size=sp.size,
        completions=shards.completions(len(r), sp.size),
        retry_round=sp.retry_round,
        products_sha256=digest,
    )
    sp.actions.append(CreateShardRound(rnd))
    sp.in_flight |= set(r)
    sp.status.shards = ShardCounts(size=sp.size, total=rnd.completions)


def ttl_actions(sp: ShardPass) -> None:
    """Finished shard Jobs whose every product is on record get the cleanup TTL."""
    ttl = sp.tj.spec.ttl_seconds_after_finished
    if ttl is None:
        return
    for job in sp.shards.jobs:
        if job.finished is None or job.deleting or job.ttl_seconds is not None:
            continue
        r = parse_indexes(job.indexes)
        if all(sp.recorded(gi) for gi in r if gi < sp.total):
            sp.actions.append(SetJobTTL(job.name, ttl))


def count(sp: ShardPass) -> None:
    s = sp.status
    waiting = {gi for gi in sp.held if not sp.recorded(gi) and gi not in sp.in_flight}
    queued = len(sp.queued)
    active = min(sp.active, max(len(sp.in_flight) - queued, 0))
    s.products.total = sp.total
    s.products.succeeded = len(sp.succeeded)
    s.products.skipped = len(sp.skipped & sp.succeeded)
    s.products.failed = len(sp.failed)
    s.products.active = active
    s.products.queued = queued
    s.products.waiting = len(waiting)
    s.products.pending = max(sp.total - sp.done - active - queued - len(waiting), 0)
    s.progress = progress_text(len(sp.succeeded), len(sp.failed), sp.total)
    s.parallelism = sp.tj.spec.parallelism
    s.selector = builders.selector(sp.tj)
    s.observed_generation = sp.tj.generation
    current = round_job(sp)
    if current is not None:
        s.shards = ShardCounts(
            size=sp.size,
            total=current.completions,
            succeeded=len(current.completed),
            failed=len(current.failed),
            active=current.active,
        )
    elif s.shards is None or s.shards.size != sp.size:
        s.shards = ShardCounts(size=sp.size)
    else:
        s.shards.active = 0
    if s.start_time is None and (active or queued or sp.done or sp.in_flight):
        s.start_time = sp.stamp
    s.succeeded_indexes = compress_indexes(sp.succeeded)
    s.failed_indexes = compress_indexes(sp.failed)
    s.skipped_indexes = compress_indexes(sp.skipped & sp.succeeded)
    s.index_order = INDEX_ORDER


def failures_summary_event(sp: ShardPass) -> None:
    if sp.failure_events:
        sp.actions.append(
            Event(
                "Warning",
                "ProductsFailed",
                f"{sp.failure_events} more product(s) failed (status.failedIndexes; every outcome is in the "
                "output database's run_outcomes table)",
            )
        )


def _as_pass_state(sp: ShardPass, observed: Observed) -> PassState:
    """The per-product PassState the shared phase/conditions helpers read (counts only: ids as text)."""
    st = PassState(
        tj=sp.tj,
        observed=observed,
        now=sp.now,
        settings=sp.settings,
        status=sp.status,
        me=builders.holder_identity(sp.tj),
        stamp=sp.stamp,
        retry_round=sp.retry_round,
        succeeded={str(i) for i in sp.succeeded},
        failed={str(i) for i in sp.failed},
        skipped={str(i) for i in sp.skipped},
        actions=sp.actions,
    )
    st.active = {f"a{i}" for i in range(sp.status.products.active)}
    st.queued = {f"q{i}" for i in range(sp.status.products.queued)}
    return st


def _discovery_failed(sp: ShardPass, why: str) -> Plan:
    s, stamp, gen = sp.status, sp.stamp, sp.tj.generation
    msg = f"listing the data source's products failed: {why}"[:1024]
    conds = set_condition(s.conditions, "Failed", True, Reason.DISCOVERY_FAILED, msg, stamp, gen)
    conds = set_condition(conds, "Complete", False, Reason.DISCOVERY_FAILED, msg, stamp, gen)
    conds = set_condition(conds, "Running", False, Reason.FINISHED, msg, stamp, gen)
    s.conditions = set_condition(conds, "Stalled", True, Reason.DISCOVERY_FAILED, msg, stamp, gen)
    s.phase = "Failed"
    s.completion_time = s.completion_time or stamp
    s.observed_generation = gen
    return Plan(actions=sp.actions, status=s)


# ---------------------------------------------------------------- reconcile


def reconcile_shards(tj: TrainingJob, observed: Observed, now: datetime, settings: Settings = Settings()) -> Plan:
    old = tj.status
    status = old.model_copy(deep=True)
    total = product_count(tj)
    sp = ShardPass(
        tj=tj,
        shards=observed.shards or ObservedShards(),
        now=now,
        settings=settings,
        status=status,
        stamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        retry_round=old.retry_failed or "",
        total=total or 0,
        size=1,
        succeeded=_indexes(old.succeeded_indexes, total or 0),
        failed=_indexes(old.failed_indexes, total or 0),
        skipped=_indexes(old.skipped_indexes, total or 0),
        order=None if tj.spec.all_products else record_order(tj.spec.products),
    )
    # 1. allProducts: discover the products first (their count and digest).
    if tj.spec.all_products and not discover(sp):
        if sp.discovery_failed is not None:
            return _discovery_failed(sp, sp.discovery_failed)
        sp.status.observed_generation = tj.generation
        sp.status.phase = "Suspended" if tj.spec.suspend else "Pending"
        return Plan(actions=sp.actions, status=sp.status)
    # 2. The shard size, fixed once; a new retry-failed value starts a round of the failed indexes.
    sp.size = shards.shard_size(tj, sp.total)
    start_retry_round(sp)
    # 3. Fold every finished shard (by index, once) from its pods' reports.
    fold_shard_jobs(sp)
    # 4. maxFailedProducts, then steer the round in flight (scale, suspend, delete) or start the next.
    allowed = max_failed_allowed(tj.spec.max_failed_products, sp.total)
    too_many_failed = allowed is not None and len(sp.failed) > allowed
    steer_round(sp, too_many_failed)
    next_round(sp, too_many_failed)
    # 5. Cleanup TTL of recorded shard Jobs; counts, the record; phase and conditions.
    ttl_actions(sp)
    count(sp)
    failures_summary_event(sp)
    if too_many_failed:
        sp.active = 0
        sp.status.products.active = 0
        sp.status.products.queued = 0
    st = _as_pass_state(sp, observed)
    waiting = {str(gi): "ProductLocked" for gi in sp.held if not sp.recorded(gi) and gi not in sp.in_flight}
    st.waiting = waiting
    phase_and_conditions(st, old, allowed, too_many_failed)
    return Plan(
        actions=sp.actions,
        status=sp.status,
        waiting=waiting,
        new_failures={_product_id(sp, gi): reason for gi, reason in sp.new_failures.items()},
    )
