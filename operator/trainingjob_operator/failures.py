"""Why a product's Job failed, from its Job condition, exit code and the trainer's report (pure)."""

from __future__ import annotations

from trainingjob_operator import builders
from trainingjob_operator.observed import ObservedJob
from trainingjob_operator.reasons import Reason


def is_locked(job: ObservedJob) -> bool:
    """The trainer did not train: another trainer holds the product's lock in the output database
    (any pod of the Job said so: a second pod of it may have ended later with another code)."""
    if job.locked or (job.report is not None and job.report.status == "locked"):
        return True
    return job.exit_code == builders.EXIT_PRODUCT_LOCKED


def classify_failure(job: ObservedJob) -> tuple[Reason, str]:
    """(reason, message) for a failed product Job (reasons.py): InvalidData and InvalidConfig (never
    retried), OOMKilled (its last pod over its memory limit), DeadlineExceeded, BackoffLimitExceeded,
    else JobFailed with the Job's own reason."""
    report = job.report
    detail = (report.message if report and report.message else "") or job.message
    if job.exit_code == builders.EXIT_CONFIG_ERROR or (report is not None and report.reason == "InvalidConfig"):
        return Reason.INVALID_CONFIG, detail or "the trainer rejected its configuration (exit code 2)"
    if (
        job.exit_code == builders.EXIT_INVALID_DATA
        or (report is not None and report.status == "invalid")
        or (job.reason == "PodFailurePolicy" and job.exit_code is None)
    ):
        why = report.reason if report and report.reason else "InvalidData"
        return Reason.INVALID_DATA, f"{why}: {detail}".strip(": ") if detail else why
    if job.oom_killed:
        tries = f" (failed {job.failed_pods} time(s))" if job.failed_pods else ""
        return Reason.OOM_KILLED, (
            f"the trainer used more memory than its limit and was OOMKilled{tries}: raise "
            "spec.template.resources.limits.memory"
        )
    if job.reason == "DeadlineExceeded":
        return Reason.DEADLINE_EXCEEDED, detail or "the product Job ran past activeDeadlineSeconds"
    if job.reason == "BackoffLimitExceeded":
        tail = f"; last error: {detail}" if detail else ""
        code = f" (last exit code {job.exit_code})" if job.exit_code is not None else ""
        return Reason.BACKOFF_LIMIT_EXCEEDED, f"failed {job.failed_pods} time(s){code}{tail}"
    said = f"{job.reason}: " if job.reason else ""
    return Reason.JOB_FAILED, said + (detail or "the product Job failed")
