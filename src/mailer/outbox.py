"""The outbox: one Delivery row per (issue, subscriber), and the send loop's Store (see
sendloop.py): it enqueues, hands out batches claimed with a lease, and records each
outcome. All SQL of a send lives here, set-based and portable (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
    update,
)

from mailer.db import insert_new
from mailer.editions import EditionPlan, reader_groups
from mailer.messages import Recipient
from mailer.models import (
    DELIVERIES,
    ISSUES,
    SUBSCRIBERS,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SubscriberStatus,
    UTCDateTime,
    utcnow,
)
from mailer.processes import is_dead_here, sender_token
from mailer.replies import same_words
from mailer.settings import Delivery as DeliverySettings
from mailer.store_sql import OutcomeRow, OutcomeWriter, WriterLock, picked
from mailer.strikes import HARD_FAILURES as HARD_FAILURES
from mailer.strikes import failing_for_good
from mailer.subscribers import recipients_filter

QUEUED, SENDING, SENT = DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT
DEFERRED, FAILED, SKIPPED = DeliveryStatus.DEFERRED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
# Rows per claim: the first claim of a run takes BATCH_SIZE, so senders that start
# together each get a share of a small issue; later ones LARGE_BATCH. A claim costs a
# transaction and its statements whatever its size: at 100 rows claims took 7% of a
# send's CPU, at 400 under 4% (bench/README.md, issue 18). Rows claimed and not sent
# are only leased: a killed sender's wait for its lease, never go out twice.
BATCH_SIZE, LARGE_BATCH = 100, 400
d, s = DELIVERIES.c, SUBSCRIBERS.c
RECIPIENT = (s.id, s.email, s.name, s.public_id, d.donor)  # a Recipient's fields, in order


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempts: int
    first_attempt_at: datetime | None
    recipient: Recipient
    subscriber_status: str
    lease_until: datetime
    variant_id: int | None = None  # the issue's edition it gets (None: the issue's own)


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery, to be recorded."""

    claimed: Claimed
    status: str
    reply: str
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    bounce: bool = False
    blames_reader: bool = False  # a failure that counts against the reader
    refused: bool = False  # a failure that is a policy refusal of this recipient
    at: datetime | None = None  # when the server answered; else when it is recorded

    @property
    def reader_refusal(self) -> str | None:
        """The words of a failure counted against the reader (a bounce aside), without
        what names the reader: a relay refusing everyone refuses each in these words."""
        if self.status != FAILED or not self.blames_reader or self.bounce:
            return None
        return same_words(self.reply, self.claimed.recipient.email)


def _recipient(fields: Sequence[Any]) -> Recipient:
    return Recipient(*fields)  # RECIPIENT's columns, in order


class Outbox:
    """The deliveries of one issue, for one sender run (the claims it holds are its own)."""

    def __init__(
        self,
        engine: Engine,
        issue: Issue,
        settings: DeliverySettings,
        clock: Callable[[], datetime] = utcnow,
    ):
        assert issue.id is not None, "the issue is stored before it is sent"
        # Names this sender's claims: it records and releases only rows it still holds.
        self.token = sender_token()
        self.clock = clock  # injectable, so tests can check backoff without sleeping
        self.started = clock()
        self.engine = engine
        self.issue_id = issue.id
        self.kind = issue.kind
        self.settings = settings
        self.of_issue = d.issue_id == issue.id
        self._connection: Connection | None = None  # see _transaction
        self._writers = WriterLock(engine.url)  # taken by _transaction
        self._deferred_due = True  # until a claim finds no more due deferred rows
        self._batch = BATCH_SIZE  # the next claim's rows (see LARGE_BATCH)
        self._claimed_rows = (
            select(d.id, d.attempts, d.first_attempt_at, s.status, d.variant_id, *RECIPIENT)
            .join(SUBSCRIBERS, s.id == d.subscriber_id)
            .where(d.id.in_(bindparam("ids", expanding=True)))
            .order_by(d.id)
        )
        self._outcomes = OutcomeWriter(engine.dialect, self.token)

    def pending_recipients(self, audience: ColumnElement[bool] | None = None) -> int:
        """Eligible subscribers (of `audience`, editions.audience) not yet recorded as
        sent, failed or skipped for this issue."""
        done = select(d.subscriber_id).where(self.of_issue, d.status.in_((SENT, FAILED, SKIPPED)))
        query = select(func.count()).where(recipients_filter(self.kind), s.id.not_in(done))
        if audience is not None:
            query = query.where(audience)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def sent_deliveries(self) -> int:
        return self._count(d.status == SENT)

    def failed_deliveries(self) -> int:
        return self._count(d.status == FAILED)

    def open_deliveries(self) -> int:
        """Rows not settled yet: queued, being sent, or deferred."""
        return self._count(d.status.in_((QUEUED, SENDING, DEFERRED)))

    def _count(self, which: ColumnElement[bool]) -> int:
        query = select(func.count()).where(self.of_issue, which)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def next_attempt(self) -> datetime | None:
        """When the earliest deferred delivery is due again."""
        query = select(func.min(d.next_attempt_at, type_=UTCDateTime())).where(
            self.of_issue, d.status == DEFERRED
        )
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()  # type: ignore[no-any-return]

    def enqueue(
        self, only_from: tuple[str, ...] | None = None, editions: EditionPlan | None = None
    ) -> bool:
        """Start the issue: a queued row for every eligible subscriber not already in the
        outbox, in one statement per edition (with `editions`, each reader's variant, and
        by language only its readers); (issue, subscriber) is unique, so enqueueing twice
        adds nothing. With only_from, only an issue still in one of those states is
        started (a scheduled one, not cancelled meanwhile): False when it was not."""
        started = update(ISSUES).where(ISSUES.c.id == self.issue_id)
        if only_from is not None:
            started = started.where(ISSUES.c.status.in_(only_from))
        already = select(d.subscriber_id).where(self.of_issue)
        # a donor now gets the thanks, whatever their status becomes before it goes out
        donor = func.coalesce(s.donor_until > self.clock(), false())
        eligible = and_(recipients_filter(self.kind), s.id.not_in(already))
        columns = ["subscriber_id", "issue_id", "donor", "variant_id"]
        with self.engine.begin() as connection:
            # first, so the issue's row is locked against a cancel until this commits; an
            # editor sending a held issue again resumes it
            started = started.values(status=IssueStatus.SENDING, held_reason=None)
            if connection.execute(started).rowcount == 0:
                return False
            for variant, who in reader_groups(connection, editions, eligible):
                rows = select(s.id, literal(self.issue_id), donor, literal(variant, Integer))
                statement = insert_new(self.engine, DELIVERIES).from_select(
                    columns, rows.where(who)
                )
                # another sender enqueueing the same issue at once may add some rows first
                connection.execute(statement.on_conflict_do_nothing())
        return True

    def retry_deferred_now(self) -> None:
        """Make every deferred delivery due now (an editor asked to send again)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(self.of_issue, d.status == DEFERRED)
                .values(next_attempt_at=self.started)
            )

    def reclaim_from_the_dead(self) -> int:
        """Expire the leases of senders on this host whose process is gone (killed, or
        the machine restarted), so their rows are resumed now rather than when the lease
        runs out. Senders on other hosts are left to their leases."""
        with self.engine.connect() as connection:
            holders = connection.execute(
                select(d.claimed_by).distinct().where(self.of_issue, d.status == SENDING)
            ).scalars()
            dead = [holder for holder in holders if holder and is_dead_here(holder)]
        if not dead:
            return 0
        with self.engine.begin() as connection:
            expired = connection.execute(
                update(DELIVERIES)
                .where(self.of_issue, d.status == SENDING, d.claimed_by.in_(dead))
                .values(lease_until=self.clock() - timedelta(seconds=1))
            )
        return expired.rowcount

    def _due(self, now: datetime) -> ColumnElement[bool]:
        return or_(
            d.status == QUEUED,
            and_(d.status == DEFERRED, d.next_attempt_at <= self.started),
            and_(d.status == SENDING, d.lease_until < now),
        )

    def withdrawn(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        """Of these rows, those whose reader is no longer active (unsubscribed or erased,
        bounced, since the claim): the reader's status by row."""
        query = (
            select(d.id, s.status)
            .join(SUBSCRIBERS, s.id == d.subscriber_id)
            .where(d.id.in_(delivery_ids), s.status != SubscriberStatus.ACTIVE)
        )
        with self.engine.connect() as connection:
            return {row.id: row.status for row in connection.execute(query)}

    def claimable(self) -> bool:
        """Is any row of the issue due now (see claim)? Retries another sender gave back
        count too: the next claim looks for them again, though an earlier one of this
        run found none."""
        query = select(d.id).where(self.of_issue, self._due(self.clock())).limit(1)
        with self.engine.connect() as connection:
            due = not self._held(connection) and connection.execute(query).first() is not None
        self._deferred_due = self._deferred_due or due
        return due

    def _held(self, connection: Connection) -> bool:
        query = select(ISSUES.c.status).where(ISSUES.c.id == self.issue_id)
        return bool(connection.execute(query).scalar_one() == IssueStatus.HELD)

    def hold(self, reply: str) -> None:
        """The relay refused the message itself: hold the issue with its reply, so no
        sender claims more of it and nothing resumes it until an editor does."""
        with self.engine.begin() as connection:
            connection.execute(
                update(ISSUES)
                .where(ISSUES.c.id == self.issue_id, ISSUES.c.status == IssueStatus.SENDING)
                .values(status=IssueStatus.HELD, held_reason=reply)
            )

    def unhold(self) -> bool:
        """An editor resumes a held issue (False if it was not held)."""
        with self.engine.begin() as connection:
            resumed = connection.execute(
                update(ISSUES)
                .where(ISSUES.c.id == self.issue_id, ISSUES.c.status == IssueStatus.HELD)
                .values(status=IssueStatus.SENDING, held_reason=None)
            )
        return resumed.rowcount == 1

    def claim(self, limit: int | None = None) -> list[Claimed]:
        """Reserve the next batch with a lease: first rows of a sender whose lease ran out
        (it crashed), then rows deferred until this run began (what it defers waits for
        a later run), then queued rows, each kind in id order."""
        if limit is None:
            limit, self._batch = self._batch, LARGE_BATCH
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        kinds = [(SENDING, and_(d.status == SENDING, d.lease_until < now))]
        if self._deferred_due:
            kinds.append((DEFERRED, and_(d.status == DEFERRED, d.next_attempt_at <= self.started)))
        kinds.append((QUEUED, d.status == QUEUED))
        claimed: list[int] = []
        with self._transaction() as connection:
            if self._held(connection):
                return []  # held by another sender meanwhile: no more of it goes out
            for status, kind in kinds:
                wanted = limit - len(claimed)
                # one status at a time, so the index hands the rows over in id order
                ids = select(d.id).where(self.of_issue, kind).order_by(d.id).limit(wanted)
                if self.engine.dialect.name == "postgresql":
                    ids = ids.with_for_update(skip_locked=True)
                # UPDATE ... RETURNING: two senders can never claim the same row
                got = (
                    connection.execute(
                        update(DELIVERIES)
                        .where(picked(ids, self.engine.dialect), kind)
                        .values(status=SENDING, claimed_by=self.token, lease_until=lease)
                        .returning(d.id)
                    )
                    .scalars()
                    .all()
                )
                claimed += got
                if status == DEFERRED and len(got) < wanted:
                    self._deferred_due = False  # no more fall due during this run
                if len(claimed) == limit:
                    break
            rows = connection.execute(self._claimed_rows, {"ids": claimed}).all()
        return [Claimed(r[0], r[1], r[2], _recipient(r[5:]), r[3], lease, r[4]) for r in rows]

    def renew(self, delivery_ids: list[int]) -> tuple[list[int], datetime]:
        """Extend the lease on rows this sender holds; returns those it still holds (a
        row whose lease ran out may have been claimed by another sender: it must not be
        sent here) and the new lease."""
        lease = self.clock() + timedelta(seconds=self.settings.lease_seconds)
        statement = (
            update(DELIVERIES)
            .where(d.id.in_(delivery_ids), d.status == SENDING, d.claimed_by == self.token)
            .values(lease_until=lease)
            .returning(d.id)
        )
        with self._transaction() as connection:
            return list(connection.execute(statement).scalars()), lease

    def record(self, outcomes: list[Outcome]) -> list[int]:
        """Record a batch of outcomes in one transaction, each only if this sender still
        holds the row; suppress the addresses that bounced. Returns the subscribers
        bounced for failing HARD_FAILURES times running (see requeue)."""
        now = self.clock()
        rows: list[OutcomeRow] = [
            (
                o.status,
                o.claimed.attempts + (o.status != SKIPPED),
                o.reply,
                o.blames_reader if o.status == FAILED else None,
                o.message_id,
                (o.at or now) if o.status == SENT else None,
                o.next_attempt_at,
                o.at or now,
                o.claimed.delivery_id,
            )
            for o in outcomes
        ]
        failed = [
            o.claimed.recipient.subscriber_id
            for o in outcomes
            if o.status == FAILED and o.blames_reader
        ]
        bounced = [o.claimed.recipient.subscriber_id for o in outcomes if o.bounce]
        struck_out: list[int] = []
        with self._transaction() as connection:
            self._outcomes.write(connection, rows)
            if failed:
                struck_out = failing_for_good(connection, failed)
                bounced += struck_out
            if bounced:
                connection.execute(
                    update(SUBSCRIBERS)
                    .where(s.id.in_(bounced))
                    .values(status=SubscriberStatus.BOUNCED)
                )
        return struck_out

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction on a connection kept for the run: claims and outcomes come many
        times a second, and a pool check-out and reset each time cost more than they do."""
        if self._connection is None:
            self._connection = self.engine.connect()
        with self._writers.held(), self._connection.begin():
            yield self._connection

    def requeue(self, recorded: list[Claimed], struck_out: Sequence[int] = ()) -> None:
        """Undo the recorded failures of these rows (a refusal that turned out to be
        about us, not them): back in the queue as they were before the attempt; the
        subscribers in `struck_out`, bounced by one of these failures, active again."""
        with self.engine.begin() as connection:
            if struck_out:
                connection.execute(
                    update(SUBSCRIBERS)
                    .where(s.id.in_(struck_out), s.status == SubscriberStatus.BOUNCED)
                    .values(status=SubscriberStatus.ACTIVE)
                )
            connection.execute(
                update(DELIVERIES)
                .where(d.id == bindparam("b_id"), d.status == FAILED)
                .values(
                    status=case((d.attempts > 1, DEFERRED), else_=QUEUED),
                    attempts=d.attempts - 1,
                    smtp_response=None,
                    blames_reader=None,
                    next_attempt_at=self.started,
                    first_attempt_at=bindparam("b_first", type_=UTCDateTime()),
                ),
                [{"b_id": c.delivery_id, "b_first": c.first_attempt_at} for c in recorded],
            )

    def release(self) -> None:
        """Hand back every row this sender still holds, untouched (the run is stopping)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        with self.engine.begin() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(self.of_issue, d.status == SENDING, d.claimed_by == self.token)
                .values(
                    status=case((d.attempts == 0, QUEUED), else_=DEFERRED),
                    claimed_by=None,
                    lease_until=None,
                )
            )

    def held_elsewhere(self) -> tuple[int, datetime | None]:
        """Rows another sender holds (or held, until its lease runs out, if it died)."""
        query = select(func.count(), func.max(d.lease_until, type_=UTCDateTime())).where(
            self.of_issue, d.status == SENDING, d.lease_until >= self.clock()
        )
        with self.engine.connect() as connection:
            count, until = connection.execute(query).one()
        return int(count), until

    def finish(self) -> bool:
        """Mark the issue sent once no delivery is left to try; True when it is. One
        statement, so two senders finishing at once need no read-then-write lock."""
        still_open = select(d.id).where(self.of_issue, d.status.in_((QUEUED, SENDING, DEFERRED)))
        with self.engine.begin() as connection:
            connection.execute(
                update(ISSUES)
                .where(
                    ISSUES.c.id == self.issue_id,
                    ISSUES.c.status.not_in((IssueStatus.SENT, IssueStatus.HELD)),
                    ~still_open.exists(),
                )
                .values(status=IssueStatus.SENT, sent_at=self.clock())
            )
            status = connection.execute(
                select(ISSUES.c.status).where(ISSUES.c.id == self.issue_id)
            ).scalar_one()
        return bool(status == IssueStatus.SENT)
