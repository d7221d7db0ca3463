"""Kopf registration only: thin handlers that call the modules doing the work.

Run with ``kopf run -m trainingjob_operator.main --all-namespaces --liveness=http://0.0.0.0:8081/healthz``
(never by file path: Kopf would put this folder first on sys.path and shadow modules).

Each TrainingJob gets a daemon that loops "observe -> decide -> act". Job and TrainingJob
events only *wake* the daemon early; what it does is decided from the API's state alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from trainingjob_operator import builders, leases, metrics, observe
from trainingjob_operator.api import GROUP, PLURAL, VERSION, TrainingJob
from trainingjob_operator.config import OperatorConfig
from trainingjob_operator.controller import EventPoster, Observe, PassResult, reconcile_once
from trainingjob_operator.freshness import WatchedObjects
from trainingjob_operator.kube import SCHEDULE_PLURAL, Kube, KubeError, load_client
from trainingjob_operator.leader import LeaderElector, LeaseConfig, NotLeader
from trainingjob_operator.probes import PodProbes
from trainingjob_operator.quota import QuotaBackoff
from trainingjob_operator.reconcile import Observed, Settings
from trainingjob_operator.schedule import LABEL_SCHEDULE
from trainingjob_operator.schedule_controller import schedule_pass

CONFIG = OperatorConfig.from_env()
_state: dict[str, Any] = {}
_wakeups: dict[tuple[str, str], asyncio.Event] = {}
_schedule_wakeups: dict[tuple[str, str], asyncio.Event] = {}
_watched = WatchedObjects()
SETTLE_SECONDS = 2.0


def _kube() -> Kube:
    kube = _state.get("kube")
    if kube is None:
        kube = _state["kube"] = Kube(load_client(), CONFIG.request_timeout_seconds)
    return kube


def _wake(namespace: str, name: str | None = None) -> None:
    for (ns, n), event in list(_wakeups.items()):
        if ns == namespace and (name is None or n == name):
            event.set()


class GenerationEssence(kopf.AnnotationsDiffBaseStorage):
    """Kopf's "essence" of a TrainingJob, which it compares between events to detect updates, and
    keeps in an annotation: here only the generation (it changes with every spec change).

    No handler reacts to particular field changes (the daemon reads everything on each pass), so
    the default essence (a deep copy of the whole body, metadata and status included, on every
    event; 10 000 products at most, stored again as annotation JSON) is pure overhead.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {"spec": {"generation": body.metadata.get("generation")}})


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = GenerationEssence(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    # One INFO line per handler call and event is most of the operator's CPU at high pod churn.
    logging.getLogger("kopf.objects").setLevel(os.environ.get("TJO_KOPF_OBJECT_LOG_LEVEL", "WARNING"))
    settings.networking.request_timeout = CONFIG.request_timeout_seconds
    # Kopf's default back-off (1, 1, 2, 3, 5, 8, 13, 21 s) re-opened the watches up to ~21 s after an
    # API server came back, and passes ran on stale caches meanwhile (bench/chaos_bench.py). Retry
    # at most 3 s apart for ~3 minutes instead, as client-go's reflectors do in spirit.
    settings.networking.error_backoffs = [0.5, 1, 1, 2, 2, *([3] * 60)]
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Blocking client calls run in worker threads; the default pool (cpus + 4) is too small
    # for the concurrent launches of one pass.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube"))
    settings.peering.standalone = True  # HA is our own Lease-based leader election (leader.py)
    # Server-side filtering of the watch-fed caches below: only product objects are sent at all,
    # and of pods only those that ended (all the caches and the wake-ups need). Kopf's ``labels=``
    # on a handler filters client-side, after every object in the cluster was sent and parsed.
    for resource in (("batch", "v1", "jobs"), ("", "v1", "pods"), ("coordination.k8s.io", "v1", "leases")):
        settings.watching.label_selectors[resource] = builders.LABEL_PRODUCT_HASH
    settings.watching.field_selectors["", "v1", "pods"] = observe.FINISHED_PODS
    metrics.serve(CONFIG.metrics_port)
    kube = _kube()
    if CONFIG.leader_election_namespace:
        # A new leader's first pass of each TrainingJob reads it from the API (freshness.py);
        # a standby exports no per-TrainingJob gauges: only the leader's are current.
        elector = LeaderElector(
            kube,
            LeaseConfig(CONFIG.leader_election_namespace, CONFIG.leader_election_name),
            on_started_leading=_watched.distrust_all,
            on_stopped_leading=metrics.forget_leader_series,
        )
        _state["elector"] = elector
        _state["elector_task"] = asyncio.create_task(elector.run())


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    elector: LeaderElector | None = _state.get("elector")
    task: asyncio.Task[None] | None = _state.get("elector_task")
    if task is not None:
        task.cancel()
    if elector is not None:
        await elector.release()


def _is_leader() -> bool:
    elector: LeaderElector | None = _state.get("elector")
    return elector is None or elector.is_leader


async def _until_leader(stopped: kopf.DaemonStopped) -> None:
    elector: LeaderElector | None = _state.get("elector")
    while elector is not None and not elector.is_leader and not stopped:
        waiter = asyncio.ensure_future(elector.wait_leader())
        try:
            await asyncio.wait({waiter}, timeout=1.0)
        finally:
            waiter.cancel()


# ---------------------------------------------------------------- watch-fed caches
# Kopf indexes mirror product Jobs, pods and Leases (like controller-runtime's cached client);
# Kopf fills them before any handler runs, so a restarted operator starts from a full picture.


# The index functions are async (no thread hop per event) and double as the wake-up: a change
# of a product Job or a finished product pod wakes the TrainingJobs of that namespace.


@kopf.index("batch", "v1", "jobs", labels={builders.LABEL_PRODUCT_HASH: kopf.PRESENT})
async def product_jobs(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[str | None, dict[str, Any]]:
    if namespace:
        _wake(namespace)
    return {namespace: observe.trim_job(dict(body))}


@kopf.index("", "v1", "pods", labels={builders.LABEL_PRODUCT_HASH: kopf.PRESENT})
async def product_pods(
    *, namespace: str | None, body: kopf.Body, status: kopf.Status, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    # A trainer pod that exited 0 means its product is done before the Job controller marks the
    # Job Complete (up to ~1 s later: it batches pod updates), so the slot can be reused at once.
    if namespace and status.get("phase") in ("Succeeded", "Failed"):
        _wake(namespace)
    # Keyed by the owning Job's uid, never its name: a stale pod of an earlier Job of the same name
    # (a re-created TrainingJob, a retry round) never speaks for the new Job.
    return {(namespace, observe.job_uid_of(dict(body))): observe.trim_pod(dict(body))}


@kopf.index("coordination.k8s.io", "v1", "leases", labels={builders.LABEL_PRODUCT_HASH: kopf.PRESENT})
async def product_leases(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[str | None, dict[str, Any]]:
    return {namespace: observe.trim_lease(dict(body))}


async def _wait_or_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``wake`` is set (an event worth a pass)."""
    if wake.is_set():
        return
    waiter = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


def _store(index: kopf.Index[Any, dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    return list(index[key]) if key in index else []


async def _settle(
    key: tuple[str, str],
    created: set[str],
    released: set[str],
    jobs: kopf.Index[Any, dict[str, Any]],
    leases: kopf.Index[Any, dict[str, Any]],
) -> None:
    """Expectations (as in Kubernetes' own controllers): before the next pass, wait briefly until the
    caches show this pass's own writes, so it does not act twice on what it already did."""
    namespace = key[0]
    try:
        async with asyncio.timeout(SETTLE_SECONDS):
            while True:
                have = {j["metadata"]["name"] for j in _store(jobs, namespace)}
                held = {x["metadata"]["name"] for x in _store(leases, namespace)}
                if created <= have and not (released & held) and _watched.fresh(key) is not None:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        pass  # the next pass copes (a repeated create is a harmless 409)


@dataclass
class _DaemonMemory:
    """What a TrainingJob's daemon keeps between passes: only what the API cannot tell it again
    (a restart forgets it, and each entry is safe to forget)."""

    probes: PodProbes = field(default_factory=PodProbes)
    quota: QuotaBackoff = field(default_factory=QuotaBackoff)
    rejected: dict[str, str] = field(default_factory=dict)
    """Refused launches, until on record (a restart forgets them: the next create is refused again)."""
    locked_relaunches: dict[str, int] = field(default_factory=dict)
    """Relaunches of products found locked (a restart forgets them: the next wait is the shortest)."""

    def remember(self, result: PassResult) -> None:
        """Fold what a pass's API calls answered into the memory."""
        self.rejected = {
            **{p: m for p, m in self.rejected.items() if p not in result.recorded},
            **result.outcomes.rejected,
        }
        self.quota.record(result.outcomes.quota_exceeded, len(result.outcomes.created), datetime.now(UTC))
        for product in result.plan.relaunched_locked:
            self.locked_relaunches[product] = self.locked_relaunches.get(product, 0) + 1
        for product in [p for p in self.locked_relaunches if p in result.recorded]:
            del self.locked_relaunches[product]


def _observer(namespace: str, memory: _DaemonMemory, indexes: dict[str, kopf.Index[Any, dict[str, Any]]]) -> Observe:
    """The pass's observe step: the watch caches, plus uncached reads of pods the caches lack."""
    product_jobs, product_pods, product_leases = (
        indexes["product_jobs"],
        indexes["product_pods"],
        indexes["product_leases"],
    )

    async def from_caches(tj: TrainingJob, recorded: set[str], rejected: dict[str, str]) -> Observed:
        jobs = _store(product_jobs, namespace)
        mine = [j for j in jobs if observe.controller_uid(j) == tj.uid]
        now = datetime.now(UTC)
        stuck = await observe.read_stuck_pods(_kube(), namespace, mine, now, memory.probes)

        def build(read: dict[str, list[dict[str, Any]]] | None = None) -> Observed:
            return observe.build(
                tj,
                recorded,
                jobs,
                lambda uid: _store(product_pods, (namespace, uid)),
                _store(product_leases, namespace),
                rejected,
                stuck,
                read_pods=read,
                first_seen=memory.probes.first_seen,
                quota_exceeded=memory.quota.blocked(now),
                locked_relaunches=memory.locked_relaunches,
            )

        observed = build()
        missing = observe.unreported(observed)
        if not missing:
            return observed
        # A finished Job whose pod the cache lacks is never folded from the cache: read its pods.
        return build(await observe.read_unreported_pods(_kube(), namespace, missing))

    return from_caches


async def _leading_pass(
    key: tuple[str, str], post_event: EventPoster, observer: Observe, settings: Settings, memory: _DaemonMemory
) -> PassResult:
    """One reconcile pass, cancelled the moment leadership is lost (a deposed leader never goes on writing)."""
    namespace, name = key
    one_pass = reconcile_once(
        _kube(),
        namespace,
        name,
        post_event,
        observer,
        settings,
        current=_watched.fresh(key),
        rejected=memory.rejected,
    )
    elector: LeaderElector | None = _state.get("elector")
    result = await (elector.while_leader(one_pass) if elector is not None else one_pass)
    if not _is_leader():  # the pass ended just as leadership was lost: drop what it exported
        metrics.forget(namespace, name)
    return result


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def run_trainingjob(
    *,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Reconcile one TrainingJob until it is deleted: observe -> decide -> act, then sleep until woken."""
    assert namespace is not None, "TrainingJob is namespaced"
    key = (namespace, name)
    wake = _wakeups.setdefault(key, asyncio.Event())
    settings = Settings(
        lease_duration_seconds=CONFIG.lease_duration_seconds, stuck_pod_seconds=CONFIG.stuck_pod_seconds
    )

    def post_event(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    memory = _DaemonMemory()
    # Kopf passes each index as a keyword argument named after its function.
    observer = _observer(namespace, memory, kwargs)
    try:
        while not stopped:
            # 1. A standby replica never reconciles.
            await _until_leader(stopped)
            if stopped:
                break
            wake.clear()
            try:
                # 2. One pass; 3. remember what only its API answers tell; 4. wait for its own writes.
                result = await _leading_pass(key, post_event, observer, settings, memory)
                memory.remember(result)
                for known in (result.read, result.written):
                    if known is not None:
                        _watched.known(key, known)
                idle = CONFIG.resync_seconds * (6 if result.finished and not result.active else 1)
                await _settle(
                    key, result.created_jobs, result.released_leases, kwargs["product_jobs"], kwargs["product_leases"]
                )
            except NotLeader:
                logger.warning("leadership lost mid-pass: pass cancelled")
                continue
            except KubeError as exc:
                if exc.status == 404:
                    return
                metrics.RECONCILE_ERRORS.labels(kind="Pass").inc()
                logger.warning("reconcile failed: %s", exc)
                # Transient (the API server away, a conflict): retry soon, so progress resumes within
                # seconds of the API server's return instead of after Kopf's daemon backoff.
                idle = CONFIG.error_retry_seconds
            # 5. Sleep until the next resync, or until a child's change wakes us.
            await asyncio.sleep(CONFIG.min_pass_interval_seconds)
            await _wait_or_wake(wake, idle)
    finally:
        _wakeups.pop(key, None)
        _watched.forget(key)
        metrics.forget(namespace, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trainingjob_changed(*, namespace: str | None, name: str, event: kopf.RawEvent, **_: Any) -> None:
    """Keep the newest watched version (the daemon's passes read it), and wake the daemon at once
    on spec, annotation (retry-failed) and scale changes."""
    if namespace:
        if event.get("type") == "DELETED":
            _watched.forget((namespace, name))
        else:
            _watched.seen((namespace, name), dict(event["object"]))
        _wake(namespace, name)
        schedule = ((event.get("object") or {}).get("metadata") or {}).get("labels", {}).get(LABEL_SCHEDULE)
        if schedule:  # a run changed (finished, deleted): its schedule's status follows
            _wake_schedule(namespace, schedule)


# ---------------------------------------------------------------- TrainingSchedules


def _wake_schedule(namespace: str, name: str) -> None:
    event = _schedule_wakeups.get((namespace, name))
    if event is not None:
        event.set()


@kopf.on.event(GROUP, VERSION, SCHEDULE_PLURAL)
async def schedule_changed(*, namespace: str | None, name: str, **_: Any) -> None:
    """Spec edits, suspend and the run-now annotation take effect at once."""
    if namespace:
        _wake_schedule(namespace, name)


@kopf.daemon(GROUP, VERSION, SCHEDULE_PLURAL, cancellation_timeout=5.0)
async def run_schedule(
    *, namespace: str | None, name: str, body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any
) -> None:
    """Start runs at their scheduled times, until the TrainingSchedule is deleted."""
    assert namespace is not None, "TrainingSchedule is namespaced"
    key = (namespace, name)
    wake = _schedule_wakeups.setdefault(key, asyncio.Event())

    def post_event(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    try:
        while not stopped:
            await _until_leader(stopped)
            if stopped:
                break
            wake.clear()
            delay = CONFIG.resync_seconds
            try:
                one_pass = schedule_pass(_kube(), namespace, name, post_event)
                elector: LeaderElector | None = _state.get("elector")
                plan = await (elector.while_leader(one_pass) if elector is not None else one_pass)
                if plan.next_time is not None:
                    # Wake exactly at the next scheduled time (a run starts within a second of it).
                    until = (plan.next_time - datetime.now(UTC)).total_seconds() + 0.05
                    delay = max(0.05, min(until, 3 * CONFIG.resync_seconds))
            except NotLeader:
                continue
            except KubeError as exc:
                if exc.status == 404:
                    return
                metrics.RECONCILE_ERRORS.labels(kind="SchedulePass").inc()
                logger.warning("schedule pass failed: %s", exc)
                delay = CONFIG.error_retry_seconds
            await _wait_or_wake(wake, delay)
    finally:
        _schedule_wakeups.pop(key, None)
        metrics.forget_schedule(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def trainingjob_deleted(*, body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    """Stop product Jobs and release product Leases at once (GC would too, more slowly)."""
    assert namespace is not None, "TrainingJob is namespaced"
    if not _is_leader():
        raise kopf.TemporaryError("not the leader: the leader replica handles the deletion", delay=5)
    tj = TrainingJob.model_validate(dict(body))
    kube = _kube()
    remaining = 0
    for job in await kube.list_jobs(namespace, builders.selector(tj)):
        if observe.controller_uid(job) == tj.uid:
            remaining += 1
            if not job["metadata"].get("deletionTimestamp"):
                await kube.delete_job(namespace, job["metadata"]["name"], uid=job["metadata"].get("uid", ""))
    if remaining:
        # Foreground deletion: the Jobs stay until their pods are gone. Leases are released only
        # then, so no other TrainingJob starts a product while its pod may still run.
        raise kopf.TemporaryError(f"waiting for {remaining} product Job(s) to be deleted", delay=2)
    released = await leases.release_all(kube, tj)
    logger.info("deleted: stopped product Jobs, released %d Lease(s)", released)
    _wake(namespace)
