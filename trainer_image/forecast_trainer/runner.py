"""The ``train`` command: load -> validate -> classify -> tune -> final fit -> persist -> report.

Products are trained one after another (a trainer pod normally gets one product and one core).
Each product ends as trained, invalid (bad data: reported, skipped, nothing written) or failed
(infrastructure or an unexpected error). The CPU-bound part runs in a worker thread so the
event loop keeps the database pools healthy.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer import guard, report
from forecast_trainer.classify import classify, trial_budget
from forecast_trainer.config import TrainConfig
from forecast_trainer.data import Columns, CsvSource, DataSource, PostgresSource
from forecast_trainer.db import Database
from forecast_trainer.errors import ConfigError, DataInvalid, InfraUnavailable, TrainerError, one_line
from forecast_trainer.logs import get_logger
from forecast_trainer.progress import Progress
from forecast_trainer.report import FAILED, INVALID, TRAINED, ProductResult
from forecast_trainer.training import Trained, metrics_document, train_product
from forecast_trainer.validate import Prepared, Rules, prepare

log = get_logger("train")


@dataclass
class RunOutcome:
    results: list[ProductResult] = field(default_factory=list)
    run_error: TrainerError | None = None


class TrainRun:
    def __init__(self, cfg: TrainConfig, progress: Progress) -> None:
        self.cfg = cfg
        self.progress = progress
        self.rules = Rules(
            frequency=cfg.frequency, fill_missing=cfg.fill_missing, business_timezone=cfg.business_timezone
        )
        self.output: Database | None = None
        if cfg.output_dsn and cfg.output_dsn == cfg.data_dsn:
            # One database for both: one pool, and its failures are the data source's.
            self.output = Database(cfg.output_dsn, cfg.db, role="data source")
        elif cfg.output_dsn:
            self.output = Database(cfg.output_dsn, cfg.db, role="output database")
        self.source: DataSource = self._source()
        self.outcome = RunOutcome()
        self.planned: list[str] = list(cfg.products)
        self.product_lock: Any = None  # the current product's lock in the output database (guard.py)
        self.lock_session: Any = None  # shard mode: one lock connection for every product (locking.LockSession)
        self.prefetch: Any = None  # shard mode, PostgreSQL: histories loaded a batch at a time (data.Prefetch)
        # What each stored model records about its data and options (watermark.py).
        from forecast_trainer.watermark import config_document, config_hash

        self.config_document = config_document(cfg)
        self.config_hash = config_hash(cfg)
        self.csv_marks: dict[str, Any] | None = None
        from forecast_trainer.tracking import Tracker

        self.tracker = Tracker(cfg)  # MLflow; off without a tracking URI (tracking.py)

    def _source(self) -> DataSource:
        cfg = self.cfg
        columns = Columns(cfg.product_column, cfg.time_column, cfg.value_column)
        if cfg.data_csv:
            return CsvSource(cfg.data_csv, columns)
        assert cfg.data_dsn is not None
        shared = self.output if cfg.output_dsn == cfg.data_dsn else None
        return PostgresSource(cfg.data_dsn, cfg.data_table, columns, cfg.db, db=shared)

    def _error_result(self, product: str, exc: BaseException, seconds: float) -> ProductResult:
        if isinstance(exc, DataInvalid):
            status, reason, message, infra = INVALID, exc.reason, exc.message, False
        elif isinstance(exc, InfraUnavailable):
            status, reason, message, infra = FAILED, exc.reason, exc.message, True
        elif isinstance(exc, TrainerError):
            status, reason, message, infra = FAILED, exc.reason, exc.message, False
        else:
            status, reason, infra = FAILED, "InternalError", False
            message = one_line(f"unexpected {type(exc).__name__}: {exc}")
        return ProductResult(
            product=product,
            status=status,
            metric=self.cfg.metric,
            seconds=seconds,
            reason=reason,
            message=message,
            infra=infra,
        )

    def interrupted(self, reason: str, message: str) -> list[ProductResult]:
        """Results so far plus a failed entry for every product not finished yet."""
        done = list(self.outcome.results)
        finished = {r.product for r in done}
        for product in self.planned:
            if product not in finished:
                done.append(
                    ProductResult(
                        product=product,
                        status=FAILED,
                        metric=self.cfg.metric,
                        reason=reason,
                        message=message,
                        infra=True,
                    )
                )
        return done

    async def run(self) -> RunOutcome:
        outcome = self.outcome
        products = list(self.cfg.products)
        self.planned = list(products)
        try:
            if self.output is not None:
                from forecast_trainer.store import migrate

                await migrate(self.output, self.cfg.output_schema)
            if isinstance(self.source, CsvSource) and self.cfg.persists:
                from forecast_trainer.watermark import csv_watermarks

                # Before the CSV is loaded for training: a change in between retrains next time.
                # A file it cannot read is reported by the CSV source below, with its own reason.
                c = self.cfg
                try:
                    self.csv_marks = csv_watermarks(c.data_csv or "", c.product_column, c.time_column, c.value_column)
                except TrainerError:
                    self.csv_marks = {}
            if not products or isinstance(self.source, CsvSource):
                listed = await self.source.products()  # a CSV is read (and checked) once, up front
                products = products or listed
                self.planned = list(products)
        except TrainerError as exc:
            outcome.run_error = exc if not products or isinstance(exc, ConfigError) else None
            if outcome.run_error is None:
                log.warning("%s", exc.message, extra={"fields": {"event": "source_error", "reason": exc.reason}})
            outcome.results = [self._error_result(p, _for_product(exc, p), 0.0) for p in products]
            return outcome
        self.progress.start(len(products))
        self.tracker.start()  # the MLflow client loads while the first product trains
        try:
            for product in products:
                result = await guard.train_guarded(self, product)  # lock, run key, then train_one
                outcome.results.append(result)
                self.progress.product_done(
                    product,
                    result.status,
                    {k: v for k, v in report.entry(result).items() if k not in ("product", "status")},
                )
        finally:
            self.progress.finish()
        return outcome

    async def close(self) -> None:
        await self.source.close()
        if self.output is not None:
            await self.output.close()  # closing twice (shared pool) is a no-op

    async def train_one(self, product: str) -> ProductResult:
        cfg = self.cfg
        started = time.monotonic()
        cpu_started = _cpu_seconds()
        self.progress.product_started(product)
        try:
            raw, mark = await self._history(product)
            prepared = prepare(product, raw, self.rules)
            product_class = classify(prepared.frame["y"], cfg.frequency)
            budget = trial_budget(product_class, cfg.trials)
            warm = None
            if self.output is not None and cfg.warm_start:
                from forecast_trainer.store import last_best_params

                warm = await last_best_params(self.output, cfg.output_schema, product)

            def on_trial(number: int, total: int) -> None:
                self.progress.trial(product, number, total)

            warm_params = warm.params if warm and budget > 0 else None
            warm_family = warm.family if warm else None
            trained = await asyncio.to_thread(
                train_product, prepared, cfg, budget, warm_params, product_class, on_trial, warm_family
            )
            metrics = metrics_document(cfg, prepared, trained, warm.model_id if warm else None, warm_family)
            metrics["watermark"] = {
                "data": mark.as_dict() if mark is not None else None,
                "config_hash": self.config_hash,
                "config": self.config_document,
            }
            await self.tracker.ready()  # the client import is charged to no product's budget
            decision = await self.champion(product, trained, metrics)
            if decision is not None:
                metrics["champion"] = decision.as_dict()
            model_id = await self.persist(product, prepared, trained, metrics, mark, decision)
        except Exception as exc:
            result = self._error_result(product, exc, time.monotonic() - started)
            if not isinstance(exc, TrainerError):
                log.exception("unexpected error training %r", product)
            else:
                log.warning("%s", result.message, extra={"fields": {"event": "product_error", "reason": result.reason}})
            return result
        saved = self.product_lock.saved if self.product_lock is not None else None
        tracking: str | None = None
        why: str | None = None
        if saved is None or not saved.existing:  # an earlier attempt's model was kept: its pod tracked it
            tracking, why = await self.track(product, trained, metrics, model_id, decision, started)
        t = trained.tuning
        selection = trained.selection
        warnings = list(prepared.warnings) + list(trained.warnings)
        if why:
            warnings.append(f"MLflow tracking skipped: {why}")
        if decision is not None and decision.outcome == "kept":
            warnings.append(f"champion kept: {decision.reason}")
        return ProductResult(
            product=product,
            status=TRAINED,
            metric=cfg.metric,
            error=selection.error if selection else None,
            default_error=t.default_error,
            baseline_error=trained.seasonal_naive_error,
            beats_baseline=selection.beats_baseline if selection else None,
            family=trained.family,
            beats_naive=selection.beats_naive if selection else None,
            uncertain=trained.uncertainty.uncertain if trained.uncertainty else None,
            relative_width=trained.uncertainty.relative_width if trained.uncertainty else None,
            tuned=t.tuned,
            trials=t.trials,
            seconds=time.monotonic() - started,
            model_id=model_id,
            checksum=trained.checksum,
            product_class=trained.product_class.name,
            warnings=warnings,
            details={**metrics, "params": trained.params, "cpu_seconds": round(_cpu_seconds() - cpu_started, 3)},
            champion=decision.outcome if decision is not None else None,
            tracking=tracking,
        )

    async def _db(self, what: str, work: Any) -> Any:
        """One unit of database work: through the product's lock connection when it holds one."""
        if self.product_lock is not None:
            return await self.product_lock.run(what, work)
        assert self.output is not None
        return await self.output.run(what, work)

    async def champion(self, product: str, trained: Trained, metrics: dict[str, Any]) -> Any:
        """The champion/challenger decision (champion.py), or None when it does not apply."""
        cfg = self.cfg
        if self.output is None or not cfg.champion_challenger:
            return None
        from forecast_trainer import store
        from forecast_trainer.champion import decide, recipe, rescore

        schema = cfg.output_schema

        async def read(conn: Any) -> Any:
            return await store.champion_of(conn, schema, product)

        what = f"cannot read the champion of product {product!r}"
        current = await self._db(what, read)
        folds = (metrics.get("cv") or {}).get("fold_errors") or []
        challenger = [float(e) if e is not None else math.nan for e in folds]
        if current is None:
            return decide(challenger, None, None, cfg.improvement_margin)
        pinned, by = current.pinned, f"pinned in the database by {current.decided_by}"
        registry = await self.tracker.registry_state(product)
        by_hand = registry.champion_model_id() if registry is not None else None
        if by_hand is not None and by_hand not in (current.model_id, current.registry_model_id):
            # The champion alias was moved in MLflow by a person: adopt it, pinned.
            async def adopt(conn: Any) -> Any:
                if by_hand not in await store.product_model_ids(conn, schema, product, [by_hand]):
                    return None
                await store.set_champion(conn, schema, product, by_hand, "registry alias", pinned=True)
                await store.set_registry_model(conn, schema, product, by_hand)
                return await store.champion_of(conn, schema, product)

            adopted = await self._db(f"cannot adopt the registry's champion of product {product!r}", adopt)
            if adopted is not None:
                current, pinned, by = adopted, True, "the champion alias was set by hand in MLflow"
        if cfg.pin_champion:
            pinned, by = True, "the TrainingJob's pin-champion annotation"
        if pinned:
            return decide(challenger, None, current.model_id, cfg.improvement_margin, pinned=True, pinned_by=by)
        champion_folds: list[float] = []
        if current.verified and trained.plan is not None:
            doc = recipe(current.model_json, current.params)
            champion_folds = await asyncio.to_thread(
                rescore, trained.plan, doc, trained.candidates, trained.structure, cfg.metric
            )
        return decide(challenger, champion_folds, current.model_id, cfg.improvement_margin)

    async def track(
        self,
        product: str,
        trained: Trained,
        metrics: dict[str, Any],
        model_id: Any,
        decision: Any,
        started: float,
    ) -> tuple[str, str | None]:
        """Log the product to MLflow (tracking.py): (logged | skipped | off, why skipped)."""
        from forecast_trainer.tracking import LOGGED, ProductRecord

        record = ProductRecord(
            product=product,
            model_id=model_id,
            checksum=trained.checksum,
            model_json=trained.model_json,
            metrics=metrics,
            params=trained.params,
            champion=decision.as_dict() if decision is not None else None,
            seconds=time.monotonic() - started,
        )
        status, why = await self.tracker.log_product(record)
        if status == LOGGED and decision is not None and decision.promotes and isinstance(model_id, int):
            from forecast_trainer import store

            async def remember(conn: Any) -> None:
                await store.set_registry_model(conn, self.cfg.output_schema, product, model_id)

            try:
                await self._db(f"cannot record the registry champion of product {product!r}", remember)
            except TrainerError as exc:  # the model is stored; the next run re-reads the registry
                log.warning("%s", exc.message, extra={"fields": {"event": "registry_record_failed"}})
        return status, why

    async def _history(self, product: str) -> tuple[Any, Any]:
        """The product's raw history and its data watermark (None when not known)."""
        if self.prefetch is not None:
            return await self.prefetch.get(product)
        if isinstance(self.source, PostgresSource):
            return await self.source.history_and_watermark(product)
        raw = await self.source.history(product)
        return raw, (self.csv_marks or {}).get(product)

    async def persist(
        self,
        product: str,
        prepared: Prepared,
        trained: Trained,
        metrics: dict[str, Any],
        mark: Any = None,
        decision: Any = None,
    ) -> Any:
        """Database first (one transaction), then files; returns the model id (or folder, or None)."""
        cfg = self.cfg
        model_id: Any = None
        if self.output is not None:
            from forecast_trainer import model as models
            from forecast_trainer.store import ModelRecord

            record = ModelRecord(
                product_id=product,
                trainingjob=cfg.trainingjob,
                prophet_version=models.prophet_version(),
                params=trained.params,
                metrics=metrics,
                model_json=trained.model_json,
                checksum=trained.checksum,
                run_key=cfg.run_key,
                data_rows=mark.rows if mark is not None else None,
                data_last=mark.last if mark is not None else None,
                data_hash=mark.hash if mark is not None else None,
                config_hash=self.config_hash if mark is not None else None,
                champion=decision.outcome if decision is not None else "replaced",
                outcome=cfg.shard is not None and cfg.run_key is not None,
            )
            model_id = await guard.save(self, record, trained.forecast)
        if cfg.output_dir:
            from forecast_trainer.outputs import write_product

            kind = trained.family + (" tuned" if trained.family == "prophet" and trained.tuning.tuned else "")
            error = trained.selection.error if trained.selection else None
            title = f"{product} - {cfg.metric} {_short(error)} ({kind})"
            folder = await asyncio.to_thread(
                write_product,
                cfg.output_dir,
                product,
                trained.model_json,
                trained.checksum,
                trained.forecast,
                prepared.frame,
                trained.fitted,
                {**metrics, "params": trained.params, "model_id": model_id, "checksum": trained.checksum},
                title,
                bool(trained.uncertainty and trained.uncertainty.uncertain),
            )
            if mark is not None:
                from forecast_trainer.watermark import write_dir_watermark

                write_dir_watermark(cfg.output_dir, folder, mark, self.config_hash, trained.checksum)
            if model_id is None:
                model_id = folder
        return model_id


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (Stan runs as a child process)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _for_product(exc: TrainerError, product: str) -> TrainerError:
    """A run-level error restated for one product (its message names the product)."""
    return type(exc)(f"product {product!r}: {exc.message}", reason=exc.reason)


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def check_data_csv(cfg: TrainConfig) -> None:
    """A missing --data-csv is a configuration error found before anything is said or written."""
    if cfg.data_csv and not os.path.isfile(cfg.data_csv):
        raise ConfigError(f"data CSV {cfg.data_csv!r} does not exist")


def check_country(cfg: TrainConfig) -> None:
    if not cfg.country_holidays:
        return
    import holidays

    try:
        holidays.country_holidays(cfg.country_holidays)
    except NotImplementedError:
        raise ConfigError(f"--country-holidays: no holiday calendar for {cfg.country_holidays!r}") from None


async def run_async(cfg: TrainConfig, progress: Progress, holder: dict[str, Any] | None = None) -> RunOutcome:
    """Run ``train``; ``holder["run"]`` exposes the live run (for the SIGTERM handler)."""
    run = TrainRun(cfg, progress)
    if holder is not None:
        holder["run"] = run
    try:
        return await run.run()
    finally:
        await run.close()


def persistence_note(cfg: TrainConfig) -> str:
    places = []
    if cfg.output_dsn:
        places.append(f"PostgreSQL schema {cfg.output_schema!r}")
    if cfg.output_dir:
        places.append(f"folder {os.path.abspath(cfg.output_dir)}")
    return " and ".join(places)
