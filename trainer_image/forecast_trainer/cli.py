"""``forecast-trainer``: the command line edge.

Subcommands ``train``, ``unchanged`` (which products need no training), ``migrate`` and
``sample-data``. Every option also reads ``TRAINER_<OPTION>`` from the environment (see
config.py). Errors inside are typed; here they become one line on stderr and the documented
exit code. Heavy libraries (pandas, Prophet, Optuna) are imported only by the command that
needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from forecast_trainer.config import (
    DEFAULT_TERMINATION_LOG,
    DISCOVER_OPTIONS,
    MIGRATE_OPTIONS,
    SAMPLE_DATA_OPTIONS,
    TRAIN_OPTIONS,
    UNCHANGED_OPTIONS,
    TrainConfig,
    add_options,
    discover_config,
    environ,
    job_completion_index,
    migrate_config,
    mlflow_defaults,
    resolve,
    sample_data_config,
    to_products_json,
    train_config,
    unique,
)
from forecast_trainer.errors import EXIT_CONFIG, EXIT_UNEXPECTED, ConfigError, TrainerError, one_line
from forecast_trainer.version import __version__

PROG = "forecast-trainer"

EPILOG = """exit codes: 0 trained (or skipped as unchanged); 1 unexpected error; 2 usage/config error; 3 data
invalid (not retriable); 4 infrastructure unavailable after retries (retriable); 5 product locked by
another trainer (retry later). With several products: invalid and locked ones are left out; 4 if any
product hit an infrastructure failure, else 1 if any failed unexpectedly, else 0 if at least one
trained or was skipped as unchanged (--skip-unchanged), else 5 if any was locked, else 3. Shard mode
(--shard-size): 0 when every product of the shard has an outcome (invalid and locked ones are
reported per product), 4 if a database stayed unreachable, 2 on a configuration error or a product-
list digest mismatch. Every option can also be set as TRAINER_<OPTION> (e.g. --data-csv ->
TRAINER_DATA_CSV); the command line wins."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so the edge decides what to print."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train one demand-forecasting model per product: the winner of cross-validation among "
        "Prophet tuned with Optuna, statsforecast's ETS, Theta, ARIMA and Croston-type models, naive "
        "baselines and their combination.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,discover,unchanged,migrate,sample-data}")
    train = sub.add_parser(
        "train",
        help="train products from a CSV or PostgreSQL and write models, forecasts and a report",
        description="Validate, classify, score every model family on the same rolling-origin CV folds "
        "(Prophet tuned with Optuna, statsforecast's ETS, Theta, ARIMA, Croston-type, naive baselines, a "
        "combination) and fit the winner per product; write model JSON + SHA-256, the forecast and "
        "metrics to PostgreSQL (one transaction per product) and/or a folder; write a JSON termination "
        "message and print a summary. With neither --output-dsn nor --output-dir nothing is persisted (demo mode).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(train, TRAIN_OPTIONS)
    unchanged = sub.add_parser(
        "unchanged",
        help="list the products whose data and options are unchanged since their newest model (no training)",
        description="Compare every listed product's data watermark (row count, last timestamp, hash of the "
        "history; set-based SQL) and the config hash of these options with the product's newest stored "
        "model. Writes a termination message with the unchanged products as index ranges over the ids "
        'sorted by Python\'s str order: {"v": 1, "kind": "unchanged", "order": "sorted", "unchanged": '
        '"0-3,7", "truncated": false, "checked": N, "changed": M, "seconds": s, "exit_code": 0}. Takes '
        "every train option, so the operator can give it the pods' environment.",
        epilog="exit codes: 0 checked; 1 unexpected error; 2 usage/config error; 3 data source invalid "
        "(missing table or column); 4 a database unreachable after retries.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(unchanged, UNCHANGED_OPTIONS)
    discover = sub.add_parser(
        "discover",
        help="list every product of the data source, sorted, and write the list to run_products (no training)",
        description="List every product id of the data source (PostgreSQL table, CSV), sorted by Python's str "
        "order; with an output database, write the list to <schema>.run_products under --snapshot-key (default: "
        "the TrainingJob uid of --run-key) in one transaction (a rerun replaces it). Termination message: "
        '{"v": 1, "kind": "discover", "count": N, "products_sha256": "<hex>", "snapshot": true|false}. Takes '
        "every train option (product and shard options are ignored), so the operator can give it a pod's "
        "environment.",
        epilog="exit codes: 0 listed; 1 unexpected error; 2 usage/config error; 3 data source invalid (missing "
        "table or column); 4 a database unreachable after retries.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(discover, DISCOVER_OPTIONS)
    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the output schema (idempotent, safe to run concurrently)",
        description="Create or upgrade forecast_models, forecasts and the schema-version table.",
    )
    add_options(migrate, MIGRATE_OPTIONS)
    sample = sub.add_parser(
        "sample-data",
        help="write deterministic synthetic bakery sales to a CSV or PostgreSQL",
        description="Deterministic synthetic bakery sales (weekly + yearly seasonality, trend, holidays, "
        "noise, intermittent products, level shifts) in long format product_id,ds,y.",
    )
    add_options(sample, SAMPLE_DATA_OPTIONS)
    return parser


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def _products_guess(args: argparse.Namespace | None, env: Any) -> list[str]:
    """Best-effort product list for the termination message of a run that never started.

    ``--product-id`` / ``TRAINER_PRODUCT_ID`` is echoed verbatim, even when it is the bad
    value, so the operator finds an entry for exactly the product it asked for (and no other).
    """
    cli = vars(args) if args is not None else {}
    product_id = cli.get("product_id")
    if not isinstance(product_id, str):
        product_id = env.get("TRAINER_PRODUCT_ID")
    if product_id is not None:
        return [product_id]
    listed = cli.get("product") if isinstance(cli.get("product"), list) else None
    if listed is None:
        listed = [env["TRAINER_PRODUCT"]] if env.get("TRAINER_PRODUCT") else []
    raw_json = cli.get("products_json")
    if not isinstance(raw_json, str):
        raw_json = env.get("TRAINER_PRODUCTS_JSON")
    try:
        extra = to_products_json(raw_json) if raw_json else []
    except ValueError:
        extra = []
    return unique([p for p in [*listed, *extra] if isinstance(p, str) and p.strip()])


def _config_error_report(exc: TrainerError, args: argparse.Namespace | None, env: Any) -> None:
    from forecast_trainer import report

    path = getattr(args, "termination_log", None) if args is not None else None
    if not isinstance(path, str):
        path = env.get("TRAINER_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG
    shard_size = getattr(args, "shard_size", None) if args is not None else None
    if isinstance(shard_size, str) or (env.get("TRAINER_SHARD_SIZE") or "").strip():
        # Shard mode that never started: a shard report with no position done, and the error.
        from forecast_trainer.shard_run import ShardState

        shard = str(env.get("JOB_COMPLETION_INDEX") or "0").strip()
        state = ShardState(int(shard) if shard.isdigit() else 0, 0, env.get("TRAINER_METRIC") or "smape")
        state.error = exc
        report.write_termination(path, state.message())
        return
    metric = env.get("TRAINER_METRIC") or "smape"
    results = [
        report.ProductResult(product=p, status=report.FAILED, metric=metric, reason=exc.reason, message=exc.message)
        for p in _products_guess(args, env)
    ]
    report.write_termination(path, report.termination_message(results, exc.exit_code))


def main(argv: Sequence[str] | None = None) -> int:
    env = environ()
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help(sys.stderr)
            return EXIT_CONFIG
        if args.command == "train":
            return _train(args, env)
        if args.command == "unchanged":
            return _unchanged(args, env)
        if args.command == "discover":
            return _discover(args, env)
        if args.command == "migrate":
            return _migrate(args, env)
        return _sample_data(args, env)
    except ConfigError as exc:
        _print_error(exc.message)
        if args is None or getattr(args, "command", None) == "train":
            _config_error_report(exc, args, env)
        elif getattr(args, "command", None) == "unchanged":
            _unchanged_error_report(exc, args, env)
        elif getattr(args, "command", None) == "discover":
            _discover_error_report(exc, args, env)
        return exc.exit_code
    except TrainerError as exc:
        _print_error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except Exception as exc:  # the edge: one line for people, traceback only on request
        _print_error(f"unexpected {type(exc).__name__}: {exc}")
        if env.get("TRAINER_DEBUG"):
            import traceback

            traceback.print_exc()
        return EXIT_UNEXPECTED


def _setup(log_format: str) -> str:
    from forecast_trainer.logs import setup_logging

    return setup_logging(log_format)


def _train(args: argparse.Namespace, env: Any) -> int:
    from forecast_trainer.lean import keep_pyarrow_out

    keep_pyarrow_out()  # before pandas is imported: ~40 MB of RSS the trainer never uses (lean.py)
    cfg = train_config(mlflow_defaults(job_completion_index(resolve(TRAIN_OPTIONS, vars(args), env), env), env))
    fmt = _setup(cfg.log_format)
    if cfg.shard is not None:
        from forecast_trainer.shard_run import run_shard

        return run_shard(cfg, fmt)
    return run_train(cfg, fmt)


def run_train(cfg: TrainConfig, fmt: str) -> int:
    """Run ``train`` for a resolved config; returns the exit code (after reporting)."""
    import asyncio
    import dataclasses

    from forecast_trainer import report

    started = time.monotonic()
    holder: dict[str, Any] = {}
    _on_sigterm(cfg, holder)
    skipped: list[report.ProductResult] = []
    planned = list(cfg.products)
    if cfg.skip_unchanged:
        # Decided before Prophet, Optuna or pandas is imported (unchanged.py): a run whose
        # products are all unchanged ends here, at a fraction of a second of CPU.
        from forecast_trainer.unchanged import pre_skip

        plan = asyncio.run(pre_skip(cfg))
        planned, skipped = plan.planned, plan.skipped
        holder["skipped"] = skipped
        if plan.error is not None:
            failed = [
                report.ProductResult(
                    product=p,
                    status=report.FAILED,
                    metric=cfg.metric,
                    reason=plan.error.reason,
                    message=plan.error.message,
                    infra=True,
                )
                for p in planned
            ]
            return _report_train(cfg, fmt, failed, report.exit_code(failed, plan.error.exit_code), started, None)
        if plan.remaining is not None and not plan.remaining and planned:
            return _report_train(cfg, fmt, skipped, report.exit_code(skipped), started, None)
        if plan.remaining is not None:
            cfg = dataclasses.replace(cfg, products=plan.remaining)
    return _train_rest(cfg, fmt, planned, skipped, holder, started)


def _train_rest(
    cfg: TrainConfig, fmt: str, planned: list[str], skipped: list[Any], holder: dict[str, Any], started: float
) -> int:
    """Train the products ``cfg`` names (after the skip pre-pass, if any) and report the whole run."""
    import asyncio

    from forecast_trainer import report
    from forecast_trainer.logs import get_logger
    from forecast_trainer.progress import make_progress
    from forecast_trainer.runner import check_country, check_data_csv, persistence_note, run_async
    from forecast_trainer.unchanged import merge

    log = get_logger("train")
    check_country(cfg)
    check_data_csv(cfg)
    note = persistence_note(cfg)
    if note:
        log.info("results go to %s", note, extra={"fields": {"event": "outputs"}})
    else:
        log.warning(
            "no --output-dsn and no --output-dir: demo mode, nothing is persisted "
            "(only the termination message and the summary)",
            extra={"fields": {"event": "demo_mode"}},
        )
    outcome = asyncio.run(run_async(cfg, make_progress(fmt), holder))
    if isinstance(outcome.run_error, ConfigError):
        raise outcome.run_error  # as any other configuration error: no output folder, no summary
    results = merge(planned, skipped, outcome.results)
    code = report.exit_code(results, outcome.run_error.exit_code if outcome.run_error else None)
    if outcome.run_error is not None:
        _print_error(outcome.run_error.message)
    return _report_train(cfg, fmt, results, code, started, note)


def _report_train(cfg: TrainConfig, fmt: str, results: list[Any], code: int, started: float, note: str | None) -> int:
    """Termination message, summary.json, the summary on stdout and the Pushgateway; returns ``code``."""
    from forecast_trainer import report
    from forecast_trainer.logs import get_logger
    from forecast_trainer.metrics import RunMetrics

    log = get_logger("train")
    if note is None:  # the skip pre-pass decided everything: runner.py (and numpy) is never imported
        places = [f"PostgreSQL schema {cfg.output_schema!r}"] if cfg.output_dsn else []
        places += [f"folder {os.path.abspath(cfg.output_dir)}"] if cfg.output_dir else []
        note = " and ".join(places)
    report.write_termination(cfg.termination_log, report.termination_message(results, code))
    if cfg.output_dir:
        os.makedirs(cfg.output_dir, exist_ok=True)
        summary = report.summary_document(
            results, code, {"metric": cfg.metric, "horizon_days": cfg.horizon_days, "frequency": cfg.frequency}
        )
        report.write_json_atomic(os.path.join(cfg.output_dir, "summary.json"), summary)
    if fmt == "json":
        summary_line = json.loads(report.termination_message(results, code, limit=1 << 30))
        print(json.dumps({"event": "summary", **summary_line}, ensure_ascii=False))
    else:
        print(report.summary_table(results, cfg.metric))
        trained = sum(1 for r in results if r.status == report.TRAINED)
        skipped = sum(1 for r in results if r.status == report.SKIPPED)
        where = note or "nowhere (demo mode)"
        also = f", {skipped} skipped (unchanged)" if skipped else ""
        print(f"\n{trained}/{len(results)} product(s) trained{also}; exit code {code}; results in {where}")
        if cfg.output_dir:
            print(f"per product: model.json (+ .sha256), forecast.csv, forecast.png in {cfg.output_dir}/<product>/")
    run_metrics = RunMetrics()
    for r in results:
        run_metrics.observe(r)
    run_metrics.finish(code, time.monotonic() - started, time.time())
    if cfg.pushgateway:
        try:
            run_metrics.push(cfg.pushgateway, cfg.trainingjob, [r.product for r in results])
        except Exception as exc:
            log.warning("could not push metrics to the Pushgateway: %s", one_line(str(exc), 200))
    return code


def _on_sigterm(cfg: TrainConfig, holder: dict[str, Any]) -> None:
    """On SIGTERM (pod deadline, eviction): report what finished, mark the rest failed, exit 4.

    The kubelet keeps only what is in the termination message when the container stops, so it
    is written before exiting; exit 4 says a retry may succeed.
    """
    import signal

    from forecast_trainer import report
    from forecast_trainer.errors import EXIT_INFRA

    def handler(signum: int, _frame: Any) -> None:
        run = holder.get("run")
        results = run.interrupted("Terminated", f"stopped by signal {signum}") if run is not None else []
        results = [*holder.get("skipped", []), *results]
        report.write_termination(cfg.termination_log, report.termination_message(results, EXIT_INFRA))
        _print_error(f"stopped by signal {signum}; {sum(r.status == report.TRAINED for r in results)} trained")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_INFRA)

    signal.signal(signal.SIGTERM, handler)


def _unchanged(args: argparse.Namespace, env: Any) -> int:
    from forecast_trainer.unchanged import run_unchanged

    values = resolve(UNCHANGED_OPTIONS, vars(args), env)
    cfg = train_config(values)
    fmt = _setup(cfg.log_format)
    return run_unchanged(cfg, values.get("products_file"), fmt)


def _unchanged_error_report(exc: TrainerError, args: argparse.Namespace | None, env: Any) -> None:
    """An ``unchanged`` run that never started still leaves a valid termination message."""
    from forecast_trainer import report
    from forecast_trainer.unchanged import unchanged_message

    path = getattr(args, "termination_log", None) if args is not None else None
    if not isinstance(path, str):
        path = env.get("TRAINER_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG
    report.write_termination(path, unchanged_message([], 0, 0.0, exc.exit_code, exc.reason, exc.message))


def _discover(args: argparse.Namespace, env: Any) -> int:
    from forecast_trainer.discover import run_discover

    values = resolve(DISCOVER_OPTIONS, vars(args), env)
    cfg = discover_config(values)
    _setup(cfg.log_format)
    return run_discover(cfg, values.get("snapshot_key"))


def _discover_error_report(exc: TrainerError, args: argparse.Namespace | None, env: Any) -> None:
    """A ``discover`` run that never started still leaves a valid termination message."""
    from forecast_trainer import report
    from forecast_trainer.discover import discover_message

    path = getattr(args, "termination_log", None) if args is not None else None
    if not isinstance(path, str):
        path = env.get("TRAINER_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG
    report.write_termination(path, discover_message(0, "", False, exc.exit_code, exc.reason, exc.message))


def _migrate(args: argparse.Namespace, env: Any) -> int:
    import asyncio

    from forecast_trainer.db import Database
    from forecast_trainer.logs import get_logger
    from forecast_trainer.store import migrate

    cfg = migrate_config(resolve(MIGRATE_OPTIONS, vars(args), env))
    _setup(cfg.log_format)

    async def go() -> Any:
        db = Database(cfg.output_dsn, cfg.db, role="output database")
        try:
            return await migrate(db, cfg.output_schema)
        finally:
            await db.close()

    result = asyncio.run(go())
    state = f"upgraded from version {result.before} to {result.after}" if result.changed else "already up to date"
    get_logger("migrate").info(
        "schema %s %s", cfg.output_schema, state, extra={"fields": {"event": "migrated", "version": result.after}}
    )
    print(f"schema {cfg.output_schema}: {state} (version {result.after})")
    return 0


def _sample_data(args: argparse.Namespace, env: Any) -> int:
    from forecast_trainer.sample_data import run_sample_data

    cfg = sample_data_config(resolve(SAMPLE_DATA_OPTIONS, vars(args), env))
    _setup(cfg.log_format)
    return run_sample_data(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
