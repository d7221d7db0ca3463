"""MLflow tracking: the time it adds per product at 1,000 products, next to training (prints tables; not a test).

    nice -n 10 .venv/bin/python bench/mlflow_bench.py                    # 1,000 products, 4 trained for the baseline
    .venv/bin/python bench/mlflow_bench.py --products 100 --train 2      # a quick look

A real tracking server (hack/mlflow_harness.py: ``mlflow server``, SQLite store, local artifact root,
its own port on loopback), and the trainer's own code paths, in one process like a shard pod:

1. Baseline: ``--train`` sample products trained for real (trainer_image: prepare, classify,
   train_product with automatic trials, metrics_document), tracking off: wall and CPU seconds per
   product. Their models and metrics documents are what step 2 logs.
2. Batched (what the trainer does, tracking.py): per product the registry read of the champion
   decision and ``log_product`` (run with params/metrics/tags in ONE log_batch, model JSON +
   SHA-256 artifacts, a registered-model version, its alias), for ``--products`` distinct product
   ids one after another; then a second pass over ``--second`` of them (their registered models
   exist: aliases to read, half promoted, half kept as challengers).
3. Unbatched (the baseline for batching): the same content for ``--unbatched`` products with one
   request per param, metric and tag (``log_param``/``log_metric``/``set_tag``), as code calling
   MLflow's fluent API in loops does.

Figures: wall ms per product (mean, median, p95; the first and last hundred of step 2, to show the
store's growth), trainer-process CPU ms per product, the server's CPU ms per product (psutil over its
process group), and the added time as a share of the training time of step 1. Also the one-off cost
of importing the client after the trainer's libraries (CPU seconds, RSS), in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "trainer_image"), str(ROOT / "bench")]

import psutil  # noqa: E402

from forecast_trainer.config import TrainConfig  # noqa: E402
from forecast_trainer.tracking import LOGGED, ProductRecord, Tracker, registered_name  # noqa: E402
from mlflow_harness import MlflowServer  # noqa: E402
from skip_bench import markdown_table  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def server_cpu(server: MlflowServer) -> float:
    assert server.process is not None
    total = 0.0
    root = psutil.Process(server.process.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Sample:
    name: str
    walls: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    logged: int = 0

    def row(self, training: float) -> list[str]:
        n = len(self.walls) or 1
        mean = statistics.fmean(self.walls) if self.walls else 0.0
        p95 = statistics.quantiles(self.walls, n=20)[-1] if len(self.walls) >= 20 else max(self.walls, default=0)
        return [
            self.name,
            str(len(self.walls)),
            str(self.logged),
            f"{mean * 1000:.0f}",
            f"{statistics.median(self.walls) * 1000:.0f}" if self.walls else "-",
            f"{p95 * 1000:.0f}",
            f"{self.client_cpu / n * 1000:.0f}",
            f"{self.server_cpu / n * 1000:.0f}",
            f"{100 * mean / training:.1f} %" if training else "-",
        ]


# --------------------------------------------------------------------------- 1. training baseline


@dataclass
class Trained:
    product: str
    model_json: str
    checksum: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    wall: float
    cpu: float


def train_samples(count: int, days: int) -> list[Trained]:
    from datetime import date

    import pandas as pd

    from forecast_trainer.classify import classify, trial_budget
    from forecast_trainer.sample_data import product_id, series
    from forecast_trainer.training import metrics_document, train_product
    from forecast_trainer.validate import Rules, prepare

    cfg = TrainConfig(data_csv="bench.csv")
    out = []
    for index in range(count):
        product = product_id(index)
        ds, y = series(index, days, 7, date(2022, 1, 1))
        raw = pd.DataFrame({"ds": [d.isoformat() for d in ds], "y": [f"{v:g}" for v in y]})
        wall, cpu = time.monotonic(), cpu_seconds()
        prepared = prepare(product, raw, Rules(frequency="D"))
        klass = classify(prepared.frame["y"], "D")
        trained = train_product(prepared, cfg, trial_budget(klass, None), None, klass)
        metrics = metrics_document(cfg, prepared, trained, None)
        metrics["watermark"] = {"data": {"rows": len(raw), "last": ds[-1].isoformat(), "hash": f"h{index}"}}
        wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
        print(f"  trained {product}: {trained.family}, {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
        out.append(Trained(product, trained.model_json, trained.checksum, metrics, trained.params, wall, cpu))
    return out


# --------------------------------------------------------------------------- 2. batched (the trainer)


def record_for(sample: Trained, product: str, model_id: int, outcome: str) -> ProductRecord:
    return ProductRecord(
        product=product,
        model_id=model_id,
        checksum=sample.checksum,
        model_json=sample.model_json,
        metrics=sample.metrics,
        params=sample.params,
        champion={"outcome": outcome, "reason": f"bench: {outcome}"},
        seconds=sample.wall,
    )


async def batched(
    server: MlflowServer, samples: list[Trained], products: list[str], first_id: int, outcomes: Sequence[str], name: str
) -> Sample:
    cfg = TrainConfig(
        data_csv="bench.csv",
        tracking_uri=server.uri,
        experiment_name="mlflow-bench",
        tracking_budget_seconds=30.0,
        trainingjob="bench/mlflow",
        run_key="bench/0",
    )
    tracker = Tracker(cfg)
    await tracker.ready()  # the import is measured on its own (import_cost)
    result = Sample(name)
    cpu0, server0 = cpu_seconds(), server_cpu(server)
    for i, product in enumerate(products):
        started = time.monotonic()
        await tracker.registry_state(product)
        status, why = await tracker.log_product(
            record_for(samples[i % len(samples)], product, first_id + i, outcomes[i % len(outcomes)])
        )
        result.walls.append(time.monotonic() - started)
        result.logged += status == LOGGED
        if why:
            print(f"  {product}: skipped: {why}", file=sys.stderr)
        if (i + 1) % 100 == 0:
            print(f"  {name}: {i + 1}/{len(products)}", file=sys.stderr)
    result.client_cpu, result.server_cpu = cpu_seconds() - cpu0, server_cpu(server) - server0
    return result


# --------------------------------------------------------------------------- 3. unbatched


def unbatched(server: MlflowServer, samples: list[Trained], products: list[str], first_id: int) -> Sample:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    cfg = TrainConfig(data_csv="bench.csv", trainingjob="bench/mlflow", run_key="bench/0")
    experiment = client.create_experiment("mlflow-bench-unbatched")
    result = Sample("unbatched: one request per param/metric/tag")
    cpu0, server0 = cpu_seconds(), server_cpu(server)
    for i, product in enumerate(products):
        started = time.monotonic()
        record = record_for(samples[i % len(samples)], product, first_id + i, "first")
        name = registered_name("unbatched-", product)
        try:
            client.get_registered_model(name)
        except MlflowException:
            pass
        run = client.create_run(experiment, run_name=product)
        run_id = run.info.run_id
        for key, value in record.mlflow_params(cfg).items():
            client.log_param(run_id, key, value)
        for key, value, step in record.mlflow_metrics():
            client.log_metric(run_id, key, value, step=step)
        for key, value in record.mlflow_tags(cfg).items():
            client.set_tag(run_id, key, value)
        client.log_text(run_id, record.model_json, "model/model.json")
        client.log_text(run_id, record.checksum + "  model.json\n", "model/model.sha256")
        client.set_terminated(run_id, "FINISHED")
        client.create_registered_model(name)
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run_id, await_creation_for=0
        )
        client.set_registered_model_alias(name, "champion", version.version)
        result.walls.append(time.monotonic() - started)
        result.logged += 1
    result.client_cpu, result.server_cpu = cpu_seconds() - cpu0, server_cpu(server) - server0
    return result


# --------------------------------------------------------------------------- import cost

IMPORT_PROBE = """
import json, resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import pandas, numpy, asyncpg, optuna, prophet, statsforecast
base = (cpu(), rss(), time.monotonic())
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param
print(json.dumps({"base_rss": base[1], "cpu": cpu() - base[0], "wall": time.monotonic() - base[2],
                  "rss": rss(), "rss_added": rss() - base[1]}))
"""


def import_cost() -> dict[str, float]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True, env=env
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- 0. whole trainer processes

TRAINER = str(Path(sys.executable).parent / "forecast-trainer")


@dataclass
class Process:
    wall: float
    cpu: float
    max_rss_mb: float
    tracking: str


def trainer_process(csv: str, product: str, uri: str | None, workdir: Path) -> Process:
    """One ``forecast-trainer train`` pod-like process: its wall, CPU and peak RSS (os.wait4)."""
    term = workdir / f"term-{time.monotonic_ns()}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "MLFLOW_"))}
    env.update({"TRAINER_TERMINATION_LOG": str(term), "TRAINER_LOG_FORMAT": "json", "MPLBACKEND": "Agg"})
    if uri:
        env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "mlflow-bench-pods"})
    started = time.monotonic()
    proc = subprocess.Popen(
        [TRAINER, "train", "--data-csv", csv, "--product", product],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"forecast-trainer exited {proc.returncode}")
    entry = json.loads(term.read_text())["products"][0]
    return Process(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, str(entry.get("tracking")))


def pods(server: MlflowServer, rounds: int, workdir: Path) -> tuple[list[Process], list[Process]]:
    csv = workdir / "sales.csv"
    subprocess.run(
        [TRAINER, "sample-data", "--products", "1", "--days", "730", "--csv", str(csv)],
        check=True,
        capture_output=True,
    )
    product = csv.read_text().splitlines()[1].split(",")[0]
    off, on = [], []
    for _ in range(rounds):  # alternating, so load on the machine hits both alike
        off.append(trainer_process(str(csv), product, None, workdir))
        on.append(trainer_process(str(csv), product, server.uri, workdir))
        print(f"  pod off {off[-1].wall:.1f} s, on {on[-1].wall:.1f} s ({on[-1].tracking})", file=sys.stderr)
    return off, on


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--second", type=int, default=200, help="products of the second pass (versions exist)")
    parser.add_argument("--unbatched", type=int, default=100)
    parser.add_argument("--train", type=int, default=4, help="products trained for the baseline")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--host", default="127.0.0.1", help="the tracking server's listen address")
    parser.add_argument("--pods", type=int, default=2, help="rounds of whole trainer processes, off and on")
    args = parser.parse_args(argv)

    from forecast_trainer.logs import quiet_libraries

    quiet_libraries()
    print(f"1. training {args.train} products (tracking off)", file=sys.stderr)
    samples = train_samples(args.train, args.days)
    train_wall = statistics.fmean(s.wall for s in samples)
    train_cpu = statistics.fmean(s.cpu for s in samples)
    imported = import_cost()
    products = [f"bench-product-{i:05d}" for i in range(args.products)]
    with MlflowServer(host=args.host) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"0. {args.pods} x 2 trainer processes, one product each, tracking off / on", file=sys.stderr)
        pods_off, pods_on = pods(server, args.pods, Path(tmp))
        print(f"2. batched logging of {args.products} products to {server.uri}", file=sys.stderr)
        first = asyncio.run(batched(server, samples, products, 1, ["first"], f"batched: {args.products} new products"))
        second = asyncio.run(
            batched(
                server,
                samples,
                products[: args.second],
                10**6,
                ["promoted", "kept"],
                f"batched: {args.second} again (aliases read and moved)",
            )
        )
        print(f"3. unbatched logging of {args.unbatched} products", file=sys.stderr)
        plain = unbatched(server, samples, [f"unbatched-{i:05d}" for i in range(args.unbatched)], 2 * 10**6)
    head = ["way", "products", "logged", "mean ms", "median ms", "p95 ms", "trainer CPU ms", "server CPU ms"]
    rows = [[*head, "of training wall"]]
    rows.append(
        [
            f"baseline: training, tracking off ({args.train} products)",
            str(args.train),
            "-",
            f"{train_wall * 1000:.0f}",
            "-",
            "-",
            f"{train_cpu * 1000:.0f}",
            "-",
            "100 %",
        ]
    )
    for sample in (first, second, plain):
        rows.append(sample.row(train_wall))
    pod_rows = [["one product per pod", "processes", "wall s", "CPU s", "peak RSS MB"]]
    for label, runs in (("tracking off", pods_off), ("tracking on (MLflow)", pods_on)):
        pod_rows.append(
            [
                label,
                str(len(runs)),
                f"{statistics.fmean(r.wall for r in runs):.2f}",
                f"{statistics.fmean(r.cpu for r in runs):.2f}",
                f"{statistics.fmean(r.max_rss_mb for r in runs):.0f}",
            ]
        )
    hundred = min(100, len(first.walls))
    early, late = first.walls[:hundred], first.walls[-hundred:]
    print()
    print(markdown_table(pod_rows))
    print()
    print(markdown_table(rows))
    print()
    print(
        f"Store growth: first {hundred} products {statistics.fmean(early) * 1000:.0f} ms, "
        f"last {hundred} {statistics.fmean(late) * 1000:.0f} ms per product (mean)."
    )
    print(
        f"Client import, once per pod (after pandas, Prophet, statsforecast, Optuna): "
        f"{imported['cpu']:.2f} CPU s, {imported['wall']:.2f} s wall, RSS {imported['base_rss']:.0f} -> "
        f"{imported['rss']:.0f} MB (+{imported['rss_added']:.0f} MB)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
