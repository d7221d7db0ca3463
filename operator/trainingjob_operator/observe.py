"""Observe: turn API objects (plain dicts) into the reconcile's inputs.

``parse_*`` functions are pure; :func:`gather` makes the (read-only) API calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from trainingjob_operator import builders
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.kube import Kube, Obj
from trainingjob_operator.reconcile import Observed, ObservedJob, ObservedLease
from trainingjob_operator.termination import parse_report

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
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


# ---------------------------------------------------------------- cache entries
# The operator keeps Kopf indexes (watch-fed caches, like controller-runtime's cached client)
# of product Jobs, pods and Leases. Entries are trimmed to what reconcile reads.


def trim_job(body: Obj) -> Obj:
    meta = body.get("metadata") or {}
    ann = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "labels": {builders.LABEL_PRODUCT_HASH: (meta.get("labels") or {}).get(builders.LABEL_PRODUCT_HASH)},
            "annotations": {
                k: ann[k] for k in (builders.ANNOTATION_PRODUCT, builders.ANNOTATION_RETRY_ROUND) if k in ann
            },
            "ownerReferences": [{"uid": r.get("uid")} for r in meta.get("ownerReferences") or []],
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "spec": {"ttlSecondsAfterFinished": (body.get("spec") or {}).get("ttlSecondsAfterFinished")},
        "status": {
            k: v for k, v in (body.get("status") or {}).items() if k in ("active", "failed", "succeeded", "conditions")
        },
    }


def trim_pod(body: Obj) -> Obj:
    status = body.get("status") or {}
    return {
        "metadata": {"name": (body.get("metadata") or {}).get("name")},
        "status": {
            "phase": status.get("phase"),
            "containerStatuses": [
                {"name": cs.get("name"), "state": {"terminated": (cs.get("state") or {}).get("terminated")}}
                for cs in status.get("containerStatuses") or []
                if (cs.get("state") or {}).get("terminated")
            ],
        },
    }


def trim_lease(body: Obj) -> Obj:
    meta = body.get("metadata") or {}
    return {
        "metadata": {"name": meta.get("name"), "resourceVersion": meta.get("resourceVersion")},
        "spec": body.get("spec") or {},
    }


def job_name_of(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL, ""))


def build(
    tj: TrainingJob,
    folded: set[int],
    jobs: Iterable[Obj],
    pods_by_job: Callable[[str], list[Obj]],
    leases: Iterable[Obj],
) -> Observed:
    """Reconcile inputs from the namespace's product Jobs, their pods and the product Leases (pure)."""
    product_index = {p: i for i, p in enumerate(tj.spec.products)}
    all_jobs = list(jobs)
    ours = [j for j in all_jobs if _owned_by(j, tj.uid)]
    foreign_active = frozenset(
        ((j.get("metadata") or {}).get("labels") or {}).get(builders.LABEL_PRODUCT_HASH) or ""
        for j in all_jobs
        if not _owned_by(j, tj.uid) and _finished(j)[0] is None
    )
    observed_jobs: dict[int, ObservedJob] = {}
    for j in ours:
        name = j["metadata"]["name"]
        pods = pods_by_job(name) if needs_pods(j, folded, product_index) else None
        parsed = parse_job(j, product_index, pods)
        if parsed is None:
            continue
        current = observed_jobs.get(parsed.index)
        # Prefer the live (non-deleting) Job when an old one is still being deleted.
        if current is None or (current.deleting and not parsed.deleting):
            observed_jobs[parsed.index] = parsed
    parsed_leases = {lease.name: lease for lease in (parse_lease(x) for x in leases)}
    return Observed(jobs=observed_jobs, leases=parsed_leases, foreign_active=foreign_active - {""})


async def gather(kube: Kube, tj: TrainingJob, folded: set[int]) -> Observed:
    """The same inputs read straight from the API (no cache): for tools and tests."""
    ns = tj.namespace
    jobs = await kube.list_jobs(ns, builders.LABEL_PRODUCT_HASH)
    pods = await kube.list_pods(ns, builders.LABEL_PRODUCT_HASH)
    by_job: dict[str, list[Obj]] = {}
    for pod in pods:
        by_job.setdefault(job_name_of(pod), []).append(pod)
    leases = await kube.list_leases(ns, builders.LABEL_PRODUCT_HASH)
    return build(tj, folded, jobs, lambda name: by_job.get(name, []), leases)
