"""The outbox: one Delivery row per (issue, subscriber). The sending engine sees only this
store: it enqueues, hands out batches claimed with a lease, and records each outcome. All
SQL of a send lives here, set-based and portable (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, case, func, insert, literal, or_, select, update

from mailer.messages import Recipient
from mailer.models import (
    DELIVERIES,
    ISSUES,
    SUBSCRIBERS,
    DeliveryStatus,
    Issue,
    SubscriberStatus,
    utcnow,
)
from mailer.settings import Delivery as DeliverySettings

QUEUED, SENDING, SENT = DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT
DEFERRED, FAILED, SKIPPED = DeliveryStatus.DEFERRED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
BATCH_SIZE = 100
d, s = DELIVERIES.c, SUBSCRIBERS.c


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempts: int
    recipient: Recipient
    subscriber_status: str


def recipients_filter(kind: str) -> ColumnElement[bool]:
    """Who an issue of this kind goes to: active subscribers, and for single-article
    issues only those who asked for every article (digest readers wait for the digest)."""
    active = s.status == SubscriberStatus.ACTIVE
    return and_(active, s.frequency == "every") if kind == "article" else active


def count_recipients(engine: Engine, kind: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(SUBSCRIBERS).where(recipients_filter(kind))
        return int(connection.execute(query).scalar_one())


class Outbox:
    def __init__(self, engine: Engine, issue: Issue, settings: DeliverySettings):
        assert issue.id is not None, "the issue is stored before it is sent"
        self.engine = engine
        self.issue_id = issue.id
        self.kind = issue.kind
        self.settings = settings
        self.of_issue = d.issue_id == issue.id

    def pending_recipients(self) -> int:
        """Eligible subscribers not yet recorded as sent, failed or skipped for this issue."""
        done = select(d.subscriber_id).where(self.of_issue, d.status.in_((SENT, FAILED, SKIPPED)))
        query = select(func.count()).where(recipients_filter(self.kind), s.id.not_in(done))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def enqueue(self) -> int:
        """Add a queued row for every eligible subscriber not already in the outbox, in one
        statement; (issue, subscriber) is unique, so enqueueing twice adds nothing."""
        already = select(d.subscriber_id).where(self.of_issue)
        eligible = select(s.id, literal(self.issue_id)).where(
            recipients_filter(self.kind), s.id.not_in(already)
        )
        with self.engine.begin() as connection:
            added = connection.execute(
                insert(DELIVERIES).from_select(["subscriber_id", "issue_id"], eligible)
            ).rowcount
            connection.execute(
                update(ISSUES).where(ISSUES.c.id == self.issue_id).values(status="sending")
            )
        return added

    def retry_deferred_now(self) -> None:
        """Make every deferred delivery due now (an editor asked to send again)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(self.of_issue, d.status == DEFERRED)
                .values(next_attempt_at=utcnow())
            )

    def claim(self, limit: int = BATCH_SIZE) -> list[Claimed]:
        """Reserve the next batch, in id order, with a lease. A row is due when queued,
        deferred until now, or claimed by a sender whose lease ran out (it crashed)."""
        now = utcnow()
        due = or_(
            d.status == QUEUED,
            and_(d.status == DEFERRED, d.next_attempt_at <= now),
            and_(d.status == SENDING, d.lease_until < now),
        )
        ids = select(d.id).where(self.of_issue, due).order_by(d.id).limit(limit)
        if self.engine.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        # One UPDATE ... RETURNING: two senders can never claim the same row.
        claim = (
            update(DELIVERIES)
            .where(d.id.in_(ids.scalar_subquery()), due)
            .values(status=SENDING, lease_until=lease)
            .returning(d.id)
        )
        with self.engine.begin() as connection:
            claimed = connection.execute(claim).scalars().all()
            rows = connection.execute(
                select(d.id, d.attempts, s.id, s.email, s.name, s.status)
                .join(SUBSCRIBERS, s.id == d.subscriber_id)
                .where(d.id.in_(claimed))
                .order_by(d.id)
            ).all()
        return [Claimed(r[0], r[1], Recipient(r[2], r[3], r[4]), r[5]) for r in rows]

    def record(self, delivery_id: int, status: str, **values: object) -> None:
        """Record one outcome, committed at once: the server has answered."""
        with self.engine.begin() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(d.id == delivery_id, d.status == SENDING)
                .values(status=status, lease_until=None, **values)
            )

    def bounce(self, subscriber_id: int) -> None:
        """Suppress an address the server says does not exist."""
        with self.engine.begin() as connection:
            connection.execute(
                update(SUBSCRIBERS)
                .where(s.id == subscriber_id)
                .values(status=SubscriberStatus.BOUNCED)
            )

    def release(self, delivery_ids: list[int]) -> None:
        """Hand claimed rows back untouched (the server is unreachable)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(d.id.in_(delivery_ids), d.status == SENDING)
                .values(status=case((d.attempts == 0, QUEUED), else_=DEFERRED), lease_until=None)
            )

    def finish(self) -> bool:
        """Mark the issue sent once no delivery is left to try; True when it is."""
        still_open = select(func.count()).where(
            self.of_issue, d.status.in_((QUEUED, SENDING, DEFERRED))
        )
        with self.engine.begin() as connection:
            if connection.execute(still_open).scalar_one():
                return False
            connection.execute(
                update(ISSUES)
                .where(ISSUES.c.id == self.issue_id, ISSUES.c.status != "sent")
                .values(status="sent", sent_at=utcnow())
            )
        return True

    def next_attempt(self, attempts: int, jitter: float) -> datetime:
        """Exponential backoff; the jitter (0.8-1.2) spreads the retries of one outage."""
        delay = self.settings.retry_base_seconds * 2 ** (attempts - 1) * jitter
        return utcnow() + timedelta(seconds=delay)
