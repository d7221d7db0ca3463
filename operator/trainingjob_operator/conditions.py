"""Phase and conditions of a TrainingJob from one pass's counts (pure; the last reconcile phase)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainingjob_operator.actions import Event
from trainingjob_operator.api import TrainingJobStatus
from trainingjob_operator.status import get_condition, set_condition

if TYPE_CHECKING:
    from trainingjob_operator.reconcile import PassState


def _counts(st: PassState) -> str:
    p = st.status.products
    queued = f", {p.queued} queued" if p.queued else ""
    return f"{p.succeeded} trained, {p.failed} failed, {p.active} active{queued}, {p.waiting} waiting of {p.total}"


def _finished(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> str:
    """Every product is on record, or the TrainingJob stopped (too many failed, rejected Jobs)."""
    gen, stamp, s = st.tj.generation, st.stamp, st.status
    total, ok, bad = s.products.total, len(st.succeeded), len(st.failed)
    rejected = _stalled_reason(st) == "JobRejected" and st.done < total
    conds = s.conditions
    if too_many_failed or ok == 0 or rejected:
        phase = "Failed"
        reason = "MaxFailedProductsExceeded" if too_many_failed else "JobRejected" if rejected else "NoProductTrained"
        limit = f" (maxFailedProducts allows {allowed})" if too_many_failed else ""
        msg = f"{bad} of {total} products failed{limit}; {ok} trained"
        if rejected:
            msg += "; the API server refused product Jobs: fix spec.template, then annotate retry-failed"
        conds = set_condition(conds, "Failed", True, reason, msg, stamp, gen)
        conds = set_condition(conds, "Complete", False, reason, msg, stamp, gen)
    else:
        phase = "Succeeded"
        msg = f"{ok} of {total} products trained" + (f"; {bad} failed" if bad else "")
        conds = set_condition(conds, "Complete", True, "AllProductsFinished", msg, stamp, gen)
        conds = set_condition(conds, "Failed", False, "AllProductsFinished", msg, stamp, gen)
    conds = set_condition(conds, "Running", False, "Finished", msg, stamp, gen)
    conds = set_condition(conds, "Suspended", False, "Finished", "", stamp, gen)
    s.conditions = conds
    if s.completion_time is None or old.phase not in ("Succeeded", "Failed"):
        s.completion_time = stamp
        ok_phase = phase == "Succeeded"
        st.actions.append(Event("Normal" if ok_phase else "Warning", "Complete" if ok_phase else "Failed", msg))
    return phase


def _in_progress(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> str:
    gen, stamp, s, spec = st.tj.generation, st.stamp, st.status, st.tj.spec
    counts = _counts(st)
    n_active = s.products.active
    conds = s.conditions
    s.completion_time = None
    if too_many_failed:
        phase = "Running"
        msg = f"Too many failed products (limit {allowed}); waiting for {n_active} running product(s) to finish"
        conds = set_condition(conds, "Running", True, "MaxFailedProductsExceeded", msg, stamp, gen)
    elif spec.suspend:
        phase = "Suspended"
        conds = set_condition(conds, "Running", False, "Suspended", counts, stamp, gen)
    elif n_active or st.done:
        phase = "Running"
        conds = set_condition(conds, "Running", True, "ProductsTraining", counts, stamp, gen)
    else:
        phase = "Pending"
        why = "Queued" if s.products.queued else "WaitingForProducts" if s.products.waiting else "Pending"
        conds = set_condition(conds, "Running", False, why, counts, stamp, gen)
    suspended_msg = f"No new products start; {n_active} running product(s) finish" if spec.suspend else ""
    reason = "SuspendedByUser" if spec.suspend else "NotSuspended"
    conds = set_condition(conds, "Suspended", spec.suspend, reason, suspended_msg, stamp, gen)
    conds = set_condition(conds, "Complete", False, "InProgress", counts, stamp, gen)
    conds = set_condition(conds, "Failed", False, "InProgress", counts, stamp, gen)
    s.conditions = conds
    was = get_condition(old.conditions, "Suspended")
    was_suspended = was is not None and was.status == "True"
    if spec.suspend != was_suspended:
        if spec.suspend:
            st.actions.append(Event("Normal", "Suspended", suspended_msg))
        elif was is not None:
            st.actions.append(Event("Normal", "Resumed", "New products start again"))
    return phase


def launches_stopped_by_rejection(st: PassState) -> bool:
    """A launch of this spec generation was refused: launch nothing more until the spec changes
    (every product's Job comes from the same template)."""
    return _stalled_reason(st) == "JobRejected"


def _stalled_reason(st: PassState) -> str | None:
    if st.stalled:
        return st.stalled[0][0]
    prev = get_condition(st.tj.status.conditions, "Stalled")
    rejected = prev is not None and prev.status == "True" and prev.reason == "JobRejected"
    return "JobRejected" if rejected and prev is not None and prev.observed_generation == st.tj.generation else None


def stalled_condition(st: PassState, old: TrainingJobStatus) -> None:
    """Stalled: progress needs a person (a refused Job, a pod that cannot start). A refused Job keeps
    it True until the spec changes (a new generation)."""
    s, gen, stamp = st.status, st.tj.generation, st.stamp
    reason = _stalled_reason(st)
    if reason is None:
        if get_condition(old.conditions, "Stalled") is not None:
            s.conditions = set_condition(s.conditions, "Stalled", False, "NotStalled", "", stamp, gen)
        return
    fresh = [m for r, m in st.stalled if r == reason]
    prev = get_condition(old.conditions, "Stalled")
    message = "; ".join(fresh[:3]) if fresh else (prev.message if prev else "")
    if len(fresh) > 3:
        message += f"; and {len(fresh) - 3} more"
    s.conditions = set_condition(s.conditions, "Stalled", True, reason, message[:1024], stamp, gen)
    if prev is None or prev.status != "True" or prev.reason != reason:
        st.actions.append(Event("Warning", reason, message[:1024]))


def phase_and_conditions(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> None:
    s = st.status
    total = s.products.total
    unfinished = st.active or st.queued
    rejected_stop = _stalled_reason(st) == "JobRejected" and not unfinished
    stopping = (too_many_failed or rejected_stop) and not unfinished
    if st.done == total or stopping:
        phase = _finished(st, old, allowed, too_many_failed)
    else:
        phase = _in_progress(st, old, allowed, too_many_failed)
    stalled_condition(st, old)
    s.phase = phase  # type: ignore[assignment]
