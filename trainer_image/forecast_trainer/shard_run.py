"""``train`` in shard mode: one process trains the products of shard ``k`` one after another.

1. Select the shard's products (shard.py): the sorted list from a file, the discovery snapshot
   or the source, checked against ``--products-sha256`` (mismatch: exit 2).
2. With ``--skip-unchanged``: the unchanged ones are decided up front (unchanged.py).
3. Each other product, in shard order, as a product pod trains its one: under its lock in the
   output database, with the run-key guard (committed under this run key: reported from the
   stored row, never trained twice), its model + forecast + ``run_outcomes`` row committed in
   one transaction (guard.py, store.py). Imports, the config, the family registry, the database
   pool and the lock connection are set up once; PostgreSQL history is read a batch at a time.
4. After EVERY product the termination message is rewritten (report.shard_message), so a pod
   killed mid-shard still tells what it finished; every outcome also goes to ``run_outcomes``.

Exit codes: 0 when every product of the shard has an outcome (invalid products fail alone,
locked ones are reported); 4 when a database stayed unreachable (the index is retried; the
guard skips what is already committed); 2 on a configuration error or a digest mismatch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from typing import Any

from forecast_trainer import guard, report
from forecast_trainer.config import TrainConfig
from forecast_trainer.errors import EXIT_INFRA, EXIT_OK, TrainerError, one_line
from forecast_trainer.logs import get_logger
from forecast_trainer.progress import Progress
from forecast_trainer.report import FAILED, TRAINED, ProductResult

log = get_logger("shard")

HISTORY_BATCH = 100  # products per history query (PostgreSQL source)


class ShardState:
    """What the shard has done so far (the SIGTERM handler reports it)."""

    def __init__(self, shard: int, size: int, metric: str = "smape") -> None:
        self.shard, self.size = shard, size
        self.report = report.ShardReport(shard, size, 0, metric)
        self.error: TrainerError | None = None  # a shard-level error (selection, migration)

    @property
    def results(self) -> list[ProductResult]:
        """Position p's outcome is ``results[p]``."""
        return self.report.results

    @property
    def n(self) -> int:
        return self.report.n

    def start(self, n: int) -> None:
        self.report.n = n

    def add(self, result: ProductResult) -> None:
        self.report.add(result)

    def message(self) -> str:
        extra = None
        if self.error is not None:
            extra = {
                "exit_code": self.error.exit_code,
                "reason": self.error.reason,
                "message": one_line(self.error.message, 600),
            }
        return self.report.message(extra=extra)


def shard_exit_code(state: ShardState) -> int:
    """0 when every position has an outcome; 4 when a database stayed unreachable; the error's code else."""
    if state.error is not None:
        return state.error.exit_code
    if any(r.status == FAILED and r.infra for r in state.results):
        return EXIT_INFRA
    return EXIT_OK


def write_report(cfg: TrainConfig, state: ShardState) -> None:
    report.write_termination(cfg.termination_log, state.message())


async def _outcome(run: Any, result: ProductResult) -> None:
    """The product's row in run_outcomes (a trained one was written in the model's transaction)."""
    cfg = run.cfg
    if run.output is None or cfg.run_key is None or result.status == TRAINED:
        return
    from forecast_trainer import store

    outcome = store.Outcome(result.product, result.status, result.reason, one_line(result.message or "", 1000) or None)

    async def work(conn: Any) -> None:
        await store.record_outcome(conn, cfg.output_schema, cfg.run_key or "", outcome)

    try:
        await run.output.run(f"cannot record the outcome of product {result.product!r}", work)
    except TrainerError as exc:  # the termination message still has it
        log.warning("%s", exc.message, extra={"fields": {"event": "outcome_not_recorded"}})


async def train_shard(cfg: TrainConfig, progress: Progress, state: ShardState, holder: dict[str, Any]) -> None:
    """Steps 1-4 of the module doc; fills ``state`` (and rewrites the report after each product)."""
    from forecast_trainer.runner import TrainRun

    run = TrainRun(cfg, progress)
    holder["run"] = run
    try:
        # 0. The output schema, and a CSV's watermarks before the file is read for training.
        await _open(run)
        # 1. The shard's products, checked against the Job's digest.
        products = await _select(run, state)
        # 2. Unchanged products, decided up front in one set-based pass.
        skipped = await _unchanged(run.cfg)
        # 3. Each other product in shard order; 4. the report rewritten after every one.
        await _train_each(run, state, products, skipped)
    except TrainerError as exc:
        state.error = exc
    finally:
        if run.lock_session is not None:
            await run.lock_session.close()
        await run.close()


async def _open(run: Any) -> None:
    cfg = run.cfg
    if run.output is not None:
        from forecast_trainer.store import migrate

        await migrate(run.output, cfg.output_schema)
    if cfg.data_csv and cfg.persists:
        from forecast_trainer.watermark import csv_watermarks

        try:
            run.csv_marks = csv_watermarks(cfg.data_csv, cfg.product_column, cfg.time_column, cfg.value_column)
        except TrainerError:  # the CSV source reports a file it cannot read, with its own reason
            run.csv_marks = {}


async def _select(run: Any, state: ShardState) -> list[str]:
    from forecast_trainer.shard import select_products

    selection = await select_products(run.cfg, run.source, run.output)
    state.start(len(selection.products))
    write_report(run.cfg, state)
    run.cfg = dataclasses.replace(run.cfg, products=list(selection.products))
    run.planned = list(selection.products)
    return list(selection.products)


async def _unchanged(cfg: TrainConfig) -> dict[str, ProductResult]:
    if not cfg.skip_unchanged:
        return {}
    from forecast_trainer.unchanged import pre_skip

    plan = await pre_skip(cfg)
    if plan.error is not None:
        raise plan.error
    return {r.product: r for r in plan.skipped}


async def _train_each(run: Any, state: ShardState, products: list[str], skipped: dict[str, ProductResult]) -> None:
    from forecast_trainer.data import CsvSource, PostgresSource, Prefetch
    from forecast_trainer.locking import LockSession

    if isinstance(run.source, CsvSource):
        await run.source.products()  # read and checked once, up front
    elif isinstance(run.source, PostgresSource):  # the history a batch of products at a time
        run.prefetch = Prefetch(run.source, [p for p in products if p not in skipped], HISTORY_BATCH)
    if run.output is not None:
        run.lock_session = LockSession()  # one lock connection for every product of the shard
    run.progress.start(state.n)
    run.tracker.start()
    for product in products:
        result = skipped.get(product) or await guard.train_guarded(run, product)
        state.add(result)
        await _outcome(run, result)
        write_report(run.cfg, state)
        fields = {k: v for k, v in report.entry(result).items() if k not in ("product", "status")}
        run.progress.product_done(product, result.status, fields)
    run.progress.finish()


def run_shard(cfg: TrainConfig, fmt: str) -> int:
    """Run a shard; returns the exit code after the last report (module doc)."""
    from forecast_trainer.progress import make_progress

    assert cfg.shard is not None
    started = time.monotonic()
    state = ShardState(cfg.shard.index, cfg.shard.size, cfg.metric)
    holder: dict[str, Any] = {}
    _on_sigterm(cfg, state)
    write_report(cfg, state)  # a pod that dies before its first product still leaves a valid report
    asyncio.run(train_shard(cfg, make_progress(fmt), state, holder))
    code = shard_exit_code(state)
    write_report(cfg, state)
    counts = {s: sum(1 for r in state.results if r.status == s) for s in report.STATUSES}
    if state.error is not None:
        print(f"forecast-trainer: error: {one_line(state.error.message)}", file=sys.stderr)
    seconds = time.monotonic() - started
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    print(
        f"shard {state.shard}: {len(state.results)}/{state.n} product(s) done ({summary or 'none'}) in "
        f"{seconds:.1f} s; exit code {code}"
    )
    if cfg.output_dir:
        os.makedirs(cfg.output_dir, exist_ok=True)
        doc = report.summary_document(state.results, code, {"metric": cfg.metric, "shard": state.shard})
        report.write_json_atomic(os.path.join(cfg.output_dir, f"summary-shard-{state.shard}.json"), doc)
    return code


def _on_sigterm(cfg: TrainConfig, state: ShardState) -> None:
    """On SIGTERM (deadline, eviction): the report of what finished, then exit 4 (retriable)."""
    import signal

    def handler(signum: int, _frame: Any) -> None:
        write_report(cfg, state)
        print(f"forecast-trainer: error: stopped by signal {signum}; {len(state.results)} done", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_INFRA)

    signal.signal(signal.SIGTERM, handler)
