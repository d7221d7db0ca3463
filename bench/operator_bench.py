"""Operator overhead vs a native Indexed Job, on the real local control plane (prints a table).

    .venv/bin/python bench/operator_bench.py [--products 500] [--parallelism 50] [--no-floor]

All runs execute the same pods: the operator's pod template (its Job builder) with the
``localhost/tjo-noop`` image (hack/images/noop, built by ``make images``), which exits
at once after writing a trainer-shaped termination message, so this measures orchestration, not
training. The runs, each on a fresh cluster of its own (objects left by one run would slow the next):

- native: one ``batch/v1`` Indexed Job (completions=N, parallelism=P) with that pod template;
- TrainingJob + operator: a TrainingJob of N products with parallelism P, reconciled by the
  operator running as a local process authenticated as its ServiceAccount (manifests/base/rbac.yaml);
- floor: the operator's N product Jobs created by the leanest loop possible (one raw watch of
  finished pods, the next Job on each success; no Leases, no status, no operator): what one Job
  per product (DESIGN.md, "Child objects") costs this machine before any operator logic.

Figures: wall time from create to done and its ratio to native (target <= 1.25); API writes per
product made by the operator's identity, counted in the API server's audit log (target <= 6);
the operator's peak RSS (target <= 150 MB); create -> first pod; CPU seconds per component and
for the whole machine (the runs are CPU-bound on 2 cores: wall time follows total CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "operator")]

import operator_harness  # noqa: E402
from localcluster import LocalCluster, find_binaries  # noqa: E402
from localcluster.cluster import COMPONENTS  # noqa: E402
from localcluster.procs import PidRecord  # noqa: E402
from operator_harness import kubectl  # noqa: E402

OPERATOR_USER = "system:serviceaccount:trainingjob-system:trainingjob-operator"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def api_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    return client.ApiClient(config.new_client_from_config(str(kubeconfig)).configuration)


def audit_events(audit_log: Path) -> list[dict[str, Any]]:
    """The audit log's completed requests (the policy logs writes, at metadata level)."""
    events = []
    for line in audit_log.read_text(errors="replace").splitlines() if audit_log.exists() else []:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("stage") == "ResponseComplete":
            events.append(ev)
    return events


def first_pod_seconds(events: list[dict[str, Any]], ns: str) -> float:
    """Seconds from the create of the Job / TrainingJob to the create of its first pod, as the API
    server received them (audit log timestamps: exact, and no polling load during the run)."""
    created = first = None
    for ev in events:
        ref = ev.get("objectRef") or {}
        if ev.get("verb") != "create" or ref.get("namespace") != ns:
            continue
        t = ts(ev["requestReceivedTimestamp"])
        if ref.get("resource") in ("jobs", "trainingjobs") and created is None:
            created = t
        elif ref.get("resource") == "pods" and not ref.get("subresource") and first is None:
            first = t
    return first - created if created is not None and first is not None else float("nan")


def wait_complete(get: Any, on_poll: Any = None) -> dict[str, Any]:
    """Poll ``get()`` (a read, ``_preload_content=False``) every 0.1 s until a Complete/Failed condition is True.

    Both runs wait the same way, in-process: spawning ``kubectl`` in a loop would cost the
    2-core machine several tenths of a core and tilt the comparison.
    """
    while True:
        if on_poll is not None:
            on_poll()
        obj = json.loads(get().data)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                return dict(obj)
        time.sleep(0.1)


def audit_writes(events: list[dict[str, Any]], user: str) -> Counter[str]:
    """Writes made by ``user``, counted by verb and resource."""
    counts: Counter[str] = Counter()
    for ev in events:
        if ev.get("verb") not in WRITE_VERBS or ev.get("user", {}).get("username") != user:
            continue
        ref = ev.get("objectRef") or {}
        counts[
            f"{ev['verb']} {ref.get('resource', '?')}{'/' + ref['subresource'] if ref.get('subresource') else ''}"
        ] += 1
    return counts


def tj_body(n: int, p: int) -> dict[str, Any]:
    return {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "bench"},
        "spec": {
            "products": [f"sku-{i:05d}" for i in range(n)],
            "parallelism": p,
            "productsPerPod": 1,  # one pod per product: the path this bench compares with the native Job
            "data": {"configMap": {"name": "sales", "key": "sales.csv"}},
            "template": {"image": "localhost/tjo-noop"},
        },
    }


def product_jobs(n: int, p: int, ns: str) -> list[dict[str, Any]]:
    """The operator's own product Jobs for the bench TrainingJob (its builder), minus the ownerReference
    (no owner object exists in the runs without the operator: GC would delete the Jobs)."""
    from trainingjob_operator import builders
    from trainingjob_operator.api import TrainingJob

    body = tj_body(n, p)
    body["metadata"].update(namespace=ns, uid="00000000-0000-0000-0000-000000000000")
    tj = TrainingJob.model_validate(body)
    jobs = []
    for i in range(n):
        job = builders.build_job(tj, tj.spec.products[i])
        del job["metadata"]["ownerReferences"]
        jobs.append(job)
    return jobs


def create_sales(kubeconfig: Path, ns: str) -> None:
    kubectl(kubeconfig, "create", "configmap", "sales", "-n", ns, "--from-literal=sales.csv=product_id,ds,y")
    time.sleep(1)


def run_native(kubeconfig: Path, ns: str, n: int, p: int) -> dict[str, float]:
    """One Indexed Job running the same pods as the operator's product Jobs: the pod template and the
    pod failure policy come from the operator's Job builder (the one of the first product)."""
    product_job = product_jobs(1, p, ns)[0]
    template = product_job["spec"]["template"]
    template["metadata"] = {"labels": {"bench": "native"}}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "native"},
        "spec": {
            "completions": n,
            "parallelism": p,
            "completionMode": "Indexed",
            "backoffLimitPerIndex": product_job["spec"]["backoffLimit"],
            "podFailurePolicy": product_job["spec"]["podFailurePolicy"],
            "template": template,
        },
    }
    create_sales(kubeconfig, ns)
    api = api_client(kubeconfig)
    m0 = machine_cpu()
    t0 = time.time()
    kubectl(kubeconfig, "create", "-n", ns, "-f", "-", input=json.dumps(job))
    from kubernetes import client

    wait_complete(lambda: client.BatchV1Api(api).read_namespaced_job("native", ns, _preload_content=False))
    return {"wall": time.time() - t0, "machine_cpu": machine_cpu() - m0}


def run_floor(kubeconfig: Path, ns: str, n: int, p: int) -> dict[str, float]:
    """The floor of any one-Job-per-product design: the operator's own product Jobs (product_jobs),
    created by the leanest driver possible: one raw watch of finished
    product pods, the next Job created as soon as a pod succeeds. No Leases, no status, no operator."""
    from kubernetes import client

    from trainingjob_operator import builders, observe

    api = api_client(kubeconfig)
    batch: Any = client.BatchV1Api(api)
    core: Any = client.CoreV1Api(api)
    jobs = product_jobs(n, p, ns)
    create_sales(kubeconfig, ns)
    m0 = machine_cpu()
    t0 = time.time()
    for job in jobs[:p]:
        batch.create_namespaced_job(ns, job, _preload_content=False)
    launched, done = p, 0
    resource_version = None
    while done < n:
        stream = core.list_namespaced_pod(
            ns,
            label_selector=builders.LABEL_PRODUCT_HASH,
            field_selector=observe.FINISHED_PODS,
            watch=True,
            resource_version=resource_version,
            _preload_content=False,
        )
        for line in stream:
            event = json.loads(line)
            resource_version = event["object"]["metadata"]["resourceVersion"]
            if event["type"] != "ADDED" or event["object"]["status"].get("phase") != "Succeeded":
                continue
            done += 1
            if launched < n:
                batch.create_namespaced_job(ns, jobs[launched], _preload_content=False)
                launched += 1
            if done == n:
                break
        stream.release_conn()
    return {"wall": time.time() - t0, "machine_cpu": machine_cpu() - m0}


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def cpu_seconds(cluster: LocalCluster) -> dict[str, float]:
    """CPU time used so far by each control-plane and node process (containerd, kubelet, kube-proxy, CoreDNS)."""
    out = {}
    for name in COMPONENTS:
        record = PidRecord.load(cluster.pid_path(name))
        proc = record.process() if record is not None else None
        try:
            t = proc.cpu_times() if proc is not None else None
        except psutil.Error:
            t = None
        out[name] = t.user + t.system if t is not None else float("nan")
    return out


def run_operator(kubeconfig: Path, ns: str, n: int, p: int, work: Path) -> dict[str, float]:
    op_kubeconfig = operator_harness.operator_kubeconfig(kubeconfig, work / "operator.kubeconfig")
    operator = operator_harness.OperatorProcess(str(op_kubeconfig), work, verbose=False)
    operator.start()
    try:
        assert operator.proc is not None
        ps = psutil.Process(operator.proc.pid)
        create_sales(kubeconfig, ns)
        from kubernetes import client

        custom = client.CustomObjectsApi(api_client(kubeconfig))
        peak = [0]

        def sample_rss() -> None:
            peak[0] = max(peak[0], ps.memory_info().rss)

        m0 = machine_cpu()
        t0 = time.time()
        kubectl(kubeconfig, "create", "-n", ns, "-f", "-", input=json.dumps(tj_body(n, p)))
        done = wait_complete(
            lambda: custom.get_namespaced_custom_object(
                "training.forecast.dev", "v1alpha1", ns, "trainingjobs", "bench", _preload_content=False
            ),
            sample_rss,
        )
        wall = time.time() - t0
        machine = machine_cpu() - m0
        return {
            "wall": wall,
            "peak_rss_mb": peak[0] / 2**20,
            "succeeded": float(done["status"]["products"]["succeeded"]),
            "operator_cpu": ps.cpu_times().user + ps.cpu_times().system,
            "machine_cpu": machine,
        }
    finally:
        operator.stop()


def on_fresh_cluster(work: Path, name: str, run: Callable[[Path, str], dict[str, Any]]) -> dict[str, Any]:
    """``run(kubeconfig, namespace)`` on a cluster of its own (no run sees another's objects), with
    the CPU seconds each component spent meanwhile, create -> first pod, and the operator's writes."""
    cluster = LocalCluster(work / name, find_binaries())
    try:
        cluster.start()  # in the try: a start that fails half-way is stopped too (mounts, processes)
        kubeconfig, ns = cluster.kubeconfig, "bench"
        kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds" / "trainingjob.yaml"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd/trainingjobs.training.forecast.dev")
        kubectl(kubeconfig, "create", "namespace", ns)
        kubectl(kubeconfig, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
        time.sleep(2)  # default ServiceAccount
        before = cpu_seconds(cluster)
        result = run(kubeconfig, ns)
        after = cpu_seconds(cluster)
        result["cpu"] = {k: after[k] - before[k] for k in after}
        events = audit_events(cluster.log_path("audit"))
        result["first_pod"] = first_pod_seconds(events, ns)
        result["writes"] = audit_writes(events, OPERATOR_USER)
    finally:
        cluster.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--parallelism", type=int, default=50)
    ap.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor run (the operator's product Jobs driven by a minimal loop, no operator)",
    )
    ap.add_argument("--keep", type=Path, help="keep the clusters' state (logs, audit logs) in this directory")
    args = ap.parse_args()
    n, p = args.products, args.parallelism
    with tempfile.TemporaryDirectory(prefix="tjo-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        native = on_fresh_cluster(work, "native", lambda kc, ns: run_native(kc, ns, n, p))
        floor = on_fresh_cluster(work, "floor", lambda kc, ns: run_floor(kc, ns, n, p)) if args.floor else None
        op = on_fresh_cluster(work, "operator", lambda kc, ns: run_operator(kc, ns, n, p, work))
    print_table(n, p, native, floor, op)


def print_table(n: int, p: int, native: dict[str, Any], floor: dict[str, Any] | None, op: dict[str, Any]) -> None:
    runs = [native, *([floor] if floor is not None else []), op]
    writes: Counter[str] = op["writes"]
    cores = psutil.cpu_count() or 1

    def row(measure: str, values: list[str], note: str = "") -> tuple[str, ...]:
        return (measure, *values, note)

    def each(fmt: str, key: str) -> list[str]:
        return [fmt.format(r[key]) for r in runs]

    def dashes(value: str) -> list[str]:
        return ["-"] * (len(runs) - 1) + [value]

    ratio = f"ratio {op['wall'] / native['wall']:.2f}x (target <= 1.25x)"
    if floor is not None:
        ratio += f"; floor {floor['wall'] / native['wall']:.2f}x"
    rows = [
        row("products x parallelism", [f"{n} x {p}"] * len(runs)),
        row("wall time, create -> done (s)", each("{:.1f}", "wall"), ratio),
        row("pods per second", [f"{n / r['wall']:.1f}" for r in runs]),
        row("create -> first pod (s)", each("{:.2f}", "first_pod"), "API server timestamps"),
        row("operator API writes per product", dashes(f"{sum(writes.values()) / n:.2f}"), "target <= 6 (audit log)"),
        row("operator peak RSS (MB)", dashes(f"{op['peak_rss_mb']:.0f}"), "target <= 150"),
        row("products succeeded", [str(n)] * (len(runs) - 1) + [f"{op['succeeded']:.0f}"]),
    ]
    for name in COMPONENTS:
        rows.append(row(f"CPU s: {name}", [f"{r['cpu'][name]:.1f}" for r in runs]))
    rows.append(row("CPU s: operator", dashes(f"{op['operator_cpu']:.1f}"), "incl. its start-up"))
    rows.append(row("CPU s: whole machine", each("{:.1f}", "machine_cpu"), "create -> done, incl. the pods"))
    rows.append(
        row(
            "machine busy (% of cores)",
            [f"{100 * r['machine_cpu'] / (r['wall'] * cores):.0f}" for r in runs],
            f"{cores} cores",
        )
    )
    head = (
        "measure",
        "native Indexed Job",
        *(["Job per product, no operator"] if floor else []),
        "TrainingJob + operator",
        "note",
    )
    w = [max(len(r[i]) for r in [*rows, head]) for i in range(len(head))]
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-+-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    print("\noperator writes by kind:", ", ".join(f"{k}: {v}" for k, v in writes.most_common()))


if __name__ == "__main__":
    main()
