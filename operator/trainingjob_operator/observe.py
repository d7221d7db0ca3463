"""Observe: turn API objects (plain dicts) into the reconcile's inputs.

``parse_*`` functions are pure; :func:`gather` makes the (read-only) API calls.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.kube import Kube, Obj
from trainingjob_operator.observed import (
    Observed,
    ObservedDiscovery,
    ObservedJob,
    ObservedLease,
    ObservedShardJob,
    ObservedShards,
    ShardPod,
    UnchangedCheck,
)
from trainingjob_operator.probes import PodProbes
from trainingjob_operator.reasons import STUCK_POD_REASONS, Reason
from trainingjob_operator.shards import in_shard_mode
from trainingjob_operator.status import parse_indexes
from trainingjob_operator.termination import parse_report, parse_unchanged

JOB_UID_LABEL = builders.JOB_UID_LABEL
STUCK_PROBE_AFTER_SECONDS = 5.0
FINISHED_PODS = "status.phase!=Pending,status.phase!=Running,status.phase!=Unknown"
"""Field selector of the pods the operator watches: only those that ended (Succeeded or Failed)
carry what it reads (exit code, termination message)."""


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _finished_condition(job: Obj) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond
    return None


def _finished(job: Obj) -> tuple[str | None, str, str]:
    cond = _finished_condition(job)
    if cond is None:
        return None, "", ""
    return cond["type"], cond.get("reason") or "", cond.get("message") or ""


def pod_succeeded(pods: list[Obj]) -> bool:
    return any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods)


def last_termination(pods: list[Obj], container: str = "trainer") -> tuple[int | None, str | None]:
    """(exit code, termination message) of the most recently finished trainer container."""
    best: tuple[str, int | None, str | None] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated")
            if not term:
                continue
            key = term.get("finishedAt") or ""
            if best is None or key >= best[0]:
                best = (key, term.get("exitCode"), term.get("message"))
    if best is None:
        return None, None
    return best[1], best[2]


EXIT_CODE_IN_CONDITION = re.compile(r"\bexit code (\d+)\b")
"""The Job controller's podFailurePolicy message: "Container trainer for pod ns/x failed with exit
code 5 matching FailJob rule at index 0"."""


def condition_exit_code(message: str) -> int | None:
    """The exit code a Job condition's message names (podFailurePolicy), if any."""
    match = EXIT_CODE_IN_CONDITION.search(message)
    return int(match[1]) if match else None


def last_terminated_reason(pods: list[Obj], container: str = "trainer") -> str | None:
    """The kubelet's reason for the most recently finished trainer container (``OOMKilled``,
    ``Error``, ``Completed``), or None."""
    best: tuple[str, str | None] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") if cs.get("name") == container else None
            if term and (best is None or (term.get("finishedAt") or "") >= best[0]):
                best = (term.get("finishedAt") or "", term.get("reason"))
    return best[1] if best else None


def any_locked(pods: list[Obj], product: str, container: str = "trainer") -> bool:
    """Some pod's trainer found the product locked (exit code 5, or a ``locked`` report): however
    the Job's other pods ended, the product was not trained for lack of its lock."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") if cs.get("name") == container else None
            if not term:
                continue
            if term.get("exitCode") == builders.EXIT_PRODUCT_LOCKED:
                return True
            report = parse_report(term.get("message"), product)
            if report is not None and report.status == "locked":
                return True
    return False


def scheduled_at(pod: Obj) -> datetime | None:
    """When the pod was bound to a node (its PodScheduled condition; for a bound pod without one, its
    creation), or None while unscheduled."""
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
    if (pod.get("spec") or {}).get("nodeName"):
        return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    return None


def pod_uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def waiting_reason(pod: Obj) -> str | None:
    """The trainer container's waiting reason of a pending pod (ContainerCreating, ErrImagePull, ...)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending":
        return None
    for cs in status.get("containerStatuses") or []:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            return str(reason)
    return None


def _stuck(pods: list[Obj], first_seen: Mapping[str, datetime] | None = None) -> tuple[Reason, str, datetime] | None:
    """(reason, message, since) when a pending pod's trainer container cannot be created.

    The clock starts when the pod was scheduled (time spent Unschedulable, waiting for an autoscaler,
    is no fault of the pod), or later when the trouble was first seen (``first_seen`` by pod uid,
    probes.py): a Secret an external-secrets controller creates a little late, one failed pull.
    A single ErrImagePull is not stuck: a pull that keeps failing turns ImagePullBackOff."""
    for pod in pods:
        reason = waiting_reason(pod)
        scheduled = scheduled_at(pod)
        if reason not in STUCK_POD_REASONS or scheduled is None:
            continue
        seen = (first_seen or {}).get(pod_uid(pod))
        since = max(scheduled, seen) if seen is not None else scheduled
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == reason:
                return Reason(reason), str(waiting.get("message") or reason), since
    return None


def job_product(job: Obj) -> str | None:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(builders.ANNOTATION_PRODUCT)


def parse_job(
    job: Obj,
    pods: list[Obj] | None,
    stuck_pods: list[Obj] | None = None,
    pods_confirmed: bool = False,
    first_seen: Mapping[str, datetime] | None = None,
) -> ObservedJob | None:
    """An ObservedJob from the Job and *its own* pods (by controller uid), or None when it has no product.

    ``pods_confirmed``: ``pods`` were read from the API (not a watch cache): a finished Job with no
    finished pod among them has none any more (PodGC), so it is folded from its condition alone.
    ``first_seen``: when each pod's trouble was first seen (probes.py), by pod uid."""
    meta = job.get("metadata") or {}
    ann = meta.get("annotations") or {}
    product = ann.get(builders.ANNOTATION_PRODUCT)
    if product is None:
        return None
    st = job.get("status") or {}
    cond = _finished_condition(job)
    finished = cond["type"] if cond else None
    suspended = bool((job.get("spec") or {}).get("suspend"))
    exit_code: int | None = None
    report = None
    locked = pod_missing = oom_killed = False
    succeeded_pod = finished is None and pods is not None and pod_succeeded(pods)
    if (finished is not None or succeeded_pod) and pods is not None:
        exit_code, term = last_termination(pods)
        report = parse_report(term, product)
        locked = finished == "Failed" and any_locked(pods, product)
        oom_killed = finished == "Failed" and last_terminated_reason(pods) == "OOMKilled"
        # Not the pod that finished the Job seen yet (none at all; or a Complete Job whose
        # succeeded pod is behind an earlier failed one): wait for it (reconcile), or fold from
        # the condition when the API says there is none any more.
        unseen = exit_code is None or (finished == "Complete" and not pod_succeeded(pods))
        pod_missing = finished is not None and unseen and not pods_confirmed
        if exit_code is None and finished is not None:
            exit_code = condition_exit_code(str(cond.get("message") or "")) if cond else None
            locked = locked or exit_code == builders.EXIT_PRODUCT_LOCKED
    return ObservedJob(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        product=product,
        retry_round=ann.get(builders.ANNOTATION_RETRY_ROUND, ""),
        active=int(st.get("active") or 0),
        failed_pods=int(st.get("failed") or 0),
        finished=finished,
        reason=(cond.get("reason") or "") if cond else "",
        message=(cond.get("message") or "") if cond else "",
        # Read only where it matters (when a locked product may be relaunched): parsing is most of
        # a pass's cost at 10,000 Jobs.
        finished_at=(
            parse_time(cond.get("lastTransitionTime")) if cond and (finished == "Failed" or pod_missing) else None
        ),
        deleting=bool(meta.get("deletionTimestamp")),
        ttl_seconds=(job.get("spec") or {}).get("ttlSecondsAfterFinished"),
        report=report,
        exit_code=exit_code,
        pod_succeeded=succeeded_pod,
        locked=locked,
        oom_killed=oom_killed,
        pod_missing=pod_missing,
        stuck=_stuck(stuck_pods, first_seen) if finished is None and stuck_pods and not suspended else None,
        suspended=suspended,
    )


def parse_lease(lease: Obj) -> ObservedLease:
    spec = lease.get("spec") or {}
    meta = lease.get("metadata") or {}
    product = (meta.get("annotations") or {}).get(builders.ANNOTATION_PRODUCT)
    return ObservedLease(
        name=meta.get("name", ""),
        holder=spec.get("holderIdentity") or None,
        renew_time=parse_time(spec.get("renewTime") or spec.get("acquireTime")),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        resource_version=meta.get("resourceVersion", ""),
        product=product,
    )


def controller_uid(obj: Obj) -> str | None:
    """The uid of the object's controller ownerReference (the only owner that makes it a child)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return None


def is_product_job(job: Obj, owner_uid: str, product: str) -> bool:
    """The Job is ``product``'s under the TrainingJob of ``owner_uid`` (its controller uid and its
    product annotation: a Job of the same name may be another TrainingJob's or another product's)."""
    return controller_uid(job) == owner_uid and job_product(job) == product


def may_be_stuck(job: Obj, now: datetime, after_seconds: float = STUCK_PROBE_AFTER_SECONDS) -> bool:
    """An unfinished Job with an active pod that is not ready after a while: its pod may be unable
    to start (a missing Secret, a bad image). Only such Jobs' pending pods are read (uncached)."""
    st = job.get("status") or {}
    if _finished(job)[0] is not None or (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if (job.get("spec") or {}).get("suspend"):
        return False  # queued (Kueue): its pods are being deleted, none is meant to start
    if int(st.get("active") or 0) == 0 or int(st.get("ready") or 0) > 0:
        return False
    started = parse_time(st.get("startTime"))
    return started is not None and (now - started).total_seconds() >= after_seconds


# ---------------------------------------------------------------- cache entries
# The operator keeps Kopf indexes (watch-fed caches, like controller-runtime's cached client)
# of product Jobs, pods and Leases. Entries are trimmed to what reconcile reads.


KEPT_JOB_ANNOTATIONS = (
    builders.ANNOTATION_PRODUCT,
    builders.ANNOTATION_RETRY_ROUND,
    builders.ANNOTATION_ROLE,
    builders.ANNOTATION_INDEXES,
    builders.ANNOTATION_SHARD_SIZE,
)
KEPT_JOB_LABELS = (builders.LABEL_PRODUCT_HASH, builders.LABEL_ROUND)
KEPT_JOB_SPEC = ("ttlSecondsAfterFinished", "suspend", "parallelism", "completions")
KEPT_JOB_STATUS = (
    "active",
    "ready",
    "failed",
    "succeeded",
    "conditions",
    "startTime",
    "completedIndexes",
    "failedIndexes",
)
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def trim_job(body: Obj) -> Obj:
    meta = body.get("metadata") or {}
    ann = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k in KEPT_JOB_LABELS},
            "annotations": {k: ann[k] for k in KEPT_JOB_ANNOTATIONS if k in ann},
            "ownerReferences": [
                {"uid": r.get("uid"), "controller": r.get("controller")} for r in meta.get("ownerReferences") or []
            ],
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "spec": {k: v for k, v in (body.get("spec") or {}).items() if k in KEPT_JOB_SPEC},
        "status": {k: v for k, v in (body.get("status") or {}).items() if k in KEPT_JOB_STATUS},
    }


def trim_pod(body: Obj) -> Obj:
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    index = (meta.get("annotations") or {}).get(COMPLETION_INDEX)
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "labels": {JOB_UID_LABEL: job_uid_of(body)},
            **({"annotations": {COMPLETION_INDEX: index}} if index is not None else {}),
        },
        "status": {
            "phase": status.get("phase"),
            **({"reason": status["reason"]} if status.get("reason") else {}),
            "containerStatuses": [
                {"name": cs.get("name"), "state": {"terminated": (cs.get("state") or {}).get("terminated")}}
                for cs in status.get("containerStatuses") or []
                if (cs.get("state") or {}).get("terminated")
            ],
        },
    }


def trim_lease(body: Obj) -> Obj:
    meta = body.get("metadata") or {}
    product = (meta.get("annotations") or {}).get(builders.ANNOTATION_PRODUCT)
    return {
        "metadata": {
            "name": meta.get("name"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {builders.ANNOTATION_PRODUCT: product} if product is not None else {},
        },
        "spec": body.get("spec") or {},
    }


def job_uid_of(pod: Obj) -> str:
    """The uid of the Job that owns a pod (the Job controller's label; else the controller ownerReference)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return str(labels.get(JOB_UID_LABEL) or controller_uid(pod) or "")


def build(
    tj: TrainingJob,
    recorded: set[str],
    jobs: Iterable[Obj],
    pods_of_job: Callable[[str], list[Obj]],
    leases: Iterable[Obj],
    rejected: Mapping[str, str] | None = None,
    stuck_pods: Mapping[str, list[Obj]] | None = None,
    read_pods: Mapping[str, list[Obj]] | None = None,
    first_seen: Mapping[str, datetime] | None = None,
    quota_exceeded: Mapping[str, str] | None = None,
    locked_relaunches: Mapping[str, int] | None = None,
) -> Observed:
    """Reconcile inputs from the namespace's product Jobs, pods and Leases (pure).

    ``pods_of_job(uid)`` gives the finished pods of the Job with that uid (a watch cache);
    ``read_pods`` the pods read from the API for some Jobs (by uid: authoritative, see
    :func:`read_unreported_pods`); ``stuck_pods`` the pending pods read for Jobs that
    :func:`may_be_stuck`, by Job uid, and ``first_seen`` when each pod's trouble was first seen
    (probes.py); ``rejected`` the products whose last Job create the API server refused;
    ``quota_exceeded`` those refused by a ResourceQuota while its back-off runs.
    """
    wanted = set(tj.spec.products)
    mine: dict[str, ObservedJob] = {}
    busy: set[str] = set()
    check: UnchangedCheck | None = None
    names: dict[str, str] = {}
    for job in jobs:
        if is_unchanged_check(job):
            if controller_uid(job) == tj.uid and not (job.get("metadata") or {}).get("deletionTimestamp"):
                check_pods = pods_of_job(str((job.get("metadata") or {}).get("uid") or ""))
                check = parse_unchanged_check(
                    job, check_pods, wanted, (stuck_pods or {}).get(str(job["metadata"].get("uid"))), first_seen
                )
            continue
        product = job_product(job)
        if product is None:
            continue
        meta = job.get("metadata") or {}
        names[meta.get("name", "")] = product
        if product not in wanted:
            continue
        uid = str(meta.get("uid") or "")
        if controller_uid(job) != tj.uid:
            # Another TrainingJob's (or a re-created one's) Job: while unfinished it trains the product;
            # while it exists under our Job's name, ours cannot be created.
            if _finished(job)[0] is None or meta.get("name") == builders.job_name(tj.name, product):
                busy.add(product)
            continue
        pods = pods_of_job(uid) if product not in recorded else None
        confirmed = pods is not None and read_pods is not None and uid in read_pods
        if confirmed:
            assert read_pods is not None
            pods = read_pods[uid]
        parsed = parse_job(job, pods, (stuck_pods or {}).get(uid), confirmed, first_seen)
        if parsed is None:
            continue
        current = mine.get(product)
        # A Job name holds one object at a time; keep the live one if a stale cache entry lingers.
        if current is None or (current.deleting and not parsed.deleting):
            mine[product] = parsed
    parsed_leases = {lease.name: lease for lease in (parse_lease(x) for x in leases)}
    return Observed(
        shards=build_shards(tj, jobs, pods_of_job) if in_shard_mode(tj) else None,
        jobs=mine,
        leases=parsed_leases,
        busy_elsewhere=frozenset(busy),
        rejected={p: m for p, m in (rejected or {}).items() if p in wanted},
        unchanged_check=check,
        job_names=names,
        quota_exceeded={p: m for p, m in (quota_exceeded or {}).items() if p in wanted},
        locked_relaunches={p: n for p, n in (locked_relaunches or {}).items() if p in wanted},
    )


# ---------------------------------------------------------------- shard mode


def _role(job: Obj) -> str | None:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(builders.ANNOTATION_ROLE)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _shard_pod(pod: Obj) -> ShardPod | None:
    """A finished pod of a shard Job: its completion index, exit, report and why it ended."""
    meta = pod.get("metadata") or {}
    index = _int((meta.get("annotations") or {}).get(COMPLETION_INDEX), -1)
    if index < 0:
        return None
    status = pod.get("status") or {}
    term: dict[str, Any] = {}
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == "trainer":
            term = (cs.get("state") or {}).get("terminated") or {}
    if not term and status.get("phase") not in ("Succeeded", "Failed"):
        return None
    reason = status.get("reason") or (term.get("reason") if term.get("reason") not in ("Completed", "Error") else "")
    return ShardPod(
        index=index,
        uid=str(meta.get("uid") or meta.get("name") or ""),
        finished_at=parse_time(term.get("finishedAt")),
        exit_code=term.get("exitCode"),
        message=term.get("message"),
        reason=str(reason or ""),
    )


def parse_shard_job(job: Obj, pods: list[Obj]) -> ObservedShardJob:
    """A round's Indexed Job: R and S (its annotations), the per-index record of the Job controller,
    and the finished pods of each index (pods of *this* Job's uid only)."""
    meta = job.get("metadata") or {}
    ann = meta.get("annotations") or {}
    spec = job.get("spec") or {}
    st = job.get("status") or {}
    cond = _finished_condition(job)
    completions = _int(spec.get("completions"))

    def indexes(text: Any) -> frozenset[int]:
        try:
            return frozenset(i for i in parse_indexes(str(text or "")) if i < completions)
        except ValueError:
            return frozenset()

    return ObservedShardJob(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        round_id=(meta.get("labels") or {}).get(builders.LABEL_ROUND, ""),
        retry_round=ann.get(builders.ANNOTATION_RETRY_ROUND, ""),
        indexes=ann.get(builders.ANNOTATION_INDEXES, ""),
        size=max(_int(ann.get(builders.ANNOTATION_SHARD_SIZE), 1), 1),
        completions=completions,
        parallelism=_int(spec.get("parallelism"), 1),
        suspended=bool(spec.get("suspend")),
        completed=indexes(st.get("completedIndexes")),
        failed=indexes(st.get("failedIndexes")),
        active=_int(st.get("active")),
        finished=cond["type"] if cond else None,
        reason=(cond.get("reason") or "") if cond else "",
        message=(cond.get("message") or "") if cond else "",
        finished_at=parse_time(cond.get("lastTransitionTime")) if cond else None,
        deleting=bool(meta.get("deletionTimestamp")),
        ttl_seconds=spec.get("ttlSecondsAfterFinished"),
        pods=tuple(p for p in (_shard_pod(x) for x in pods) if p is not None),
    )


def parse_discovery(job: Obj, pods: list[Obj]) -> ObservedDiscovery:
    meta = job.get("metadata") or {}
    cond = _finished_condition(job)
    finished = cond["type"] if cond else None
    _, term = last_termination(pods)
    if finished == "Complete" and term is None:
        finished = None  # its pod's report is on its way (the pod watch lags the Job watch)
    message = term if finished == "Complete" else str((cond or {}).get("message") or term or "")
    return ObservedDiscovery(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        finished=finished,
        message=message or "",
        finished_at=parse_time(cond.get("lastTransitionTime")) if cond else None,
        suspended=bool((job.get("spec") or {}).get("suspend")),
    )


def build_shards(tj: TrainingJob, jobs: Iterable[Obj], pods_of_job: Callable[[str], list[Obj]]) -> ObservedShards:
    """This TrainingJob's shard Jobs and discovery Job (by controller uid), with their pods (by Job uid)."""
    rounds: list[ObservedShardJob] = []
    discovery: ObservedDiscovery | None = None
    for job in jobs:
        role = _role(job)
        if role not in (builders.ROLE_SHARDS, builders.ROLE_DISCOVERY) or controller_uid(job) != tj.uid:
            continue
        uid = str((job.get("metadata") or {}).get("uid") or "")
        if role == builders.ROLE_SHARDS:
            rounds.append(parse_shard_job(job, pods_of_job(uid)))
        elif not (job.get("metadata") or {}).get("deletionTimestamp"):
            discovery = parse_discovery(job, pods_of_job(uid))
    rounds.sort(key=lambda j: j.name)
    return ObservedShards(jobs=tuple(rounds), discovery=discovery)


def is_unchanged_check(job: Obj) -> bool:
    ann = (job.get("metadata") or {}).get("annotations") or {}
    return ann.get(builders.ANNOTATION_ROLE) == builders.ROLE_UNCHANGED_PLAN


def parse_unchanged_check(
    job: Obj,
    pods: list[Obj],
    products: set[str],
    stuck_pods: list[Obj] | None = None,
    first_seen: Mapping[str, datetime] | None = None,
) -> UnchangedCheck:
    """The check Job and its answer for ``products`` (the TrainingJob's distinct ids): an answer
    counts only when it echoes the digest of exactly this list (builders.products_digest); whether
    Kueue holds it (suspended) or its pod cannot start (``stuck_pods``, as for product Jobs)."""
    meta = job.get("metadata") or {}
    cond = _finished_condition(job)
    finished = cond["type"] if cond else None
    suspended = bool((job.get("spec") or {}).get("suspend"))
    succeeded = pod_succeeded(pods)
    unchanged, truncated, message = None, False, ""
    if finished is not None or succeeded:
        _, term = last_termination(pods)
        answer = parse_unchanged(term, len(products), builders.products_digest(products))
        unchanged, truncated, message = answer.unchanged, answer.truncated, answer.problem
        if cond and not message:
            message = str(cond.get("message") or cond.get("reason") or "")
    return UnchangedCheck(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        finished=finished,
        pod_succeeded=succeeded,
        unchanged=unchanged,
        truncated=truncated,
        message=message,
        suspended=suspended,
        stuck=_stuck(stuck_pods, first_seen) if finished is None and stuck_pods and not suspended else None,
    )


async def read_stuck_pods(
    kube: Kube, namespace: str, jobs: Iterable[Obj], now: datetime, probes: PodProbes | None = None
) -> dict[str, list[Obj]]:
    """Scheduled pending pods of the Jobs that :func:`may_be_stuck` (uncached reads, only for those
    Jobs, bounded by ``probes``: at most every ~10 s per Job, concurrently)."""
    uids = [str((job.get("metadata") or {}).get("uid") or "") for job in jobs if may_be_stuck(job, now)]
    return await (probes if probes is not None else PodProbes()).read(kube, namespace, uids, now)


def unreported(observed: Observed) -> list[str]:
    """Uids of the finished Jobs whose finished pod the caches do not show (yet)."""
    return [job.uid for job in observed.jobs.values() if job.pod_missing]


async def read_unreported_pods(kube: Kube, namespace: str, uids: list[str]) -> dict[str, list[Obj]]:
    """The pods of finished Jobs whose pod the watch cache lacks, read from the API (rare: the pod
    watch lagging the Job watch after a restart or an API outage, or a pod already removed by
    PodGC). What this read finds is the truth: a finished pod, or none any more."""
    semaphore = asyncio.Semaphore(8)

    async def one(uid: str) -> tuple[str, list[Obj]]:
        async with semaphore:
            return uid, await kube.list_pods(namespace, f"{JOB_UID_LABEL}={uid}")

    return dict(await asyncio.gather(*(one(uid) for uid in uids)))


async def gather(
    kube: Kube, tj: TrainingJob, recorded: set[str], rejected: Mapping[str, str] | None = None
) -> Observed:
    """The same inputs read straight from the API (no cache): for tools and tests."""
    ns = tj.namespace
    jobs = await kube.list_jobs(ns, builders.LABEL_PRODUCT_HASH)
    pods = await kube.list_pods(ns, builders.LABEL_PRODUCT_HASH)
    by_job: dict[str, list[Obj]] = {}
    for pod in pods:
        by_job.setdefault(job_uid_of(pod), []).append(pod)
    leases = await kube.list_leases(ns, builders.LABEL_PRODUCT_HASH)
    stuck = await read_stuck_pods(kube, ns, [j for j in jobs if controller_uid(j) == tj.uid], datetime.now(UTC))
    own = {str((j.get("metadata") or {}).get("uid") or "") for j in jobs if controller_uid(j) == tj.uid}
    read = {uid: by_job.get(uid, []) for uid in own}  # read from the API just now: authoritative
    return build(tj, recorded, jobs, lambda uid: by_job.get(uid, []), leases, rejected, stuck, read)
