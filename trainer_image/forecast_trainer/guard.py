"""Around one product when the output is PostgreSQL: its lock, its run key, its write.

1. Take the product's lock in the output database (locking.py). Another trainer has it: the
   product is reported ``locked`` (reason ProductLocked) and is neither read nor trained.
2. With ``--run-key``: when forecast_models already has this product's model under this key
   (an earlier pod of the same Job committed it and died before reporting), report that model
   as ``trained`` with the warning "already recorded by an earlier attempt"; do not train again.
3. Train (``TrainRun.train_one``). Its write goes through the lock's connection (``save``),
   inside a transaction that also takes the transaction-scoped lock and inserts at most once
   per (run key, product) (store.write_model).
4. Release the lock: after the commit, or when the product failed.

Without PostgreSQL output there is nothing to lock and no table to be idempotent in: the
product is trained as it is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from forecast_trainer.errors import LockLost, ProductLocked
from forecast_trainer.locking import ProductLock
from forecast_trainer.logs import get_logger
from forecast_trainer.report import LOCKED, TRAINED, ProductResult

if TYPE_CHECKING:
    from forecast_trainer.runner import TrainRun
    from forecast_trainer.store import ModelRecord, RunModel

log = get_logger("train")

ALREADY_RECORDED = "already recorded by an earlier attempt"


async def train_guarded(run: TrainRun, product: str) -> ProductResult:
    """Train ``product`` under its lock, unless it is locked or already recorded (module doc)."""
    if run.output is None:
        return await run.train_one(product)
    cfg = run.cfg
    started = time.monotonic()
    lock = ProductLock(
        run.output, cfg.output_schema, product, cfg.trainingjob, cfg.lock_heartbeat_seconds, session=run.lock_session
    )
    try:
        await lock.acquire()
    except Exception as exc:
        return _not_trained(run, product, exc, time.monotonic() - started)
    run.product_lock = lock
    try:
        if cfg.run_key is not None:
            try:
                earlier = await _recorded(run, lock, cfg.run_key, product)
            except Exception as exc:
                return _not_trained(run, product, exc, time.monotonic() - started)
            if earlier is not None:
                return recorded_result(product, cfg.metric, cfg.run_key, earlier, time.monotonic() - started)
        try:
            result = await lock.while_held(run.train_one(product))  # heartbeat: stop when the lock is lost
        except LockLost as exc:
            return _not_trained(run, product, exc, time.monotonic() - started)
        if result.reason == ProductLocked.default_reason:  # the lock was lost while training
            result.status = LOCKED
        saved = lock.saved
        if result.status == TRAINED and saved is not None and saved.existing:
            result.model_id, result.checksum = saved.model_id, saved.checksum
            result.warnings.append(f"{ALREADY_RECORDED} (run key {cfg.run_key!r}); this attempt's model was dropped")
        return result
    finally:
        run.product_lock = None
        await lock.release()


async def save(run: TrainRun, record: ModelRecord, forecast: Any) -> int:
    """Write the model + forecast: through the product's lock connection when it holds one."""
    from forecast_trainer import store

    schema = run.cfg.output_schema
    what = f"cannot save the model of product {record.product_id!r}"
    lock: ProductLock | None = run.product_lock
    if lock is None:
        assert run.output is not None
        return await store.save(run.output, schema, record, forecast)

    async def work(conn: Any) -> store.Saved:
        return await store.write_model(conn, schema, record, forecast)

    lock.saved = await lock.run(what, work)
    return int(lock.saved.model_id)


async def _recorded(run: TrainRun, lock: ProductLock, run_key: str, product: str) -> RunModel | None:
    from forecast_trainer.store import model_for_run

    async def work(conn: Any) -> RunModel | None:
        return await model_for_run(conn, run.cfg.output_schema, run_key, product)

    return await lock.run(f"cannot look up the model of product {product!r} for run key {run_key!r}", work)


def _not_trained(run: TrainRun, product: str, exc: Exception, seconds: float) -> ProductResult:
    result = run._error_result(product, exc, seconds)
    if isinstance(exc, ProductLocked):
        result.status = LOCKED
    log.warning("%s", result.message, extra={"fields": {"event": "product_error", "reason": result.reason}})
    return result


def _section(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    value = metrics.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def recorded_result(product: str, metric: str, run_key: str, earlier: RunModel, seconds: float) -> ProductResult:
    """The report of a product whose model an earlier attempt with the same run key stored."""
    metrics = earlier.metrics
    cv, tuning, klass = (_section(metrics, key) for key in ("cv", "tuning", "class"))
    beats = metrics.get("beats_baseline")
    when = earlier.trained_at.isoformat(timespec="seconds") if hasattr(earlier.trained_at, "isoformat") else ""
    return ProductResult(
        product=product,
        status=TRAINED,
        metric=str(metrics.get("metric") or metric),
        error=_number(cv.get("error")),
        default_error=_number(cv.get("default_error")),
        baseline_error=_number(cv.get("seasonal_naive_error")),
        beats_baseline=beats if isinstance(beats, bool) else None,
        tuned=bool(tuning.get("tuned")),
        trials=int(tuning.get("trials") or 0),
        seconds=seconds,
        model_id=earlier.model_id,
        checksum=earlier.checksum,
        product_class=klass.get("name") if isinstance(klass.get("name"), str) else None,
        family=metrics.get("family") if isinstance(metrics.get("family"), str) else None,
        beats_naive=_flag(metrics.get("beats_naive")),
        uncertain=_flag(_section(metrics, "uncertainty").get("uncertain")),
        champion=_section(metrics, "champion").get("outcome") or None,
        warnings=[f"{ALREADY_RECORDED} (run key {run_key!r}, model {earlier.model_id} at {when}); not trained again"],
        details={**metrics, "recorded_earlier": True},
    )
