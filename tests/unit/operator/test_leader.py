from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trainingjob_operator.leader import can_take


def test_leader_can_take_only_free_own_or_expired_leases() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert can_take(None, None, 15, "me", now)
    assert can_take("me", now, 15, "me", now)
    assert not can_take("other", now - timedelta(seconds=10), 15, "me", now)
    assert can_take("other", now - timedelta(seconds=16), 15, "me", now)
