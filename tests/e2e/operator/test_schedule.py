"""TrainingSchedule on the real control plane (issue 12): runs on time, Forbid, Replace, history
limits, suspend, run-now, and an operator killed at the scheduled minute (exactly one run)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import get, noop_tj, secret, wait_for

import operator_harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def schedule_body(name: str, seconds: float, **spec: Any) -> dict[str, Any]:
    run = noop_tj("x", ["a"], seconds)
    return {
        "apiVersion": "training.forecast.dev/v1alpha1",
        "kind": "TrainingSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": "*/1 * * * *", "trainingJobTemplate": {"spec": run["spec"]}, **spec},
    }


def runs(cluster: Any, namespace: str, schedule: str) -> list[dict[str, Any]]:
    items = get(cluster, namespace, "trainingjobs", selector=f"training.forecast.dev/schedule={schedule}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "trainingschedule", name).get("status") or {})


def minute_of(run: dict[str, Any]) -> int:
    return int(run["metadata"]["name"].rsplit("-", 1)[1])


def created(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


def wait_until_second(second: float) -> None:
    """Sleep until the wall clock's second-of-minute is ``second``."""
    now = time.time()
    target = now - (now % 60) + second
    time.sleep((target if target > now else target + 60) - now)


def test_runs_on_time_history_limit_suspend_and_run_now(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    secret(cluster, namespace)
    body = schedule_body("every-minute", 0, successfulRunsHistoryLimit=1)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 150
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.update({r["metadata"]["name"]: r for r in runs(cluster, namespace, "every-minute")})
        time.sleep(0.5)
    two = list(seen.values())
    assert len(two) == 2, list(seen)
    for run in two:
        lag = (created(run) - datetime.fromtimestamp(minute_of(run) * 60, UTC)).total_seconds()
        assert 0 <= lag < 5, f"{run['metadata']['name']} created {lag:.1f} s after its minute"
        assert run["metadata"]["ownerReferences"][0]["kind"] == "TrainingSchedule"
        assert run["spec"]["skipUnchanged"] is True
    # history limit 1: once two have succeeded, only the newest stays
    wait_for(
        "history pruned",
        lambda: (
            len(
                [
                    r
                    for r in runs(cluster, namespace, "every-minute")
                    if (r.get("status") or {}).get("phase") == "Succeeded"
                ]
            )
            == 1
            or None
        ),
        timeout=90,
        every=1,
    )
    st = status(cluster, namespace, "every-minute")
    assert st["lastSuccessfulTime"] and st["lastScheduleTime"]
    table = cluster.kubectl("get", "tjs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST",
        "SCHEDULE",
        "LAST",
        "SUCCESS",
        "AGE",
    ]
    # suspend: no run in the next minute; run-now still starts one at once
    cluster.kubectl("patch", "tjs", "every-minute", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until_second(2)
    names_before = {r["metadata"]["name"] for r in runs(cluster, namespace, "every-minute")}
    wait_until_second(5)
    assert {r["metadata"]["name"] for r in runs(cluster, namespace, "every-minute")} - names_before == set()
    cluster.kubectl("annotate", "tjs", "every-minute", "-n", namespace, "training.forecast.dev/run-now=first")
    manual = wait_for(
        "manual run",
        lambda: [r for r in runs(cluster, namespace, "every-minute") if "-manual-" in r["metadata"]["name"]] or None,
        timeout=20,
    )
    assert len(manual) == 1


def test_forbid_then_replace(cluster: Any, namespace: str, operator: OperatorProcess) -> None:
    secret(cluster, namespace)
    body = schedule_body("slow", 150)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    first = wait_for("first run", lambda: runs(cluster, namespace, "slow") or None, timeout=75, every=1)[0]
    wait_for(
        "Forbid skips the next minute",
        lambda: (
            any(
                e["reason"] == "RunAlreadyActive"
                for e in get(cluster, namespace, "events")["items"]
                if e["involvedObject"].get("name") == "slow"
            )
            or None
        ),
        timeout=75,
        every=1,
    )
    assert [r["metadata"]["name"] for r in runs(cluster, namespace, "slow")] == [first["metadata"]["name"]]
    cluster.kubectl(
        "patch", "tjs", "slow", "-n", namespace, "--type=merge", "-p", '{"spec":{"concurrencyPolicy":"Replace"}}'
    )

    def replaced() -> list[dict[str, Any]] | None:
        rs = [r for r in runs(cluster, namespace, "slow") if not r["metadata"].get("deletionTimestamp")]
        return rs if rs and first["metadata"]["name"] not in {r["metadata"]["name"] for r in rs} else None

    new = wait_for("replaced", replaced, timeout=75, every=1)
    assert len(new) == 1


def test_operator_killed_at_the_scheduled_minute_starts_exactly_one_run(
    cluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    secret(cluster, namespace)
    wait_until_second(30)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(schedule_body("killed", 0)))
    wait_for("status", lambda: status(cluster, namespace, "killed").get("nextScheduleTime"), timeout=20)
    due = datetime.fromisoformat(status(cluster, namespace, "killed")["nextScheduleTime"].replace("Z", "+00:00"))
    wait_until_second(59.5)
    operator.kill()
    time.sleep(3)  # down across the scheduled minute
    operator.start()
    made = wait_for("the run", lambda: runs(cluster, namespace, "killed") or None, timeout=60, every=0.5)
    time.sleep(5)
    made = [r for r in runs(cluster, namespace, "killed") if minute_of(r) == int(due.timestamp()) // 60]
    assert len(made) == 1, [r["metadata"]["name"] for r in runs(cluster, namespace, "killed")]


def test_leader_failover_at_the_scheduled_minute_starts_exactly_one_run(
    cluster: Any, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Two replicas with leader election (as deployed); the leader is SIGKILLed half a second before
    the scheduled minute; the other takes the Lease over (15 s) and makes the due run: one, not none."""
    kubeconfig = operator_harness.operator_kubeconfig(Path(cluster.kubeconfig), tmp_path / "operator.kubeconfig")
    replicas = {
        name: OperatorProcess(
            str(kubeconfig),
            tmp_path / name,
            {"TJO_LEADER_ELECTION_NAMESPACE": "trainingjob-system", "TJO_IDENTITY": name},
        )
        for name in ("sched-a", "sched-b")
    }
    operator.stop()  # the session's replica runs without leader election: only the two act here
    try:
        for name, replica in replicas.items():
            (tmp_path / name).mkdir()
            replica.start()
        first = wait_for("a leader", lambda: (h := leader(cluster)) in replicas and h, 60)
        secret(cluster, namespace)
        wait_until_second(30)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(schedule_body("failover", 0)))
        wait_for("status", lambda: status(cluster, namespace, "failover").get("nextScheduleTime"), timeout=20)
        due = datetime.fromisoformat(status(cluster, namespace, "failover")["nextScheduleTime"].replace("Z", "+00:00"))
        wait_until_second(59.5)
        replicas[first].kill()
        minute = int(due.timestamp()) // 60

        def due_runs() -> list[dict[str, Any]] | None:
            return [r for r in runs(cluster, namespace, "failover") if minute_of(r) == minute] or None

        made = wait_for("the due run, by the new leader", due_runs, timeout=60, every=0.5)
        assert leader(cluster) != first
        time.sleep(5)
        made = due_runs() or []
        assert len(made) == 1, [r["metadata"]["name"] for r in runs(cluster, namespace, "failover")]
        late = (created(made[0]) - due).total_seconds()
        assert late < 40, f"the run started {late:.0f} s after its minute"  # Lease 15 s + a pass
    finally:
        cluster.kubectl("delete", "tjs", "failover", "-n", namespace, "--wait=false", check=False)
        for replica in replicas.values():
            replica.stop()
        operator.start()


def leader(cluster: Any) -> str | None:
    """The leader-election Lease's holder (None before the Lease exists)."""
    got = cluster.kubectl(
        "get", "lease", "-n", "trainingjob-system", "trainingjob-operator-leader", "-o", "json", check=False
    )
    return json.loads(got.stdout)["spec"].get("holderIdentity") if got.returncode == 0 else None
