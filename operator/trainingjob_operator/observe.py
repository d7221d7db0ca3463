"""Observe: turn API objects (plain dicts) into the reconcile's inputs.

``parse_*`` functions are pure; :func:`gather` makes the (read-only) API calls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.kube import Kube, Obj
from trainingjob_operator.reconcile import Observed, ObservedJob, ObservedLease
from trainingjob_operator.termination import parse_report

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
POD_QUERY_CHUNK = 100
"""Job names per label-selector query (keeps the request URL short at high parallelism)."""


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _finished(job: Obj) -> tuple[str | None, str, str]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], cond.get("reason") or "", cond.get("message") or ""
    return None, "", ""


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


def parse_job(job: Obj, product_index: dict[str, int], pods: list[Obj] | None) -> ObservedJob | None:
    """An ObservedJob, or None when the Job isn't one of ours (unknown product)."""
    meta = job.get("metadata") or {}
    ann = meta.get("annotations") or {}
    product = ann.get(builders.ANNOTATION_PRODUCT)
    if product is None or product not in product_index:
        return None
    st = job.get("status") or {}
    finished, reason, message = _finished(job)
    exit_code: int | None = None
    report = None
    succeeded_pod = finished is None and pods is not None and pod_succeeded(pods)
    if (finished is not None or succeeded_pod) and pods is not None:
        exit_code, term = last_termination(pods)
        report = parse_report(term, product)
    return ObservedJob(
        name=meta.get("name", ""),
        index=product_index[product],
        retry_round=ann.get(builders.ANNOTATION_RETRY_ROUND, ""),
        active=int(st.get("active") or 0),
        failed_pods=int(st.get("failed") or 0),
        finished=finished,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        deleting=bool(meta.get("deletionTimestamp")),
        ttl_seconds=(job.get("spec") or {}).get("ttlSecondsAfterFinished"),
        report=report,
        exit_code=exit_code,
        pod_succeeded=succeeded_pod,
    )


def parse_lease(lease: Obj) -> ObservedLease:
    spec = lease.get("spec") or {}
    meta = lease.get("metadata") or {}
    return ObservedLease(
        name=meta.get("name", ""),
        holder=spec.get("holderIdentity") or None,
        renew_time=parse_time(spec.get("renewTime") or spec.get("acquireTime")),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        resource_version=meta.get("resourceVersion", ""),
    )


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def needs_pods(job: Obj, folded: set[int], product_index: dict[str, int]) -> bool:
    """A Job whose product isn't recorded yet: its pods tell whether (and how) it ended."""
    product = ((job.get("metadata") or {}).get("annotations") or {}).get(builders.ANNOTATION_PRODUCT)
    return product in product_index and product_index[product] not in folded


async def gather(kube: Kube, tj: TrainingJob, folded: set[int]) -> Observed:
    """Read everything reconcile needs: child Jobs (+ pods of newly finished ones) and Leases."""
    ns = tj.namespace
    product_index = {p: i for i, p in enumerate(tj.spec.products)}
    all_jobs = await kube.list_jobs(ns, builders.LABEL_PRODUCT_HASH)
    ours = [j for j in all_jobs if _owned_by(j, tj.uid)]
    foreign_active = frozenset(
        ((j.get("metadata") or {}).get("labels") or {}).get(builders.LABEL_PRODUCT_HASH, "")
        for j in all_jobs
        if not _owned_by(j, tj.uid) and _finished(j)[0] is None
    )
    unrecorded = sorted(j["metadata"]["name"] for j in ours if needs_pods(j, folded, product_index))
    pods_by_job: dict[str, list[Obj]] = {name: [] for name in unrecorded}
    for start in range(0, len(unrecorded), POD_QUERY_CHUNK):
        names = ",".join(unrecorded[start : start + POD_QUERY_CHUNK])
        for pod in await kube.list_pods(ns, f"{JOB_NAME_LABEL} in ({names})"):
            job_name = ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL, "")
            pods_by_job.setdefault(job_name, []).append(pod)
    jobs: dict[int, ObservedJob] = {}
    for j in ours:
        name = j["metadata"]["name"]
        parsed = parse_job(j, product_index, pods_by_job.get(name, []) if name in pods_by_job else None)
        if parsed is None:
            continue
        current = jobs.get(parsed.index)
        # Prefer the live (non-deleting) Job when an old one is still being deleted.
        if current is None or (current.deleting and not parsed.deleting):
            jobs[parsed.index] = parsed
    leases = {
        lease.name: lease for lease in (parse_lease(x) for x in await kube.list_leases(ns, builders.LABEL_PRODUCT_HASH))
    }
    return Observed(jobs=jobs, leases=leases, foreign_active=foreign_active - {""})


def observed_summary(observed: Observed) -> dict[str, Any]:
    """For logs: a small picture of what was observed."""
    return {
        "jobs": len(observed.jobs),
        "active": sum(1 for j in observed.jobs.values() if j.finished is None),
        "leases": len(observed.leases),
    }
