"""Why a product's Job failed, from its Job condition, exit code and the trainer's report (pure)."""

from __future__ import annotations

from trainingjob_operator import builders
from trainingjob_operator.observed import ObservedJob


def is_locked(job: ObservedJob) -> bool:
    """The trainer did not train: another trainer holds the product's lock in the output database."""
    if job.report is not None and job.report.status == "locked":
        return True
    return job.exit_code == builders.EXIT_PRODUCT_LOCKED


def classify_failure(job: ObservedJob) -> tuple[str, str]:
    """(reason, message) for a failed product Job. Reasons (docs/api-reference.md):
    InvalidData and InvalidConfig (never retried), DeadlineExceeded, BackoffLimitExceeded."""
    report = job.report
    detail = (report.message if report and report.message else "") or job.message
    if job.exit_code == builders.EXIT_CONFIG_ERROR or (report is not None and report.reason == "InvalidConfig"):
        return "InvalidConfig", detail or "the trainer rejected its configuration (exit code 2)"
    if (
        job.exit_code == builders.EXIT_INVALID_DATA
        or (report is not None and report.status == "invalid")
        or (job.reason == "PodFailurePolicy" and job.exit_code is None)
    ):
        why = report.reason if report and report.reason else "InvalidData"
        return "InvalidData", f"{why}: {detail}".strip(": ") if detail else why
    if job.reason == "DeadlineExceeded":
        return "DeadlineExceeded", detail or "the product Job ran past activeDeadlineSeconds"
    if job.reason == "BackoffLimitExceeded":
        tail = f"; last error: {detail}" if detail else ""
        code = f" (last exit code {job.exit_code})" if job.exit_code is not None else ""
        return "BackoffLimitExceeded", f"failed {job.failed_pods} time(s){code}{tail}"
    return job.reason or "Failed", detail or "the product Job failed"
