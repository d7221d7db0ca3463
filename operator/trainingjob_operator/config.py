"""Operator settings from the environment (``TJO_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class OperatorConfig:
    metrics_port: int = 8080
    lease_duration_seconds: int = 60
    resync_seconds: float = 10.0
    """Longest pause between reconcile passes of a running TrainingJob without any event."""
    min_pass_interval_seconds: float = 0.2
    """Shortest pause between passes: coalesces bursts of Job events into one pass."""
    request_timeout_seconds: float = 30.0
    error_retry_seconds: float = 1.0
    """Pause before the next pass after a failed one (the API server away, a conflict)."""
    stuck_pod_seconds: int = 120
    """A product pod that cannot start (a missing Secret or key, a bad image) fails its product after this."""
    leader_election_namespace: str = ""
    """Namespace of the leader-election Lease; "" runs without leader election (one replica)."""
    leader_election_name: str = "trainingjob-operator-leader"

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            metrics_port=_int("TJO_METRICS_PORT", cls.metrics_port),
            lease_duration_seconds=_int("TJO_LEASE_DURATION_SECONDS", cls.lease_duration_seconds),
            resync_seconds=_float("TJO_RESYNC_SECONDS", cls.resync_seconds),
            min_pass_interval_seconds=_float("TJO_MIN_PASS_INTERVAL_SECONDS", cls.min_pass_interval_seconds),
            request_timeout_seconds=_float("TJO_REQUEST_TIMEOUT_SECONDS", cls.request_timeout_seconds),
            error_retry_seconds=_float("TJO_ERROR_RETRY_SECONDS", cls.error_retry_seconds),
            stuck_pod_seconds=_int("TJO_STUCK_POD_SECONDS", cls.stuck_pod_seconds),
            leader_election_namespace=os.environ.get("TJO_LEADER_ELECTION_NAMESPACE", ""),
            leader_election_name=os.environ.get("TJO_LEADER_ELECTION_NAME", cls.leader_election_name),
        )
