"""Retraining on a schedule through the operator: the second nightly run with 5 % of the products
changed, with and without skipUnchanged, side by side (prints a table; not a test).

    TJO_K8S_BIN=<dir> .venv/bin/python bench/schedule_bench.py [--products 200] [--parallelism 4] [--keep DIR]

Everything real: one local cluster (hack/localcluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and the real node: kubelet + containerd, trainer image), the operator as a local process authenticated
as its ServiceAccount (hack/operator_harness.py), the real trainer in every pod, PostgreSQL
(hack/pg_harness.py; on ``$TJO_PG_PORT`` when set, else a free port) holding the sales and the models.

1. ``sample-data``: N products x D days (the trainer's deterministic bakery data).
2. First night: a TrainingJob of all N products (skipUnchanged false), every product trained.
3. Next day: one more day of sales for every 20th product (sorted ids): 5 % changed.
4. The second night, twice, each from its own copy of the first night's output schema
   (bench/skip_bench.py's copy_schema) and in a namespace of its own, one after the other:
   a TrainingSchedule whose cron fires once, at the next whole minute at least ``--lead`` seconds
   away (``M H * * *``, UTC), so the operator starts the run at the scheduled minute as it would
   at night; its template is the first night's spec, and
   - "skip": skipUnchanged left to the schedule's default (true): the operator's unchanged-check
     pod first, then pods only for the changed products;
   - "no skip": the template sets skipUnchanged false: one pod per product.

The trainer's configuration is its cheapest honest one, so that 200 x 3 trainings fit the 2-core
machine: ``tuning: {trials: 0, folds: 1, models: [naive]}`` (seasonal-naive and last-value
baselines scored on one CV fold; no Prophet, Optuna or statsforecast import). Training every
family costs about 7 CPU s per product instead of about 1 (bench/skip_bench.py), which widens
the gap between the two ways; the skipping way's own cost does not depend on it.

Figures per way (the run = the TrainingJob the schedule created):
- scheduled minute -> run created / first pod (any) / first product pod (the check pod is not a
  product pod): pod creations seen by a watch of the run's namespace, local clock, which is the
  API server's (same machine);
- wall: scheduled minute -> the run's Complete condition (polled every 0.5 s);
- pods created, products trained / skipped (the run's status);
- CPU seconds from 2 s before the scheduled minute to the end of the run: every pod (trainer
  containers and pause sandboxes: the cpuacct usage of the node's pods cgroup), the operator, the
  control plane and node processes (etcd, API server, controller-manager, scheduler, containerd,
  kubelet, kube-proxy, CoreDNS) and the PostgreSQL server (postmaster and backends). The machine
  is shared with other work, so per-process (and per-cgroup) counters, not the machine's total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "operator"), str(ROOT / "bench")]

import operator_harness  # noqa: E402
from localcluster import LocalCluster, find_binaries  # noqa: E402
from operator_bench import api_client, cpu_seconds  # noqa: E402
from operator_harness import kubectl  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402
from skip_bench import copy_schema, markdown_table  # noqa: E402

GROUP, VERSION = "training.forecast.dev", "v1alpha1"
LABEL_HASH = f"{GROUP}/product-hash"
TRAINER = str(Path(sys.executable).parent / "forecast-trainer")
TABLE = "schedbench.sales"
SCHEDULE = "nightly"


@dataclass
class Way:
    name: str
    namespace: str
    schema: str
    skip: bool
    minute: datetime | None = None
    run: str = ""
    created: float = float("nan")
    first_pod: float = float("nan")
    first_product_pod: float = float("nan")
    wall: float = float("nan")
    pods: list[tuple[float, str, bool]] = field(default_factory=list)  # (seconds after minute, name, product pod)
    status: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def products(self) -> dict[str, Any]:
        return dict(self.status.get("products") or {})


def spec(products: list[str], schema: str, parallelism: int) -> dict[str, Any]:
    return {
        "products": products,
        "parallelism": parallelism,
        "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": TABLE}},
        "output": {"postgres": {"schema": schema}},
        "forecast": {"horizonDays": 14},
        "tuning": {"trials": 0, "folds": 1, "models": ["naive"]},
    }


def next_minute(lead: float) -> datetime:
    """The first whole minute at least ``lead`` seconds from now (UTC)."""
    t = datetime.now(UTC) + timedelta(seconds=lead)
    return (t + timedelta(minutes=1)).replace(second=0, microsecond=0)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, pg: PostgresServer) -> None:
        self.args, self.work, self.pg = args, work, pg
        self.cluster = LocalCluster(work / "cluster", find_binaries())
        self.operator: operator_harness.OperatorProcess | None = None
        self.products: list[str] = []

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        self.cluster.start()
        kc = self.cluster.kubeconfig
        for crd in ("trainingjob", "trainingschedule"):
            kubectl(kc, "apply", "-f", str(ROOT / "crds" / f"{crd}.yaml"))
            kubectl(kc, "wait", "--for=condition=Established", f"crd/{crd}s.{GROUP}")
        op_kc = operator_harness.operator_kubeconfig(kc, self.work / "operator.kubeconfig")
        self.operator = operator_harness.OperatorProcess(str(op_kc), self.work, verbose=False)
        self.operator.start()
        # pods reach the host (and this PostgreSQL) at the node's host address, not at 127.0.0.1
        pod_dsn = self.pg.serve_pods_at(self.cluster.info().host_ip or "127.0.0.1")
        for ns in ("night1", "skip", "noskip"):
            kubectl(kc, "create", "namespace", ns)
            kubectl(kc, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
            kubectl(kc, "create", "secret", "generic", "db", "-n", ns, f"--from-literal=dsn={pod_dsn}")
        time.sleep(2)  # default ServiceAccounts

    def sample_data(self) -> None:
        self.pg.query(
            "DROP SCHEMA IF EXISTS schedbench, night1, night2_skip, night2_full CASCADE; CREATE SCHEMA schedbench",
            timeout=600,
        )
        sample = ["sample-data", "--products", str(self.args.products), "--days", str(self.args.days)]
        subprocess.run([TRAINER, *sample, "--dsn", self.pg.dsn, "--table", TABLE], check=True, capture_output=True)
        self.products = [r[0] for r in self.pg.query(f"SELECT DISTINCT product_id FROM {TABLE} ORDER BY 1")]

    def change_5_percent(self) -> list[str]:
        changed = sorted(self.products)[:: round(1 / self.args.changed)]
        self.pg.query(
            timeout=600,
            sql=f"INSERT INTO {TABLE} SELECT product_id, max(ds) + 1, round(avg(y)) FROM {TABLE} "
            f"WHERE product_id IN ({', '.join(repr(p) for p in changed)}) GROUP BY product_id; ANALYZE {TABLE}",
        )
        return changed

    # ------------------------------------------------------------------ reading the cluster

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(api_client(self.cluster.kubeconfig))

    def wait_done(self, namespace: str, name: str, timeout: float) -> tuple[dict[str, Any], float]:
        """The TrainingJob once its Complete/Failed condition is True, and when that was seen."""
        custom, deadline = self.custom(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name)
            except Exception:  # not created yet
                obj = {}
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                    return dict(obj), time.time()
            time.sleep(0.5)
        raise TimeoutError(f"{namespace}/{name} not finished after {timeout:.0f} s")

    def pods_cpu(self) -> float:
        """CPU of everything the node's pods ran (containers and pause sandboxes; the pods' cgroup)."""
        node = self.cluster.real_node
        assert node is not None, "no node"
        return node.pods_cpu_seconds()

    def snapshot(self) -> dict[str, float]:
        assert self.operator is not None and self.operator.proc is not None
        op = psutil.Process(self.operator.proc.pid).cpu_times()
        return {
            "pods": self.pods_cpu(),
            "operator": op.user + op.system,
            **{f"cp:{k}": v for k, v in cpu_seconds(self.cluster).items()},
            "postgres": self.pg.cpu_seconds(),
        }

    def watch_pods(self, way: Way, stop: threading.Event) -> None:
        """Record each pod of the namespace as its creation is seen (seconds after the scheduled minute)."""
        from kubernetes import client, watch

        core = client.CoreV1Api(api_client(self.cluster.kubeconfig))
        seen: set[str] = set()
        while not stop.is_set():
            w = watch.Watch()
            for event in w.stream(core.list_namespaced_pod, way.namespace, timeout_seconds=5):
                pod = event["object"]
                if pod.metadata.name not in seen:
                    seen.add(pod.metadata.name)
                    assert way.minute is not None
                    product = (pod.metadata.labels or {}).get(LABEL_HASH) != "unchanged"
                    way.pods.append((time.time() - way.minute.timestamp(), pod.metadata.name, product))
                if stop.is_set():
                    w.stop()
                    break

    # ------------------------------------------------------------------ runs

    def first_night(self) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": "night1"},
            "spec": {**spec(self.products, "night1", self.args.parallelism), "skipUnchanged": False},
        }
        t0 = time.time()
        kubectl(self.cluster.kubeconfig, "create", "-n", "night1", "-f", "-", input=json.dumps(body))
        done, t1 = self.wait_done("night1", "night1", self.args.timeout)
        return {"wall": t1 - t0, "status": done.get("status") or {}}

    def second_night(self, way: Way) -> None:
        """One scheduled run: a TrainingSchedule firing once, at the next whole minute."""
        way.minute = minute = next_minute(self.args.lead)
        template = spec(self.products, way.schema, self.args.parallelism)
        if not way.skip:
            template["skipUnchanged"] = False
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingSchedule",
            "metadata": {"name": SCHEDULE},
            "spec": {
                "schedule": f"{minute.minute} {minute.hour} * * *",
                "timeZone": "UTC",
                "startingDeadlineSeconds": 600,
                "trainingJobTemplate": {"spec": template},
            },
        }
        kubectl(self.cluster.kubeconfig, "create", "-n", way.namespace, "-f", "-", input=json.dumps(body))
        way.run = f"{SCHEDULE}-{int(minute.timestamp()) // 60}"
        time.sleep(max(0.0, minute.timestamp() - 2 - time.time()))
        before = self.snapshot()
        stop = threading.Event()
        watcher = threading.Thread(target=self.watch_pods, args=(way, stop), daemon=True)
        watcher.start()
        done, finished = self.wait_done(way.namespace, way.run, self.args.timeout)
        way.wall = finished - minute.timestamp()
        time.sleep(3)  # the last containers exit; PostgreSQL ends its backends
        after = self.snapshot()
        stop.set()
        watcher.join(10)
        way.status = dict(done.get("status") or {})
        created = datetime.fromisoformat(done["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        way.created = created.timestamp() - minute.timestamp()
        way.cpu = {k: after[k] - before[k] for k in after}
        way.first_pod = min((t for t, _, _ in way.pods), default=float("nan"))
        way.first_product_pod = min((t for t, _, product in way.pods if product), default=float("nan"))


# ---------------------------------------------------------------------------------------------- output


def table(ways: list[Way]) -> str:
    skip, full = ways

    def cpu(w: Way, *keys: str) -> float:
        return sum(v for k, v in w.cpu.items() if any(k == key or k.startswith(key) for key in keys))

    def total(w: Way) -> float:
        return sum(w.cpu.values())

    rows: list[tuple[str, ...]] = [
        ("measure", f"skip ({skip.namespace})", f"no skip ({full.namespace})", "no skip / skip"),
        ("scheduled minute -> run created (s)", f"{skip.created:.0f}", f"{full.created:.0f}", "creationTimestamp: 1 s"),
        ("scheduled minute -> first pod (s)", f"{skip.first_pod:.2f}", f"{full.first_pod:.2f}", "skip: the check pod"),
        (
            "scheduled minute -> first product pod (s)",
            f"{skip.first_product_pod:.2f}",
            f"{full.first_product_pod:.2f}",
            "",
        ),
        (
            "wall: scheduled minute -> Complete (s)",
            f"{skip.wall:.1f}",
            f"{full.wall:.1f}",
            f"{full.wall / skip.wall:.1f}x",
        ),
        ("pods created", str(len(skip.pods)), str(len(full.pods)), ""),
        (
            "products trained",
            str((skip.status.get("results") or {}).get("trained", "?")),
            str((full.status.get("results") or {}).get("trained", "?")),
            "",
        ),
        ("products skipped", str(skip.products.get("skipped")), str(full.products.get("skipped")), ""),
        (
            "CPU s: pods (trainer processes)",
            f"{cpu(skip, 'pods'):.1f}",
            f"{cpu(full, 'pods'):.1f}",
            f"{cpu(full, 'pods') / cpu(skip, 'pods'):.1f}x",
        ),
        ("CPU s: operator", f"{cpu(skip, 'operator'):.1f}", f"{cpu(full, 'operator'):.1f}", ""),
        ("CPU s: control plane + node processes", f"{cpu(skip, 'cp:'):.1f}", f"{cpu(full, 'cp:'):.1f}", ""),
        ("CPU s: PostgreSQL", f"{cpu(skip, 'postgres'):.1f}", f"{cpu(full, 'postgres'):.1f}", ""),
        ("CPU s: all of the above", f"{total(skip):.1f}", f"{total(full):.1f}", f"{total(full) / total(skip):.1f}x"),
    ]
    return markdown_table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=200)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--changed", type=float, default=0.05, help="share of products that get a new day")
    ap.add_argument(
        "--lead", type=float, default=20, help="seconds at least between creating a schedule and its minute"
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    ap.add_argument("--keep", type=Path, help="keep the cluster's state and the operator's log in this directory")
    args = ap.parse_args()
    port = os.environ.get("TJO_PG_PORT")
    pg = PostgresServer(script_timeout=180, port=int(port) if port else None)
    with tempfile.TemporaryDirectory(prefix="tjo-schedule-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, work, pg)
        started = time.monotonic()
        try:
            pg.start()
            bench.sample_data()
            bench.start()
            print(
                f"{len(bench.products)} products x {args.days} days, parallelism {args.parallelism}, "
                "tuning trials 0, folds 1, models naive",
                flush=True,
            )
            first = bench.first_night()
            print(
                f"first night: {first['status'].get('products')} in {first['wall']:.0f} s "
                f"(results: {first['status'].get('results')})",
                flush=True,
            )
            changed = bench.change_5_percent()
            ways = [Way("skip", "skip", "night2_skip", True), Way("no skip", "noskip", "night2_full", False)]
            for way in ways:
                copy_schema(pg, "night1", way.schema)
            for way in ways:
                bench.second_night(way)
                print(f"{way.name}: {way.run} done {way.wall:.0f} s after its minute: {way.products}", flush=True)
            expected = {"skip": (len(changed), len(bench.products) - len(changed)), "no skip": (len(bench.products), 0)}
            for way in ways:
                got = ((way.status.get("results") or {}).get("trained"), way.products.get("skipped"))
                if got != expected[way.name] or way.status.get("phase") != "Succeeded":
                    raise SystemExit(
                        f"{way.name}: {way.status.get('phase')}, (trained, skipped) {got} != {expected[way.name]}"
                    )
        finally:
            if bench.operator is not None:
                bench.operator.stop()
            bench.cluster.stop()
            if not port:
                pg.stop()
    print()
    print(table(ways))
    print()
    print(f"changed: {len(changed)} of {len(bench.products)} products (every {round(1 / args.changed)}th, sorted)")
    for way in ways:
        trained = sorted(name for _, name, product in way.pods if product)
        print(f"{way.name}: run {way.run}, scheduled {way.minute:%H:%M} UTC, {len(trained)} product pod(s)")
    print(f"bench total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
