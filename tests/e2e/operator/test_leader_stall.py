"""Leader election through a stalled API server: the leader stops acting at its renew deadline
(10 s after its last successful renewal), while its renewal still hangs, before the Lease (15 s)
could be taken over; the run then completes with every product trained once.

The stall is kube-apiserver SIGSTOPped for 20 s (connections stay open, nothing is answered),
longer than the Lease, then SIGCONTed. The times come from the replicas' own logs (the elector
logs each renewal at debug level with the renewTime it wrote, and when it stops leading).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import NOOP, apply, pods_of, tj_body, tj_status, wait_for, wait_phase

import operator_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]
STALL_SECONDS = 20.0
LEASE_SECONDS, RENEW_DEADLINE = 15.0, 10.0
EVENTS = "renewed leader lease|stopped leading|became leader"
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] .*?(" + EVENTS + ")")
RENEW_TIME = re.compile(r"renewTime (\S+?)\)")


def log_events(path: Path) -> list[tuple[datetime, str, datetime | None]]:
    """(when, what, renewTime written) from a replica's log; kopf stamps lines in local time."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)
        renew = RENEW_TIME.search(line)
        out.append((when, m.group(2), datetime.fromisoformat(renew.group(1)) if renew else None))
    return out


def leader(cluster: Any) -> str | None:
    lease = cluster.kubectl_json("get", "lease", "-n", "trainingjob-system", "trainingjob-operator-leader")
    return lease["spec"].get("holderIdentity")


def test_leader_stops_acting_before_its_lease_can_be_taken_over(
    cluster: Any, namespace: str, trainingjob_crd: None, tmp_path: Path
) -> None:
    kubeconfig = operator_harness.operator_kubeconfig(Path(cluster.kubeconfig), tmp_path / "operator.kubeconfig")
    cluster.kubectl("create", "configmap", "sales", "-n", namespace, "--from-literal=sales.csv=product_id,ds,y")
    replicas = {
        name: OperatorProcess(
            str(kubeconfig),
            tmp_path / name,
            {"TJO_LEADER_ELECTION_NAMESPACE": "trainingjob-system", "TJO_IDENTITY": name},
        )
        for name in ("stall-a", "stall-b")
    }
    for name, op in replicas.items():
        (tmp_path / name).mkdir()
        op.start()
    try:
        first = wait_for("a leader", lambda: (h := leader(cluster)) in replicas and h, 60)
        other = next(n for n in replicas if n != first)
        products = [f"p{i:02d}" for i in range(16)]
        body = tj_body("stall", products, parallelism=4, template=NOOP)
        body["spec"]["template"]["env"] = [{"name": "NOOP_SECONDS", "value": "1"}]
        apply(cluster, namespace, body)
        wait_for(
            "some done", lambda: tj_status(cluster, namespace, "stall").get("products", {}).get("succeeded", 0) > 2
        )

        stall_start = datetime.now(UTC)
        cluster.local.pause_component("kube-apiserver")
        try:
            time.sleep(STALL_SECONDS)
        finally:
            cluster.local.resume_component("kube-apiserver")
        resumed = datetime.now(UTC)

        st = wait_phase(cluster, namespace, "stall", ("Succeeded", "Failed"), timeout=180)
        assert st["phase"] == "Succeeded" and st["progress"] == "16/16", st
        runs = Counter(
            p["metadata"]["annotations"]["training.forecast.dev/product"] for p in pods_of(cluster, namespace, "stall")
        )
        assert set(runs.values()) == {1}, f"products trained more than once: {runs}"

        events = log_events(replicas[first].log_path)
        renewals = [renew for when, what, renew in events if what == "renewed leader lease" and when < stall_start]
        assert renewals and renewals[-1] is not None, replicas[first].tail()
        last_renewal = renewals[-1]  # the start of its last successful renewal: what the Lease says
        stops = [when for when, what, _ in events if what == "stopped leading" and when > stall_start]
        assert stops, replicas[first].tail()
        stopped = stops[0]
        takeover_possible = last_renewal + timedelta(seconds=LEASE_SECONDS)
        others_lead = [
            when
            for when, what, _ in log_events(replicas[other].log_path)
            if what == "became leader" and when > stall_start
        ]
        print(
            f"\nAPI server stalled {STALL_SECONDS:.0f}s; leader {first}: last renewal "
            f"{(stall_start - last_renewal).total_seconds():.1f}s before the stall, stopped leading "
            f"{(stopped - last_renewal).total_seconds():.2f}s after it (deadline {RENEW_DEADLINE:.0f}s, "
            f"takeover possible at {LEASE_SECONDS:.0f}s); "
            + (
                f"{other} became leader {(others_lead[0] - last_renewal).total_seconds():.1f}s after it"
                if others_lead
                else f"{first} renewed its own Lease after the stall"
            )
        )
        # stopped during the stall (its renewal hung), at the renew deadline, well before any takeover
        assert stopped < resumed
        assert stopped <= last_renewal + timedelta(seconds=RENEW_DEADLINE + 1.0)
        assert stopped <= takeover_possible - timedelta(seconds=LEASE_SECONDS - RENEW_DEADLINE - 1.0)
        assert all(when >= takeover_possible for when in others_lead)
    finally:
        for op in replicas.values():
            op.stop()
