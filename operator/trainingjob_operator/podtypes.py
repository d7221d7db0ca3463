"""Typed pieces of a pod spec that ``spec.template`` lets users set (a validated subset of core/v1).

Each model has the field names and meaning of its Kubernetes counterpart, so ``kubectl explain``
describes it and the API server rejects a bad value at apply instead of at Job creation. The
operator's own pod fields (security context, termination message, the trainer environment, the
scratch, sales and products volumes) are not here: they cannot be overridden, and the rules in
this module and on ``PodTemplate`` reject a conflict with a message that names it.
"""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import ConfigDict, Field

from trainingjob_operator.api_base import LABEL_KEY_PATTERN, ApiModel, cel

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_SEGMENT = r"([^/.][^/]*|\.[^/.][^/]*|\.|\.\.[^/]+)"
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
"""A relative path with no '..' segment (a pattern, not CEL: free for the API server's cost budget)."""
QUANTITY_PATTERN_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "maxLength": 40,
    "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$",
}
"""A resource quantity checked by a pattern (Kubernetes' own quantity syntax): inside lists, CEL
``isQuantity`` would exceed the CRD's validation cost budget."""
OPERATOR_VOLUMES = ("scratch", "sales", "products")
"""Volume names the operator's pods use (scratch /tmp, the CSV ConfigMap, the unchanged check's list)."""
OPERATOR_MOUNT_PATHS = ("/tmp", "/data", "/plan", "/dev/termination-log")
"""Mount paths the operator's container uses; a user volume mounted there, under them (a subPath
mount of one file) or above them (/dev) would hide or replace them."""
_MOUNT_SEGMENT = r"([^/.][^/]*|[.][^/.][^/]*|[.][.][^/]+)"
NORMAL_MOUNT_PATH_PATTERN = rf"^(/{_MOUNT_SEGMENT})+$"
"""An absolute path in normal form: no empty segment ('//', a trailing '/'), no '.' or '..' segment.
Reserved paths are then compared as strings (an unnormalised '/tmp/' or '//tmp' is /tmp)."""
OPERATOR_LABEL_PREFIX = "training.forecast.dev/"
"""Label and annotation keys the operator reads on its children (role, product, retry round, the
TrainingJob's name and uid): refused in spec.template.labels/annotations, dropped by the builders."""
OPERATOR_ENV = (
    "TRAINER_PRODUCT_ID",
    "TRAINER_PRODUCT",
    "TRAINER_PRODUCTS_JSON",
    "TRAINER_PRODUCTS_FILE",
    "TRAINER_RUN_KEY",
    "TRAINER_TRAININGJOB",
    "TRAINER_HORIZON_DAYS",
    "TRAINER_FREQUENCY",
    "TRAINER_METRIC",
    "TRAINER_FOLDS",
    "TRAINER_WARM_START",
    "TRAINER_TERMINATION_LOG",
    "TRAINER_LOG_FORMAT",
    "TRAINER_SKIP_UNCHANGED",
    "TRAINER_MODELS",
    "TRAINER_COUNTRY_HOLIDAYS",
    "TRAINER_TRIALS",
    "TRAINER_TIMEOUT_SECONDS",
    "TRAINER_DATA_DSN",
    "TRAINER_DATA_TABLE",
    "TRAINER_PRODUCT_COLUMN",
    "TRAINER_TIME_COLUMN",
    "TRAINER_VALUE_COLUMN",
    "TRAINER_DATA_CSV",
    "TRAINER_OUTPUT_DSN",
    "TRAINER_OUTPUT_SCHEMA",
    "TRAINER_INTERVAL_LEVELS",
    "TRAINER_QUANTILES",
    "TRAINER_PIN_CHAMPION",
    "TRAINER_SCHEDULE",
    "TRAINER_REGISTERED_MODEL_PREFIX",
    "TRAINER_TRACKING_BUDGET_SECONDS",
    "TRAINER_SHARD_INDEXES",
    "TRAINER_SHARD_SIZE",
    "TRAINER_PRODUCTS_FROM",
    "TRAINER_PRODUCTS_SHA256",
)
"""Environment variables the operator sets from the spec (or that select products); users set the
spec field instead (the reference names it)."""
ENV_BLANK_IS_AN_ERROR = ("TRAINER_PRODUCT_ID", "TRAINER_PRODUCT", "TRAINER_PRODUCTS_JSON")
"""Reserved variables the operator cannot set blank where it does not use them (the trainer takes a
blank product selector for a mistake): a value for them from envFrom makes the trainer refuse its
configuration (a product pod) or the unchanged check's answer not add up (it then trains all)."""


def normal_mount_path(path: str) -> str:
    """``path`` as the container sees it: '//tmp', '/tmp/' and '/x/../tmp' are /tmp."""
    return posixpath.normpath("/" + path.lstrip("/"))


def reserved_mount_conflict(path: str) -> str | None:
    """The operator's path that a mount at ``path`` would hide (equal, under or above it), or None."""
    norm = normal_mount_path(path)
    if norm == "/":
        return "/"
    for reserved in OPERATOR_MOUNT_PATHS:
        if norm == reserved or norm.startswith(reserved + "/") or reserved.startswith(norm + "/"):
            return reserved
    return None


MAX_LIST = 32
"""Upper bound of the lists below: the API server needs one to cost CEL rules, and a pod with more
volumes, mounts or terms than this is not a training pod."""


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _exactly_one(*fields: str) -> str:
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


# ---------------------------------------------------------------- env


class SecretKeySelector(ApiModel):
    """A key of a Secret in the TrainingJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(min_length=1, max_length=253, description="Key in the Secret.")
    optional: bool | None = Field(default=None, description="Start the pod even if the Secret or key is missing.")


class ConfigMapKeySelector(ApiModel):
    """A key of a ConfigMap in the TrainingJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, description="Key in the ConfigMap.")
    optional: bool | None = Field(default=None, description="Start the pod even if the ConfigMap or key is missing.")


class ObjectFieldSelector(ApiModel):
    """A field of the pod, e.g. metadata.name, metadata.namespace, spec.nodeName, status.podIP."""

    field_path: str = Field(min_length=1, max_length=256, description="Path of the field, e.g. spec.nodeName.")
    api_version: str | None = Field(default=None, description="Schema version of fieldPath (default v1).")


class ResourceFieldSelector(ApiModel):
    """A resource of a container, e.g. limits.memory."""

    resource: str = Field(min_length=1, max_length=64, description="e.g. limits.cpu, requests.memory.")
    container_name: str | None = Field(default=None, description="Container (default: this one).")
    divisor: int | str | None = Field(
        default=None, description="Unit of the value (default 1).", json_schema_extra=QUANTITY_PATTERN_SCHEMA
    )


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from (exactly one)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                _exactly_one("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"),
                "valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef",
            )
        )
    )

    secret_key_ref: SecretKeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: ConfigMapKeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container resource.")


class EnvVar(ApiModel):
    """An extra environment variable of the trainer container (as a container's env)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                f"!(self.name in {_cel_list(OPERATOR_ENV)})",
                "this variable is set by the operator from the spec; set the spec field instead "
                "(e.g. spec.tuning.trials for TRAINER_TRIALS)",
                "'env ' + self.name + ' is set by the operator from the spec; set the spec field instead "
                "(e.g. spec.tuning.trials for TRAINER_TRIALS, spec.forecast.horizonDays for "
                "TRAINER_HORIZON_DAYS)'",
            ),
            ("!(has(self.value) && has(self.valueFrom))", "env takes value or valueFrom, not both"),
        )
    )

    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str | None = Field(default=None, description="Variable value ($(VAR) references expand).")
    value_from: EnvVarSource | None = Field(default=None, description="Take the value from a Secret, ConfigMap, …")


class ConfigMapEnvSource(ApiModel):
    """Every key of a ConfigMap as an environment variable."""

    name: str = Field(min_length=1, max_length=253, description="ConfigMap name.")
    optional: bool | None = Field(default=None, description="Start the pod even if the ConfigMap is missing.")


class SecretEnvSource(ApiModel):
    """Every key of a Secret as an environment variable."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    optional: bool | None = Field(default=None, description="Start the pod even if the Secret is missing.")


class EnvFromSource(ApiModel):
    """A ConfigMap or Secret whose keys become environment variables. Variables the operator sets
    (TRAINER_PRODUCT_ID, …) win over keys of the same name, as explicit env wins over envFrom."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (_exactly_one("configMapRef", "secretRef"), "envFrom takes exactly one of configMapRef, secretRef")
        )
    )

    prefix: str | None = Field(default=None, max_length=253, description="Prepended to every key.")
    config_map_ref: ConfigMapEnvSource | None = Field(default=None, description="The ConfigMap.")
    secret_ref: SecretEnvSource | None = Field(default=None, description="The Secret.")


# ---------------------------------------------------------------- volumes


class KeyToPath(ApiModel):
    """One key of a ConfigMap or Secret projected to a file."""

    key: str = Field(min_length=1, max_length=253, description="The key.")
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Relative path of the file in the volume (no '..').",
        pattern=RELATIVE_PATH_PATTERN,
    )
    mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode bits (0-0777).")


class ConfigMapVolumeSource(ApiModel):
    """A ConfigMap's keys as files."""

    name: str = Field(min_length=1, max_length=253, description="ConfigMap name.")
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_LIST, description="Only these keys.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="Mode of the files (default 0644).")
    optional: bool | None = Field(default=None, description="Start the pod even if the ConfigMap is missing.")


class SecretVolumeSource(ApiModel):
    """A Secret's keys as files."""

    secret_name: str = Field(min_length=1, max_length=253, description="Secret name.")
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_LIST, description="Only these keys.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="Mode of the files (default 0644).")
    optional: bool | None = Field(default=None, description="Start the pod even if the Secret is missing.")


class EmptyDirVolumeSource(ApiModel):
    """A scratch directory that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = Field(default=None, description='"" (node disk) or Memory (tmpfs).')
    size_limit: int | str | None = Field(
        default=None, description="Size limit, e.g. 1Gi.", json_schema_extra=QUANTITY_PATTERN_SCHEMA
    )


class PersistentVolumeClaimVolumeSource(ApiModel):
    """A PersistentVolumeClaim in the TrainingJob's namespace."""

    claim_name: str = Field(min_length=1, max_length=253, description="Claim name.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


class Volume(ApiModel):
    """A volume of product pods: exactly one of configMap, secret, emptyDir, persistentVolumeClaim."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                _exactly_one("configMap", "secret", "emptyDir", "persistentVolumeClaim"),
                "a volume takes exactly one of configMap, secret, emptyDir, persistentVolumeClaim",
            ),
            (
                f"!(self.name in {_cel_list(OPERATOR_VOLUMES)})",
                "volume names scratch, sales and products are the operator's",
                "'volume name ' + self.name + ' is the operator\\'s (scratch, sales and products are "
                "reserved); choose another name'",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN, description="Volume name (a DNS label).")
    config_map: ConfigMapVolumeSource | None = Field(default=None, description="A ConfigMap's keys as files.")
    secret: SecretVolumeSource | None = Field(default=None, description="A Secret's keys as files.")
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="A scratch directory.")
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim."
    )


class VolumeMount(ApiModel):
    """Where a volume of ``spec.template.volumes`` appears in the trainer container."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                f"{_cel_list(OPERATOR_MOUNT_PATHS)}.all(r, self.mountPath != r && "
                "!self.mountPath.startsWith(r + '/') && !r.startsWith(self.mountPath + '/'))",
                "mount path is the operator's",
                "'mountPath ' + self.mountPath + ' is the operator\\'s (at, under or above its /tmp, /data, /plan "
                "or /dev/termination-log); choose another path'",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, description="Name of a volume in spec.template.volumes.")
    mount_path: str = Field(
        min_length=2,
        max_length=4096,
        description="Absolute path in the container, in normal form (no '//', trailing '/', '.' or '..').",
        json_schema_extra=cel(
            ("self.startsWith('/')", "mountPath must be an absolute path"),
            (
                f"self.matches('{NORMAL_MOUNT_PATH_PATTERN}')",
                "mountPath must be in normal form: no double or trailing slash, no . or .. segment",
                "'mountPath ' + self + ' must be in normal form: no double or trailing slash, no . or .. segment'",
            ),
        ),
    )
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    sub_path: str | None = Field(
        default=None,
        max_length=4096,
        description="Mount only this path of the volume (relative, no '..').",
        pattern=RELATIVE_PATH_PATTERN,
    )


class LocalObjectReference(ApiModel):
    """A named object in the TrainingJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Its name.")


# ---------------------------------------------------------------- scheduling


class LabelSelectorRequirement(ApiModel):
    """key operator values, e.g. app In [trainer]."""

    key: str = Field(min_length=1, max_length=316, pattern=LABEL_KEY_PATTERN, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists, DoesNotExist.")
    values: list[str] | None = Field(
        default=None, max_length=MAX_LIST, description="Values (In/NotIn: non-empty; Exists/DoesNotExist: none)."
    )


class LabelSelector(ApiModel):
    """A label query (matchLabels AND matchExpressions)."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels that must equal these values.", json_schema_extra={"maxProperties": 32}
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=MAX_LIST, description="Requirements, all must hold."
    )


class TopologySpreadConstraint(ApiModel):
    """Spread product pods over a topology (zones, nodes), as a pod spec's topologySpreadConstraints."""

    max_skew: int = Field(ge=1, description="Largest allowed difference of matching pods between domains.")
    topology_key: str = Field(min_length=1, max_length=316, description="Node label of the domain, e.g. zone.")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule (hard) or ScheduleAnyway (soft)."
    )
    label_selector: LabelSelector | None = Field(default=None, description="Pods counted for the skew.")
    min_domains: int | None = Field(default=None, ge=1, description="Minimum number of eligible domains.")
    match_label_keys: list[str] | None = Field(
        default=None, max_length=MAX_LIST, description="Pod label keys whose values narrow the selector."
    )
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether nodeAffinity/nodeSelector limit the domains (default Honor)."
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether node taints limit the domains (default Ignore)."
    )


class NodeSelectorRequirement(ApiModel):
    """key operator values over node labels (or fields)."""

    key: str = Field(min_length=1, max_length=316, description="Node label key (or field, in matchFields).")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt, Lt."
    )
    values: list[str] | None = Field(default=None, max_length=MAX_LIST, description="Values.")


class NodeSelectorTerm(ApiModel):
    """Requirements that must all hold for a node."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=MAX_LIST, description="Over node labels."
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=MAX_LIST, description="Over node fields (metadata.name)."
    )


class NodeSelector(ApiModel):
    """Terms of which at least one must hold."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=MAX_LIST, description="ORed terms.")


class PreferredSchedulingTerm(ApiModel):
    """A term the scheduler prefers, with a weight."""

    weight: int = Field(ge=1, le=100, description="1-100.")
    preference: NodeSelectorTerm = Field(description="The node term.")


class NodeAffinity(ApiModel):
    """Which nodes product pods may or prefer to run on."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes must match."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        default=None, max_length=MAX_LIST, description="Nodes preferably match."
    )


class PodAffinityTerm(ApiModel):
    """Pods (by labels, in namespaces) that must or must not share a topology domain."""

    label_selector: LabelSelector | None = Field(default=None, description="The pods.")
    namespace_selector: LabelSelector | None = Field(default=None, description="Their namespaces, by labels.")
    namespaces: list[str] | None = Field(default=None, max_length=MAX_LIST, description="Their namespaces.")
    topology_key: str = Field(min_length=1, max_length=316, description="Node label of the domain.")
    match_label_keys: list[str] | None = Field(default=None, max_length=MAX_LIST, description="See the pod API.")
    mismatch_label_keys: list[str] | None = Field(default=None, max_length=MAX_LIST, description="See the pod API.")


class WeightedPodAffinityTerm(ApiModel):
    """A preferred pod affinity term, with a weight."""

    weight: int = Field(ge=1, le=100, description="1-100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(ApiModel):
    """Pod (anti-)affinity: required and preferred terms."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=MAX_LIST, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, max_length=MAX_LIST, description="Terms preferably held."
    )


class Affinity(ApiModel):
    """Scheduling constraints of product pods (as a pod spec's affinity)."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Pods to run near.")
    pod_anti_affinity: PodAffinity | None = Field(default=None, description="Pods to run away from.")
