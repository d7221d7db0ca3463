"""Options of every subcommand: one table drives argparse, ``--help`` and the ``TRAINER_*`` env vars.

Each long option ``--some-option`` can also be set with ``TRAINER_SOME_OPTION``; a value given
on the command line wins over the environment, which wins over the default. Values from both
places go through the same converters, so a bad value gives the same one-line message whether
it came from a flag or from an env var (the message names the one it came from).

This module is imported by ``forecast-trainer --help``: it must stay free of heavy imports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer.errors import ConfigError
from forecast_trainer.families import FAMILIES, to_models
from forecast_trainer.sqlident import check_identifier, check_table

ENV_PREFIX = "TRAINER_"
FREQUENCIES = ("D", "W", "MS")
METRICS = ("smape", "mape", "mae", "rmse")
FILL_MISSING = ("zero", "interpolate", "none")
LOG_FORMATS = ("auto", "json", "text")
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()


# --------------------------------------------------------------------------- converters


def to_str(value: str) -> str:
    return value


def to_int(lo: int, hi: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not lo <= number <= hi:
            raise ValueError(f"{number} is outside {lo}..{hi}")
        return number

    return convert


def to_float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number) or number > hi or number < lo or (lo_open and number == lo):
            bound = f"({lo}" if lo_open else f"[{lo}"
            raise ValueError(f"{number} is outside {bound}, {hi}]")
        return number

    return convert


def to_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def to_choice(choices: Sequence[str]) -> Callable[[str], str]:
    lowered = {c.lower(): c for c in choices}

    def convert(value: str) -> str:
        key = str(value).strip().lower()
        if key not in lowered:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return lowered[key]

    return convert


def to_trials(value: str) -> int | None:
    """``auto`` (or empty) -> None (budget by product class); otherwise a count >= 0."""
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return None
    return to_int(0, 10_000)(text)


def to_levels(value: str) -> tuple[float, ...]:
    """``80,95``: central interval levels in percent (0 < level < 100), first = yhat_lower/yhat_upper."""
    levels = _numbers(value, "interval level")
    for level in levels:
        if not 0 < level < 100:
            raise ValueError(f"interval level {level:g} is outside (0, 100) percent")
    return levels


def to_quantiles(value: str) -> tuple[float, ...]:
    """``0.5,0.9``: quantile forecasts (0 < q < 1); empty = none."""
    quantiles = _numbers(value, "quantile", allow_empty=True)
    for q in quantiles:
        if not 0 < q < 1:
            raise ValueError(f"quantile {q:g} is outside (0, 1)")
    return quantiles


def _numbers(value: str | Sequence[float], what: str, *, allow_empty: bool = False) -> tuple[float, ...]:
    items = value if isinstance(value, list | tuple) else [t for t in str(value).replace(" ", "").split(",") if t]
    out: list[float] = []
    for item in items:
        try:
            number = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number ({what})") from None
        if not math.isfinite(number):
            raise ValueError(f"{item!r} is not a finite number ({what})")
        out.append(number)
    if not out and not allow_empty:
        raise ValueError(f"at least one {what} is needed")
    if len(set(out)) != len(out):
        raise ValueError(f"repeated {what}s in {value!r}")
    if len(out) > 10:
        raise ValueError(f"at most 10 {what}s")
    return tuple(out)


def to_date(value: str) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"{value!r} is not a date YYYY-MM-DD")
    return text


PRODUCT_ID_MAX = 253


def verbatim(what: str, limit: int = PRODUCT_ID_MAX) -> Callable[[str], str]:
    """A converter that keeps the text exactly as given (no JSON, no splitting, no trimming).

    Empty or whitespace-only text is refused (exit 2): it must never read as "not given", which
    for a product id would mean "every product in the data".
    """

    def convert(value: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} {value!r} is empty or only whitespace")
        if len(value) > limit:
            raise ValueError(f"{what} of {len(value)} characters is longer than {limit}")
        return value

    return convert


to_product_id = verbatim("product id")
to_run_key = verbatim("run key")  # opaque; the operator passes <TrainingJob uid>/<retry round>


def to_products_json(value: str) -> list[str]:
    """A JSON array of product ids (the explicit list form); each item is an id as by ``to_product_id``."""
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError(f"{value[:80]!r} is not a JSON array of product ids") from None
    if not isinstance(parsed, list) or not parsed:
        raise ValueError('must be a non-empty JSON array of product ids, e.g. ["a", "b"]')
    for item in parsed:
        if not isinstance(item, str):
            raise ValueError(f"product id {item!r} is not a string")
        to_product_id(item)
    return unique(parsed)


RANGES = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
SHARD_SIZE_MAX = 10_000
PRODUCTS_FROM = ("file:<path>", "snapshot", "source")


def to_index_ranges(value: str) -> str:
    """``TRAINER_SHARD_INDEXES``: compressed ranges of global indexes, ascending and disjoint
    (the format of status.succeededIndexes: ``0-99999``, ``3,17,200-210``)."""
    text = str(value).strip()
    if not RANGES.fullmatch(text):
        raise ValueError(f"{text[:80]!r} is not index ranges like 0-99 or 3,17,200-210")
    previous = -1
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if first > last or first <= previous:
            raise ValueError(f"{text[:80]!r}: ranges must be ascending and disjoint (at {part!r})")
        previous = last
    return text


def to_products_from(value: str) -> str:
    """``file:<path>`` (newline-separated sorted ids), ``snapshot`` (run_products) or ``source``."""
    text = str(value).strip()
    if text in ("snapshot", "source") or (text.startswith("file:") and len(text) > len("file:")):
        return text
    raise ValueError(f"{text[:80]!r} is not one of {', '.join(PRODUCTS_FROM)}")


def to_sha256(value: str) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{text[:80]!r} is not a hex SHA-256 (64 hex digits)")
    return text


def unique(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))


def to_timezone(value: str) -> str:
    """An IANA time zone name (e.g. Europe/Berlin) that this machine's tz database knows."""
    import zoneinfo

    name = str(value).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{value!r} is not a known IANA time zone name (e.g. Europe/Berlin, UTC)") from None
    return name


# --------------------------------------------------------------------------- option table


@dataclass(frozen=True)
class Option:
    """One long option; its env var is ``TRAINER_`` + the option name in upper snake case."""

    flag: str
    help: str
    convert: Callable[[Any], Any] = to_str
    default: Any = None
    metavar: str | None = None
    repeat: bool = False
    boolean: bool = False
    secret: bool = False
    blank_is_error: bool = False  # a set-but-empty env var is an error, not "unset"

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


LOG_FORMAT = Option(
    "--log-format",
    "stderr format: 'text' (progress bar on a TTY), 'json' (one JSON object per line), "
    "or 'auto' (text on a TTY, json otherwise)",
    to_choice(LOG_FORMATS),
    "auto",
    "{auto,json,text}",
)
DB_CONNECT_TIMEOUT = Option(
    "--db-connect-timeout", "seconds to wait for a PostgreSQL connection", to_float(0.1, 600), 10.0, "SECONDS"
)
DB_QUERY_TIMEOUT = Option(
    "--db-query-timeout", "seconds a single PostgreSQL statement may take", to_float(0.1, 3600), 60.0, "SECONDS"
)
DB_RETRIES = Option(
    "--db-retries",
    "retries (exponential backoff from 0.5 s, capped at 8 s) after a transient PostgreSQL error",
    to_int(0, 20),
    4,
    "N",
)

SHARD_OPTIONS: tuple[Option, ...] = (
    Option(
        "--shard-size",
        "shard mode (docs/trainer.md): train S products in this process, the shard's slice of the round's "
        "indexes; cannot be combined with --product-id/--product/--products-json",
        to_int(1, SHARD_SIZE_MAX),
        None,
        "S",
    ),
    Option(
        "--shard-indexes",
        "shard mode: the global indexes (over the product ids sorted by Python str order) this round trains, as "
        "compressed ranges, e.g. 0-99999 or 3,17,200-210",
        to_index_ranges,
        None,
        "RANGES",
    ),
    Option(
        "--shard-index",
        "shard mode: which shard k of the round this process trains (sorted(indexes)[k*S:(k+1)*S]); "
        "default: $JOB_COMPLETION_INDEX (set by an Indexed Job)",
        to_int(0, 10_000_000),
        None,
        "K",
    ),
    Option(
        "--products-from",
        "shard mode: where the sorted product list comes from: file:<path> (newline-separated ids), snapshot "
        "(table run_products of the output database, written by discover) or source (list the data source again)",
        to_products_from,
        None,
        "{file:PATH,snapshot,source}",
    ),
    Option(
        "--products-sha256",
        "shard mode: hex SHA-256 of the sorted ids joined by newlines; the list read must match it (exit 2)",
        to_sha256,
        None,
        "HEX",
    ),
    Option(
        "--snapshot-key",
        "run_products key of the discovered product list; default: --run-key up to its first '/' (the TrainingJob uid)",
        to_run_key,
        None,
        "KEY",
    ),
)

TRAIN_OPTIONS: tuple[Option, ...] = (
    Option(
        "--product-id",
        "exactly ONE product id, taken verbatim (no JSON, no splitting, no trimming); "
        "what the operator sets; cannot be combined with --product/--products-json",
        to_product_id,
        None,
        "ID",
        blank_is_error=True,
    ),
    Option(
        "--product",
        "product id to train, taken verbatim; repeat the flag for several; with no --product, "
        "--products-json or --product-id: every product in the data",
        to_product_id,
        None,
        "ID",
        repeat=True,
        blank_is_error=True,
    ),
    Option(
        "--products-json",
        'product ids as a JSON array of strings, e.g. ["a","b"] (adds to --product)',
        to_products_json,
        None,
        "JSON",
        blank_is_error=True,
    ),
    Option("--data-csv", "long-format CSV with the sales history (columns set below)", to_str, None, "FILE"),
    Option(
        "--data-dsn",
        "PostgreSQL URL (postgresql://user:pass@host:port/db) holding the sales history",
        to_str,
        None,
        "DSN",
        secret=True,
    ),
    Option("--data-table", "history table, 'table' or 'schema.table'", to_str, "sales", "TABLE"),
    Option("--product-column", "column with the product id", to_str, "product_id", "NAME"),
    Option("--time-column", "column with the timestamp (date, timestamp, timestamptz or text)", to_str, "ds", "NAME"),
    Option("--value-column", "column with the quantity sold", to_str, "y", "NAME"),
    Option(
        "--output-dsn",
        "PostgreSQL URL to write models and forecasts to; default: the data DSN when there is one",
        to_str,
        None,
        "DSN",
        secret=True,
    ),
    Option("--output-schema", "schema of the output tables (created if missing)", to_str, "public", "SCHEMA"),
    Option(
        "--output-dir",
        "folder for model JSON + SHA-256, forecast CSV, PNG plot per product and summary.json",
        to_str,
        None,
        "DIR",
    ),
    Option("--horizon-days", "forecast horizon in days (also the CV test window)", to_int(1, 3660), 30, "DAYS"),
    Option(
        "--frequency",
        "series frequency: D (daily), W (weekly), MS (month start)",
        to_choice(FREQUENCIES),
        "D",
        "{D,W,MS}",
    ),
    Option(
        "--trials",
        "Optuna trials per product: 'auto' = by product class (high 30, medium 25, low 20, "
        "intermittent 15), 0 = Prophet defaults only, N = exactly N",
        to_trials,
        None,
        "{auto,N}",
    ),
    Option("--metric", "CV error metric to minimise", to_choice(METRICS), "smape", "{smape,mape,mae,rmse}"),
    Option("--folds", "rolling-origin cross-validation folds", to_int(1, 20), 3, "N"),
    Option(
        "--interval-levels",
        "central prediction interval levels in percent, comma-separated, calibrated on the CV residuals; "
        "the first is yhat_lower/yhat_upper",
        to_levels,
        (80.0,),
        "LIST",
    ),
    Option(
        "--quantiles",
        "quantile forecasts stored per day, comma-separated in (0, 1), e.g. 0.5,0.9 (calibrated on the CV "
        "residuals, never below 0)",
        to_quantiles,
        (),
        "LIST",
    ),
    Option(
        "--timeout-seconds",
        "wall-clock bound on tuning per product (the final fit still runs)",
        to_float(0.0, 7 * 86400, lo_open=True),
        None,
        "SECONDS",
    ),
    Option(
        "--warm-start",
        "enqueue the product's last best parameters (from forecast_models) as the first trial",
        to_bool,
        True,
        boolean=True,
    ),
    Option("--trainingjob", "'<namespace>/<name>' recorded with each model", to_str, None, "NS/NAME"),
    Option(
        "--run-key",
        "idempotency key stored with each model (the operator passes <TrainingJob uid>/<retry round>): a product "
        "whose model with this key is already in forecast_models is reported, not trained again",
        to_run_key,
        None,
        "KEY",
        blank_is_error=True,
    ),
    Option(
        "--skip-unchanged",
        "skip a product whose newest stored model was trained on the same data (row count, last "
        "timestamp, hash of the history) with the same model-affecting options: reported 'skipped', "
        "nothing written",
        to_bool,
        False,
        boolean=True,
    ),
    Option(
        "--business-timezone",
        "IANA zone (e.g. Europe/Berlin): timestamps with a UTC offset are converted to it before "
        "they are cut to days/weeks/months; default: each timestamp's own offset (PostgreSQL "
        "timestamptz: the session TimeZone)",
        to_timezone,
        None,
        "ZONE",
    ),
    Option(
        "--termination-log",
        "file for the JSON termination message (<= 4096 bytes); skipped when not writable",
        to_str,
        DEFAULT_TERMINATION_LOG,
        "FILE",
    ),
    Option(
        "--fill-missing",
        "missing periods: zero (no row = no sales), interpolate (linear), none (left as gaps)",
        to_choice(FILL_MISSING),
        "zero",
        "{zero,interpolate,none}",
    ),
    Option(
        "--improvement-margin",
        "a challenger must beat on CV by this relative margin: tuned Prophet parameters over its defaults, "
        "any model over the best naive baseline, another family over the product's last winner",
        to_float(0.0, 0.9),
        0.02,
        "FRACTION",
    ),
    Option(
        "--models",
        "model families that compete per product, comma-separated: prophet, ets, theta, arima, seasonal_naive, "
        "last_value, croston_sba, tsb, adida (intermittent products only), ensemble; or groups all, naive, "
        "intermittent, statsforecast",
        to_models,
        FAMILIES,
        "LIST",
    ),
    Option(
        "--country-holidays",
        "this country's public holidays (e.g. US, DE): Prophet models them, and a holiday the product was "
        "always closed on is forecast as 0",
        to_str,
        None,
        "CODE",
    ),
    Option("--tuning-seed", "seed of the Optuna TPE sampler", to_int(0, 2**31 - 1), 42, "N"),
    Option(
        "--champion-challenger",
        "a new model replaces the product's champion (forecast_champions; its forecast is the one in "
        "forecasts) only when it beats it on the most recent CV window by more than fold noise; "
        "--no-champion-challenger: every new model replaces it",
        to_bool,
        True,
        boolean=True,
    ),
    Option(
        "--pin-champion",
        "keep every product's current champion: new models are recorded as challengers only",
        to_bool,
        False,
        boolean=True,
    ),
    Option(
        "--tracking-uri",
        "MLflow tracking server (http(s)://...); default: $MLFLOW_TRACKING_URI; unset: no tracking. "
        "Credentials only through MLflow's own MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN variables",
        to_str,
        None,
        "URI",
    ),
    Option(
        "--experiment-name",
        "MLflow experiment of the runs; default: $MLFLOW_EXPERIMENT_NAME, else forecast-trainer",
        to_str,
        None,
        "NAME",
    ),
    Option(
        "--registered-model-prefix",
        "prefix of each product's registered model name in the MLflow registry (docs/mlflow.md)",
        to_str,
        "forecast-",
        "PREFIX",
    ),
    Option(
        "--tracking-budget-seconds",
        "most wall-clock seconds MLflow calls may take per product; past it (or on any error) tracking "
        "is skipped for the rest of the run, training and the database write go on",
        to_float(0.5, 600),
        15.0,
        "SECONDS",
    ),
    Option("--pushgateway", "Prometheus Pushgateway address (host:port or URL) to push run metrics to", to_str, None),
    Option(
        "--lock-heartbeat-seconds",
        "while a product trains, check this often that its lock in the output database is still held "
        "(lost: stop, write nothing, report locked)",
        to_float(0.1, 600),
        10.0,
        "SECONDS",
    ),
    *SHARD_OPTIONS,
    DB_CONNECT_TIMEOUT,
    DB_QUERY_TIMEOUT,
    DB_RETRIES,
    LOG_FORMAT,
)

PRODUCTS_FILE = Option(
    "--products-file",
    "file holding ONE JSON array of the product ids to check (the operator mounts it from a ConfigMap); "
    "adds to --product/--products-json",
    to_str,
    None,
    "FILE",
)
# ``unchanged`` takes every ``train`` option (the operator gives it the pods' environment), so
# the config hash it compares is the one ``train`` would store.
UNCHANGED_OPTIONS: tuple[Option, ...] = (PRODUCTS_FILE, *TRAIN_OPTIONS)

MIGRATE_OPTIONS: tuple[Option, ...] = (
    Option("--output-dsn", "PostgreSQL URL of the output database", to_str, None, "DSN", secret=True),
    Option("--data-dsn", "used as the output database when --output-dsn is not set", to_str, None, "DSN", secret=True),
    Option("--output-schema", "schema to create or upgrade", to_str, "public", "SCHEMA"),
    DB_CONNECT_TIMEOUT,
    DB_QUERY_TIMEOUT,
    DB_RETRIES,
    LOG_FORMAT,
)

SAMPLE_DATA_OPTIONS: tuple[Option, ...] = (
    Option("--products", "number of products", to_int(1, 100_000), 20, "N"),
    Option("--days", "days of history per product", to_int(1, 36_500), 1095, "D"),
    Option("--seed", "random seed (same seed, same data)", to_int(0, 2**31 - 1), 7, "S"),
    Option("--start", "first date", to_date, "2021-01-01", "YYYY-MM-DD"),
    Option("--csv", "write long-format CSV (product_id,ds,y) to this file ('-' = stdout)", to_str, None, "FILE"),
    Option("--dsn", "write to this PostgreSQL database instead", to_str, None, "DSN", secret=True),
    Option("--table", "table to create/fill with --dsn ('table' or 'schema.table')", to_str, "sales", "TABLE"),
    Option(
        "--bad-products",
        "also add four invalid products (too short, all zero, negative, constant) for demos and tests",
        to_bool,
        False,
        boolean=True,
    ),
    DB_CONNECT_TIMEOUT,
    DB_QUERY_TIMEOUT,
    DB_RETRIES,
    LOG_FORMAT,
)


def option_help(option: Option) -> str:
    default = option.default
    shown = "unset" if default is None else ("true" if default is True else "false" if default is False else default)
    if option.dest == "trials" and default is None:
        shown = "auto"
    if isinstance(default, tuple):
        shown = "all"
    return f"{option.help} [env {option.env}; default: {shown}]"


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Declare ``options`` on ``parser``; every default is UNSET so env vars can fill the gaps."""
    for option in options:
        if option.boolean:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                action=argparse.BooleanOptionalAction,
                default=UNSET,
                help=option_help(option),
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                default=None if option.repeat else UNSET,
                metavar=option.metavar or option.dest.upper(),
                action="append" if option.repeat else "store",
                help=option_help(option),
            )


def resolve(options: Sequence[Option], cli: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge CLI values, ``TRAINER_*`` env vars and defaults; convert and range-check each value."""
    values: dict[str, Any] = {}
    for option in options:
        raw = cli.get(option.dest, UNSET)
        source = option.flag
        if raw is UNSET or raw is None:
            env_value = environ.get(option.env)
            blank_means_unset = option.dest != "trials" and not option.blank_is_error
            if env_value is None or (env_value.strip() == "" and blank_means_unset):
                values[option.dest] = [] if option.repeat and option.default is None else option.default
                continue
            raw = [env_value] if option.repeat else env_value
            source = option.env
        try:
            if option.repeat:
                values[option.dest] = unique([option.convert(v) for v in raw])
            else:
                values[option.dest] = option.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return values


# --------------------------------------------------------------------------- typed configs


def _check_dsn(dsn: str | None, what: str) -> str | None:
    if dsn is None:
        return None
    if not re.match(r"postgres(ql)?://", dsn.strip()):
        # Never echo the value: it may carry a password.
        raise ConfigError(f"{what} must be a postgresql:// URL")
    return dsn.strip()


@dataclass(frozen=True)
class DbSettings:
    connect_timeout: float = 10.0
    query_timeout: float = 60.0
    retries: int = 4


@dataclass(frozen=True)
class ShardSettings:
    """Shard mode: which products of the round this process trains (docs/trainer.md, "Shard mode")."""

    size: int
    indexes: str  # compressed ranges of the round's global indexes
    index: int  # k: this process trains sorted(indexes)[k*size:(k+1)*size]
    products_from: str  # file:<path> | snapshot | source
    products_sha256: str
    snapshot_key: str | None = None  # run_products key (snapshot mode)


@dataclass(frozen=True)
class TrainConfig:
    products: list[str] = field(default_factory=list)
    product_id: str | None = None  # set when the run was asked for exactly one product (--product-id)
    data_csv: str | None = None
    data_dsn: str | None = None
    data_table: str = "sales"
    product_column: str = "product_id"
    time_column: str = "ds"
    value_column: str = "y"
    output_dsn: str | None = None
    output_schema: str = "public"
    output_dir: str | None = None
    horizon_days: int = 30
    frequency: str = "D"
    trials: int | None = None
    metric: str = "smape"
    folds: int = 3
    interval_levels: tuple[float, ...] = (80.0,)
    quantiles: tuple[float, ...] = ()
    timeout_seconds: float | None = None
    warm_start: bool = True
    trainingjob: str | None = None
    run_key: str | None = None
    skip_unchanged: bool = False
    business_timezone: str | None = None
    termination_log: str = DEFAULT_TERMINATION_LOG
    fill_missing: str = "zero"
    improvement_margin: float = 0.02
    models: tuple[str, ...] = FAMILIES
    country_holidays: str | None = None
    tuning_seed: int = 42
    champion_challenger: bool = True
    pin_champion: bool = False
    tracking_uri: str | None = None
    experiment_name: str | None = None
    registered_model_prefix: str = "forecast-"
    tracking_budget_seconds: float = 15.0
    pushgateway: str | None = None
    lock_heartbeat_seconds: float = 10.0
    log_format: str = "auto"
    db: DbSettings = field(default_factory=DbSettings)
    shard: ShardSettings | None = None  # shard mode (shard.py); None: the products listed above

    @property
    def persists(self) -> bool:
        return bool(self.output_dsn or self.output_dir)


def train_config(values: Mapping[str, Any]) -> TrainConfig:
    """Cross-field checks on resolved ``train`` values."""
    csv, dsn = values.get("data_csv"), _check_dsn(values.get("data_dsn"), "--data-dsn/TRAINER_DATA_DSN")
    if csv and dsn:
        raise ConfigError("set only one data source: --data-csv (TRAINER_DATA_CSV) or --data-dsn (TRAINER_DATA_DSN)")
    if not csv and not dsn:
        raise ConfigError("no data source: set --data-csv (TRAINER_DATA_CSV) or --data-dsn (TRAINER_DATA_DSN)")
    output_dsn = _check_dsn(values.get("output_dsn"), "--output-dsn/TRAINER_OUTPUT_DSN") or dsn
    check_table(values["data_table"], "--data-table")
    for key in ("product_column", "time_column", "value_column"):
        check_identifier(values[key], f"--{key.replace('_', '-')}")
    check_identifier(values["output_schema"], "--output-schema")
    holidays = values.get("country_holidays")
    if holidays is not None and not re.fullmatch(r"[A-Za-z]{2,3}", holidays.strip()):
        raise ConfigError(f"--country-holidays {holidays!r} must be a 2- or 3-letter country code")
    termination_log = values.get("termination_log") or DEFAULT_TERMINATION_LOG
    known = {
        f
        for f in TrainConfig.__dataclass_fields__
        if f not in ("products", "product_id", "db", "output_dsn", "data_dsn", "shard")
    }
    kwargs = {k: v for k, v in values.items() if k in known and v is not None}
    kwargs["termination_log"] = termination_log
    if holidays:
        kwargs["country_holidays"] = holidays.strip().upper()
    product_id, products = requested_products(values)
    shard = shard_settings(values, output_dsn)
    if shard is not None and (product_id is not None or products):
        raise ConfigError(
            "--shard-size (TRAINER_SHARD_SIZE) selects the products itself; do not combine it with --product-id, "
            "--product or --products-json"
        )
    return TrainConfig(
        products=products,
        product_id=product_id,
        data_dsn=dsn,
        output_dsn=output_dsn,
        db=DbSettings(values["db_connect_timeout"], values["db_query_timeout"], values["db_retries"]),
        shard=shard,
        **kwargs,
    )


SHARD_NEEDS = (
    ("shard_indexes", "--shard-indexes (TRAINER_SHARD_INDEXES)"),
    ("shard_index", "--shard-index (TRAINER_SHARD_INDEX, or JOB_COMPLETION_INDEX)"),
    ("products_from", "--products-from (TRAINER_PRODUCTS_FROM)"),
    ("products_sha256", "--products-sha256 (TRAINER_PRODUCTS_SHA256)"),
)


def shard_settings(values: Mapping[str, Any], output_dsn: str | None) -> ShardSettings | None:
    """The shard options checked together; None when --shard-size is not set (not shard mode)."""
    size = values.get("shard_size")
    if size is None:
        given = [flag for key, flag in SHARD_NEEDS if values.get(key) is not None and key != "shard_index"]
        if given:
            raise ConfigError(f"{given[0]} is a shard-mode option: set --shard-size (TRAINER_SHARD_SIZE) too")
        return None
    missing = [flag for key, flag in SHARD_NEEDS if values.get(key) is None]
    if missing:
        raise ConfigError(f"shard mode (--shard-size) needs {', '.join(missing)}")
    snapshot_key = values.get("snapshot_key") or snapshot_key_of(values.get("run_key"))
    if values["products_from"] == "snapshot":
        if not output_dsn:
            raise ConfigError("--products-from snapshot reads table run_products: it needs --output-dsn or --data-dsn")
        if snapshot_key is None:
            raise ConfigError("--products-from snapshot needs --snapshot-key or --run-key (TRAINER_RUN_KEY)")
    return ShardSettings(
        size=int(size),
        indexes=values["shard_indexes"],
        index=int(values["shard_index"]),
        products_from=values["products_from"],
        products_sha256=values["products_sha256"],
        snapshot_key=snapshot_key,
    )


def snapshot_key_of(run_key: str | None) -> str | None:
    """The run_products key of a run key ``<TrainingJob uid>/<round>``: the uid."""
    return run_key.split("/", 1)[0] if run_key else None


def job_completion_index(values: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``$JOB_COMPLETION_INDEX`` (set by an Indexed Job) fills ``--shard-index`` when unset."""
    out = dict(values)
    raw = (env.get("JOB_COMPLETION_INDEX") or "").strip()
    if out.get("shard_index") is None and raw:
        try:
            out["shard_index"] = to_int(0, 10_000_000)(raw)
        except ValueError as exc:
            raise ConfigError(f"JOB_COMPLETION_INDEX: {exc}") from None
    return out


def mlflow_defaults(values: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """MLflow's standard variables fill ``--tracking-uri`` / ``--experiment-name`` when unset."""
    out = dict(values)
    for key, variable in (("tracking_uri", "MLFLOW_TRACKING_URI"), ("experiment_name", "MLFLOW_EXPERIMENT_NAME")):
        if not out.get(key) and (env.get(variable) or "").strip():
            out[key] = env[variable].strip()
    uri = out.get("tracking_uri")
    if uri is not None and not re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://|file:|databricks$)", uri):
        raise ConfigError(
            "--tracking-uri/MLFLOW_TRACKING_URI must be a URI with a scheme, e.g. http://mlflow.example:5000"
        )
    return out


def requested_products(values: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(the --product-id, the products to train); [] = every product in the data.

    ``--product-id`` is exactly one product and excludes the list forms, so a pod given one
    product can never be widened to others.
    """
    product_id = values.get("product_id")
    listed = unique([*(values.get("product") or []), *(values.get("products_json") or [])])
    if product_id is not None:
        if listed:
            raise ConfigError(
                "--product-id (TRAINER_PRODUCT_ID) names exactly one product; do not combine it with "
                "--product (TRAINER_PRODUCT) or --products-json (TRAINER_PRODUCTS_JSON)"
            )
        return product_id, [product_id]
    return None, listed


@dataclass(frozen=True)
class MigrateConfig:
    output_dsn: str
    output_schema: str = "public"
    log_format: str = "auto"
    db: DbSettings = field(default_factory=DbSettings)


def migrate_config(values: Mapping[str, Any]) -> MigrateConfig:
    dsn = _check_dsn(values.get("output_dsn"), "--output-dsn/TRAINER_OUTPUT_DSN") or _check_dsn(
        values.get("data_dsn"), "--data-dsn/TRAINER_DATA_DSN"
    )
    if not dsn:
        raise ConfigError("migrate needs a database: set --output-dsn (TRAINER_OUTPUT_DSN)")
    return MigrateConfig(
        output_dsn=dsn,
        output_schema=check_identifier(values["output_schema"], "--output-schema"),
        log_format=values["log_format"],
        db=DbSettings(values["db_connect_timeout"], values["db_query_timeout"], values["db_retries"]),
    )


@dataclass(frozen=True)
class SampleDataConfig:
    products: int = 20
    days: int = 1095
    seed: int = 7
    start: str = "2021-01-01"
    csv: str | None = None
    dsn: str | None = None
    table: str = "sales"
    bad_products: bool = False
    log_format: str = "auto"
    db: DbSettings = field(default_factory=DbSettings)


def sample_data_config(values: Mapping[str, Any]) -> SampleDataConfig:
    dsn = _check_dsn(values.get("dsn"), "--dsn/TRAINER_DSN")
    if bool(values.get("csv")) == bool(dsn):
        raise ConfigError("sample-data writes to exactly one place: --csv FILE or --dsn DSN [--table T]")
    check_table(values["table"], "--table")
    return SampleDataConfig(
        products=values["products"],
        days=values["days"],
        seed=values["seed"],
        start=values["start"],
        csv=values.get("csv"),
        dsn=dsn,
        table=values["table"],
        bad_products=values["bad_products"],
        log_format=values["log_format"],
        db=DbSettings(values["db_connect_timeout"], values["db_query_timeout"], values["db_retries"]),
    )


def environ() -> Mapping[str, str]:
    return os.environ


DISCOVER_OPTIONS: tuple[Option, ...] = TRAIN_OPTIONS
"""``discover`` takes every ``train`` option: the operator gives it the pod configuration of a product pod."""

NOT_FOR_DISCOVER = (
    "product_id",
    "product",
    "products_json",
    *(o.dest for o in SHARD_OPTIONS if o.dest != "snapshot_key"),
)


def discover_config(values: Mapping[str, Any]) -> TrainConfig:
    """The data source, output and snapshot key of a ``discover`` run (product and shard options ignored)."""
    kept = {k: (None if k in NOT_FOR_DISCOVER else v) for k, v in values.items()}
    kept["product"] = []
    return train_config(kept)
