"""Faults during a real training run, measured on the local control plane (prints a table; not a test).

    .venv/bin/python bench/chaos_bench.py                          # every scenario, one after the other
    .venv/bin/python bench/chaos_bench.py --scenario apiserver-30  # one (repeat the flag for several)
    .venv/bin/python bench/chaos_bench.py --keep /tmp/chaos        # keep logs, cluster state, statuses

Each scenario runs on a fresh local cluster of its own (hack/localcluster: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the real node: kubelet + containerd) with the operator as a local process
authenticated as its ServiceAccount (hack/operator_harness.py), its default settings, and the real
trainer reading and writing PostgreSQL (one throw-away server for the whole bench, hack/postgres.sh;
one output schema per scenario). The TrainingJob: N products of the trainer's sample data (400 days
each), 2 tuning trials, 1 fold, a 14-day horizon, Prophet + the naive baselines
(``tuning.models: [prophet, naive]``), parallelism 4, ``backoffLimit`` at its default (2).

Scenarios:

  baseline        no fault (the reference wall time)
  operator-kill   the operator SIGKILLed 5 s after each (re)start, restarted at once, through the whole run
  apiserver-30    kube-apiserver SIGKILLed mid-run, started again 30 s later
  apiserver-90    the same, 90 s
  kubelet-75      the node's kubelet SIGKILLed mid-run, started again 75 s later (its pods keep running)
  postgres-30     PostgreSQL stopped mid-run (fast shutdown: sessions cut), started again 30 s later

"Mid-run" is once a fifth of the products are recorded trained. The other components are never
restarted (kube-controller-manager and kube-scheduler ride out the API outages on their own).

Figures per scenario:

- trained: products with a model row of this TrainingJob in the output schema / the status'
  ``products.succeeded`` (and failed, if any);
- twice (must be 0): products with more than one ``forecast_models`` row for this TrainingJob, or
  whose succeeded trainer pods report more than one model (a pod that finds the model an earlier pod
  of the same Job stored, same run key, reports that model and trains nothing: counted apart);
- partial rows (must be 0): models without forecast rows, or with fewer than the horizon, plus
  forecast rows without a model;
- trainer runs: trainer containers the node started (containerd's task events, recorded while the
  scenario runs, so pods deleted since count too), and how many more than products; the notes below
  the table give their exit codes and any two runs of one product that were alive at the same time;
- recovery -> success: seconds from the faulty component being back (the API server's /readyz, the
  kubelet or PostgreSQL started again, the operator healthy after a restart) to the first rise
  of ``status.products.succeeded`` (polled every 0.5 s); for operator-kill the median and maximum
  over its restarts;
- wall: TrainingJob created -> Succeeded/Failed.

Bounded: a scenario that has not finished ``--timeout`` seconds (default 480) after its TrainingJob
was created is reported as timed out. Everything started (clusters, operators, pods, PostgreSQL) is
stopped at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "operator")]

import operator_harness  # noqa: E402
from localcluster import LocalCluster, find_binaries  # noqa: E402
from localcluster.containerd import ContainerEvents  # noqa: E402
from operator_harness import kubectl  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402

GROUP, VERSION, PLURAL = "training.forecast.dev", "v1alpha1", "trainingjobs"
LABEL_TJ = f"{GROUP}/trainingjob"
ANNOTATION_PRODUCT = f"{GROUP}/product"
TJ_NAME, NAMESPACE, SALES_TABLE = "chaos", "chaos", "chaos_sales"
HORIZON_DAYS = 14
TRAINER = str(Path(sys.executable).parent / "forecast-trainer")


# ----------------------------------------------------------------------------------------- PostgreSQL


# ------------------------------------------------------------------------------------------- scenarios


@dataclass
class Run:
    """One scenario's cluster, operator and observations."""

    name: str
    cluster: LocalCluster
    operator: operator_harness.OperatorProcess
    pg: PostgresServer
    schema: str
    products: list[str]
    events: ContainerEvents
    deadline: float = 0.0
    samples: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)
    faults: str = "-"
    notes: list[str] = field(default_factory=list)

    def latest(self) -> dict[str, Any]:
        for _, st in reversed(self.samples):
            if st is not None:
                return st
        return {}

    def succeeded(self) -> int:
        return int((self.latest().get("products") or {}).get("succeeded") or 0)

    def finished(self) -> bool:
        return self.latest().get("phase") in ("Succeeded", "Failed")

    def wait(self, what: str, probe: Callable[[], bool]) -> None:
        while not probe():
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def wait_mid_run(self) -> None:
        """Until a fifth of the products are recorded trained (products are training now)."""
        self.wait("a fifth of the products trained", lambda: self.succeeded() >= len(self.products) // 5)


def no_fault(run: Run) -> None:
    run.faults = "none"


def operator_kill(run: Run) -> None:
    kills, startups = 0, []
    while not run.finished() and time.monotonic() < run.deadline:
        until = time.monotonic() + 5  # 5 s of up-time after each (re)start
        while time.monotonic() < until and not run.finished():
            time.sleep(0.2)
        if run.finished():
            break
        run.operator.kill()
        kills += 1
        t0 = time.monotonic()
        run.operator.start()  # returns once its liveness endpoint answers
        run.recoveries.append(time.monotonic())
        startups.append(run.recoveries[-1] - t0)
    run.faults = f"{kills} SIGKILLs, each 5 s after the restart was up"
    if startups:
        run.faults += f" (start-up {statistics.median(startups):.0f} s)"


def apiserver_outage(seconds: int) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        run.wait_mid_run()
        run.cluster.stop_component("kube-apiserver", kill=True)
        time.sleep(seconds)
        took = run.cluster.start_component("kube-apiserver")  # returns at /readyz
        run.recoveries.append(time.monotonic())
        run.faults = f"API server down {seconds} s (+{took:.1f} s to /readyz)"

    return inject


def kubelet_outage(seconds: int) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        run.wait_mid_run()
        run.cluster.kill_node()
        time.sleep(seconds)
        run.cluster.start_node()
        run.recoveries.append(time.monotonic())
        t0 = time.monotonic()
        run.cluster.wait_node_ready(timeout=60)
        run.faults = f"kubelet down {seconds} s (node Ready {time.monotonic() - t0:.1f} s after its start)"

    return inject


def postgres_outage(seconds: int) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        run.wait_mid_run()
        run.pg.down()
        time.sleep(seconds)
        run.pg.up()  # returns once it accepts connections
        run.recoveries.append(time.monotonic())
        run.faults = f"PostgreSQL down {seconds} s"

    return inject


SCENARIOS: dict[str, Callable[[Run], None]] = {
    "baseline": no_fault,
    "operator-kill": operator_kill,
    "apiserver-30": apiserver_outage(30),
    "apiserver-90": apiserver_outage(90),
    "kubelet-75": kubelet_outage(75),
    "postgres-30": postgres_outage(30),
}


# ----------------------------------------------------------------------------------------- one scenario


def tj_body(products: list[str], schema: str, trials: int, parallelism: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": TJ_NAME},
        "spec": {
            "products": products,
            "parallelism": parallelism,
            "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": SALES_TABLE}},
            "output": {"postgres": {"schema": schema}},
            "forecast": {"horizonDays": HORIZON_DAYS},
            "tuning": {"trials": trials, "folds": 1, "models": ["prophet", "naive"]},
        },
    }


def poll_status(run: Run, stop: threading.Event) -> None:
    """Sample the TrainingJob's status every 0.5 s (None while the API server cannot be read)."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(str(run.cluster.kubeconfig)))
    while not stop.is_set():
        t = time.monotonic()
        try:
            obj: Any = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, TJ_NAME, _request_timeout=2)
            st: dict[str, Any] | None = dict(obj.get("status") or {})
        except Exception:  # the API server is away: a gap in the samples
            st = None
        run.samples.append((t, st))
        stop.wait(max(0.0, 0.5 - (time.monotonic() - t)))


def next_success(run: Run, recovery: float) -> float | None:
    """Seconds from ``recovery`` to the first sample whose succeeded count exceeds all seen before it."""
    before = max(
        (int((st.get("products") or {}).get("succeeded") or 0) for t, st in run.samples if st and t <= recovery),
        default=0,
    )
    for t, st in run.samples:
        if t > recovery and st and int((st.get("products") or {}).get("succeeded") or 0) > before:
            return t - recovery
    return None


def trainer_runs(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Every trainer container the node ran, by product (containerd's task events: pods deleted since
    count too): pod, start, end (None: not seen ending) and exit code. Containers keep running while
    the kubelet is down; containerd reports their exits all the same."""
    from trainingjob_operator import builders

    product_of_job = {builders.job_name(TJ_NAME, p): p for p in run.products}
    out: dict[str, list[dict[str, Any]]] = {}
    for r in run.events.runs():
        if r.namespace != NAMESPACE or r.container != "trainer":
            continue
        entry = {"pod": r.pod, "start": r.start, "end": r.end, "code": r.code}
        out.setdefault(product_of_job.get(r.pod.rsplit("-", 1)[0], f"? {r.pod}"), []).append(entry)
    return out


def overlapping(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of runs of one product that were alive at the same time."""
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["start"] < (b["end"] or "9") and b["start"] < (a["end"] or "9"):
                pairs.append((a["pod"], b["pod"]))
    return pairs


def audit(run: Run) -> dict[str, Any]:
    """What was trained, twice, or half-written: the output schema, the pods, the trainer runs."""
    s, tj = run.schema, f"{NAMESPACE}/{TJ_NAME}"
    rows = run.pg.query(f"SELECT product_id, count(*) FROM {s}.forecast_models WHERE trainingjob = '{tj}' GROUP BY 1")
    per_product = {p: int(n) for p, n in rows}
    partial = run.pg.query(
        f"""SELECT m.product_id, m.id, count(f.ds) FROM {s}.forecast_models m
            LEFT JOIN {s}.forecasts f ON f.model_id = m.id GROUP BY 1, 2 HAVING count(f.ds) < {HORIZON_DAYS}
            UNION ALL
            SELECT f.product_id, f.model_id, count(*) FROM {s}.forecasts f
            WHERE NOT EXISTS (SELECT 1 FROM {s}.forecast_models m WHERE m.id = f.model_id) GROUP BY 1, 2"""
    )
    pods = json.loads(
        kubectl(run.cluster.kubeconfig, "get", "pods", "-n", NAMESPACE, "-l", f"{LABEL_TJ}={TJ_NAME}", "-o", "json")
    )["items"]
    # The models the succeeded pods report (termination message): a pod that found the model an earlier
    # pod of the same Job stored (same run key) reports that model's id and trained nothing.
    models: dict[str, list[Any]] = {}
    for pod in pods:
        if pod["status"].get("phase") != "Succeeded":
            continue
        product = pod["metadata"]["annotations"][ANNOTATION_PRODUCT]
        for cs in pod["status"].get("containerStatuses") or []:
            try:
                report = json.loads(cs["state"]["terminated"]["message"])
                models.setdefault(product, []).extend(e.get("model_id") for e in report["products"])
            except (KeyError, TypeError, ValueError):
                models.setdefault(product, []).append(None)
    twice = {p for p, n in per_product.items() if n > 1} | {p for p, ids in models.items() if len(set(ids)) > 1}
    runs = trainer_runs(run)
    return {
        "trained_rows": len(per_product),
        "lost": sorted(set(run.products) - set(per_product)),
        "twice": sorted(twice),
        "twice_detail": {p: {"rows": per_product.get(p, 0), "models": models.get(p)} for p in sorted(twice)},
        "partial": partial,
        "pods": dict(Counter(p["status"].get("phase") for p in pods)),
        "reused": sum(len(ids) - len(set(ids)) for ids in models.values()),
        "runs": sum(len(r) for r in runs.values()),
        "exit_codes": dict(Counter(str(r["code"]) for rs in runs.values() for r in rs)),
        "overlaps": {p: pairs for p, rs in runs.items() if (pairs := overlapping(rs))},
        "rerun_products": sorted(p for p, rs in runs.items() if len(rs) > 1),
    }


def run_scenario(
    name: str, args: argparse.Namespace, pg: PostgresServer, products: list[str], work: Path
) -> dict[str, Any]:
    scenario_dir = work / name
    scenario_dir.mkdir(parents=True, exist_ok=True)
    schema = "chaos_" + name.replace("-", "_")
    pg.query(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    cluster = LocalCluster(scenario_dir / "cluster", find_binaries())
    operator: operator_harness.OperatorProcess | None = None
    stop = threading.Event()
    poller: threading.Thread | None = None
    events: ContainerEvents | None = None
    result: dict[str, Any] = {"scenario": name}
    try:
        cluster.start()
        node = cluster.real_node
        assert node is not None, "the scenario needs the real node"
        events = ContainerEvents(node.paths.containerd)
        events.start()
        kc = cluster.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(ROOT / "crds" / "trainingjob.yaml"))
        kubectl(kc, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
        kubectl(kc, "create", "namespace", NAMESPACE)
        kubectl(kc, "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        # pods reach the host (and this PostgreSQL) at the node's host address, not at 127.0.0.1
        pod_dsn = pg.serve_pods_at(cluster.info().host_ip or "127.0.0.1")
        kubectl(kc, "create", "secret", "generic", "db", "-n", NAMESPACE, f"--from-literal=dsn={pod_dsn}")
        for _ in range(150):  # the namespace's default ServiceAccount (pods need it)
            if (
                subprocess.run(
                    ["kubectl", f"--kubeconfig={kc}", "get", "sa", "default", "-n", NAMESPACE], capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(0.2)
        op_kc = operator_harness.operator_kubeconfig(kc, scenario_dir / "operator.kubeconfig")
        operator = operator_harness.OperatorProcess(str(op_kc), scenario_dir, verbose=False)
        operator.start()
        run = Run(name, cluster, operator, pg, schema, products, events)
        body = tj_body(products, schema, args.trials, args.parallelism)
        t0 = time.monotonic()
        run.deadline = t0 + args.timeout
        kubectl(kc, "create", "-n", NAMESPACE, "-f", "-", input=json.dumps(body))
        poller = threading.Thread(target=poll_status, args=(run, stop), daemon=True)
        poller.start()
        try:
            SCENARIOS[name](run)
            run.wait("the TrainingJob to finish", run.finished)
            end = next(t for t, st in run.samples if st and st.get("phase") in ("Succeeded", "Failed"))
            result["wall"] = end - t0
        except TimeoutError as exc:
            result["timeout"] = str(exc)
        stop.set()
        poller.join(5)
        st = run.latest()
        result.update(
            faults=run.faults,
            phase=st.get("phase", "?"),
            status_products=st.get("products") or {},
            failures=st.get("failures") or [],
            recoveries=[next_success(run, r) for r in run.recoveries],
            **audit(run),
        )
        result["samples"] = [  # seconds since the TrainingJob's create: (succeeded, active) or None
            (round(t - t0, 1), [(st.get("products") or {}).get(k) for k in ("succeeded", "active")] if st else None)
            for t, st in run.samples
        ]
        result["recovered_at"] = [round(r - t0, 1) for r in run.recoveries]
        (scenario_dir / "status.json").write_text(json.dumps(st, indent=2))
        (scenario_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    finally:
        stop.set()
        if operator is not None:
            operator.stop()
        if events is not None:
            events.stop()
        cluster.stop(quiet=True)
    return result


# ------------------------------------------------------------------------------------------------ table


def recovery_cell(r: dict[str, Any]) -> str:
    values = r.get("recoveries") or []
    if not values:
        return "-"
    if None in values:
        return f"none seen ({values.count(None)} of {len(values)})"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"median {statistics.median(values):.1f}, max {max(values):.1f} ({len(values)} restarts)"


def runs_cell(r: dict[str, Any], products: int) -> str:
    extra = r["runs"] - products
    return f"{r['runs']}" + (f" ({extra:+d})" if extra else "")


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    n = len(args.product_ids)
    head: tuple[str, ...] = ("scenario", "fault", "trained (rows / status)", "twice", "partial", "trainer runs")
    head += ("recovery -> success (s)", "wall (s)")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if "error" in r:
            rows.append((r["scenario"], f"bench error: {r['error']}", *[""] * (len(head) - 2)))
            continue
        sp = r["status_products"]
        trained = f"{r['trained_rows']} / {sp.get('succeeded', 0)} of {n}"
        if sp.get("failed"):
            trained += f", {sp['failed']} failed"
        wall = f"{r['wall']:.0f}" if "wall" in r else f"timed out ({r['phase']})"
        rows.append(
            (
                r["scenario"],
                r["faults"],
                trained,
                str(len(r["twice"])),
                str(len(r["partial"])),
                runs_cell(r, n),
                recovery_cell(r),
                wall,
            )
        )
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-+-".join("-" * x for x in w))
    for row in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(row)))
    for r in results:
        if "error" in r:
            continue
        notes = []
        if r["runs"] != n or set(r["exit_codes"]) != {"0"}:
            codes = ", ".join(f"exit {c} x{k}" for c, k in sorted(r["exit_codes"].items()))
            notes.append(f"trainer runs: {codes}; products run more than once: {len(r['rerun_products'])}")
        if r["reused"]:
            notes.append(
                f"{r['reused']} succeeded pod(s) found the model an earlier pod of the same Job had stored "
                "(same run key) and trained nothing"
            )
        if r["overlaps"]:
            notes.append(f"runs of one product alive at the same time: {r['overlaps']}")
        if r["lost"]:
            notes.append(f"no model for {r['lost']}")
        if r["twice"]:
            notes.append(f"trained twice: {r['twice_detail']}")
        if r["partial"]:
            notes.append(f"partial rows (product, model id, forecast rows): {r['partial']}")
        if r["failures"]:
            notes.append(f"status failures: {r['failures']}")
        if r.get("timeout"):
            notes.append(f"{r['timeout']}; last status products {r.get('status_products')}")
        if notes:
            print(f"\n{r['scenario']}: pods now {r.get('pods')}\n  " + "\n  ".join(notes))


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {psutil.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, commit {commit.stdout.strip() or '?'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="run only this one (repeatable)")
    ap.add_argument("--products", type=int, default=40)
    ap.add_argument("--days", type=int, default=400)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=480, help="seconds a scenario may take after its TrainingJob")
    ap.add_argument("--keep", type=Path, help="keep logs, cluster state and statuses in this directory")
    args = ap.parse_args()
    names = args.scenario or list(SCENARIOS)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    print(f"machine: {describe_machine()}", flush=True)
    pg = PostgresServer(script_timeout=120)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tjo-chaos-") as tmp:
            work = args.keep or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            pg.start()
            sample = ["sample-data", "--products", str(args.products), "--days", str(args.days)]
            subprocess.run(
                [TRAINER, *sample, "--dsn", pg.dsn, "--table", SALES_TABLE],
                check=True,
                capture_output=True,
            )
            args.product_ids = [r[0] for r in pg.query(f"SELECT DISTINCT product_id FROM {SALES_TABLE} ORDER BY 1")]
            print(
                f"workload: {len(args.product_ids)} products x {args.days} days, trials {args.trials}, folds 1, "
                f"horizon {HORIZON_DAYS} d, parallelism {args.parallelism}, models prophet,naive",
                flush=True,
            )
            for name in names:
                t = time.monotonic()
                try:
                    results.append(run_scenario(name, args, pg, args.product_ids, work))
                except Exception as exc:  # report it in the table, go on with the next scenario
                    results.append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
                print(f"  {name}: done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
                try:  # PostgreSQL must be up for the next scenario, whatever this one did to it
                    pg.query("SELECT 1")
                except subprocess.CalledProcessError:
                    pg.up()
    finally:
        pg.stop()
    print()
    print_table(results, args)
    errors = [r["scenario"] for r in results if "error" in r]
    if errors:
        sys.exit(f"bench error in {len(errors)} of {len(results)} scenarios: {', '.join(errors)}")


if __name__ == "__main__":
    main()
