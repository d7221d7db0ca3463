from __future__ import annotations

import json
from typing import Any

from trainingjob_operator import builders
from trainingjob_operator.observe import last_termination, parse_job, parse_lease


def job(name: str, product: str, conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "annotations": {builders.ANNOTATION_PRODUCT: product, builders.ANNOTATION_RETRY_ROUND: ""},
        },
        "spec": {},
        "status": {"conditions": conditions or [], **status},
    }


def pod(
    phase: str, exit_code: int | None = None, message: str = "", finished: str = "2026-01-01T00:00:01Z"
) -> dict[str, Any]:
    state = (
        {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": finished}}
        if (exit_code is not None)
        else {"running": {}}
    )
    return {"status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]}}


def test_parse_job_states() -> None:
    running = parse_job(job("j", "a", active=1), None)
    assert running is not None and running.unfinished and not running.succeeded and running.uid == "uid-j"
    msg = json.dumps({"products": [{"product": "a", "status": "trained", "error": 0.2}]})
    early = parse_job(job("j", "a"), [pod("Succeeded", 0, msg)])
    assert early is not None and early.succeeded and early.report is not None and early.report.error == 0.2
    failed = parse_job(
        job("j", "a", [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}], failed=1),
        [pod("Failed", 3, "x")],
    )
    assert failed is not None and failed.finished == "Failed" and failed.exit_code == 3
    no_product = job("j", "a")
    del no_product["metadata"]["annotations"][builders.ANNOTATION_PRODUCT]
    assert parse_job(no_product, None) is None


def test_last_termination_picks_latest_attempt() -> None:
    pods = [pod("Failed", 4, "first", "2026-01-01T00:00:01Z"), pod("Failed", 1, "second", "2026-01-01T00:00:09Z")]
    assert last_termination(pods) == (1, "second")
    assert last_termination([pod("Running")]) == (None, None)


def test_parse_lease() -> None:
    lease = parse_lease(
        {
            "metadata": {"name": "tj-product-x", "resourceVersion": "9"},
            "spec": {
                "holderIdentity": "ns/tj/u",
                "renewTime": "2026-11-23T09:00:00.123456Z",
                "leaseDurationSeconds": 60,
            },
        }
    )
    assert lease.holder == "ns/tj/u" and lease.duration_seconds == 60 and lease.resource_version == "9"
    assert lease.renew_time is not None and lease.renew_time.microsecond == 123456


def test_a_trainer_over_its_memory_limit_fails_its_product_as_oomkilled() -> None:
    """The kubelet's OOMKilled (exit 137) reaches status as its own reason with what to change,
    not a bare BackoffLimitExceeded "exit code 137" (issue 17: what only a real runtime does)."""
    from trainingjob_operator.failures import classify_failure
    from trainingjob_operator.reasons import Reason

    failed = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    ]
    oom = pod("Failed", 137, finished="2026-01-01T00:00:09Z")
    oom["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    earlier = pod("Failed", 4, finished="2026-01-01T00:00:01Z")
    parsed = parse_job(job("j", "a", failed, failed=3), [earlier, oom])
    assert parsed is not None and parsed.oom_killed
    reason, message = classify_failure(parsed)
    assert reason == Reason.OOM_KILLED and "limits.memory" in message and "3 time(s)" in message
    # an OOM on an earlier attempt, then another failure last: that last failure is the reason
    later = pod("Failed", 4, finished="2026-01-01T00:00:20Z")
    parsed = parse_job(job("j", "a", failed, failed=2), [oom, later])
    assert parsed is not None and not parsed.oom_killed
    assert classify_failure(parsed)[0] == Reason.BACKOFF_LIMIT_EXCEEDED
