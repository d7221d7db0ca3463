"""Back-off after a ResourceQuota refused product Jobs (the namespace is full, for now).

A quota on ``count/jobs.batch`` (or on pods' resources) frees up as finished Jobs go (their TTL): a
refusal is transient, unlike an invalid Job (422) or an admission denial (JobRejected). The refused
products wait (``QuotaExceeded``) and no product launches until the back-off runs out: 5 s, doubling
per refused attempt up to 5 minutes; a create that goes through resets it. Every product's Job
comes from the same template in the same namespace, so when one is refused, the others would be too.

The state is the operator's memory, like the refused launches it remembers (main.py): a restarted
operator tries once more at once, and backs off again if refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

BASE_SECONDS = 5.0
MAX_SECONDS = 300.0


@dataclass
class QuotaBackoff:
    base_seconds: float = BASE_SECONDS
    max_seconds: float = MAX_SECONDS
    attempts: int = 0
    """Refused attempts in a row."""
    until: datetime | None = None
    refused: dict[str, str] = field(default_factory=dict)
    """Product -> the API server's message, of the last refused attempt."""

    def delay(self) -> float:
        return min(self.base_seconds * 2 ** max(self.attempts - 1, 0), self.max_seconds)

    def record(self, refused: Mapping[str, str], created: int, now: datetime) -> None:
        """One pass's outcome: products a quota refused, and how many Jobs were created."""
        if refused:
            self.attempts += 1
            self.until = now + timedelta(seconds=self.delay())
            self.refused = dict(refused)
        elif created:
            self.attempts, self.until, self.refused = 0, None, {}

    def blocked(self, now: datetime) -> dict[str, str]:
        """The refused products while the back-off runs (reconcile launches nothing meanwhile)."""
        if self.until is None or now >= self.until:
            return {}
        return dict(self.refused)
