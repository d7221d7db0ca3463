"""The one vocabulary of reasons: condition reasons and product failure reasons.

Every ``reason`` the operator writes (``status.conditions[].reason``, ``status.failures[].reason``)
is a :class:`Reason`; mypy checks the call sites, a unit test checks each is CamelCase and
described, and :mod:`trainingjob_operator.refdoc` renders :data:`DESCRIPTIONS` into
docs/api-reference.md. Reasons Kubernetes itself reports (a Job's ``BackoffLimitExceeded``, a
container's ``ErrImagePull``) keep their Kubernetes spelling, so they read the same here as in
``kubectl describe job``/``pod``.
"""

from __future__ import annotations

import re
from enum import StrEnum

CAMEL_CASE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
"""A reason: one CamelCase word (metav1.Condition allows ``^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$``)."""


class Reason(StrEnum):
    # -- progress (conditions of a TrainingJob)
    PENDING = "Pending"
    WAITING_FOR_PRODUCTS = "WaitingForProducts"
    QUEUED = "Queued"
    PRODUCTS_TRAINING = "ProductsTraining"
    PRODUCTS_FINISHING = "ProductsFinishing"
    IN_PROGRESS = "InProgress"
    ALL_PRODUCTS_FINISHED = "AllProductsFinished"
    FINISHED = "Finished"
    SUSPENDED_BY_USER = "SuspendedByUser"
    NOT_SUSPENDED = "NotSuspended"
    SUSPENDED = "Suspended"
    NOT_STALLED = "NotStalled"
    STALLED = "Stalled"
    # -- trial mode (configMap data, no output)
    NOTHING_STORED = "NothingStored"
    # -- a TrainingJob that failed
    MAX_FAILED_PRODUCTS_EXCEEDED = "MaxFailedProductsExceeded"
    NO_PRODUCT_TRAINED = "NoProductTrained"
    PRODUCTS_FAILED = "ProductsFailed"
    # -- a product that failed (status.failures[].reason; JobRejected and the pod reasons also Stalled)
    INVALID_DATA = "InvalidData"
    INVALID_CONFIG = "InvalidConfig"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    JOB_FAILED = "JobFailed"
    JOB_REJECTED = "JobRejected"
    MISSING_REPORT = "MissingReport"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    INVALID_IMAGE_NAME = "InvalidImageName"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    QUOTA_EXCEEDED = "QuotaExceeded"
    DISCOVERY_FAILED = "DiscoveryFailed"
    # -- Tracked (spec.tracking.mlflow set; docs/mlflow.md)
    PRODUCTS_TRACKED = "ProductsTracked"
    TRACKING_SKIPPED = "TrackingSkipped"
    # -- TrainingSchedule conditions
    SCHEDULED = "Scheduled"
    VALID_SCHEDULE = "ValidSchedule"
    INVALID_SCHEDULE = "InvalidSchedule"
    RUN_REJECTED = "RunRejected"


STUCK_POD_REASONS = frozenset(
    {
        Reason.CREATE_CONTAINER_CONFIG_ERROR,
        Reason.CREATE_CONTAINER_ERROR,
        Reason.IMAGE_PULL_BACK_OFF,
        Reason.INVALID_IMAGE_NAME,
        Reason.ERR_IMAGE_NEVER_PULL,
    }
)
"""Why a product pod cannot start (its container's waiting reason, as the kubelet reports it). Not
ErrImagePull: one failed pull (a registry's 429) is retried; one that keeps failing turns
ImagePullBackOff between attempts."""
POD_TROUBLE_REASONS = STUCK_POD_REASONS | {Reason.ERR_IMAGE_PULL}
"""Waiting reasons that start (and keep) a pod's stuck clock (probes.py)."""

TRAININGJOB_FAILED_REASONS = frozenset(
    {Reason.MAX_FAILED_PRODUCTS_EXCEEDED, Reason.NO_PRODUCT_TRAINED, Reason.PRODUCTS_FAILED, Reason.JOB_REJECTED}
)

DESCRIPTIONS: dict[Reason, tuple[str, str]] = {
    Reason.DISCOVERY_FAILED: (
        "Failed, Complete, Stalled",
        "spec.allProducts: the pod listing the data source's products failed (its message says why); "
        "nothing was trained. Fix the cause and create the TrainingJob again.",
    ),
    Reason.PENDING: ("Running, Reconciling", "No product has started yet."),
    Reason.QUEUED: (
        "Running, Reconciling",
        "Nothing runs: every started product Job is held by Kueue (suspended until its queue admits it).",
    ),
    Reason.WAITING_FOR_PRODUCTS: (
        "Running, Reconciling",
        "Nothing runs: the pending products are held by another TrainingJob or locked in the output database.",
    ),
    Reason.PRODUCTS_TRAINING: ("Running, Reconciling", "Products are training."),
    Reason.PRODUCTS_FINISHING: (
        "Reconciling",
        "Suspended: the running products finish, no new ones start.",
    ),
    Reason.IN_PROGRESS: ("Complete, Failed, Ready", "Not finished yet."),
    Reason.ALL_PRODUCTS_FINISHED: (
        "Complete, Failed, Ready",
        "Every product is trained or failed, within maxFailedProducts.",
    ),
    Reason.FINISHED: ("Running, Suspended, Reconciling", "The TrainingJob finished; nothing more happens."),
    Reason.PRODUCTS_TRACKED: ("Tracked", "spec.tracking.mlflow: every trained product so far has its MLflow run."),
    Reason.TRACKING_SKIPPED: (
        "Tracked",
        "MLflow was unavailable, slow or refusing for some products: their tracking was skipped (models and "
        "forecasts are in the database; status.results.tracking counts them).",
    ),
    Reason.SUSPENDED_BY_USER: ("Suspended", "spec.suspend is true: no new products (runs) start."),
    Reason.NOT_SUSPENDED: ("Suspended", "spec.suspend is false."),
    Reason.SUSPENDED: (
        "Running, Ready, Reconciling; Ready (TrainingSchedule)",
        "spec.suspend is true and no product is running: the TrainingJob waits for a person to resume it.",
    ),
    Reason.NOTHING_STORED: (
        "TrialMode",
        "Trial mode: data comes from a configMap and spec.output is unset, so models and forecasts are not "
        "stored anywhere; status.results keeps a summary. Set spec.output.postgres to store them.",
    ),
    Reason.NOT_STALLED: ("Stalled", "Nothing needs a person."),
    Reason.STALLED: ("Reconciling", "Progress needs a person: see the Stalled condition."),
    Reason.MAX_FAILED_PRODUCTS_EXCEEDED: (
        "Failed, Complete, Ready, Stalled, Running, Reconciling",
        "More products failed than maxFailedProducts allows: no new products start and the TrainingJob fails.",
    ),
    Reason.NO_PRODUCT_TRAINED: ("Failed, Complete, Ready, Stalled", "Every product failed."),
    Reason.PRODUCTS_FAILED: (
        "Failed, Complete, Ready, Stalled",
        "Every product finished and some failed while maxFailedProducts is unset (no product may fail, as a "
        "Job without maxFailedIndexes); retry them with the retry-failed annotation.",
    ),
    Reason.INVALID_DATA: (
        "failures",
        "The trainer rejected the product's history (too few points, negative values, ...); not retried.",
    ),
    Reason.INVALID_CONFIG: ("failures", "The trainer rejected its configuration (exit code 2); not retried."),
    Reason.BACKOFF_LIMIT_EXCEEDED: ("failures", "The product's pods failed backoffLimit + 1 times."),
    Reason.DEADLINE_EXCEEDED: ("failures", "The product's Job ran past activeDeadlineSeconds; not retried."),
    Reason.OOM_KILLED: (
        "failures",
        "The trainer container was killed for using more memory than its limit "
        "(spec.template.resources.limits.memory), on its last attempt; raise the limit.",
    ),
    Reason.JOB_FAILED: (
        "failures",
        "The product's Job failed for another reason the Job controller gave (named in the message).",
    ),
    Reason.JOB_REJECTED: (
        "failures, Stalled, Failed, Complete, Ready",
        "The API server refused the product's Job (an invalid spec.template, an admission policy, RBAC): no "
        "more products start until the spec changes. A ResourceQuota refusal is not this: see QuotaExceeded.",
    ),
    Reason.MISSING_REPORT: (
        "failures",
        "The trainer exited 0 without reporting the product in its termination message; no model is recorded.",
    ),
    Reason.CREATE_CONTAINER_CONFIG_ERROR: (
        "failures, Stalled, Ready",
        "A product pod cannot start: a Secret or ConfigMap it needs is missing.",
    ),
    Reason.CREATE_CONTAINER_ERROR: ("failures, Stalled, Ready", "A product pod's container cannot be created."),
    Reason.ERR_IMAGE_PULL: (
        "failures, Stalled, Ready",
        "A product pod's image pull failed (written by earlier versions; now only ImagePullBackOff, a pull "
        "that keeps failing, counts).",
    ),
    Reason.IMAGE_PULL_BACK_OFF: ("failures, Stalled, Ready", "A product pod's image cannot be pulled (backing off)."),
    Reason.INVALID_IMAGE_NAME: ("failures, Stalled, Ready", "spec.template.image is not a valid image reference."),
    Reason.ERR_IMAGE_NEVER_PULL: (
        "failures, Stalled, Ready",
        "spec.template.imagePullPolicy is Never and the node does not have spec.template.image.",
    ),
    Reason.QUOTA_EXCEEDED: (
        "Running, Reconciling; waiting products",
        "A ResourceQuota of the namespace (e.g. count/jobs.batch) refused product Jobs: the products wait "
        "and launches back off (5 s, doubling to 5 min) until the quota has room (finished Jobs' TTL frees it).",
    ),
    Reason.SCHEDULED: ("Ready (TrainingSchedule)", "The schedule is valid and runs start on time."),
    Reason.VALID_SCHEDULE: ("InvalidSchedule, Stalled (TrainingSchedule)", "The schedule and time zone are valid."),
    Reason.INVALID_SCHEDULE: (
        "InvalidSchedule, Ready, Stalled (TrainingSchedule)",
        "The cron schedule or time zone cannot be evaluated; no run starts.",
    ),
    Reason.RUN_REJECTED: (
        "Ready, Stalled (TrainingSchedule)",
        "The API server refused the last run (TrainingJob) the schedule created, e.g. an invalid "
        "trainingJobTemplate or an admission policy; the next scheduled time (or a spec change) tries again.",
    ),
}
"""Reason -> (where it appears, what it means), rendered into docs/api-reference.md."""
