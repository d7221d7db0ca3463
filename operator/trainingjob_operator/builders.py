"""Pure builders: TrainingJob spec -> child Job and Lease manifests (plain dicts).

Nothing here talks to the API server; every function is deterministic in its inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from trainingjob_operator.api import API_VERSION, GROUP, KIND, TrainingJob
from trainingjob_operator.podtypes import (
    ENV_BLANK_IS_AN_ERROR,
    OPERATOR_ENV,
    OPERATOR_LABEL_PREFIX,
    reserved_mount_conflict,
)
from trainingjob_operator.shards import products_sha256

LABEL_TRAININGJOB = f"{GROUP}/trainingjob"
"""The TrainingJob's name: the selector of its children (status.selector), kept for existing Jobs."""
LABEL_TRAININGJOB_NAME = f"{GROUP}/trainingjob-name"
LABEL_TRAININGJOB_UID = f"{GROUP}/trainingjob-uid"
"""Name and uid of the owning TrainingJob, as batch/v1 labels pods (job-name, controller-uid) and
JobSet, Kubeflow and Ray label their children."""
LABEL_PRODUCT_HASH = f"{GROUP}/product-hash"
APP_NAME = "app.kubernetes.io/name"
APP_INSTANCE = "app.kubernetes.io/instance"
APP_COMPONENT = "app.kubernetes.io/component"
APP_PART_OF = "app.kubernetes.io/part-of"
APP_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "trainingjob-operator"
COMPONENT_TRAINER = "trainer"
COMPONENT_UNCHANGED_CHECK = "unchanged-check"
COMPONENT_PRODUCT_LIST = "product-list"
COMPONENT_PRODUCT_LEASE = "product-lease"
COMPONENT_SHARDS = "shards"
COMPONENT_DISCOVERY = "discovery"
LABEL_ROUND = f"{GROUP}/round"
"""The round id of a shard Job (builders.ShardRound)."""
ANNOTATION_INDEXES = f"{GROUP}/indexes"
"""R of a shard Job's round: global indexes as compressed ranges (the format of status.succeededIndexes)."""
ANNOTATION_SHARD_SIZE = f"{GROUP}/shard-size"
SHARD_HASH = "shards"
DISCOVERY_HASH = "discover"
"""product-hash label values of the shard Jobs and the discovery Job (the operator's watches select
on that label)."""
ROLE_SHARDS = "shards"
ROLE_DISCOVERY = "discovery"
SHARD_PRODUCTS_KEY = "products"
SHARD_ENV = ("TRAINER_SHARD_INDEXES", "TRAINER_SHARD_SIZE", "TRAINER_PRODUCTS_FROM", "TRAINER_PRODUCTS_SHA256")
ANNOTATION_PRODUCT = f"{GROUP}/product"
ANNOTATION_RETRY_ROUND = f"{GROUP}/retry-round"
ANNOTATION_RETRY_FAILED = f"{GROUP}/retry-failed"

EXIT_CONFIG_ERROR = 2
EXIT_INVALID_DATA = 3
EXIT_PRODUCT_LOCKED = 5
NOT_RETRIED_EXIT_CODES = (EXIT_CONFIG_ERROR, EXIT_INVALID_DATA, EXIT_PRODUCT_LOCKED)
"""Exit codes that fail the product's Job at once (podFailurePolicy FailJob): a config error or
invalid data fails the same way again; a locked product is relaunched by the operator later."""
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
KUEUE_LABELS = ("kueue.x-k8s.io/queue-name", "kueue.x-k8s.io/priority-class")
"""Labels copied from the TrainingJob onto its product Jobs, so Kueue queues each Job (docs/kueue.md)."""
ANNOTATION_ROLE = f"{GROUP}/role"
ANNOTATION_PRODUCTS_SHA256 = f"{GROUP}/products-sha256"
"""On the unchanged check's ConfigMap and Job: :func:`products_digest` of the list it checks."""
# "true": every product keeps its current champion; new models are recorded as challengers (docs/mlflow.md).
ANNOTATION_PIN_CHAMPION = f"{GROUP}/pin-champion"
LABEL_SCHEDULE = f"{GROUP}/schedule"  # set by the TrainingSchedule on the TrainingJobs it creates
ROLE_UNCHANGED_PLAN = "unchanged-check"
PLAN_HASH = "unchanged"
"""product-hash label value of the unchanged-check Job (the operator's watches select on that label)."""
PLAN_MOUNT_DIR = "/plan"
PLAN_PRODUCTS_FILE = "products.json"
TERMINATION_LOG = "/dev/termination-log"
CSV_MOUNT_DIR = "/data"
CSV_FILE = "sales.csv"
RUN_AS_USER = 65532
MAX_NAME = 63


PRODUCT_HASH_HEX = 16
"""Hex digits of a product's hash in its Job and Lease names: 64 bits. At 40 bits (the first
releases, 10 digits) two real ids collided in ~535,000 tries (``SKU-00422759``/``SKU-00534859``);
at 64 bits a 10,000-product list collides with a chance of ~3e-12, and a collision is still
detected (:func:`free_job_name`), not assumed away. Objects named with the 10-digit hash by an
earlier release stay recognised: children are found by owner uid and product annotation, never
by name (docs/design.md, "Identity rule")."""
MAX_NAME_SALT = 3
"""Salted alternatives tried for a Job name taken by another product's Job."""


def product_hash(product: str, salt: int = 0) -> str:
    """A stable, label-safe 16-hex-digit (64-bit) hash of a product id; ``salt`` > 0 gives the
    fallback names of a product whose plain name is taken by another product's Job."""
    text = product if salt == 0 else f"{salt}\x00{product}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:PRODUCT_HASH_HEX]


def _short(name: str, budget: int) -> str:
    """``name`` if it fits ``budget`` chars, else a prefix plus a hash of the whole name."""
    if len(name) <= budget:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:5]
    return f"{name[: budget - 6].rstrip('-.')}-{digest}"


def label_value(name: str) -> str:
    """An object name as a label value: itself when it fits 63 characters, else a prefix and a hash
    (never ending in '-' or '.', which a label value may not)."""
    return _short(name, MAX_NAME)


def job_name(trainingjob: str, product: str, salt: int = 0) -> str:
    """``<trainingjob>-<hash(product)>``, at most 63 characters (a valid label value)."""
    return f"{_short(trainingjob, MAX_NAME - PRODUCT_HASH_HEX - 1)}-{product_hash(product, salt)}"


def free_job_name(trainingjob: str, product: str, taken: Mapping[str, str]) -> str:
    """The product's Job name, or a salted alternative when a Job of *another* product holds it
    (``taken``: Job name -> product annotation of the Jobs in the namespace): a hash collision, or
    a name cut short from a long TrainingJob name, never stalls the product."""
    name = job_name(trainingjob, product)
    for salt in range(1, MAX_NAME_SALT + 1):
        if taken.get(name, product) == product:
            break
        name = job_name(trainingjob, product, salt)
    return name


def lease_name(product: str) -> str:
    """``tj-product-<hash(product)>``: the namespace-wide lock of a product (any TrainingJob)."""
    return f"tj-product-{product_hash(product)}"


def products_digest(products: Iterable[str]) -> str:
    """SHA-256 of the sorted distinct product ids as compact JSON (UTF-8): which list the unchanged
    check answered for. The trainer computes the same from the file it read and echoes it
    (forecast_trainer.unchanged.products_digest); an answer for another list is refused."""
    text = json.dumps(sorted(set(products)), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def holder_identity(tj: TrainingJob) -> str:
    return f"{tj.namespace}/{tj.name}/{tj.uid}"


def selector(tj: TrainingJob) -> str:
    """Label selector of the TrainingJob's pods (the scale subresource's selector)."""
    return f"{LABEL_TRAININGJOB}={_short(tj.name, MAX_NAME)}"


def recommended_labels(name: str, instance: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels Kubernetes recommends, on everything the operator creates."""
    return {
        APP_NAME: name,
        APP_INSTANCE: _short(instance, MAX_NAME),
        APP_COMPONENT: component,
        APP_PART_OF: MANAGED_BY,
        APP_MANAGED_BY: MANAGED_BY,
    }


def identity_labels(tj: TrainingJob) -> dict[str, str]:
    """Which TrainingJob a child belongs to (its ownerReference says it too, by uid)."""
    short = _short(tj.name, MAX_NAME)
    return {LABEL_TRAININGJOB: short, LABEL_TRAININGJOB_NAME: short, LABEL_TRAININGJOB_UID: tj.uid}


def users_keys(user: dict[str, str] | None) -> dict[str, str]:
    """A user's spec.template labels or annotations without the operator's keys (training.forecast.dev/*:
    the CRD refuses them; an object stored before that rule still cannot set them)."""
    return {k: v for k, v in (user or {}).items() if not k.startswith(OPERATOR_LABEL_PREFIX)}


def child_labels(tj: TrainingJob, component: str, user: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a TrainingJob's child: recommended ones (a user's spec.template.labels may set
    app.kubernetes.io/part-of and the like), then the operator's own, which nothing overrides."""
    return {**recommended_labels("trainingjob", tj.name, component), **users_keys(user), **identity_labels(tj)}


def owner_reference(tj: TrainingJob, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": tj.name,
        "uid": tj.uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _env(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": value if isinstance(value, str) else json.dumps(value)}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def run_key(tj: TrainingJob, retry_round: str = "") -> str:
    return f"{tj.uid}/{retry_round or '0'}"


def trainer_env(tj: TrainingJob, product: str, retry_round: str = "") -> list[dict[str, Any]]:
    """``TRAINER_*`` environment of a product's trainer container (no secret values, only references)."""
    spec = tj.spec
    env = [
        # The id verbatim: the trainer never parses it (no JSON, no splitting, no stripping).
        _env("TRAINER_PRODUCT_ID", product),
        # Idempotent writes: one model per product per TrainingJob (uid) and retry round. A retried
        # pod, a second pod of the same Job, or a relaunched Job (a locked product) that finds the
        # model already committed reports it instead of writing another.
        _env("TRAINER_RUN_KEY", run_key(tj, retry_round)),
        _env("TRAINER_TRAININGJOB", f"{tj.namespace}/{tj.name}"),
        _env("TRAINER_HORIZON_DAYS", str(spec.forecast.horizon_days)),
        _env("TRAINER_FREQUENCY", spec.forecast.frequency),
        _env("TRAINER_METRIC", spec.tuning.metric),
        _env("TRAINER_FOLDS", str(spec.tuning.folds)),
        _env("TRAINER_INTERVAL_LEVELS", ",".join(f"{v:g}" for v in spec.forecast.intervals)),
        _env("TRAINER_WARM_START", "true" if spec.tuning.warm_start else "false"),
        _env("TRAINER_TERMINATION_LOG", TERMINATION_LOG),
        _env("TRAINER_LOG_FORMAT", "json"),
    ]
    env.append(_env("TRAINER_SKIP_UNCHANGED", "true" if spec.skip_unchanged else "false"))
    if spec.tuning.models:
        env.append(_env("TRAINER_MODELS", ",".join(spec.tuning.models)))
    if spec.forecast.quantiles:
        env.append(_env("TRAINER_QUANTILES", ",".join(f"{v:g}" for v in spec.forecast.quantiles)))
    if spec.forecast.country_holidays:
        env.append(_env("TRAINER_COUNTRY_HOLIDAYS", spec.forecast.country_holidays.upper()))
    if spec.tuning.trials is not None:
        env.append(_env("TRAINER_TRIALS", str(spec.tuning.trials)))
    if spec.tuning.timeout_seconds is not None:
        env.append(_env("TRAINER_TIMEOUT_SECONDS", str(spec.tuning.timeout_seconds)))
    pg = spec.data.postgres
    if pg is not None:
        env += [
            _secret_env("TRAINER_DATA_DSN", pg.secret_ref.name, pg.secret_ref.key),
            _env("TRAINER_DATA_TABLE", pg.table),
            _env("TRAINER_PRODUCT_COLUMN", pg.product_column),
            _env("TRAINER_TIME_COLUMN", pg.time_column),
            _env("TRAINER_VALUE_COLUMN", pg.value_column),
        ]
    else:
        env.append(_env("TRAINER_DATA_CSV", f"{CSV_MOUNT_DIR}/{CSV_FILE}"))
    out = spec.output.postgres if spec.output else None
    if out is not None:
        if out.secret_ref is not None:
            env.append(_secret_env("TRAINER_OUTPUT_DSN", out.secret_ref.name, out.secret_ref.key))
        env.append(_env("TRAINER_OUTPUT_SCHEMA", out.schema_))
    if tj.annotations.get(ANNOTATION_PIN_CHAMPION, "").strip().lower() == "true":
        env.append(_env("TRAINER_PIN_CHAMPION", "true"))
    schedule = tj.labels.get(LABEL_SCHEDULE)
    if schedule:
        env.append(_env("TRAINER_SCHEDULE", f"{tj.namespace}/{schedule}"))
    env += tracking_env(tj)
    # Every other reserved variable is set too, blank (the trainer reads blank as unset), so that no
    # envFrom ConfigMap or Secret can supply it (explicit env wins over envFrom).
    given = {e["name"] for e in env}
    env += [_env(n, "") for n in OPERATOR_ENV if n not in given and n not in ENV_BLANK_IS_AN_ERROR]
    # The CRD refuses the operator's names; an object stored before that rule still cannot override
    # them, nor the MLflow variables spec.tracking sets.
    own = {e["name"] for e in env}
    env += [_dump(e) for e in spec.template.env or [] if e.name not in OPERATOR_ENV and e.name not in own]
    return env


def tracking_env(tj: TrainingJob) -> list[dict[str, Any]]:
    """MLflow's standard variables from spec.tracking.mlflow (credentials by secretKeyRef only)."""
    tracking = tj.spec.tracking.mlflow if tj.spec.tracking is not None else None
    if tracking is None:
        return []
    owner = tj.labels.get(LABEL_SCHEDULE) or tj.name
    env = []
    ref = tracking.secret_ref
    if tracking.tracking_uri:
        env.append(_env("MLFLOW_TRACKING_URI", tracking.tracking_uri))
    for variable, key in (
        ("MLFLOW_TRACKING_URI", ref.uri_key if ref else None),
        ("MLFLOW_TRACKING_USERNAME", ref.username_key if ref else None),
        ("MLFLOW_TRACKING_PASSWORD", ref.password_key if ref else None),
        ("MLFLOW_TRACKING_TOKEN", ref.token_key if ref else None),
    ):
        if ref is not None and key:
            env.append(_secret_env(variable, ref.name, key))
    env += [
        _env("MLFLOW_EXPERIMENT_NAME", tracking.experiment_name or f"{tj.namespace}/{owner}"),
        _env("TRAINER_REGISTERED_MODEL_PREFIX", tracking.registered_model_prefix),
        _env("TRAINER_TRACKING_BUDGET_SECONDS", str(tracking.budget_seconds)),
    ]
    return env


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True)


def _dump_all(models: Sequence[BaseModel] | None) -> list[dict[str, Any]]:
    return [_dump(m) for m in models or []]


def _security_context() -> dict[str, Any]:
    """Pod Security "restricted": non-root, no escalation, no capabilities, RuntimeDefault seccomp."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def kueue_labels(tj: TrainingJob) -> dict[str, str]:
    """The TrainingJob's Kueue labels (queue name, workload priority class), for its product Jobs."""
    labels = tj.labels
    return {k: labels[k] for k in KUEUE_LABELS if labels.get(k)}


def build_job(tj: TrainingJob, product: str, retry_round: str = "", name: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job that trains ``product`` (one of ``tj.spec.products``), named ``name``
    (:func:`free_job_name`; default :func:`job_name`)."""
    spec = tj.spec
    labels = {
        **child_labels(tj, COMPONENT_TRAINER, spec.template.labels),
        LABEL_PRODUCT_HASH: product_hash(product),
    }
    annotations = {
        **users_keys(spec.template.annotations),
        ANNOTATION_PRODUCT: product,
        ANNOTATION_RETRY_ROUND: retry_round,
    }
    job = _trainer_job(
        tj,
        name or job_name(tj.name, product),
        labels,
        annotations,
        ["train"],
        trainer_env(tj, product, retry_round),
        spec.backoff_limit,
    )
    # On the Job only (Kueue reads them there), not on its pods.
    job["metadata"]["labels"] = {**labels, **kueue_labels(tj)}
    return job


def plan_job_name(tj: TrainingJob) -> str:
    """``<trainingjob>-<uid prefix>-unchanged``: a re-created TrainingJob of the same name (kubectl
    replace --force, Argo CD Replace=true) never waits for, or meets, the old one's check Job."""
    return f"{_short(tj.name, MAX_NAME - 19)}-{tj.uid[:8]}-unchanged"


def plan_configmap_name(tj: TrainingJob) -> str:
    """``<trainingjob>-products-<uid>``: the list is the TrainingJob's (its uid's); the products of
    one uid never change (a set, immutable), so one name holds one list."""
    return f"{_short(tj.name, 253 - 10 - len(tj.uid))}-products-{tj.uid}"


def needs_unchanged_check(tj: TrainingJob) -> bool:
    """Skipping unchanged products needs stored models to compare with: PostgreSQL output."""
    has_output = tj.spec.output is not None and tj.spec.output.postgres is not None
    return bool(tj.spec.skip_unchanged) and (tj.spec.data.postgres is not None or has_output)


def build_plan_configmap(tj: TrainingJob) -> dict[str, Any]:
    """The product ids for the unchanged check, as a file (10,000 ids fit; env vars would not)."""
    ids = sorted(set(tj.spec.products))
    return _product_list_configmap(tj, products_digest(tj.spec.products), {PLAN_PRODUCTS_FILE: json.dumps(ids)})


def _product_list_configmap(tj: TrainingJob, digest: str, data: dict[str, str]) -> dict[str, Any]:
    """The TrainingJob's product list ConfigMap (one per uid: the unchanged check's, or shard pods')."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": plan_configmap_name(tj),
            "namespace": tj.namespace,
            "labels": child_labels(tj, COMPONENT_PRODUCT_LIST),
            "annotations": {ANNOTATION_PRODUCTS_SHA256: digest},
            "ownerReferences": [owner_reference(tj)],
        },
        "data": data,
    }


def build_plan_job(tj: TrainingJob, retry_round: str = "") -> dict[str, Any]:
    """One pod that finds the products whose data and config are unchanged since their last model
    (``forecast-trainer unchanged``), so that they need no pod of their own.

    It gets the product pods' run key (TRAINER_RUN_KEY of ``retry_round``): a model an earlier
    attempt of this very run stored is not "unchanged" (that product is this run's, trained; its
    pod reports the stored model as trained without training again), so it is never counted
    skipped."""
    labels = {**child_labels(tj, COMPONENT_UNCHANGED_CHECK), LABEL_PRODUCT_HASH: PLAN_HASH}
    annotations = {ANNOTATION_ROLE: ROLE_UNCHANGED_PLAN, ANNOTATION_PRODUCTS_SHA256: products_digest(tj.spec.products)}
    own = ("TRAINER_PRODUCT_ID", "TRAINER_PRODUCTS_FILE")
    env = [e for e in trainer_env(tj, "", retry_round) if e["name"] not in own]
    env.append(_env("TRAINER_PRODUCTS_FILE", f"{PLAN_MOUNT_DIR}/{PLAN_PRODUCTS_FILE}"))
    volume = {"name": "products", "configMap": {"name": plan_configmap_name(tj)}}
    mount = {"name": "products", "mountPath": PLAN_MOUNT_DIR, "readOnly": True}
    job = _trainer_job(tj, plan_job_name(tj), labels, annotations, ["unchanged"], env, 1, [volume], [mount])
    # Queued like the product Jobs: it requests the same resources, and a cluster whose Kueue manages
    # Jobs without a queue label would otherwise hold it, and every launch behind it, for ever.
    job["metadata"]["labels"] = {**labels, **kueue_labels(tj)}
    return job


def _volumes_and_mounts(
    tj: TrainingJob, extra_volumes: list[dict[str, Any]] | None, extra_mounts: list[dict[str, Any]] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scratch space, the operator's own volumes, the CSV of configMap data, then the user's."""
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}, *(extra_volumes or [])]
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": "/tmp"}, *(extra_mounts or [])]
    cm = tj.spec.data.config_map
    if cm is not None:
        volumes.append({"name": "sales", "configMap": {"name": cm.name, "items": [{"key": cm.key, "path": CSV_FILE}]}})
        mounts.append({"name": "sales", "mountPath": CSV_MOUNT_DIR, "readOnly": True})
    t = tj.spec.template
    # The CRD refuses mounts at, under or above the operator's paths (in normal form); an object
    # stored before that rule still cannot hide them.
    mounts += _dump_all([m for m in t.volume_mounts or [] if reserved_mount_conflict(m.mount_path) is None])
    volumes += _dump_all(t.volumes)
    return volumes, mounts


def _trainer_container(
    tj: TrainingJob, args: list[str], env: list[dict[str, Any]], mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The trainer container: restricted security context, termination message from a file."""
    t = tj.spec.template
    container: dict[str, Any] = {
        "name": "trainer",
        "image": t.image,
        "imagePullPolicy": t.image_pull_policy,
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": _security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    if t.resources is not None:
        container["resources"] = _dump(t.resources)
    if t.env_from:
        container["envFrom"] = _dump_all(t.env_from)
    return container


def _pod_spec(tj: TrainingJob, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """Pod Security "restricted", no API token, the user's scheduling knobs."""
    t = tj.spec.template
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    optional = {
        "nodeSelector": t.node_selector,
        "tolerations": _dump_all(t.tolerations) if t.tolerations is not None else None,
        "affinity": _dump(t.affinity) if t.affinity is not None else None,
        "topologySpreadConstraints": _dump_all(t.topology_spread_constraints) or None,
        "imagePullSecrets": _dump_all(t.image_pull_secrets) or None,
        "serviceAccountName": t.service_account_name,
        "priorityClassName": t.priority_class_name,
    }
    pod_spec.update({k: v for k, v in optional.items() if v is not None})
    return pod_spec


def _failure_policy(fail_job_exit_codes: Sequence[int]) -> dict[str, Any]:
    """Fail the Job at once on exit codes that fail the same way again; ignore disruptions."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "trainer", "operator": "In", "values": list(fail_job_exit_codes)},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def _trainer_job(
    tj: TrainingJob,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    args: list[str],
    env: list[dict[str, Any]],
    backoff_limit: int,
    extra_volumes: list[dict[str, Any]] | None = None,
    extra_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Job of one trainer pod: volumes and mounts, the container, the pod, then the Job around it."""
    spec = tj.spec
    volumes, mounts = _volumes_and_mounts(tj, extra_volumes, extra_mounts)
    pod_spec = _pod_spec(tj, _trainer_container(tj, args, env, mounts), volumes)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": tj.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(tj)],
        },
        "spec": {
            "backoffLimit": backoff_limit,
            **({"activeDeadlineSeconds": spec.active_deadline_seconds} if spec.active_deadline_seconds else {}),
            "podFailurePolicy": _failure_policy(NOT_RETRIED_EXIT_CODES),
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


# ---------------------------------------------------------------- shard mode (docs/design.md "Scale")


def shard_job_name(tj: TrainingJob, round_id: str) -> str:
    """``<trainingjob>-shards-<round>``, at most 63 characters."""
    return f"{_short(tj.name, MAX_NAME - len(round_id) - 8)}-shards-{round_id}"


def discovery_job_name(tj: TrainingJob) -> str:
    """``<trainingjob>-discover-<uid8>``: a re-created TrainingJob of the same name never meets the old one's."""
    return f"{_short(tj.name, MAX_NAME - 18)}-discover-{tj.uid[:8]}"


def build_products_configmap(tj: TrainingJob) -> dict[str, Any]:
    """The sorted product ids, newline-separated (key ``products``), for shard pods in list mode.
    Named like the unchanged check's list (one list per uid; shard mode runs no check)."""
    ids = sorted(set(tj.spec.products))
    return _product_list_configmap(tj, products_sha256(ids), {SHARD_PRODUCTS_KEY: "\n".join(ids)})


def _without(env: list[dict[str, Any]], names: Iterable[str]) -> list[dict[str, Any]]:
    drop = set(names)
    return [e for e in env if e["name"] not in drop]


def _has_output_database(tj: TrainingJob) -> bool:
    return tj.spec.data.postgres is not None or (tj.spec.output is not None and tj.spec.output.postgres is not None)


def products_from(tj: TrainingJob) -> str:
    """Where a shard pod reads the sorted product list: the mounted ConfigMap (list mode), the
    discovery snapshot in the output database, or the data source itself (trial mode)."""
    if not tj.spec.all_products:
        return f"file:{PLAN_MOUNT_DIR}/{SHARD_PRODUCTS_KEY}"
    return "snapshot" if _has_output_database(tj) else "source"


@dataclass(frozen=True)
class ShardRound:
    """A round as frozen into its Indexed Job: R (compressed ranges, sorted), the shard size S, the
    retry-failed value it belongs to, and its id (the Job's name and round label)."""

    round_id: str
    indexes: str
    size: int
    completions: int
    retry_round: str
    products_sha256: str


def build_shard_job(tj: TrainingJob, rnd: ShardRound, suspend: bool) -> dict[str, Any]:
    """The Indexed Job of one round: index k trains shard k of R (TRAINER_SHARD_*)."""
    spec = tj.spec
    labels = {
        **child_labels(tj, COMPONENT_SHARDS, spec.template.labels),
        LABEL_PRODUCT_HASH: SHARD_HASH,
        LABEL_ROUND: rnd.round_id,
    }
    annotations = {
        **users_keys(spec.template.annotations),
        ANNOTATION_ROLE: ROLE_SHARDS,
        ANNOTATION_RETRY_ROUND: rnd.retry_round,
        ANNOTATION_INDEXES: rnd.indexes,
        ANNOTATION_SHARD_SIZE: str(rnd.size),
        ANNOTATION_PRODUCTS_SHA256: rnd.products_sha256,
    }
    env = _without(trainer_env(tj, "", rnd.retry_round), ("TRAINER_PRODUCT_ID", *SHARD_ENV))
    env += [
        _env("TRAINER_SHARD_INDEXES", rnd.indexes),
        _env("TRAINER_SHARD_SIZE", str(rnd.size)),
        _env("TRAINER_PRODUCTS_FROM", products_from(tj)),
        _env("TRAINER_PRODUCTS_SHA256", rnd.products_sha256),
    ]
    volumes, mounts = _product_list_volume(tj)
    job = _trainer_job(tj, shard_job_name(tj, rnd.round_id), labels, annotations, ["train"], env, 0, volumes, mounts)
    job_spec = job["spec"]
    del job_spec["backoffLimit"]  # per index instead
    job_spec.pop("activeDeadlineSeconds", None)
    if spec.active_deadline_seconds:
        # A per-product deadline, per pod: the pod trains at most S products.
        job_spec["template"]["spec"]["activeDeadlineSeconds"] = spec.active_deadline_seconds * rnd.size
    job_spec.update(
        completionMode="Indexed",
        completions=rnd.completions,
        parallelism=spec.parallelism,
        backoffLimitPerIndex=spec.backoff_limit,
        suspend=suspend,
        podFailurePolicy=_failure_policy((EXIT_CONFIG_ERROR,)),
    )
    job["metadata"]["labels"] = {**labels, **kueue_labels(tj)}
    return job


def shard_round_objects(tj: TrainingJob, rnd: ShardRound, suspend: bool) -> list[dict[str, Any]]:
    """What a round needs, in creation order: the product list (list mode), then the Indexed Job."""
    objects = [] if tj.spec.all_products else [build_products_configmap(tj)]
    return [*objects, build_shard_job(tj, rnd, suspend)]


def _product_list_volume(tj: TrainingJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if tj.spec.all_products:
        return [], []
    volume = {"name": "products", "configMap": {"name": plan_configmap_name(tj)}}
    return [volume], [{"name": "products", "mountPath": PLAN_MOUNT_DIR, "readOnly": True}]


def build_discovery_job(tj: TrainingJob) -> dict[str, Any]:
    """One pod that lists every product of the data source (``forecast-trainer discover``), sorted,
    and writes the snapshot to ``run_products`` under run key = the TrainingJob's uid."""
    labels = {**child_labels(tj, COMPONENT_DISCOVERY), LABEL_PRODUCT_HASH: DISCOVERY_HASH}
    annotations = {ANNOTATION_ROLE: ROLE_DISCOVERY}
    env = _without(trainer_env(tj, ""), ("TRAINER_PRODUCT_ID", "TRAINER_RUN_KEY"))
    env.append(_env("TRAINER_RUN_KEY", tj.uid))
    job = _trainer_job(tj, discovery_job_name(tj), labels, annotations, ["discover"], env, tj.spec.backoff_limit)
    job["spec"]["podFailurePolicy"] = _failure_policy((EXIT_CONFIG_ERROR,))
    job["metadata"]["labels"] = {**labels, **kueue_labels(tj)}
    return job


def format_time(t: datetime) -> str:
    """RFC 3339 with microseconds, as Lease times need (MicroTime)."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease(tj: TrainingJob, product: str, now: datetime, duration_seconds: int) -> dict[str, Any]:
    """The Lease that locks ``product`` for this TrainingJob."""
    stamp = format_time(now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(product),
            "namespace": tj.namespace,
            # Recommended labels name the TrainingJob that holds it (rewritten on takeover); no
            # trainingjob label: the scale selector must not count Leases.
            "labels": {
                **recommended_labels("trainingjob", tj.name, COMPONENT_PRODUCT_LEASE),
                LABEL_PRODUCT_HASH: product_hash(product),
            },
            "annotations": {ANNOTATION_PRODUCT: product},
            # Not a controller reference: another TrainingJob may take the Lease over after it expires.
            "ownerReferences": [owner_reference(tj, controller=False)],
        },
        "spec": {
            "holderIdentity": holder_identity(tj),
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        },
    }
