"""Kopf registration only: thin handlers that call the modules doing the work.

Run with ``kopf run -m trainingjob_operator.main --all-namespaces --liveness=http://0.0.0.0:8081/healthz``
(never by file path: Kopf would put this folder first on sys.path and shadow modules).

Each TrainingJob gets a daemon that loops "observe -> decide -> act". Job and TrainingJob
events only *wake* the daemon early; what it does is decided from the API's state alone.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from trainingjob_operator import builders, leases, metrics
from trainingjob_operator.api import GROUP, PLURAL, VERSION, TrainingJob
from trainingjob_operator.config import OperatorConfig
from trainingjob_operator.controller import reconcile_once
from trainingjob_operator.kube import Kube, KubeError, load_client
from trainingjob_operator.leader import LeaderElector, LeaseConfig
from trainingjob_operator.reconcile import Settings

CONFIG = OperatorConfig.from_env()
_state: dict[str, Any] = {}
_wakeups: dict[tuple[str, str], asyncio.Event] = {}


def _kube() -> Kube:
    kube = _state.get("kube")
    if kube is None:
        kube = _state["kube"] = Kube(load_client(), CONFIG.request_timeout_seconds)
    return kube


def _wake(namespace: str, name: str | None = None) -> None:
    for (ns, n), event in list(_wakeups.items()):
        if ns == namespace and (name is None or n == name):
            event.set()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = CONFIG.request_timeout_seconds
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Blocking client calls run in worker threads; the default pool (cpus + 4) is too small
    # for the concurrent launches of one pass.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube"))
    settings.peering.standalone = True  # HA is our own Lease-based leader election (leader.py)
    metrics.serve(CONFIG.metrics_port)
    kube = _kube()
    if CONFIG.leader_election_namespace:
        elector = LeaderElector(kube, LeaseConfig(CONFIG.leader_election_namespace, CONFIG.leader_election_name))
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


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def run_trainingjob(
    *,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Reconcile one TrainingJob until it is deleted."""
    assert namespace is not None, "TrainingJob is namespaced"
    wake = _wakeups.setdefault((namespace, name), asyncio.Event())
    settings = Settings(lease_duration_seconds=CONFIG.lease_duration_seconds)

    def post_event(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    try:
        while not stopped:
            await _until_leader(stopped)  # a standby replica never reconciles
            if stopped:
                break
            wake.clear()
            try:
                result = await reconcile_once(_kube(), namespace, name, post_event, settings)
                idle = CONFIG.resync_seconds * (6 if result.finished and not result.active else 1)
            except KubeError as exc:
                if exc.status == 404:
                    return
                logger.warning("reconcile failed: %s", exc)
                idle = CONFIG.resync_seconds
            await asyncio.sleep(CONFIG.min_pass_interval_seconds)
            if wake.is_set():
                continue
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=idle)
            finally:
                waiter.cancel()
    finally:
        _wakeups.pop((namespace, name), None)
        metrics.forget(namespace, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
def trainingjob_changed(*, namespace: str | None, name: str, **_: Any) -> None:
    """Spec, annotation (retry-failed) and scale changes wake the daemon at once."""
    if namespace:
        _wake(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={builders.LABEL_PRODUCT_HASH: kopf.PRESENT})
def product_job_changed(*, namespace: str | None, **_: Any) -> None:
    """A product Job changed: its TrainingJob, and any waiting on its Lease, may act now."""
    if namespace:
        _wake(namespace)


@kopf.on.event("", "v1", "pods", labels={builders.LABEL_PRODUCT_HASH: kopf.PRESENT})
def product_pod_changed(*, namespace: str | None, status: kopf.Status, **_: Any) -> None:
    """A trainer pod finished: its product is done before the Job controller marks the Job (up to ~1 s
    later, it batches pod updates), so the slot can be reused at once."""
    if namespace and status.get("phase") in ("Succeeded", "Failed"):
        _wake(namespace)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def trainingjob_deleted(*, body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    """Stop product Jobs and release product Leases at once (GC would too, more slowly)."""
    assert namespace is not None, "TrainingJob is namespaced"
    if not _is_leader():
        raise kopf.TemporaryError("not the leader: the leader replica handles the deletion", delay=5)
    tj = TrainingJob.model_validate(dict(body))
    kube = _kube()
    for job in await kube.list_jobs(namespace, builders.selector(tj)):
        if any(ref.get("uid") == tj.uid for ref in job["metadata"].get("ownerReferences") or []):
            await kube.delete_job(namespace, job["metadata"]["name"])
    released = await leases.release_all(kube, tj)
    logger.info("deleted: stopped product Jobs, released %d Lease(s)", released)
    _wake(namespace)
