"""Many products in one TrainingJob: shards against the native floor and today's per-product path
(issue 19, points 4 and 5; prints a table; not a test).

    TJO_K8S_BIN=<dir> TJO_IMAGES_DIR=<dir> .venv/bin/python bench/scale_bench.py \
        [--products 100000] [--per-pod S | --sweep S1,S2] [--parallelism 4] [--compare 2000] [--compare-per-pod S] \
        [--days 90] [--tuning cheapest|default] [--skip-floor] [--job-per-shard] [--skip-operator] [--keep DIR]

Everything real, in ONE invocation and on ONE local cluster (hack/localcluster: the control plane and
the real kubelet node, ``TJO_NODE`` as usual), the real trainer image (``make images``) with its
cheapest configuration (``tuning: {trials: 0, folds: 1, models: [naive]}``; ``--tuning default``:
no ``spec.tuning``, the default model set, for the CPU per product of a real training run), PostgreSQL
(hack/pg_harness.py; ``$TJO_PG_PORT`` when set, else a free port) listening on the cluster's host
address so that pods reach it. Each run has a namespace and an output schema of its own; they run one
after the other:

1. data: N products x ``--days`` of daily sales COPYed from a generator into ``scalebench.sales``
   (index on (product_id, ds) built after the load);
2. floor: what the operator's shard mode does, without the operator: a ``forecast-trainer discover``
   Job (the snapshot of the product list in ``run_products``), then one native Indexed Job of
   ``ceil(N / S)`` shards (``TRAINER_SHARD_INDEXES/SIZE``, ``TRAINER_PRODUCTS_FROM=snapshot``), same
   parallelism; wall = discover Job created -> Indexed Job Complete;
2b. ``--job-per-shard``: the same discovery and shards as ONE native Job PER SHARD (the design the issue
   asked to weigh against the Indexed Job), at most ``parallelism`` unfinished at a time;
3. operator (``--sweep S1,S2,..``: one such run per shard size): one TrainingJob ``allProducts:
   true, productsPerPod: S``, the operator a local process (hack/operator_harness.py, as the e2e
   suite runs it; started fresh for the run so that its CPU and peak RSS, ``VmHWM`` of
   /proc/<pid>/status, are the run's); wall = create -> Complete;
4. at ``--compare`` products (the first ones by id): today's one-pod-per-product path
   (``productsPerPod: 1``) and the same products in shards (``--compare-per-pod``, default
   ``ceil(N / (8 P))``, at least 2: the automatic size is 1 below 1,000 products), same parallelism,
   through the operator.

Figures per run: wall, products/s, API writes per product (the API server's apiserver_request_total,
POST/PUT/PATCH/DELETE, before/after, by resource; and the operator's own, from the audit log), operator
CPU and peak RSS, TrainingJob object size (``kubectl get -o json`` bytes), PostgreSQL rows
(forecast_models, forecasts, run_outcomes) and CPU, the pods' CPU (the node's cgroup root), and checks:
every product stored exactly once, the status counts equal to the database's, phase Succeeded. Ratios:
operator wall / floor wall (target <= 1.10) and products/s shards / per-product (target >= 10x).
Exit status 1 when a check fails or a run errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "operator"), str(ROOT / "bench")]

import operator_harness  # noqa: E402
from localcluster import LocalCluster, find_binaries  # noqa: E402
from operator_bench import (  # noqa: E402
    OPERATOR_USER,
    api_client,
    audit_events,
    audit_writes,
    cpu_seconds,
)
from operator_bench import WRITE_VERBS as AUDIT_WRITE_VERBS  # noqa: E402
from operator_harness import kubectl  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402
from skip_bench import markdown_table  # noqa: E402
from trainingjob_operator.shards import auto_size, slots_size  # noqa: E402

GROUP, VERSION = "training.forecast.dev", "v1alpha1"
SCHEMA, TABLE = "scalebench", "scalebench.sales"
TUNINGS: dict[str, dict[str, Any] | None] = {
    "cheapest": {"trials": 0, "folds": 1, "models": ["naive"]},
    "default": None,  # no spec.tuning: the trainer's default model set (Prophet tuned with Optuna, ...)
}
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
FIRST_DAY = date(2024, 1, 1)


def product_id(i: int) -> str:
    """Zero-padded, so that Python's str order (the shard contract's global order) is the numeric one."""
    return f"sku-{i:06d}"


# ---------------------------------------------------------------------------------------------- data


async def sales_csv(n: int, days: int, chunk_products: int = 5000) -> AsyncIterator[bytes]:
    """CSV rows ``product_id,ds,y``: a weekly pattern around a per-product level, deterministic. A
    product's 90 rows depend on its id only through (level, i % 5), so they are 475 templates filled
    with the id by ``str.replace`` (C speed: 9,000,000 rows in seconds)."""
    dates = [(FIRST_DAY + timedelta(days=d)).isoformat() for d in range(days)]
    weekly = (0.8, 0.9, 1.0, 1.0, 1.1, 1.4, 1.3)
    templates: dict[tuple[int, int], str] = {}
    for start in range(0, n, chunk_products):
        blocks: list[str] = []
        for i in range(start, min(n, start + chunk_products)):
            key = (5 + (i * 7919) % 95, i % 5)
            template = templates.get(key)
            if template is None:
                level, phase = key
                template = templates[key] = "".join(
                    f"\0,{ds},{round(level * weekly[d % 7] + (phase + 2 * d) % 5, 1)}\n" for d, ds in enumerate(dates)
                )
            blocks.append(template.replace("\0", product_id(i)))
        yield "".join(blocks).encode()


def load_sales(dsn: str, n: int, days: int) -> float:
    """Create ``scalebench.sales`` with N x days rows (COPY), index it, and return the seconds it took."""
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
            await conn.execute(f"CREATE TABLE {TABLE} (product_id text NOT NULL, ds date NOT NULL, y double precision)")
            await conn.copy_to_table(
                "sales", schema_name=SCHEMA, source=sales_csv(n, days), format="csv", columns=["product_id", "ds", "y"]
            )
            await conn.execute(f"CREATE INDEX ON {TABLE} (product_id, ds); ANALYZE {TABLE}")
        finally:
            await conn.close()

    t0 = time.monotonic()
    asyncio.run(go())
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------- measures


def request_writes(kubeconfig: Path) -> Counter[str]:
    """The API server's write requests so far (apiserver_request_total, every client), by resource."""
    counts: Counter[str] = Counter()
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").splitlines():
        m = METRIC.match(line)
        if m is None:
            continue
        labels = dict(LABEL.findall(m["labels"]))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "?") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[resource] += int(float(m["value"]))
    return counts


def namespace_writes(events: list[dict[str, Any]], namespace: str) -> Counter[str]:
    """Writes to objects of ``namespace`` by any client (audit log), by verb and resource."""
    counts: Counter[str] = Counter()
    for ev in events:
        ref = ev.get("objectRef") or {}
        if ref.get("namespace") == namespace and ev.get("verb") in AUDIT_WRITE_VERBS:
            sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
            counts[f"{ev['verb']} {ref.get('resource', '?')}{sub}"] += 1
    return counts


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set of a live process (VmHWM of /proc/<pid>/status), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pods_cpu(cluster: LocalCluster) -> float:
    """CPU seconds of every pod of the real node so far (cpuacct of the node's cgroup root)."""
    net = cluster.network
    if net is None:
        return float("nan")
    for base in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct"):
        usage = Path(base) / f"tjo-{net.key}" / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
    return float("nan")


@dataclass
class Run:
    name: str
    namespace: str
    schema: str
    products: int
    per_pod: int
    wall: float = float("nan")
    writes: Counter[str] = field(default_factory=Counter)
    operator_writes: Counter[str] = field(default_factory=Counter)
    namespace_writes: Counter[str] = field(default_factory=Counter)
    operator_cpu: float = float("nan")
    operator_hwm_mb: float = float("nan")
    tj_bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def rate(self) -> float:
        return self.products / self.wall if self.wall > 0 else float("nan")


# ---------------------------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, pg: PostgresServer, cluster: LocalCluster) -> None:
        self.args, self.work, self.pg, self.cluster = args, work, pg, cluster
        self.suffix = time.strftime("%H%M%S")
        self.cleanup: Callable[[], None] | None = None

    @property
    def kc(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def pod_dsn(self) -> str:
        return self.pg.dsn_for(self.cluster.info().host_ip or "127.0.0.1")

    def namespace(self, name: str) -> str:
        ns = f"{name}-{self.suffix}"
        kubectl(self.kc, "create", "namespace", ns)
        kubectl(self.kc, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
        kubectl(self.kc, "create", "secret", "generic", "db", "-n", ns, f"--from-literal=dsn={self.pod_dsn}")
        deadline = time.monotonic() + 30
        while "default" not in kubectl(self.kc, "get", "serviceaccounts", "-n", ns, "-o", "name"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {ns}")
            time.sleep(0.2)
        return ns

    def snapshot(self) -> dict[str, float]:
        return {
            "pods": pods_cpu(self.cluster),
            "postgres": self.pg.cpu_seconds(),
            "control plane": sum(v for v in cpu_seconds(self.cluster).values() if not math.isnan(v)),
        }

    def measured(self, run: Run, body: Callable[[Run], None]) -> Run:
        """``body(run)`` between two snapshots of CPU and API writes; then the database's rows."""
        writes0, cpu0 = request_writes(self.kc), self.snapshot()
        events0 = len(audit_events(self.cluster.log_path("audit")))
        try:
            body(run)
        except Exception as exc:  # reported in the table; the other runs go on
            run.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        time.sleep(2)  # the last pods' cgroups and PostgreSQL backends are accounted
        cpu1 = self.snapshot()
        run.cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
        run.writes = request_writes(self.kc) - writes0
        events = audit_events(self.cluster.log_path("audit"))[events0:]
        run.operator_writes = audit_writes(events, OPERATOR_USER)
        run.namespace_writes = namespace_writes(events, run.namespace)
        run.rows = self.rows(run.schema)
        cleanup, self.cleanup = self.cleanup, None
        if cleanup is not None:
            cleanup()
            self.settle(run.namespace)
        run.checks["stored exactly once"] = (
            run.rows.get("models", -1) == run.rows.get("distinct models", -2) == run.products
        )
        if run.per_pod > 1 and run.rows.get("outcomes", -1) >= 0:  # shard pods write run_outcomes
            run.checks["run_outcomes: one row per product"] = run.rows["outcomes"] == run.products
        print(f"{run.name}: {run.products} products in {run.wall:.1f} s {run.error}", flush=True)
        return run

    def settle(self, namespace: str, timeout: float = 1800) -> None:
        """Wait until the node has removed the run's pods, so the next run starts on a quiet node.

        After a per-product run the kubelet spends minutes removing thousands of containers and pod
        directories, long after the API objects are gone; a run started meanwhile pays for it
        (measured: shards 8.1x faster than per-product right after it, 44x on a clean cluster; the
        next run's pods stayed Pending for minutes). So: the run's pods gone from the API, then the
        kubelet's pod directories down to the pods the API still has.
        """
        started, on_node, alive = time.monotonic(), 0, []
        node = self.cluster.real_node
        pod_dirs = node.paths.kubelet_root / "pods" if node is not None else None
        while time.monotonic() - started < timeout:
            try:  # one list: every pod's namespace
                columns = ["-o", "custom-columns=NS:.metadata.namespace", "--no-headers"]
                alive = kubectl(self.kc, "get", "pods", "-A", *columns, timeout=60).split()
            except (RuntimeError, subprocess.TimeoutExpired):  # a slow API server: ask again
                alive = [namespace]
            on_node = len(list(pod_dirs.iterdir())) if pod_dirs is not None and pod_dirs.is_dir() else 0
            if namespace not in alive and on_node <= len(alive):
                break
            time.sleep(5)
        print(
            f"settle: {namespace}'s pods gone from the API and the node in {time.monotonic() - started:.0f} s "
            f"(the kubelet's pod directories: {on_node if pod_dirs is not None else 'no node'}, "
            f"pods in the API: {len(alive)})",
            flush=True,
        )

    def rows(self, schema: str) -> dict[str, int]:
        exists = self.pg.query(
            f"SELECT to_regclass('{schema}.forecast_models') IS NOT NULL, "
            f"to_regclass('{schema}.run_outcomes') IS NOT NULL"
        )[0]
        if exists[0] != "t":
            return {"models": 0, "distinct models": 0, "forecasts": 0}
        sql = f"SELECT count(*), count(DISTINCT product_id) FROM {schema}.forecast_models"
        models, distinct = self.pg.query(sql)[0]
        out = {
            "models": int(models),
            "distinct models": int(distinct),
            "forecasts": int(self.pg.query(f"SELECT count(*) FROM {schema}.forecasts")[0][0]),
        }
        if exists[1] == "t":
            out["outcomes"] = int(self.pg.query(f"SELECT count(*) FROM {schema}.run_outcomes")[0][0])
        return out

    # ------------------------------------------------------------------ the floor

    def template_tj(self, ns: str, schema: str, per_pod: int) -> Any:
        """The operator run's TrainingJob (allProducts, the same shard size) as a model, for the operator's
        own builders; a uid of the floor's own (its run key, and the key of its snapshot)."""
        from trainingjob_operator.api import TrainingJob

        body = tj_body("floor", spec_all(schema, self.args.parallelism, per_pod, self.args.tuning))
        body["metadata"].update(namespace=ns, uid=f"00000000-0000-0000-0000-{int(time.time()):012d}")
        return TrainingJob.model_validate(body)

    def discovered_round(self, run: Run) -> tuple[Any, Any]:
        """The operator's discovery Job, from its builder, created here without the operator (and without
        an owner: no TrainingJob exists, garbage collection would delete it); then the round of
        ceil(N / S) shards over the global indexes 0..N-1 that the operator would launch."""
        from trainingjob_operator import builders, shards

        tj = self.template_tj(run.namespace, run.schema, run.per_pod)
        discover = builders.build_discovery_job(tj)
        del discover["metadata"]["ownerReferences"]
        kubectl(self.kc, "create", "-n", run.namespace, "-f", "-", input=json.dumps(discover))
        name = discover["metadata"]["name"]
        self.wait_job(run.namespace, name)
        report = self.termination_report(run.namespace, name)
        if report.get("count") != run.products:
            raise RuntimeError(f"discover found {report.get('count')} products, expected {run.products}: {report}")
        indexes = shards.round_text(range(run.products))
        rnd = builders.ShardRound(
            round_id=shards.round_id(tj, "", indexes, run.per_pod),
            indexes=indexes,
            size=run.per_pod,
            completions=shards.completions(run.products, run.per_pod),
            retry_round="",
            products_sha256=str(report["products_sha256"]),
        )
        return tj, rnd

    def shard_job(self, tj: Any, rnd: Any) -> dict[str, Any]:
        from trainingjob_operator import builders

        job = builders.build_shard_job(tj, rnd, suspend=False)
        del job["metadata"]["ownerReferences"]
        return dict(job)

    def floor(self, run: Run) -> None:
        """Discovery, then the round as ONE native Indexed Job (what the operator creates)."""
        t0 = time.time()
        tj, rnd = self.discovered_round(run)
        job = self.shard_job(tj, rnd)
        kubectl(self.kc, "create", "-n", run.namespace, "-f", "-", input=json.dumps(job))
        done = self.wait_job(run.namespace, job["metadata"]["name"])
        run.wall = time.time() - t0
        st = done.get("status") or {}
        run.status = {"succeeded shards": st.get("succeeded"), "failed shards": st.get("failed", 0)}
        run.checks["Indexed Job Complete, every shard"] = st.get("succeeded") == rnd.completions

    def floor_jobs(self, run: Run) -> None:
        """The design issue 19 asked to weigh against the Indexed Job: discovery, then the same shards as
        ONE native Job PER SHARD (the same pod template, its shard fixed by ``TRAINER_SHARD_INDEX``),
        at most ``parallelism`` Jobs unfinished at a time, the next created as one completes: the
        least a controller creating a Job per shard would do (one create and one watch per shard)."""
        from kubernetes import client

        t0 = time.time()
        tj, rnd = self.discovered_round(run)
        template = self.shard_job(tj, rnd)
        batch: Any = client.BatchV1Api(api_client(self.kc))
        pending, running, done = list(range(rnd.completions)), set[str](), 0
        while pending or running:
            while pending and len(running) < self.args.parallelism:
                body = one_shard_job(template, pending.pop(0))
                batch.create_namespaced_job(run.namespace, body)
                running.add(body["metadata"]["name"])
            time.sleep(0.5)
            for job in batch.list_namespaced_job(run.namespace, label_selector="bench-shard").items:
                name, st = job.metadata.name, job.status
                if name in running and (st.succeeded or st.failed):
                    if st.failed:
                        raise RuntimeError(f"Job {run.namespace}/{name} failed: {st}")
                    running.discard(name)
                    done += 1
            if time.time() - t0 > self.args.timeout:
                raise TimeoutError(f"{done} of {rnd.completions} shard Jobs done after {self.args.timeout:.0f} s")
        run.wall = time.time() - t0
        run.status = {"succeeded shards": done, "failed shards": 0}
        run.checks["one Job per shard, every shard Complete"] = done == rnd.completions

    def wait_job(self, ns: str, name: str) -> dict[str, Any]:
        from kubernetes import client

        batch: Any = client.BatchV1Api(api_client(self.kc))
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            job = json.loads(batch.read_namespaced_job(name, ns, _preload_content=False).data)
            conds = {c["type"]: c["status"] for c in (job.get("status") or {}).get("conditions") or []}
            if conds.get("Complete") == "True":
                return dict(job)
            if conds.get("Failed") == "True":
                raise RuntimeError(f"Job {ns}/{name} failed: {job.get('status')}")
            time.sleep(1)
        raise TimeoutError(f"Job {ns}/{name} not done after {self.args.timeout:.0f} s")

    def termination_report(self, ns: str, job: str) -> dict[str, Any]:
        pods = json.loads(kubectl(self.kc, "get", "pods", "-n", ns, "-l", f"job-name={job}", "-o", "json"))["items"]
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
                if message:
                    return dict(json.loads(message))
        raise RuntimeError(f"no termination message from the pods of Job {ns}/{job}")

    # ------------------------------------------------------------------ through the operator

    def operator_run(self, run: Run, spec: dict[str, Any]) -> None:
        op_kc = operator_harness.operator_kubeconfig(self.kc, self.work / "operator.kubeconfig")
        logs = self.work / f"operator-{run.name}"  # one log per run
        logs.mkdir(parents=True, exist_ok=True)
        operator = operator_harness.OperatorProcess(str(op_kc), logs, verbose=False)
        operator.start()
        try:
            assert operator.proc is not None
            pid = operator.proc.pid
            from kubernetes import client

            custom: Any = client.CustomObjectsApi(api_client(self.kc))
            t0 = time.time()
            kubectl(self.kc, "create", "-n", run.namespace, "-f", "-", input=json.dumps(tj_body("scale", spec)))
            deadline, obj = time.monotonic() + self.args.timeout, {}
            while time.monotonic() < deadline:
                obj = json.loads(
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, run.namespace, "trainingjobs", "scale", _preload_content=False
                    ).data
                )
                conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
                if conds.get("Complete") == "True" or conds.get("Failed") == "True":
                    break
                time.sleep(1)
            else:
                raise TimeoutError(f"TrainingJob not done after {self.args.timeout:.0f} s: {obj.get('status')}")
            run.wall = time.time() - t0
            time.sleep(3)  # the operator's last status patch and clean-up belong to the run
            t = psutil.Process(pid).cpu_times()
            run.operator_cpu, run.operator_hwm_mb = t.user + t.system, vm_hwm_mb(pid)
            text = kubectl(self.kc, "get", "trainingjob", "scale", "-n", run.namespace, "-o", "json")
            run.tj_bytes = len(text.encode())
            status = dict(json.loads(text).get("status") or {})
            run.status = status
            products = status.get("products") or {}
            run.checks["phase Succeeded"] = status.get("phase") == "Succeeded"
            run.checks["status: every product succeeded"] = (
                products.get("succeeded") == products.get("total") == run.products
            )
        except BaseException:
            self.delete_trainingjob(run.namespace, operator)
            raise
        # Deleted after the measures (``measured`` calls it): the garbage collection is not the run's.
        self.cleanup = lambda: self.delete_trainingjob(run.namespace, operator)

    def delete_trainingjob(self, namespace: str, operator: operator_harness.OperatorProcess) -> None:
        """While the operator still runs: it removes its finalizer (else the namespace stays Terminating)."""
        try:
            kubectl(
                self.kc,
                "delete",
                "trainingjob",
                "scale",
                "-n",
                namespace,
                "--ignore-not-found",
                "--timeout=300s",
                timeout=330,
            )
        finally:
            operator.stop()
            print(f"operator log: {operator.log_path}", flush=True)

    def status_vs_db(self, run: Run) -> None:
        products = run.status.get("products") or {}
        if products:
            run.checks["status counts = database"] = products.get("succeeded") == run.rows.get("distinct models")
        shards = run.status.get("shards")
        if shards:
            run.checks["status.shards all succeeded"] = shards.get("succeeded") == shards.get("total")


def start_cluster(cluster: LocalCluster, attempts: int = 3) -> Any:
    """``cluster.start()``, again after a failed start (on a loaded machine the kubelet sometimes asks
    containerd before its CRI is initialised, and exits)."""
    for attempt in range(1, attempts + 1):
        try:
            return cluster.start()
        except Exception as exc:
            if attempt == attempts:
                raise
            print(f"cluster start failed ({str(exc).splitlines()[0]}); starting again", flush=True)
            cluster.stop(quiet=True)
    raise AssertionError("unreachable")


def apply_crds(kubeconfig: Path) -> None:
    """This worktree's CRDs, applied and Established (the condition appears a moment after the apply)."""
    for crd in ("trainingjob", "trainingschedule"):
        kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds" / f"{crd}.yaml"))
        deadline = time.monotonic() + 60
        while True:
            try:
                kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/{crd}s.{GROUP}", "--timeout=30s")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def one_shard_job(template: dict[str, Any], shard: int) -> dict[str, Any]:
    """The round's Indexed Job ``template`` as a plain one-pod Job for shard ``shard`` alone."""
    body = json.loads(json.dumps(template))
    meta = body["metadata"]
    meta["name"] = f"{meta['name'][:50]}-s{shard}"
    meta.setdefault("labels", {})["bench-shard"] = str(shard)
    spec = body["spec"]
    limit = spec.pop("backoffLimitPerIndex", 0)
    for key in ("completionMode", "maxFailedIndexes"):
        spec.pop(key, None)
    spec.update(completions=1, parallelism=1, backoffLimit=limit)
    pod = spec["template"]
    pod["metadata"].setdefault("labels", {})["bench-shard"] = str(shard)
    for container in pod["spec"]["containers"]:
        container.setdefault("env", []).append({"name": "TRAINER_SHARD_INDEX", "value": str(shard)})
    return dict(body)


def tj_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": name}, "spec": spec}


def base_spec(schema: str, parallelism: int, tuning: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parallelism": parallelism,
        "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": TABLE}},
        "output": {"postgres": {"schema": schema}},
        "forecast": {"horizonDays": 14},
        "skipUnchanged": False,
    }
    if TUNINGS[tuning] is not None:
        spec["tuning"] = TUNINGS[tuning]
    return spec


def spec_all(schema: str, parallelism: int, per_pod: int, tuning: str) -> dict[str, Any]:
    return {**base_spec(schema, parallelism, tuning), "allProducts": True, "productsPerPod": per_pod}


def spec_list(schema: str, parallelism: int, products: list[str], per_pod: int, tuning: str) -> dict[str, Any]:
    return {**base_spec(schema, parallelism, tuning), "products": products, "productsPerPod": per_pod}


# ---------------------------------------------------------------------------------------------- output


def fmt(v: float, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(runs: list[Run]) -> str:
    rows: list[tuple[str, ...]] = [("measure", *(r.name for r in runs))]

    def row(measure: str, values: list[str]) -> None:
        rows.append((measure, *values))

    row("products x per pod, parallelism", [f"{r.products} x {r.per_pod}, {r.namespace}" for r in runs])
    row("pods (shards or products)", [str(math.ceil(r.products / r.per_pod)) for r in runs])
    row("wall, create -> done (s)", [fmt(r.wall) for r in runs])
    row("products/s", [fmt(r.rate, 2) for r in runs])
    row(
        "API writes per product (apiserver_request_total: cluster)",
        [fmt(sum(r.writes.values()) / r.products, 3) for r in runs],
    )
    row(
        "API writes per product (audit: run's namespace)",
        [fmt(sum(r.namespace_writes.values()) / r.products, 3) for r in runs],
    )
    row("API writes per product (operator)", [fmt(sum(r.operator_writes.values()) / r.products, 3) for r in runs])
    row("operator CPU s (its whole life)", [fmt(r.operator_cpu) for r in runs])
    row("operator peak RSS MB (VmHWM)", [fmt(r.operator_hwm_mb, 0) for r in runs])
    row("TrainingJob object (bytes of -o json)", [str(r.tj_bytes) if r.tj_bytes else "-" for r in runs])
    for key in ("models", "distinct models", "forecasts", "outcomes"):
        row(f"PostgreSQL rows: {key}", [str(r.rows.get(key, "-")) for r in runs])
    for key in ("pods", "postgres", "control plane"):
        row(f"CPU s: {key}", [fmt(r.cpu.get(key, float("nan"))) for r in runs])
    row(
        "CPU s per product (pods+PG+control plane+operator)",
        [
            fmt(
                (
                    sum(v for v in r.cpu.values() if not math.isnan(v))
                    + (0 if math.isnan(r.operator_cpu) else r.operator_cpu)
                )
                / r.products,
                3,
            )
            for r in runs
        ],
    )
    checks = sorted({k for r in runs for k in r.checks})
    for key in checks:
        row(f"check: {key}", [("ok" if r.checks[key] else "FAILED") if key in r.checks else "-" for r in runs])
    row("error", [r.error[:60] or "-" for r in runs])
    return markdown_table(rows)


def ratios(runs: dict[str, Run]) -> list[str]:
    out = []
    floor, op = runs.get("floor"), runs.get("operator")
    if floor and op and floor.wall > 0 and op.wall > 0:
        out.append(f"operator wall / floor wall: {op.wall / floor.wall:.2f} (target <= 1.10)")
    jobs = runs.get("job-per-shard")
    if floor and jobs and floor.wall > 0 and jobs.wall > 0:
        out.append(f"one Job per shard wall / one Indexed Job wall: {jobs.wall / floor.wall:.2f}")
    pp, sh = runs.get("per-product"), runs.get("shards")
    if pp and sh and pp.wall > 0 and sh.wall > 0:
        out.append(f"products/s shards / per-product at {sh.products}: {sh.rate / pp.rate:.1f}x (target >= 10x)")
    return out


# ---------------------------------------------------------------------------------------------- main


def compare_size(count: int, parallelism: int) -> int:
    """The shards run's size at ``--compare`` products: the automatic size's :func:`slots_size` without
    its one-pod-per-product range (below 1,000 products the operator's automatic size is 1, which would
    compare the per-product path with itself), at least 2."""
    return max(2, slots_size(count, parallelism))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=100000, help="products of the floor and operator runs")
    ap.add_argument("--days", type=int, default=90, help="days of history per product")
    ap.add_argument(
        "--tuning", choices=sorted(TUNINGS), default="cheapest", help="cheapest: naive only; default: no spec.tuning"
    )
    ap.add_argument("--per-pod", type=int, help="products per shard (default: the contract's automatic size)")
    ap.add_argument(
        "--sweep",
        type=lambda v: [int(x) for x in v.split(",")],
        help="shard sizes, comma-separated: one operator run per size (instead of one at --per-pod)",
    )
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--compare", type=int, default=2000, help="products of the per-product vs shards runs (0: skip)")
    ap.add_argument(
        "--compare-per-pod", type=int, help="products per shard of the shards run at --compare (default: compare_size)"
    )
    ap.add_argument("--skip-floor", action="store_true", help="no native Indexed Job run")
    ap.add_argument("--skip-operator", action="store_true", help="no allProducts TrainingJob run")
    ap.add_argument("--job-per-shard", action="store_true", help="also the floor's shards as one native Job per shard")
    ap.add_argument("--skip-per-product", action="store_true", help="at --compare products: shards only")
    ap.add_argument("--skip-shards", action="store_true", help="at --compare products: per-product only")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds one run may take")
    ap.add_argument(
        "--state-dir", type=Path, help="the cluster's state dir (default: a new one; a kept one imports no image again)"
    )
    ap.add_argument("--keep", type=Path, help="keep the operator logs here")
    args = ap.parse_args()
    n, p = args.products, args.parallelism
    per_pod = args.per_pod or auto_size(n, p)
    compare = min(args.compare, n)
    compare_per_pod = args.compare_per_pod or compare_size(compare, p)
    port = os.environ.get("TJO_PG_PORT")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tjo-scale-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        state = args.state_dir or work / "cluster"
        cluster = LocalCluster(state, find_binaries())
        pg: PostgresServer | None = None
        already_running = True
        runs: dict[str, Run] = {}
        try:
            info = start_cluster(cluster)
            pg = PostgresServer(port=int(port) if port else None, listen=(info.host_ip,) if info.host_ip else ())
            # A server already on $TJO_PG_PORT is someone's: used (it must listen on the host address), never stopped.
            already_running = listening(pg.port)
            pg.start()
            load_s = load_sales(pg.dsn, n, args.days)
            print(f"data: {n} products x {args.days} days loaded in {load_s:.1f} s (COPY + index)", flush=True)
            apply_crds(cluster.kubeconfig)
            bench = Bench(args, work, pg, cluster)
            products = [product_id(i) for i in range(compare)]

            def new_run(name: str, ns: str, count: int, size: int) -> Run:
                return Run(name, bench.namespace(ns), f"scale_{ns.replace('-', '_')}", count, size)

            if not args.skip_floor:
                runs["floor"] = bench.measured(new_run("floor", "floor", n, per_pod), bench.floor)
            if args.job_per_shard:
                jobs = new_run("job-per-shard", "floor-jobs", n, per_pod)
                runs["job-per-shard"] = bench.measured(jobs, bench.floor_jobs)
            if not args.skip_operator:
                for size in args.sweep or [per_pod]:
                    name = f"operator S={size}" if args.sweep else "operator"
                    op = new_run(name, f"operator-s{size}" if args.sweep else "operator", n, size)
                    runs[name] = bench.measured(
                        op, lambda r: bench.operator_run(r, spec_all(r.schema, p, r.per_pod, args.tuning))
                    )
            if compare:  # today's path first; ``measured`` waits for the node to remove its pods
                if not args.skip_per_product:
                    pp = new_run("per-product", "per-product", compare, 1)
                    runs["per-product"] = bench.measured(
                        pp, lambda r: bench.operator_run(r, spec_list(r.schema, p, products, 1, args.tuning))
                    )
                if not args.skip_shards:
                    sh = new_run("shards", "shards", compare, compare_per_pod)
                    runs["shards"] = bench.measured(
                        sh, lambda r: bench.operator_run(r, spec_list(r.schema, p, products, r.per_pod, args.tuning))
                    )
            for run in runs.values():
                bench.status_vs_db(run)
            if args.state_dir:  # a kept cluster: the next invocation starts without this one's objects
                names = [r.namespace for r in runs.values()]
                kubectl(cluster.kubeconfig, "delete", "namespace", *names, "--timeout=600s", timeout=660)
        finally:
            cluster.stop()
            if pg is not None and not already_running:
                pg.stop()
    print()
    print(
        f"scale bench: {n} products x {args.days} days, parallelism {p}, per pod {per_pod} "
        f"(compare: {compare} x {compare_per_pod}), tuning {args.tuning} {json.dumps(TUNINGS[args.tuning])}, "
        f"{psutil.cpu_count()} CPUs, data load {load_s:.1f} s"
    )
    print(table(list(runs.values())))
    for line in ratios(runs):
        print(line)
    for run in runs.values():
        for what, counts in (
            ("apiserver_request_total", run.writes),
            ("namespace (audit)", run.namespace_writes),
            ("operator (audit)", run.operator_writes),
        ):
            print(f"{run.name} writes, {what}: " + ", ".join(f"{k}: {v}" for k, v in counts.most_common(10)))
    print(f"bench total {time.monotonic() - started:.0f} s")
    failed = [r.name for r in runs.values() if r.error or not all(r.checks.values())]
    if failed:
        print(f"bench error: runs with a failed check or an error: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
