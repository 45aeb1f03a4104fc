"""The outbox: one Delivery row per (issue, subscriber), claimed with a lease before it is
sent and recorded right after. A rerun or a restart picks up what is queued, deferred or
left claimed by a crashed sender; nothing recorded as sent is ever sent again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, and_, case, func, insert, literal, or_, select, update
from sqlmodel import col

from mailer.errors import DeliveryError
from mailer.issues import SENDING, SENT, as_rendered
from mailer.messages import MessageBuilder, OutgoingMessage, Recipient
from mailer.models import Delivery, DeliveryStatus, Issue, Subscriber, SubscriberStatus, utcnow
from mailer.settings import Delivery as DeliverySettings
from mailer.settings import Settings
from mailer.smtp import ConnectionFailure, PermanentFailure, SMTPTransport, TemporaryFailure

Q, SENDING_, S, D, F, K = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
)
BATCH_SIZE = 100


class Transport(Protocol):
    def send(self, sender: str, recipient: str, data: bytes) -> str: ...


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=dict)
    bounced: int = 0

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def sent(self) -> int:
        return self.counts.get(S, 0)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempts: int
    recipient: Recipient
    subscriber_status: str


def recipients_filter(kind: str) -> list[object]:
    """Who an issue of this kind goes to: active subscribers, and for single-article
    issues only those who asked for every article (digest readers wait for the digest)."""
    conditions: list[object] = [Subscriber.status == SubscriberStatus.ACTIVE]
    if kind == "article":
        conditions.append(Subscriber.frequency == "every")
    return conditions


def count_recipients(engine: Engine, kind: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(Subscriber).where(*recipients_filter(kind))
        return int(connection.execute(query).scalar_one())


class Outbox:
    """The store the sending engine sees: it enqueues, hands out claimed batches and
    records outcomes. All SQL of the send lives here."""

    def __init__(self, engine: Engine, issue: Issue, settings: DeliverySettings):
        assert issue.id is not None
        self.engine = engine
        self.issue_id = issue.id
        self.kind = issue.kind
        self.settings = settings

    def pending_recipients(self) -> int:
        """Eligible subscribers not yet recorded as sent, failed or skipped for this issue."""
        done = select(Delivery.subscriber_id).where(
            Delivery.issue_id == self.issue_id, col(Delivery.status).in_((S, F, K))
        )
        query = select(func.count()).where(
            *recipients_filter(self.kind), col(Subscriber.id).not_in(done)
        )
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()

    def enqueue(self) -> int:
        """Add a queued row for every eligible subscriber not already in the outbox, in one
        statement; (issue, subscriber) is unique, so enqueueing twice adds nothing."""
        already = select(Delivery.subscriber_id).where(Delivery.issue_id == self.issue_id)
        eligible = select(Subscriber.id, literal(self.issue_id)).where(
            *recipients_filter(self.kind), col(Subscriber.id).not_in(already)
        )
        statement = insert(Delivery).from_select(["subscriber_id", "issue_id"], eligible)
        with self.engine.begin() as connection:
            added = connection.execute(statement).rowcount
            connection.execute(
                update(Issue).where(col(Issue.id) == self.issue_id).values(status=SENDING)
            )
        return added

    def retry_deferred_now(self) -> None:
        """Make every deferred delivery due now (an editor asked to send again)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(Delivery)
                .where(Delivery.issue_id == self.issue_id, Delivery.status == D)
                .values(next_attempt_at=utcnow())
            )

    def claim(self, limit: int = BATCH_SIZE) -> list[Claimed]:
        """Reserve the next batch (in id order) for this sender with a lease; rows of a
        crashed sender whose lease ran out are claimable again."""
        now = utcnow()
        due = or_(
            Delivery.status == Q,
            and_(Delivery.status == D, col(Delivery.next_attempt_at) <= now),
            and_(Delivery.status == SENDING_, col(Delivery.lease_until) < now),
        )
        ids = (
            select(Delivery.id)
            .where(Delivery.issue_id == self.issue_id, due)
            .order_by(col(Delivery.id))
            .limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        claim = (
            update(Delivery)
            .where(col(Delivery.id).in_(ids.scalar_subquery()), due)
            .values(status=SENDING_, lease_until=lease)
            .returning(Delivery.id)
        )
        with self.engine.begin() as connection:
            claimed = [row[0] for row in connection.execute(claim)]
            rows = connection.execute(
                select(
                    Delivery.id,
                    Delivery.attempts,
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.name,
                    Subscriber.status,
                )
                .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
                .where(col(Delivery.id).in_(claimed))
                .order_by(col(Delivery.id))
            ).all()
        return [Claimed(r[0], r[1], Recipient(r[2], r[3], r[4]), r[5]) for r in rows]

    def record(self, delivery_id: int, status: str, **values: object) -> None:
        """Record one outcome, committed at once: the server has the message."""
        with self.engine.begin() as connection:
            connection.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id, Delivery.status == SENDING_)
                .values(status=status, lease_until=None, **values)
            )

    def bounce(self, subscriber_id: int) -> None:
        """Suppress an address the server says does not exist."""
        with self.engine.begin() as connection:
            connection.execute(
                update(Subscriber)
                .where(col(Subscriber.id) == subscriber_id)
                .values(status=SubscriberStatus.BOUNCED)
            )

    def release(self, delivery_ids: list[int]) -> None:
        """Hand claimed rows back untouched (the server is unreachable)."""
        if not delivery_ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(Delivery)
                .where(col(Delivery.id).in_(delivery_ids), Delivery.status == SENDING_)
                .values(status=case((Delivery.attempts == 0, Q), else_=D), lease_until=None)
            )

    def finish(self) -> bool:
        """Mark the issue sent once no delivery is left to try; True when it is."""
        open_rows = select(func.count()).where(
            Delivery.issue_id == self.issue_id, col(Delivery.status).in_((Q, SENDING_, D))
        )
        with self.engine.begin() as connection:
            if connection.execute(open_rows).scalar_one():
                return False
            connection.execute(
                update(Issue)
                .where(col(Issue.id) == self.issue_id, Issue.status != SENT)
                .values(status=SENT, sent_at=utcnow())
            )
        return True


def send_issue(
    outbox: Outbox,
    builder: MessageBuilder,
    transport: Transport,
    *,
    retry_deferred_now: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SendReport:
    """Send every due delivery of the issue and record each outcome. One refused
    recipient never stops the others; an unreachable server stops the run, keeping the
    rest queued, and raises DeliveryError."""
    report = SendReport()
    if retry_deferred_now:
        outbox.retry_deferred_now()
    while batch := outbox.claim():
        for index, claimed in enumerate(batch):
            try:
                status = _deliver(outbox, builder, transport, claimed, report)
            except ConnectionFailure as exc:
                outbox.release([c.delivery_id for c in batch[index:]])
                raise DeliveryError(
                    f"{exc.reply}; {report.sent} sent before the connection failed, the rest "
                    "stay queued: run the same command again once the server is reachable"
                ) from None
            report.add(status)
            if progress is not None:
                progress(status)
    outbox.finish()
    return report


def _deliver(
    outbox: Outbox,
    builder: MessageBuilder,
    transport: Transport,
    claimed: Claimed,
    report: SendReport,
) -> str:
    if claimed.subscriber_status != SubscriberStatus.ACTIVE:
        outbox.record(
            claimed.delivery_id, K, smtp_response=f"not sent: {claimed.subscriber_status}"
        )
        return K
    message: OutgoingMessage = builder.build(claimed.recipient)
    attempts = claimed.attempts + 1
    try:
        reply = transport.send(message.sender, message.recipient, message.data)
    except ConnectionFailure:
        raise
    except TemporaryFailure as exc:
        status = D if attempts < outbox.settings.max_attempts else F
        outbox.record(
            claimed.delivery_id,
            status,
            attempts=attempts,
            smtp_response=exc.reply,
            next_attempt_at=_next_attempt(outbox.settings, attempts) if status == D else None,
        )
        return status
    except PermanentFailure as exc:
        outbox.record(claimed.delivery_id, F, attempts=attempts, smtp_response=exc.reply)
        if exc.bounce:
            outbox.bounce(claimed.recipient.subscriber_id)
            report.bounced += 1
        return F
    outbox.record(
        claimed.delivery_id,
        S,
        attempts=attempts,
        smtp_response=reply,
        message_id=message.message_id,
        sent_at=utcnow(),
    )
    return S


def _next_attempt(settings: DeliverySettings, attempts: int) -> datetime:
    """Exponential backoff with jitter, so retries of one outage do not arrive together."""
    delay = settings.retry_base_seconds * 2 ** (attempts - 1)
    return utcnow() + timedelta(seconds=delay * random.uniform(0.8, 1.2))


def deliver(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    progress: Callable[[str], None] | None = None,
) -> SendReport:
    """Queue the issue for every eligible subscriber and send it over SMTP."""
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue))
    with SMTPTransport(settings.smtp, local_hostname=builder.domain) as transport:
        return send_issue(outbox, builder, transport, progress=progress)
