"""The engine's retry policy: when a temporary failure is tried again, and when it has
failed for good. The send loop asks it; the outbox only stores the time it answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.settings import Delivery as DeliverySettings


@dataclass(frozen=True)
class Backoff:
    """When to try a temporary failure again ([delivery] max_attempts, retry_hours,
    retry_base_seconds): exponential backoff, until the attempts are used up and the
    hours have passed."""

    max_attempts: int
    retry_hours: float
    retry_base_seconds: float

    @classmethod
    def of(cls, settings: DeliverySettings) -> Backoff:
        return cls(settings.max_attempts, settings.retry_hours, settings.retry_base_seconds)

    def retry_at(
        self, attempts: int, first_attempt_at: datetime | None, now: datetime, jitter: float
    ) -> datetime | None:
        """After `attempts` tries before this one: when to try again (the jitter, 0.8-1.2,
        spreads the retries of one outage), or None once it has had max_attempts tries
        and retry_hours have passed since the first: then it has failed for good."""
        attempts += 1
        deadline = (first_attempt_at or now) + timedelta(hours=self.retry_hours)
        if attempts >= self.max_attempts and now >= deadline:
            return None
        delay = self.retry_base_seconds * 2 ** (attempts - 1) * jitter
        return min(now + timedelta(seconds=delay), max(deadline, now))
