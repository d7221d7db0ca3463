"""Phase and conditions of a TrainingJob from one pass's counts (pure; the last reconcile phase).

Running, Complete, Failed and Suspended say what the TrainingJob does; Ready, Reconciling and Stalled
say it the way kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, read by Argo CD, Flux, kpt) and
``kubectl wait --for=condition=Ready`` expect (docs/design.md, "Status for tools"):

- running or pending: Reconciling=True -> kstatus InProgress;
- complete: Ready=True, Reconciling=False, Stalled=False -> Current;
- failed, or stalled (a refused Job, a pod that cannot start): Stalled=True -> Failed;
- suspended: Ready=False, reason Suspended -> InProgress (as kstatus reads a suspended batch Job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainingjob_operator.actions import Event
from trainingjob_operator.api import Condition, TrainingJobSpec, TrainingJobStatus
from trainingjob_operator.reasons import Reason
from trainingjob_operator.status import TRIAL_MODE, get_condition, set_condition

if TYPE_CHECKING:
    from trainingjob_operator.reconcile import PassState


def _counts(st: PassState) -> str:
    p = st.status.products
    queued = f", {p.queued} queued" if p.queued else ""
    return f"{p.succeeded} trained, {p.failed} failed, {p.active} active{queued}, {p.waiting} waiting of {p.total}"


def _trained_text(st: PassState) -> str:
    """The trained count, e.g. "1 trained, 2 skipped (unchanged)": a skipped product was not trained."""
    skipped = len(st.skipped & st.succeeded)
    trained = len(st.succeeded) - skipped
    return f"{trained} trained" + (f", {skipped} skipped (unchanged)" if skipped else "")


def _finished(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> str:
    """Every product is on record, or the TrainingJob stopped (too many failed, rejected Jobs)."""
    gen, stamp, s = st.tj.generation, st.stamp, st.status
    total, ok, bad = s.products.total, len(st.succeeded), len(st.failed)
    rejected = _stalled_reason(st) == Reason.JOB_REJECTED and st.done < total
    # Unset maxFailedProducts: no product may fail (as a Job without maxFailedIndexes: every product
    # runs, and the TrainingJob fails at the end if one of them failed).
    none_may_fail = allowed is None and bad > 0
    conds = s.conditions
    if too_many_failed or ok == 0 or rejected or none_may_fail:
        phase = "Failed"
        reason = (
            Reason.MAX_FAILED_PRODUCTS_EXCEEDED
            if too_many_failed
            else Reason.JOB_REJECTED
            if rejected
            else Reason.NO_PRODUCT_TRAINED
            if ok == 0
            else Reason.PRODUCTS_FAILED
        )
        limit = (
            f" (maxFailedProducts allows {allowed})"
            if too_many_failed
            else " (maxFailedProducts is unset: no product may fail)"
            if none_may_fail
            else ""
        )
        msg = f"{bad} of {total} products failed{limit}; {_trained_text(st)}"
        if rejected:
            msg += "; the API server refused product Jobs: fix spec.template, then annotate retry-failed"
        conds = set_condition(conds, "Failed", True, reason, msg, stamp, gen)
        conds = set_condition(conds, "Complete", False, reason, msg, stamp, gen)
    else:
        phase = "Succeeded"
        skipped = len(st.skipped & st.succeeded)
        msg = f"{ok} of {total} products trained" if not skipped else f"{_trained_text(st)} of {total} products"
        msg += (f"; {bad} failed" if bad else "") + _uncertain_note(s)
        msg += "; nothing stored (trial mode: no spec.output)" if in_trial_mode(st.tj.spec) else ""
        conds = set_condition(conds, "Complete", True, Reason.ALL_PRODUCTS_FINISHED, msg, stamp, gen)
        conds = set_condition(conds, "Failed", False, Reason.ALL_PRODUCTS_FINISHED, msg, stamp, gen)
    conds = set_condition(conds, "Running", False, Reason.FINISHED, msg, stamp, gen)
    conds = set_condition(conds, "Suspended", False, Reason.FINISHED, "", stamp, gen)
    s.conditions = conds
    if s.completion_time is None or old.phase not in ("Succeeded", "Failed"):
        s.completion_time = stamp
        ok_phase = phase == "Succeeded"
        st.actions.append(Event("Normal" if ok_phase else "Warning", "Complete" if ok_phase else "Failed", msg))
    return phase


def _uncertain_note(s: TrainingJobStatus) -> str:
    """ ", N uncertain (CV gain over naive within noise)" for the Complete message and event."""
    n = s.results.uncertain if s.results is not None else 0
    return f"; {n} uncertain (CV gain over naive within noise: check these first)" if n else ""


def _in_progress(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> str:
    gen, stamp, s, spec = st.tj.generation, st.stamp, st.status, st.tj.spec
    counts = _counts(st)
    n_active = s.products.active
    conds = s.conditions
    s.completion_time = None
    if too_many_failed:
        phase = "Running"
        msg = f"Too many failed products (limit {allowed}); waiting for {n_active} running product(s) to finish"
        conds = set_condition(conds, "Running", True, Reason.MAX_FAILED_PRODUCTS_EXCEEDED, msg, stamp, gen)
    elif spec.suspend:
        phase = "Suspended"
        conds = set_condition(conds, "Running", False, Reason.SUSPENDED, counts, stamp, gen)
    elif n_active or st.done:
        phase = "Running"
        conds = set_condition(conds, "Running", True, Reason.PRODUCTS_TRAINING, counts, stamp, gen)
    else:
        phase = "Pending"
        why = Reason.PENDING
        if s.products.queued or st.check_queued:
            why = Reason.QUEUED
        elif st.observed.quota_exceeded:
            why = Reason.QUOTA_EXCEEDED
        elif s.products.waiting:
            why = Reason.WAITING_FOR_PRODUCTS
        conds = set_condition(conds, "Running", False, why, counts, stamp, gen)
    suspended_msg = f"No new products start; {n_active} running product(s) finish" if spec.suspend else ""
    reason = Reason.SUSPENDED_BY_USER if spec.suspend else Reason.NOT_SUSPENDED
    conds = set_condition(conds, "Suspended", spec.suspend, reason, suspended_msg, stamp, gen)
    conds = set_condition(conds, "Complete", False, Reason.IN_PROGRESS, counts, stamp, gen)
    conds = set_condition(conds, "Failed", False, Reason.IN_PROGRESS, counts, stamp, gen)
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
    return _stalled_reason(st) == Reason.JOB_REJECTED


def _stalled_reason(st: PassState) -> Reason | None:
    if st.stalled:
        return st.stalled[0][0]
    prev = get_condition(st.tj.status.conditions, "Stalled")
    rejected = prev is not None and prev.status == "True" and prev.reason == Reason.JOB_REJECTED
    if rejected and prev is not None and prev.observed_generation == st.tj.generation:
        return Reason.JOB_REJECTED
    return None


def stalled_condition(st: PassState, old: TrainingJobStatus, phase: str) -> None:
    """Stalled: progress needs a person (the TrainingJob failed, a refused Job, a pod that cannot
    start). A refused Job keeps it True until the spec changes (a new generation); a TrainingJob
    that completed is not stalled."""
    s, gen, stamp = st.status, st.tj.generation, st.stamp
    reason = _stalled_reason(st) if phase != "Succeeded" else None
    prev = get_condition(old.conditions, "Stalled")
    failed = get_condition(s.conditions, "Failed")
    if reason is None and phase == "Failed" and failed is not None:
        s.conditions = set_condition(s.conditions, "Stalled", True, Reason(failed.reason), failed.message, stamp, gen)
        return
    if reason is None:
        s.conditions = set_condition(s.conditions, "Stalled", False, Reason.NOT_STALLED, "", stamp, gen)
        return
    fresh = [m for r, m in st.stalled if r == reason]
    message = "; ".join(fresh[:3]) if fresh else (prev.message if prev else "")
    if len(fresh) > 3:
        message += f"; and {len(fresh) - 3} more"
    s.conditions = set_condition(s.conditions, "Stalled", True, reason, message[:1024], stamp, gen)
    if prev is None or prev.status != "True" or prev.reason != reason:
        st.actions.append(Event("Warning", reason.value, message[:1024]))


def _reason(cond: Condition | None, default: Reason) -> Reason:
    return Reason(cond.reason) if cond is not None else default


def kstatus_conditions(st: PassState, phase: str) -> None:
    """Ready (True when Complete) and Reconciling (True while the operator works towards completion
    and nothing needs a person), from the conditions this pass set."""
    s, gen, stamp = st.status, st.tj.generation, st.stamp
    get = {c.type: c for c in s.conditions}.get
    stalled = get("Stalled")
    running = get("Running")
    if phase in ("Succeeded", "Failed"):
        outcome = get("Complete" if phase == "Succeeded" else "Failed")
        ready = (phase == "Succeeded", _reason(outcome, Reason.FINISHED), outcome.message if outcome else "")
        reconciling = (False, Reason.FINISHED, "")
    elif stalled is not None and stalled.status == "True":
        ready = (False, Reason(stalled.reason), stalled.message)
        reconciling = (False, Reason.STALLED, "progress needs a person: see the Stalled condition")
    elif phase == "Suspended":
        suspended = get("Suspended")
        message = suspended.message if suspended else ""
        ready = (False, Reason.SUSPENDED, message)
        finishing = s.products.active > 0
        reconciling = (finishing, Reason.PRODUCTS_FINISHING if finishing else Reason.SUSPENDED, message)
    else:
        message = running.message if running else ""
        ready = (False, Reason.IN_PROGRESS, message)
        reconciling = (True, _reason(running, Reason.PENDING), message)
    s.conditions = set_condition(s.conditions, "Ready", *ready, stamp, gen)
    s.conditions = set_condition(s.conditions, "Reconciling", *reconciling, stamp, gen)


TRIAL_MODE_MESSAGE = (
    "Trial mode: data comes from configMap and spec.output is unset, so models and forecasts are not "
    "stored anywhere; only status.results keeps a summary. Set spec.output.postgres to store them."
)


def in_trial_mode(spec: TrainingJobSpec) -> bool:
    """ConfigMap data and no output: nothing is persisted beyond status.results (docs/api-reference.md)."""
    return spec.data.config_map is not None and (spec.output is None or spec.output.postgres is None)


def trial_mode_condition(st: PassState, old: TrainingJobStatus) -> None:
    """TrialMode=True (reason NothingStored) and one Normal Event, so `kubectl describe` says that a
    run that ends Succeeded stored nothing."""
    if not in_trial_mode(st.tj.spec):
        return
    s = st.status
    s.conditions = set_condition(
        s.conditions, TRIAL_MODE, True, Reason.NOTHING_STORED, TRIAL_MODE_MESSAGE, st.stamp, st.tj.generation
    )
    if get_condition(old.conditions, TRIAL_MODE) is None:
        st.actions.append(Event("Normal", Reason.NOTHING_STORED.value, TRIAL_MODE_MESSAGE))


def tracked_condition(st: PassState, old: TrainingJobStatus) -> None:
    """Tracked (only with spec.tracking.mlflow): False, reason TrackingSkipped, once a trained
    product's MLflow tracking was skipped; training itself went on (docs/mlflow.md)."""
    spec = st.tj.spec.tracking
    if spec is None or spec.mlflow is None:
        return
    s, gen, stamp = st.status, st.tj.generation, st.stamp
    counts = s.results.tracking if s.results is not None else None
    logged, skipped = (counts.logged, counts.skipped) if counts is not None else (0, 0)
    if skipped:
        message = (
            f"MLflow tracking skipped for {skipped} of {logged + skipped} trained products (MLflow unavailable, "
            "slow or refusing); their models and forecasts are in the database"
        )
        s.conditions = set_condition(s.conditions, "Tracked", False, Reason.TRACKING_SKIPPED, message, stamp, gen)
        prev = get_condition(old.conditions, "Tracked")
        if prev is None or prev.status != "False":
            st.actions.append(Event("Warning", Reason.TRACKING_SKIPPED.value, message))
        return
    message = f"{logged} trained products logged to MLflow"
    s.conditions = set_condition(s.conditions, "Tracked", True, Reason.PRODUCTS_TRACKED, message, stamp, gen)


def phase_and_conditions(st: PassState, old: TrainingJobStatus, allowed: int | None, too_many_failed: bool) -> None:
    s = st.status
    total = s.products.total
    unfinished = st.active or st.queued
    rejected_stop = _stalled_reason(st) == Reason.JOB_REJECTED and not unfinished
    stopping = (too_many_failed or rejected_stop) and not unfinished
    if st.done == total or stopping:
        phase = _finished(st, old, allowed, too_many_failed)
    else:
        phase = _in_progress(st, old, allowed, too_many_failed)
    stalled_condition(st, old, phase)
    kstatus_conditions(st, phase)
    trial_mode_condition(st, old)
    tracked_condition(st, old)
    s.phase = phase  # type: ignore[assignment]
