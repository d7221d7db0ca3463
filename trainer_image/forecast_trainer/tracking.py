"""MLflow tracking and registry: one run and one registered-model version per product, never in the way.

Off unless a tracking URI is set (``--tracking-uri`` or MLflow's own ``MLFLOW_TRACKING_URI``);
``mlflow`` (the ``mlflow-skinny`` client) is imported only then. Per trained product
(docs/mlflow.md):

* a run named after the product in the experiment (``--experiment-name`` /
  ``MLFLOW_EXPERIMENT_NAME``) with params, metrics and tags in ONE ``log_batch`` request, the model
  document and its SHA-256 as artifacts (``model/model.json``, ``model/model.sha256``);
* a version of the product's registered model (``registered_name``), tagged with the database
  model id, and the alias ``champion`` (promoted or first) or ``challenger`` (kept) on it.

Graceful fallback: every call for a product runs in a daemon thread, and all of a product's calls
together may take ``--tracking-budget-seconds`` (training and the champion's re-scoring are not
counted); MLflow's own HTTP retries are cut to one attempt with a short
timeout. The first failure (unreachable, slow, refusing) opens a breaker: the rest of the run
skips tracking without trying again (no retry storm). Training and the database write never
wait for MLflow beyond the budget; the product's report says ``tracking: skipped``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from forecast_trainer.errors import one_line
from forecast_trainer.logs import get_logger

log = get_logger("tracking")

T = TypeVar("T")

OFF, LOGGED, SKIPPED = "off", "logged", "skipped"
CHAMPION_ALIAS, CHALLENGER_ALIAS = "champion", "challenger"
DEFAULT_EXPERIMENT = "forecast-trainer"
MODEL_ID_TAG = "forecast.model_id"  # on a model version: the forecast_models.id it is
PRODUCT_TAG = "forecast.product_id"
NAME_MAX = 200
_SAFE = re.compile(r"[A-Za-z0-9._-]+")
PARAM_MAX = 500  # MLflow accepts longer values; ours are short, a long one is cut


def registered_name(prefix: str, product: str) -> str:
    """The registered model's name: ``prefix`` + the product id, safe for MLflow and unique per id.

    MLflow refuses ``/`` and ``:`` and path-like names; a name is also part of ``models:/<name>/...``
    URIs. An id made only of ``[A-Za-z0-9._-]`` without ``--`` is kept as it is; any other id is
    reduced to those characters and gets ``--`` plus 16 hex digits of its SHA-256, so two
    distinct ids never share a name (the kept form never contains ``--``).
    """
    readable = prefix + product
    plain = _SAFE.fullmatch(product) and readable not in (".", "..")
    if plain and "--" not in readable and len(readable) <= NAME_MAX:
        return readable
    digest = hashlib.sha256(product.encode("utf-8")).hexdigest()[:16]
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "_", product)).strip("-")
    head = re.sub(r"-{2,}", "-", prefix + slug)[: NAME_MAX - 18].rstrip("-")
    return f"{head}--{digest}"


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as MLflow params (``a.b`` keys, text values)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)[:PARAM_MAX]
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class ProductRecord:
    """What is logged for one trained product (built from what runner.py already has)."""

    product: str
    model_id: Any
    checksum: str
    model_json: str
    metrics: dict[str, Any]  # the forecast_models.metrics document
    params: dict[str, Any]  # the forecast_models.params column (family + its parameters)
    champion: dict[str, Any] | None  # champion.Decision.as_dict() (None: champion/challenger off)
    seconds: float = 0.0

    def mlflow_params(self, cfg: Any) -> dict[str, str]:
        cv = self.metrics.get("cv") or {}
        mark = ((self.metrics.get("watermark") or {}).get("data")) or {}
        out = {
            "family": str(self.params.get("family")),
            "metric": str(cfg.metric),
            "folds": str(cv.get("folds", cfg.folds)),
            "horizon_days": str(cfg.horizon_days),
            "horizon_periods": str(cv.get("horizon_periods")),
            "frequency": str(cfg.frequency),
            "trials": str((self.metrics.get("tuning") or {}).get("trials")),
            "improvement_margin": str(cfg.improvement_margin),
            "data.rows": str(mark.get("rows")),
            "data.last": str(mark.get("last")),
            "data.hash": str(mark.get("hash")),
        }
        out.update(flat_params({k: v for k, v in self.params.items() if k != "family"}, "model."))
        return out

    def mlflow_metrics(self) -> list[tuple[str, float, int]]:
        """(key, value, step); fold errors are one key with step = fold age (0 = oldest window)."""
        cv = self.metrics.get("cv") or {}
        out: list[tuple[str, float, int]] = []

        def add(key: str, value: Any, step: int = 0) -> None:
            number = _finite(value)
            if number is not None:
                out.append((key, number, step))

        add("cv_error", cv.get("error"))
        folds = list(cv.get("fold_errors") or [])
        for age, value in enumerate(reversed(folds)):  # stored most recent first
            add("cv_fold_error", value, age)
        add("cv_error_recent_window", folds[0] if folds else None)
        add("prophet_default_error", cv.get("default_error"))
        add("seasonal_naive_error", cv.get("seasonal_naive_error"))
        add("last_value_error", cv.get("last_value_error"))
        add("best_naive_error", cv.get("best_naive_error"))
        for family, summary in sorted((self.metrics.get("candidates") or {}).items()):
            add(f"candidate.{family}.cv_error", (summary or {}).get("error"))
        coverage = (self.metrics.get("intervals") or {}).get("coverage")
        if isinstance(coverage, dict):
            for level, value in coverage.items():
                add(f"interval_coverage.{level}", value)
        else:
            add("interval_coverage", coverage)
        if self.champion:
            add("champion.recent_window_error", self.champion.get("champion_error"))
            add("champion.fold_noise", self.champion.get("noise"))
            add("champion.threshold", self.champion.get("threshold"))
        add("train_seconds", self.seconds)
        return out

    def mlflow_tags(self, cfg: Any) -> dict[str, str]:
        tags = {
            PRODUCT_TAG: self.product,
            "forecast.model_id": str(self.model_id),
            "forecast.checksum": self.checksum,
            "forecast.family": str(self.params.get("family")),
            "forecast.trainingjob": cfg.trainingjob or "",
            "forecast.run_key": cfg.run_key or "",
            "forecast.schedule": os.environ.get("TRAINER_SCHEDULE", ""),
            "forecast.champion": (self.champion or {}).get("outcome", "off"),
            "mlflow.runName": self.product[:250],
        }
        if self.champion and self.champion.get("reason"):
            tags["forecast.champion_reason"] = str(self.champion["reason"])[:PARAM_MAX]
        return {k: v for k, v in tags.items() if v != ""}


class TrackingUnavailable(Exception):
    """MLflow did not answer, answered with an error, or not within the budget."""


@dataclass
class RegistryState:
    """A registered model's aliases (alias -> version) and the database model id of each version."""

    exists: bool = False
    aliases: dict[str, str] = field(default_factory=dict)
    model_ids: dict[str, int] = field(default_factory=dict)  # version -> forecast_models.id

    def champion_model_id(self) -> int | None:
        version = self.aliases.get(CHAMPION_ALIAS)
        return self.model_ids.get(version) if version is not None else None


def _limit_http(budget: float) -> None:
    """MLflow's client retries 7 times with backoff by default: one attempt, bounded, here."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, math.ceil(min(budget, 10.0)))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    # set_terminated would GET the run again to print its URL on stdout (the trainer's summary).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


async def _with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` in a daemon thread; TrackingUnavailable when it fails or outlasts ``seconds``.

    A daemon thread, not the default executor: a call stuck in a socket must not hold up the
    pod's exit (asyncio.run waits for executor threads)."""
    if seconds <= 0:
        raise TrackingUnavailable("tracking budget of this product used up")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:  # reported to the waiting coroutine
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is closed: the run ended while this call was stuck
            pass

    threading.Thread(target=work, name="mlflow-call", daemon=True).start()
    try:
        return await asyncio.wait_for(future, seconds)
    except TimeoutError:
        raise TrackingUnavailable(f"MLflow did not answer within {seconds:.1f} s") from None
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise TrackingUnavailable(one_line(f"{type(exc).__name__}: {exc}", 300)) from None


class Tracker:
    """MLflow for one trainer run (module doc). ``enabled`` is False without a tracking URI."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.uri: str | None = cfg.tracking_uri
        self.experiment = cfg.experiment_name or DEFAULT_EXPERIMENT
        self.budget = float(cfg.tracking_budget_seconds)
        self.broken: str | None = None  # why tracking is off for the rest of the run
        self._client: Any = None
        self._loading: Any = None  # concurrent.futures.Future of the client (the import, in a thread)
        self._experiment_id: str | None = None
        self.registry: dict[str, RegistryState] = {}
        self._spent: dict[str, float] = {}  # product -> seconds its MLflow calls took so far

    async def _call(self, product: str, fn: Callable[[], T]) -> T:
        """``fn()`` within what is left of the product's budget (TrackingUnavailable past it)."""
        started = time.monotonic()
        try:
            return await _with_deadline(fn, self.budget - self._spent.get(product, 0.0))
        finally:
            self._spent[product] = self._spent.get(product, 0.0) + time.monotonic() - started

    @property
    def enabled(self) -> bool:
        return self.uri is not None

    def start(self) -> None:
        """Import the MLflow client in a daemon thread while the first product trains (a one-off cost
        of about a CPU second; docs/mlflow.md, "Cost")."""
        if not self.enabled or self._loading is not None:
            return
        import concurrent.futures

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def load() -> None:
            try:
                future.set_result(self.client())
            except BaseException as exc:  # reported by ready()
                future.set_exception(exc)

        self._loading = future
        threading.Thread(target=load, name="mlflow-import", daemon=True).start()

    async def ready(self) -> None:
        """Wait for the client import (not part of any product's budget: it needs no network)."""
        if not self.enabled or self.broken:
            return
        self.start()
        try:
            await asyncio.wrap_future(self._loading)
        except Exception as exc:
            self.broken = one_line(f"MLflow client unavailable ({type(exc).__name__}: {exc})", 300)
            log.warning("%s", self.broken, extra={"fields": {"event": "tracking_skipped"}})

    def client(self) -> Any:
        if self._client is None:
            _limit_http(self.budget)
            from mlflow.tracking import MlflowClient  # lazy: only a run with tracking pays the import

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def _fail(self, product: str, exc: TrackingUnavailable) -> str:
        self.broken = str(exc) or "MLflow unavailable"
        log.warning(
            "MLflow tracking skipped from product %r on: %s",
            product,
            self.broken,
            extra={"fields": {"event": "tracking_skipped", "product": product}},
        )
        return self.broken

    # ---------------------------------------------------------------- registry read (before deciding)

    async def registry_state(self, product: str) -> RegistryState | None:
        """The product's registered model (aliases, version -> model id); None when tracking is off or broken."""
        if not self.enabled or self.broken:
            return None
        name = registered_name(self.cfg.registered_model_prefix, product)
        try:
            state = await self._call(product, lambda: self._read_registry(name, product))
        except TrackingUnavailable as exc:
            self._fail(product, exc)
            return None
        self.registry[product] = state
        return state

    def _read_registry(self, name: str, product: str) -> RegistryState:
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return RegistryState()
            raise
        owner = (model.tags or {}).get(PRODUCT_TAG)
        if owner is not None and owner != product:
            raise TrackingUnavailable(f"registered model {name!r} belongs to product {owner!r}, not {product!r}")
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        ids: dict[str, int] = {}
        for version in set(aliases.values()):
            tags = client.get_model_version(name, version).tags or {}
            if str(tags.get(MODEL_ID_TAG, "")).isdigit():
                ids[version] = int(tags[MODEL_ID_TAG])
        return RegistryState(True, aliases, ids)

    # ---------------------------------------------------------------- the run and the version

    async def log_product(self, record: ProductRecord) -> tuple[str, str | None]:
        """(LOGGED | SKIPPED | OFF, why skipped)."""
        if not self.enabled:
            return OFF, None
        if self.broken:
            self._spent.pop(record.product, None)
            return SKIPPED, f"MLflow unavailable earlier in this run: {self.broken}"
        try:
            await self._call(record.product, lambda: self._log(record))
        except TrackingUnavailable as exc:
            return SKIPPED, self._fail(record.product, exc)
        finally:
            self._spent.pop(record.product, None)
        return LOGGED, None

    def _experiment(self) -> str:
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            client = self.client()
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = client.create_experiment(self.experiment)
                except MlflowException:  # another pod created it in between
                    found = client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
                    self._experiment_id = found.experiment_id
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def _log(self, record: ProductRecord) -> None:
        from mlflow.entities import Metric, Param

        client = self.client()
        cfg = self.cfg
        tags = record.mlflow_tags(cfg)
        run = client.create_run(self._experiment(), tags=tags, run_name=record.product[:250])
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v, step in record.mlflow_metrics()],
            params=[Param(k, v) for k, v in record.mlflow_params(cfg).items()],
        )
        client.log_text(run_id, record.model_json, "model/model.json")
        client.log_text(run_id, record.checksum + "  model.json\n", "model/model.sha256")
        client.set_terminated(run_id, "FINISHED")
        self._register(record, run_id, f"{run.info.artifact_uri}/model")

    def _register(self, record: ProductRecord, run_id: str, source: str) -> None:
        from mlflow.exceptions import MlflowException

        client = self.client()
        name = registered_name(self.cfg.registered_model_prefix, record.product)
        state = self.registry.pop(record.product, None)
        if state is None or not state.exists:
            try:
                client.create_registered_model(
                    name,
                    tags={PRODUCT_TAG: record.product},
                    description=f"Demand forecasts of product {record.product!r} (forecast-trainer)",
                )
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
        version = client.create_model_version(
            name,
            source,
            run_id=run_id,
            tags={MODEL_ID_TAG: str(record.model_id), "forecast.checksum": record.checksum},
            description=(record.champion or {}).get("reason"),
            await_creation_for=0,  # a run artifact is ready at once; the default polls for up to 300 s
        )
        outcome = (record.champion or {}).get("outcome", "promoted")
        alias = CHALLENGER_ALIAS if outcome == "kept" else CHAMPION_ALIAS
        client.set_registered_model_alias(name, alias, version.version)
        if alias == CHAMPION_ALIAS and state is not None and state.aliases.get(CHALLENGER_ALIAS):
            # The challenger alias points to an older version than the new champion: drop it.
            client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
