"""Which products are unchanged: the ``train --skip-unchanged`` pre-pass and the ``unchanged`` command.

Both compare, per product, the data watermark of its history now with the one its newest
stored model was trained on, and the config hash of this run with the model's (watermark.py).
Both are set-based: one GROUP BY over the history table per batch of 10,000 products and one
index probe per product into forecast_models, so a skipped product costs a few milliseconds
of database time and no data or model library is imported (no pandas, Prophet or Optuna).

Where the models are compared with:
- ``--output-dsn`` (PostgreSQL): the product's newest row in forecast_models (schema version
  3 or later; an older schema has no watermarks, so nothing is unchanged);
- ``--output-dir``: ``<dir>/<product folder>/watermark.json`` next to model.json;
- both: the product is unchanged only when both say so. Neither (demo mode): nothing is.

``unchanged`` writes its answer as a termination message the operator reads (see
``unchanged_message``): index ranges over the product ids sorted by Python's str order, and
``products_sha256`` (``products_digest``) of the list it checked, which the operator requires.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from forecast_trainer.config import TrainConfig, to_products_json, unique
from forecast_trainer.errors import EXIT_OK, ConfigError, InfraUnavailable, TrainerError, one_line
from forecast_trainer.logs import get_logger
from forecast_trainer.report import LIMIT, SKIPPED, ProductResult
from forecast_trainer.watermark import (
    StoredModel,
    Watermark,
    config_hash,
    csv_watermarks,
    index_bitmap,
    index_ranges,
    is_unchanged,
    latest_models,
    pg_watermarks,
    read_dir_model,
)

log = get_logger("unchanged")

UNCHANGED_REASON = "Unchanged"


@dataclass
class Check:
    """The comparison of every product of a run with its newest stored model."""

    products: list[str]  # in the run's order
    marks: dict[str, Watermark] = field(default_factory=dict)
    unchanged: dict[str, StoredModel] = field(default_factory=dict)  # product -> the model it keeps
    config_hash: str = ""


async def check(cfg: TrainConfig, products: list[str] | None, *, details: bool = False) -> Check:
    """Compare ``products`` (None: every product in the data) with their newest stored models."""
    from forecast_trainer.data import Columns, PostgresSource
    from forecast_trainer.db import Database

    config = config_hash(cfg)
    output: Database | None = None
    source: PostgresSource | None = None
    try:
        if cfg.output_dsn:
            role = "data source" if cfg.output_dsn == cfg.data_dsn else "output database"
            output = Database(cfg.output_dsn, cfg.db, role=role)
        if cfg.data_csv:
            every = csv_watermarks(cfg.data_csv, cfg.product_column, cfg.time_column, cfg.value_column)
            wanted = list(products) if products is not None else list(every)
            marks = {p: every[p] for p in wanted if p in every}
        else:
            assert cfg.data_dsn is not None
            columns = Columns(cfg.product_column, cfg.time_column, cfg.value_column)
            shared = output if cfg.output_dsn == cfg.data_dsn else None
            source = PostgresSource(cfg.data_dsn, cfg.data_table, columns, cfg.db, db=shared)
            wanted = list(products) if products is not None else await source.products()
            marks = await pg_watermarks(source, wanted)
        result = Check(products=wanted, marks=marks, config_hash=config)
        if output is None and not cfg.output_dir:
            return result
        candidates = [p for p in wanted if p in marks]
        from_db: dict[str, StoredModel] = {}
        if output is not None and candidates:
            from_db = await latest_models(output, cfg.output_schema, candidates, details=details)
        for product in candidates:
            mark = marks[product]
            keep: StoredModel | None = None
            if output is not None:
                keep = from_db.get(product)
                if not is_unchanged(mark, keep, config, cfg.run_key):
                    continue
            if cfg.output_dir:
                in_dir = read_dir_model(cfg.output_dir, product)
                if not is_unchanged(mark, in_dir, config):
                    continue
                keep = keep or in_dir
            if keep is not None:
                result.unchanged[product] = keep
        return result
    finally:
        if source is not None:
            await source.close()
        if output is not None:
            await output.close()


# --------------------------------------------------------------------------- train --skip-unchanged


@dataclass
class SkipPlan:
    """What the pre-pass decided: skipped products, the ones left to train, or a run-level error."""

    planned: list[str] = field(default_factory=list)  # every product of the run, in order
    skipped: list[ProductResult] = field(default_factory=list)
    remaining: list[str] | None = None  # None: nothing was decided, run as configured
    error: InfraUnavailable | None = None


def skipped_result(product: str, metric: str, model: StoredModel, mark: Watermark, seconds: float) -> ProductResult:
    """The termination-message entry of a skipped product (status skipped, reason Unchanged)."""
    when = f", trained {model.trained_at}" if model.trained_at else ""
    last = f", last {mark.last}" if mark.last else ""
    return ProductResult(
        product=product,
        status=SKIPPED,
        metric=metric,
        error=model.error,
        family=model.family,
        seconds=seconds,
        model_id=model.model_id,
        checksum=model.checksum,
        reason=UNCHANGED_REASON,
        message=(
            f"unchanged since model {model.model_id}{when}: same data ({mark.rows} rows{last}) and same "
            "model options; not trained again"
        ),
        details={"watermark": mark.as_dict(), "model_id": model.model_id, "skipped": True},
    )


async def pre_skip(cfg: TrainConfig) -> SkipPlan:
    """Decide before anything heavy is imported which products of a ``train`` run to skip."""
    if not cfg.persists:
        log.warning(
            "--skip-unchanged: no --output-dsn or --output-dir to compare with; every product is trained",
            extra={"fields": {"event": "skip_unchanged_unavailable"}},
        )
        return SkipPlan(planned=list(cfg.products))
    started = time.monotonic()
    try:
        result = await check(cfg, list(cfg.products) or None, details=True)
    except InfraUnavailable as exc:
        return SkipPlan(planned=list(cfg.products), error=exc)
    except TrainerError as exc:  # e.g. a missing table or column: the normal path reports it per product
        log.warning(
            "--skip-unchanged: cannot compare with the stored models (%s); every product is trained",
            exc.message,
            extra={"fields": {"event": "skip_unchanged_unavailable", "reason": exc.reason}},
        )
        return SkipPlan(planned=list(cfg.products))
    seconds = (time.monotonic() - started) / max(1, len(result.products))
    plan = SkipPlan(planned=list(result.products), remaining=[])
    for product in result.products:
        model = result.unchanged.get(product)
        if model is None:
            assert plan.remaining is not None
            plan.remaining.append(product)
            continue
        skipped = skipped_result(product, cfg.metric, model, result.marks[product], seconds)
        plan.skipped.append(skipped)
        log.info(
            "%s: %s",
            product,
            skipped.message,
            extra={"fields": {"event": "product_skipped", "product": product, "model_id": model.model_id}},
        )
    return plan


def merge(planned: list[str], *groups: list[ProductResult]) -> list[ProductResult]:
    """Results of several passes in the run's product order (unplanned ones at the end)."""
    by_product: dict[str, ProductResult] = {}
    for group in groups:
        for r in group:
            by_product[r.product] = r
    ordered = [by_product.pop(p) for p in planned if p in by_product]
    return ordered + list(by_product.values())


# --------------------------------------------------------------------------- the unchanged command


def read_products_file(path: str) -> list[str]:
    """The JSON array of product ids in ``path`` (ConfigError when missing or malformed)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"--products-file {path!r}: {exc.strerror or type(exc).__name__}") from None
    try:
        return to_products_json(text)
    except ValueError as exc:
        raise ConfigError(f"--products-file {path!r}: {exc}") from None


def products_digest(products: list[str]) -> str:
    """SHA-256 of the sorted distinct ids as compact JSON (UTF-8): the list this check answered
    for. The operator computes the same from the TrainingJob's list and refuses an answer whose
    digest differs (a check that read another list, e.g. a stale ConfigMap of a re-created
    TrainingJob of the same name), whatever its count."""
    text = json.dumps(sorted(set(products)), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unchanged_message(
    unchanged: list[int],
    checked: int,
    seconds: float,
    code: int = EXIT_OK,
    reason: str | None = None,
    message: str | None = None,
    limit: int = LIMIT,
    products_sha256: str | None = None,
) -> str:
    """The ``unchanged`` termination message (at most ``limit`` bytes, always valid JSON).

    The unchanged products are given in the first of three forms that fits (docs/trainer.md, "The
    ``unchanged`` message"), all over the SORTED product ids:

    1. ``unchanged``: their index ranges ("0-3,7"), ``truncated`` false;
    2. else ``unchanged`` "", ``truncated`` true, and ``changed_indexes``: the ranges of the
       CHANGED products (few changes scattered over many products); every other one is unchanged;
    3. else ``unchanged_bitmap``: one bit per checked product (watermark.index_bitmap), which fits
       for any pattern up to about 23,000 products.

    When none fits, ``unchanged`` is "" and ``truncated`` true with no other form: the operator
    then starts a pod for every product (each still skips itself). A reader that knows only
    ``unchanged`` skips nothing more than those ranges say: no form makes an old reader skip a
    changed product.
    """
    doc: dict[str, Any] = {
        "v": 1,
        "kind": "unchanged",
        "order": "sorted",
        "unchanged": index_ranges(unchanged),
        "truncated": False,
        "checked": checked,
        "changed": checked - len(set(unchanged)),
        "seconds": round(seconds, 3),
        "exit_code": code,
    }
    if products_sha256 is not None:
        doc["products_sha256"] = products_sha256
    if reason:
        doc["reason"] = reason
    if message:
        doc["message"] = one_line(message, 1000)

    def dump() -> str:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    def fits() -> bool:
        return len(dump().encode("utf-8")) <= limit

    if not fits() and message:
        doc["message"] = one_line(message, 200)
    if not fits():
        doc["unchanged"], doc["truncated"] = "", True
        same = set(unchanged)
        for key, value in (
            ("changed_indexes", lambda: index_ranges(i for i in range(checked) if i not in same)),
            ("unchanged_bitmap", lambda: index_bitmap(same, checked)),
        ):
            doc[key] = value()
            if fits():
                break
            del doc[key]
    return dump()


@dataclass
class Plan:
    products: list[str]  # sorted by Python's str order: the message's index space
    unchanged: list[int]
    seconds: float


def plan_unchanged(cfg: TrainConfig, products_file: str | None) -> Plan:
    """Check every listed product (the file's and the options'; none listed: all in the data)."""
    started = time.monotonic()
    listed = unique([*(read_products_file(products_file) if products_file else []), *cfg.products])
    result = asyncio.run(check(cfg, listed or None))
    products = sorted(set(result.products))
    indexes = [i for i, p in enumerate(products) if p in result.unchanged]
    return Plan(products, indexes, time.monotonic() - started)


def run_unchanged(cfg: TrainConfig, products_file: str | None, fmt: str) -> int:
    """The ``unchanged`` command: plan, write the termination message, print one line."""
    from forecast_trainer.report import write_termination

    started = time.monotonic()
    try:
        plan = plan_unchanged(cfg, products_file)
    except TrainerError as exc:
        text = unchanged_message([], 0, time.monotonic() - started, exc.exit_code, exc.reason, exc.message)
        write_termination(cfg.termination_log, text)
        raise
    text = unchanged_message(
        plan.unchanged, len(plan.products), plan.seconds, products_sha256=products_digest(plan.products)
    )
    write_termination(cfg.termination_log, text)
    doc = json.loads(text)
    log.info(
        "%d product(s) checked: %d unchanged, %d changed in %.2f s",
        doc["checked"],
        len(plan.unchanged),
        doc["changed"],
        plan.seconds,
        extra={"fields": {"event": "unchanged", **{k: doc[k] for k in ("checked", "changed", "truncated")}}},
    )
    if fmt == "json":
        print(json.dumps({"event": "summary", **doc, "unchanged_count": len(plan.unchanged)}, ensure_ascii=False))
    else:
        print(
            f"{doc['checked']} product(s) checked: {len(plan.unchanged)} unchanged, {doc['changed']} changed "
            f"({plan.seconds:.2f} s); unchanged indexes over the sorted ids: {doc['unchanged'] or '-'}"
            + (" (too long for the termination message: truncated)" if doc["truncated"] else "")
        )
    return EXIT_OK
