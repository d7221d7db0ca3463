"""Pod-probe benchmark (prints a table; not a test): the uncached pod reads of one reconcile pass for
a TrainingJob whose Jobs are all Pending (issue 18 point 13).

Side by side in one run, against the same fake API (every pod LIST answers after a fixed latency,
10 ms by default, and honours the field selector):

  baseline   ``observe.read_stuck_pods`` of commit c728b45, loaded from git: one uncached LIST per
             not-ready Job, one after the other, on every pass, every pod of the Job
  current    ``observe.read_stuck_pods`` with ``probes.PodProbes``: only scheduled pending pods,
             at most every 10 s per Job, 16 LISTs at once

The Jobs' pods wait for capacity (Unschedulable): what a ResourceQuota-free namespace with a
cluster autoscaler looks like while nodes come up. Passes run every 2 s (a wake-up per finished
pod or the resync) over one simulated minute.

Usage: .venv/bin/python bench/probe_bench.py [--jobs 500] [--latency-ms 10] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from trainingjob_operator import builders, observe  # noqa: E402
from trainingjob_operator.probes import PodProbes  # noqa: E402

BASELINE_COMMIT = "c728b45"
NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)


def load_baseline() -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:operator/trainingjob_operator/observe.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("observe_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["observe_baseline"] = module
    exec(compile(source, "observe_baseline.py", "exec"), module.__dict__)
    return module


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pending_job(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"tj-{i}", "uid": f"job-{i}", "annotations": {builders.ANNOTATION_PRODUCT: f"p{i}"}},
        "spec": {},
        "status": {"active": 1, "ready": 0, "startTime": stamp(NOW - timedelta(minutes=1))},
    }


class FakeApi:
    """Pod LISTs with a fixed latency; each Job has one pod waiting for a node (Unschedulable)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def list_pods(self, namespace: str, label_selector: str, field_selector: str | None = None) -> list[Any]:
        self.calls += 1
        await asyncio.sleep(self.latency)
        uid = label_selector.split("=", 1)[1]
        pod = {
            "metadata": {"uid": f"pod-{uid}", "labels": {builders.JOB_UID_LABEL: uid}},
            "spec": {},  # no nodeName: not scheduled
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
        }
        return [] if field_selector and "spec.nodeName!=" in field_selector else [pod]


Read = Callable[[FakeApi, list[dict[str, Any]], datetime], Awaitable[dict[str, list[Any]]]]


async def measure(read: Read, jobs: list[dict[str, Any]], latency: float, seconds: int) -> tuple[float, float, float]:
    """(first pass s, mean pass s over the run, LIST calls per pass)."""
    api = FakeApi(latency)
    times = []
    passes = max(seconds // 2, 1)
    for k in range(passes):
        started = time.perf_counter()
        await read(api, jobs, NOW + timedelta(seconds=2 * k))
        times.append(time.perf_counter() - started)
    return times[0], sum(times) / len(times), api.calls / passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    jobs = [pending_job(i) for i in range(args.jobs)]
    baseline = load_baseline()

    async def old(api: FakeApi, js: list[dict[str, Any]], now: datetime) -> dict[str, list[Any]]:
        return await baseline.read_stuck_pods(api, "shop", js, now)  # type: ignore[no-any-return]

    probes = PodProbes()

    async def new(api: FakeApi, js: list[dict[str, Any]], now: datetime) -> dict[str, list[Any]]:
        return await observe.read_stuck_pods(api, "shop", js, now, probes)  # type: ignore[arg-type]

    rows = [("", f"baseline {BASELINE_COMMIT}", "current")]
    b = asyncio.run(measure(old, jobs, latency, args.seconds))
    c = asyncio.run(measure(new, jobs, latency, args.seconds))
    rows.append(("first pass, s", f"{b[0]:.3f}", f"{c[0]:.3f}"))
    rows.append((f"mean pass over {args.seconds} s (every 2 s), s", f"{b[1]:.3f}", f"{c[1]:.3f}"))
    rows.append(("pod LISTs per pass", f"{b[2]:.0f}", f"{c[2]:.0f}"))
    print(f"pod probes of one pass: {args.jobs} Pending Jobs, {args.latency_ms:g} ms per LIST (fake API)")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
