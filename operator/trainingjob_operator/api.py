"""The TrainingJob API (``training.forecast.dev/v1alpha1``): the single source of truth.

The CRD in ``crds/`` is generated from these models by :mod:`trainingjob_operator.crdgen`.
Field descriptions become the OpenAPI descriptions that ``kubectl explain`` shows;
``x-kubernetes-validations`` (CEL) rules are attached with :func:`cel`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from trainingjob_operator import histogram
from trainingjob_operator.api_base import (
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    QUANTITY_SCHEMA,
    ApiModel,
    cel,
    immutable,
)
from trainingjob_operator.podtypes import (
    MAX_LIST,
    OPERATOR_LABEL_PREFIX,
    Affinity,
    EnvFromSource,
    EnvVar,
    LocalObjectReference,
    TopologySpreadConstraint,
    Volume,
    VolumeMount,
)

GROUP = "training.forecast.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SINGULAR = "trainingjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["forecast"]

DEFAULT_TRAINER_IMAGE = "ghcr.io/trainingjob-operator/forecast-trainer:0.1.0"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
TABLE_PATTERN = r"^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
PRODUCT_ID_PATTERN = r"^[^\s\p{C}]([^\p{C}]*[^\s\p{C}])?$"
"""A product id: printable (no control or format characters), no leading or trailing white space."""
PRODUCT_ID_MAX_LENGTH = 253
PRODUCTS_MAX_ITEMS = 10000
PRODUCTS_MAX_TOTAL_LENGTH = 640_000
PRODUCTS_PER_POD_MAX = 10000
"""Sum of the ids' lengths. An object is stored whole in etcd (at most ~1.5 MiB per request here and
by default), and the API server keeps every id twice (spec and managedFields): 10,000 ids of 64
characters fit, 10,000 of 253 do not."""


# ---------------------------------------------------------------- references


class SecretKeyRef(ApiModel):
    """A key of a Secret in the TrainingJob's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=CONFIG_KEY_PATTERN,
        description="Key in the Secret whose value is a PostgreSQL DSN (postgresql://user:pass@host:port/db).",
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the TrainingJob's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the ConfigMap.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=CONFIG_KEY_PATTERN,
        description="Key in the ConfigMap holding long-format CSV: product_id, ds, y.",
    )


# ---------------------------------------------------------------- spec parts


class PostgresSource(ApiModel):
    """Sales history in a PostgreSQL table, one row per product and timestamp."""

    secret_ref: SecretKeyRef = Field(description="Secret key holding the DSN of the database to read.")
    table: str = Field(
        default="sales",
        pattern=TABLE_PATTERN,
        description="Table (optionally schema-qualified, e.g. retail.sales) with the history.",
    )
    product_column: str = Field(
        default="product_id", pattern=IDENTIFIER_PATTERN, description="Column with the product id."
    )
    time_column: str = Field(default="ds", pattern=IDENTIFIER_PATTERN, description="Column with the timestamp.")
    value_column: str = Field(default="y", pattern=IDENTIFIER_PATTERN, description="Column with the quantity sold.")


class DataSource(ApiModel):
    """Where the sales history lives. Exactly one of postgres or configMap."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.postgres) != has(self.configMap)",
                "data needs exactly one source: set either data.postgres or data.configMap",
            )
        )
    )

    postgres: PostgresSource | None = Field(default=None, description="Read history from PostgreSQL.")
    config_map: ConfigMapKeyRef | None = Field(
        default=None,
        description="Read history from CSV in a ConfigMap (small demos; mounted into the trainer pod as a file).",
    )


class PostgresOutput(ApiModel):
    """Where trained models and forecasts are written."""

    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the output DSN. Defaults to data.postgres.secretRef."
    )
    schema_: str = Field(
        default="public",
        alias="schema",
        pattern=IDENTIFIER_PATTERN,
        description="Schema holding the forecast_models and forecasts tables (created if missing).",
    )


class Output(ApiModel):
    """Where results are persisted. Without it, results go to the data database when data is PostgreSQL;
    with configMap data and no output the TrainingJob is accepted in trial mode: nothing is persisted
    beyond status.results, and the condition TrialMode (reason NothingStored) and an Event say so."""

    postgres: PostgresOutput | None = Field(default=None, description="Write models and forecasts to PostgreSQL.")


class ForecastSpec(ApiModel):
    """What to forecast."""

    horizon_days: int = Field(default=30, ge=1, le=3650, description="How many days ahead to forecast.")
    frequency: Literal["D", "W", "MS"] = Field(
        default="D", description="Frequency of the history and forecast: D daily, W weekly, MS month start."
    )
    country_holidays: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z]{2,3}$",
        description=(
            "Country whose public holidays the models know (ISO code, e.g. US, DE); a holiday the "
            "product was always closed on is forecast as 0."
        ),
    )
    intervals: list[Annotated[float, Field(ge=1, le=99.9)]] = Field(
        default_factory=lambda: [80.0],
        min_length=1,
        max_length=10,
        description=(
            "Central prediction interval levels in percent, calibrated on the cross-validation residuals "
            "(e.g. [80, 95]); the first is also yhat_lower/yhat_upper."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    quantiles: list[Annotated[float, Field(ge=0.001, le=0.999)]] = Field(
        default_factory=list,
        max_length=10,
        description="Quantile forecasts stored per day (e.g. [0.5, 0.9]), calibrated on CV; never below 0.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


ModelFamily = Literal[
    "prophet",
    "ets",
    "theta",
    "arima",
    "seasonal_naive",
    "last_value",
    "croston_sba",
    "tsb",
    "adida",
    "ensemble",
    "all",
    "naive",
    "intermittent",
    "statsforecast",
]


class TuningSpec(ApiModel):
    """Hyperparameter search with Optuna."""

    trials: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Trials per product. Absent: automatic by product class (high 30, medium 25, low 20, "
            "intermittent 15). 0: Prophet's defaults only."
        ),
    )
    metric: Literal["smape", "mape", "mae", "rmse"] = Field(
        default="smape", description="Cross-validation metric to minimise."
    )
    folds: int = Field(default=3, ge=1, le=20, description="Rolling-origin cross-validation folds.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=86400, description="Upper bound on tuning time per product."
    )
    warm_start: bool = Field(
        default=True, description="Start the search from the product's last best parameters, when known."
    )
    models: list[ModelFamily] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Model families that compete per product on the same CV folds (default: all): prophet, ets, "
            "theta, arima, seasonal_naive, last_value, croston_sba, tsb, adida, ensemble, or the groups "
            "all, naive, intermittent, statsforecast. The best on CV ships; never one worse than the "
            "best naive baseline. E.g. [prophet] for Prophet only."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class ResourceRequirements(ApiModel):
    """Compute resources of each trainer container (same shape as a container's resources)."""

    limits: dict[str, int | str] | None = Field(
        default=None,
        description="Resource limits, e.g. memory: 1Gi.",
        json_schema_extra={"maxProperties": 8, "additionalProperties": QUANTITY_SCHEMA},
    )
    requests: dict[str, int | str] | None = Field(
        default=None,
        description="Resource requests, e.g. cpu: 500m.",
        json_schema_extra={"maxProperties": 8, "additionalProperties": QUANTITY_SCHEMA},
    )


class Toleration(ApiModel):
    """A toleration of product pods (the fields of a pod spec's toleration)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "a toleration with operator Exists takes no value",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds applies only to effect NoExecute",
            ),
        )
    )

    key: str | None = Field(default=None, max_length=316, description="Taint key; empty with Exists matches all.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(default=None, max_length=63, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated (unset: forever)."
    )


def _operator_keys_refused(what: str) -> tuple[str, str]:
    return (
        f"self.all(k, !k.startsWith('{OPERATOR_LABEL_PREFIX}'))",
        f"{what} keys under {OPERATOR_LABEL_PREFIX} are the operator's (it reads them to tell its Jobs apart); "
        "choose another prefix",
    )


class PodTemplate(ApiModel):
    """Knobs of the product pods (a subset of a PodTemplateSpec). The operator's own pod fields
    (security context, termination message, the trainer's environment and volumes) cannot be set."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))",
                "every volumeMounts[].name must name a volume of spec.template.volumes",
            )
        )
    )

    image: str = Field(default=DEFAULT_TRAINER_IMAGE, min_length=1, description="Trainer image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of the trainer container."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Trainer container resources.")
    node_selector: dict[str, str] | None = Field(default=None, description="Node selector of product pods.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=64, description="Tolerations of product pods (as in a pod spec)."
    )
    affinity: Affinity | None = Field(default=None, description="Affinity of product pods (as in a pod spec).")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, max_length=MAX_LIST, description="Spread product pods over zones or nodes (as in a pod spec)."
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, description="ServiceAccount of product pods."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of product pods.")
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=64,
        description="Extra environment variables of the trainer container. Variables the operator sets "
        "from the spec (TRAINER_PRODUCT_ID, TRAINER_TRIALS, …) are refused: set the spec field.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None,
        max_length=MAX_LIST,
        description="ConfigMaps and Secrets whose keys become environment variables. The operator sets "
        "every reserved TRAINER_* variable itself (blank where unused), so keys of those names have no effect.",
    )
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=MAX_LIST,
        description="Extra volumes of product pods (configMap, secret, emptyDir, persistentVolumeClaim); "
        "the names scratch, sales and products are the operator's.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volume_mounts: list[VolumeMount] | None = Field(
        default=None,
        max_length=MAX_LIST,
        description="Where volumes of spec.template.volumes appear in the trainer container; /tmp, /data, "
        "/plan and /dev/termination-log are the operator's: no mount at, under or above them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]},
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None,
        max_length=MAX_LIST,
        description="Secrets for pulling the trainer image from a private registry.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Extra labels on product Jobs and pods (keys and values as Kubernetes labels allow; "
        "keys under training.forecast.dev/ are the operator's).",
        json_schema_extra=cel(
            (
                f"self.all(k, k.matches('{LABEL_KEY_PATTERN}') && self[k].matches('{LABEL_VALUE_PATTERN}'))",
                "label keys must be [prefix/]name (name: at most 63 of A-Za-z0-9-_. starting and ending "
                "alphanumeric; prefix: a DNS subdomain) and values at most 63 such characters",
            ),
            _operator_keys_refused("label"),
            maxProperties=64,
            additionalProperties={"type": "string", "maxLength": 63},
        ),
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        description="Extra annotations on product Jobs and pods (keys under training.forecast.dev/ are the "
        "operator's).",
        json_schema_extra=cel(
            (
                f"self.all(k, k.matches('{LABEL_KEY_PATTERN}'))",
                "annotation keys must be [prefix/]name like label keys",
            ),
            _operator_keys_refused("annotation"),
            maxProperties=64,
            additionalProperties={"type": "string", "maxLength": 65536},
        ),
    )


class MlflowSecretRef(ApiModel):
    """A Secret in the TrainingJob's namespace with the tracking URI and/or credentials (each key optional)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret.")
    uri_key: str | None = Field(
        default=None, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key holding the tracking URI."
    )
    username_key: str | None = Field(
        default=None, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key for MLFLOW_TRACKING_USERNAME."
    )
    password_key: str | None = Field(
        default=None, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key for MLFLOW_TRACKING_PASSWORD."
    )
    token_key: str | None = Field(
        default=None, max_length=253, pattern=CONFIG_KEY_PATTERN, description="Key for MLFLOW_TRACKING_TOKEN."
    )


class MlflowTracking(ApiModel):
    """MLflow tracking and model registry (docs/mlflow.md): one run and one registered-model version per
    product; training never waits on MLflow beyond budgetSeconds per product."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.trackingUri) != (has(self.secretRef) && has(self.secretRef.uriKey))",
                "tracking.mlflow needs exactly one tracking URI: trackingUri or secretRef.uriKey",
            )
        )
    )

    tracking_uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s@]+$",
        description="Tracking server URL (http(s)://host:port, no credentials in it: use secretRef).",
    )
    secret_ref: MlflowSecretRef | None = Field(
        default=None, description="Secret with the URI and/or credentials, passed to pods by secretKeyRef only."
    )
    experiment_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Experiment of the runs. Default: <namespace>/<TrainingSchedule or TrainingJob name>.",
    )
    registered_model_prefix: str = Field(
        default="forecast-",
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of each product's registered model name (prefix + product id, made safe).",
    )
    budget_seconds: int = Field(
        default=15,
        ge=1,
        le=600,
        description="Most seconds MLflow calls may take per product; past it tracking is skipped for the pod.",
    )


class TrackingSpec(ApiModel):
    """Experiment tracking."""

    mlflow: MlflowTracking | None = Field(default=None, description="MLflow tracking and registry.")


class TrainingJobSpec(ApiModel):
    """Desired state: which products to train, from which data, and how."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.data.postgres) || !has(self.output) || !has(self.output.postgres) "
                "|| has(self.output.postgres.secretRef)",
                "output.postgres.secretRef is required when data comes from a configMap",
            ),
            (
                "!has(self.output) == !has(oldSelf.output) && (!has(self.output) || self.output == oldSelf.output)",
                "output cannot change after creation; create a new TrainingJob instead",
            ),
            (
                "(has(self.products) && size(self.products) > 0) != (has(self.allProducts) && self.allProducts)",
                "set exactly one of products (a non-empty list of ids) and allProducts: true",
            ),
            (
                "has(self.products) == has(oldSelf.products) && "
                "(has(self.allProducts) && self.allProducts) == (has(oldSelf.allProducts) && oldSelf.allProducts)",
                "products and allProducts cannot change after creation; create a new TrainingJob instead",
            ),
            (
                "has(self.productsPerPod) == has(oldSelf.productsPerPod)",
                "productsPerPod cannot be set or unset after creation; create a new TrainingJob instead",
            ),
        )
    )

    products: list[str] = Field(
        default_factory=list,
        max_length=PRODUCTS_MAX_ITEMS,
        description=(
            "Product ids to train, one model each (or set allProducts instead): up to 10000 unique ids, "
            "each printable with no leading or "
            f"trailing white space, at most {PRODUCT_ID_MAX_LENGTH} characters, "
            f"{PRODUCTS_MAX_TOTAL_LENGTH} characters in all. A set: its order does not matter (status "
            "indexes refer to the ids sorted). Beyond ~250 KB of ids, create with `kubectl create` or "
            "`kubectl apply --server-side` (client-side apply keeps a copy in an annotation capped at 256 KiB)."
        ),
        json_schema_extra={
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": PRODUCT_ID_MAX_LENGTH,
                "pattern": PRODUCT_ID_PATTERN,
            },
            "x-kubernetes-list-type": "set",
            **cel(
                ("self == oldSelf", "products cannot change after creation; create a new TrainingJob instead"),
                (
                    f"self.map(p, size(p)).sum() <= {PRODUCTS_MAX_TOTAL_LENGTH}",
                    f"products may hold at most {PRODUCTS_MAX_TOTAL_LENGTH} characters of ids in all "
                    "(the object must fit in etcd); split them over several TrainingJobs",
                ),
            ),
        },
    )
    all_products: bool = Field(
        default=False,
        description=(
            "Train every product of the data source (its distinct product ids, found by a discovery pod "
            "when the TrainingJob starts) instead of a list: no limit of 10000 ids. Exactly one of products "
            "and allProducts: true. Always trains in shards (see productsPerPod)."
        ),
        json_schema_extra=immutable("allProducts"),
    )
    products_per_pod: int | None = Field(
        default=None,
        ge=1,
        le=PRODUCTS_PER_POD_MAX,
        description=(
            "Products each pod trains one after another (a shard; one Indexed Job per round whose indexes "
            "are shards). Absent: chosen from the product count N and parallelism P when the TrainingJob "
            "starts: 1 (a Job and pod per product) when N <= 1000 or N <= 8*P, else ceil(N / (8*P)) up to 500. "
            "Above 1 the products are recorded in the output database (or nothing is stored in trial mode). "
            "Cannot change after creation."
        ),
        json_schema_extra=immutable("productsPerPod"),
    )
    data: DataSource = Field(description="Where the sales history lives.", json_schema_extra=immutable("data"))
    output: Output | None = Field(
        default=None,
        description=(
            "Where models and forecasts are written. Unset: the data database when data is postgres; with "
            "data.configMap, trial mode: nothing is stored beyond status.results (condition TrialMode=True, "
            "reason NothingStored, and an Event say so in kubectl describe)."
        ),
    )
    forecast: ForecastSpec = Field(default_factory=ForecastSpec, description="Forecast horizon and frequency.")
    tuning: TuningSpec = Field(default_factory=TuningSpec, description="Hyperparameter tuning.")
    parallelism: int = Field(
        default=4, ge=1, le=1000, description="Most product Jobs running at once (kubectl scale changes it)."
    )
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Retries per product before it is failed.")
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Deadline of each product's Job (all its attempts), in seconds. Past it the Job's pods are "
            "stopped and the product fails with reason DeadlineExceeded; it is not retried."
        ),
    )
    max_failed_products: int | str | None = Field(
        default=None,
        description=(
            'Failed products tolerated (a count, or a percentage of products like "10%"). '
            "Past it no new products start and the TrainingJob fails. Unset (the default): no product may "
            "fail, as a Job without maxFailedIndexes: every product still runs, and the TrainingJob ends "
            "Failed (reason ProductsFailed) if any failed; 0 instead stops launching at the first failure."
        ),
        json_schema_extra=cel(
            (
                "type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",
                'maxFailedProducts must be a non-negative integer or a percentage from "0%" to "100%"',
                '\'maxFailedProducts must be a non-negative integer or a percentage from "0%" to "100%"; got \''
                " + (type(self) == int ? string(self) : '\"' + string(self) + '\"')",
            )
        ),
    )
    suspend: bool = Field(
        default=False,
        description="Stop launching products; running products finish. Set back to false to resume.",
    )
    skip_unchanged: bool | None = Field(
        default=None,
        description=(
            "Skip products whose sales history and training config did not change since their last "
            "model (reported skipped, not trained; needs PostgreSQL output). Default: false for a "
            "TrainingJob, true for the runs of a TrainingSchedule."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete finished product Jobs this long after they finish."
    )
    template: PodTemplate = Field(default_factory=PodTemplate, description="Product pod settings.")
    tracking: TrackingSpec | None = Field(
        default=None, description="Optional experiment tracking and model registry (MLflow)."
    )


# ---------------------------------------------------------------- status


class ProductCounts(ApiModel):
    """How many products are in each state."""

    total: int = Field(
        default=0, description="Products to train: spec.products, or those discovery found (allProducts)."
    )
    pending: int = Field(default=0, description="Not started yet.")
    waiting: int = Field(
        default=0,
        description=(
            "Cannot start now: another TrainingJob trains the product (its Lease or Job), the output "
            "database reports it locked, or its pod cannot start (see the Stalled condition)."
        ),
    )
    active: int = Field(
        default=0,
        description=(
            "Training now (in shard mode: one per running shard pod, which trains its products one at a "
            "time; the rest of its shard counts pending)."
        ),
    )
    queued: int = Field(
        default=0,
        description=(
            "Product Jobs a queueing system holds suspended (Kueue: not admitted yet, or preempted); "
            "they count against parallelism and start when admitted."
        ),
    )
    succeeded: int = Field(
        default=0, description="Done with a current model: trained by this TrainingJob, or skipped (see skipped)."
    )
    skipped: int = Field(
        default=0, description="Of succeeded, skipped: data and config unchanged since the product's last model."
    )
    failed: int = Field(default=0, description="Failed (invalid data or retries exhausted).")


class ProductFailure(ApiModel):
    """A failed product."""

    product: str = Field(description="Product id.")
    reason: str = Field(
        description=(
            "Why, as one CamelCase word: InvalidData, InvalidConfig, BackoffLimitExceeded, DeadlineExceeded, "
            "JobFailed, JobRejected, MissingReport, or why its pod could not start (CreateContainerConfigError, "
            "ErrImagePull, ...); the reasons are listed below the status table."
        )
    )
    message: str = Field(default="", description="What went wrong, for a person.")
    attempts: int = Field(default=0, description="Pods run for this product.")


class ShardCounts(ApiModel):
    """Shards of the current round (shard mode only: more than one product per pod)."""

    size: int = Field(default=1, ge=1, description="Products per shard (pod), fixed when the TrainingJob starts.")
    total: int = Field(default=0, ge=0, description="Shards of the current round (its Indexed Job's completions).")
    succeeded: int = Field(default=0, ge=0, description="Shards of the current round that completed.")
    failed: int = Field(default=0, ge=0, description="Shards of the current round that failed for good.")
    active: int = Field(default=0, ge=0, description="Shards of the current round with a pod running now.")


class DiscoveryStatus(ApiModel):
    """What the discovery pod found in the data source (allProducts only)."""

    products: int = Field(ge=0, description="Distinct product ids found.")
    sha256: str = Field(
        description='Hex SHA-256 of the ids sorted (code point order) and joined by "\\n": the list every shard '
        "pod verifies before training."
    )
    time: str = Field(description="When the discovery pod finished (RFC 3339).")


class HistogramBucket(ApiModel):
    """Products whose CV error falls in one bucket of a histogram."""

    errors_up_to: str = Field(
        description="Upper bound of the bucket: errors above the previous bucket's bound, up to this (a decimal)."
    )
    products: int = Field(ge=0, description="Products with an error in this bucket.")


def _histogram_schema() -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["errorsUpTo"]}


class ChampionCounts(ApiModel):
    """Champion/challenger outcomes of the trained products (docs/mlflow.md)."""

    promoted: int = Field(default=0, description="The new model beat the champion on the most recent window.")
    kept: int = Field(default=0, description="The champion stayed (the new model is a challenger), or is pinned.")
    first: int = Field(default=0, description="The product's first model, champion by default.")


class TrackingCounts(ApiModel):
    """MLflow tracking of the trained products."""

    logged: int = Field(default=0, description="Products with an MLflow run and registered version.")
    skipped: int = Field(default=0, description="Products whose tracking was skipped (MLflow unavailable).")


class ResultsSummary(ApiModel):
    """Model quality over the trained products (cross-validation errors). Errors are decimal strings
    with 4 significant digits, not floats (Kubernetes API conventions: floats do not round-trip)."""

    metric: str = Field(default="smape", description="Metric of the errors below.")
    trained: int = Field(default=0, description="Products with a model.")
    tuned: int = Field(default=0, description="Products whose tuned parameters beat Prophet's defaults.")
    beat_baseline: int = Field(default=0, description="Products whose model beat the seasonal-naive baseline.")
    beat_naive: int = Field(
        default=0,
        description="Products whose shipped model beat the best naive baseline (seasonal or last value) on CV.",
    )
    models: dict[str, int] = Field(
        default_factory=dict, description="Trained products by the model family that won, e.g. {prophet: 12, ets: 5}."
    )
    uncertain: int = Field(
        default=0,
        description=(
            "Products whose CV gain over the best naive baseline is within fold-to-fold noise (or that ship a "
            "naive forecast): look at these first."
        ),
    )
    median_error: str | None = Field(
        default=None, description='Median CV error, estimated from errorHistogram (a decimal, e.g. "12.35").'
    )
    mean_error: str | None = Field(default=None, description="Mean CV error (a decimal).")
    median_baseline_error: str | None = Field(
        default=None, description="Median CV error of the seasonal-naive baseline, estimated (a decimal)."
    )
    error_sum: str = Field(default="0", description="Sum of CV errors, for the mean (a decimal, 6 decimals).")
    champions: ChampionCounts | None = Field(default=None, description="Champion/challenger outcomes.")
    tracking: TrackingCounts | None = Field(default=None, description="MLflow tracking (set when tracking is on).")
    error_histogram: list[HistogramBucket] = Field(
        default_factory=list,
        description=(
            "How many products have a CV error up to each bound (buckets 25 % wide, empty ones left out), lowest first."
        ),
        json_schema_extra=_histogram_schema(),
    )
    baseline_histogram: list[HistogramBucket] = Field(
        default_factory=list,
        description="The same for the seasonal-naive baseline's CV errors.",
        json_schema_extra=_histogram_schema(),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_earlier_format(cls, data: Any) -> Any:
        """Status written before errors were strings: numbers, and histograms as {"<bucket>": count}."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key in ("medianError", "meanError", "medianBaselineError", "errorSum"):
            value = out.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = histogram.fixed_text(value) if key == "errorSum" else histogram.decimal_text(value)
        for key in ("errorHistogram", "baselineHistogram"):
            value = out.get(key)
            if isinstance(value, dict):
                out[key] = [
                    {"errorsUpTo": histogram.bound_text(i), "products": n}
                    for i, n in sorted(histogram.from_legacy(value).items())
                ]
        return out


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(ApiModel):
    """A condition, shaped like metav1.Condition (what kubectl wait, kstatus, Argo CD and Flux read)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"required": ["type", "status", "reason", "message", "lastTransitionTime"]},
    )

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Type of the condition, e.g. Ready (each kind's types are listed at its status.conditions).",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Why, as one CamelCase word (the reasons are listed below the status table).",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable detail (may be empty).")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation of the spec this condition reflects."
    )


class TrainingJobStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"] | None = Field(
        default=None, description="Pending, Running, Suspended, Succeeded or Failed."
    )
    products: ProductCounts = Field(default_factory=ProductCounts, description="Products by state.")
    succeeded_indexes: str = Field(
        default="",
        description=(
            'Trained products as index ranges, e.g. "0-3,7", over spec.products sorted by id (code point '
            "order), so reordering the list never changes what they mean."
        ),
    )
    failed_indexes: str = Field(default="", description="Failed products as index ranges (same order).")
    skipped_indexes: str = Field(
        default="", description="Of the succeeded products, those skipped as unchanged (index ranges, same order)."
    )
    index_order: Literal["Sorted"] | None = Field(
        default=None, description="Order the index ranges refer to: Sorted (spec.products sorted by id)."
    )
    failures: list[ProductFailure] = Field(default_factory=list, description="The most recent failures (at most 20).")
    shards: ShardCounts | None = Field(
        default=None, description="Shards of products per pod (shard mode only; see spec.productsPerPod)."
    )
    discovery: DiscoveryStatus | None = Field(
        default=None, description="The products found in the data source (spec.allProducts only)."
    )
    results: ResultsSummary | None = Field(default=None, description="Model quality summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Running, Complete, Failed, Suspended; Ready (True when Complete), Reconciling (True while the "
            "operator works towards completion) and Stalled (True while progress needs a person: the "
            "TrainingJob failed, a product Job the API server refused, a product pod that cannot start), "
            "as kstatus-based tools (Argo CD, Flux, kubectl wait) read them; TrialMode (True, reason "
            "NothingStored) only on a trial-mode TrainingJob (configMap data, no output); with "
            "spec.tracking.mlflow also Tracked (False, reason TrackingSkipped, once MLflow tracking of a "
            "product was skipped). Keyed by type."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    start_time: str | None = Field(default=None, description="When the first product started.")
    completion_time: str | None = Field(default=None, description="When the TrainingJob finished.")
    observed_generation: int | None = Field(default=None, description="Last spec generation acted upon.")
    parallelism: int | None = Field(default=None, description="Parallelism in effect (scale subresource).")
    selector: str | None = Field(default=None, description="Label selector of product pods (scale subresource).")
    progress: str | None = Field(default=None, description='"succeeded+failed/total", for kubectl get.')
    retry_failed: str | None = Field(default=None, description="Last value of the retry-failed annotation acted upon.")
    unchanged_checked: str | None = Field(
        default=None, description="When the products unchanged since their last model were found (skipUnchanged)."
    )


class KubeObject(ApiModel):
    """An object as read from the API: metadata kept as is, with accessors for what we use."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation") or 0)

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.metadata.get("annotations") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.get("labels") or {})


class TrainingJob(KubeObject):
    """A set of products to train demand-forecasting models for."""

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default=KIND)
    spec: TrainingJobSpec
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)
