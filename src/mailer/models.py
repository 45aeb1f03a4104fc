"""The tables: subscribers, articles, issues and the outbox of deliveries. Times are
stored in UTC and come back timezone-aware on SQLite and PostgreSQL alike (columns.py)."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from enum import StrEnum, nonmember
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Index,
    Insert,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Column, Field, SQLModel

from mailer.columns import UTCDateTime as UTCDateTime
from mailer.columns import utcnow as utcnow
from mailer.columns import when as _when


# Statuses are stored as their plain string values; a member equals its value, so rows
# read back compare equal to the members on SQLite and PostgreSQL alike.
class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    ALL = nonmember((PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED))


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    # the subscriber left or bounced after the issue was queued: never sent
    SKIPPED = "skipped"
    ALL = nonmember((QUEUED, SENDING, SENT, DEFERRED, FAILED, SKIPPED))


class IssueStatus(StrEnum):
    # draft [-> scheduled] -> sending -> sent, the last from recorded outcomes only; a
    # draft or scheduled issue can be cancelled (and later sent or scheduled again)
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    SENDING = "sending"
    # the relay refused the message itself: nothing more goes out, and nothing resumes
    # it by itself, until an editor does (held_reason: the relay's reply)
    HELD = "held"
    SENT = "sent"
    # what the public may read online, and what can no longer change
    STARTED = nonmember(frozenset((SENDING, HELD, SENT)))


def new_public_id() -> str:
    """A subscriber's name in links: random, so a token tells nothing of the list's size."""
    return secrets.token_urlsafe(16)


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # what signed links carry instead of the id, which counts the readers
    public_id: str = Field(
        default_factory=new_public_id,
        sa_column=Column(Text, nullable=False, unique=True, default=new_public_id),
    )
    # normalised by email-validator; lower-cased for the uniqueness check; an erased
    # subscriber keeps only "erased:hmac:<HMAC-SHA256 under the purge key>" here (older
    # ones "erased:<sha256>") so the address cannot return by accident
    email: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    name: str | None = None
    status: str = Field(default=SubscriberStatus.PENDING, index=True)
    frequency: str = "every"
    # the desk lists readers newest first, a page at a time
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), index=True)
    )
    confirmed_at: datetime | None = _when()
    unsubscribed_at: datetime | None = _when()
    # double opt-in: when the last confirmation link went out, and the address the
    # confirmation came from (with confirmed_at, the proof of consent)
    confirmation_sent_at: datetime | None = _when()
    consent_ip: str | None = None
    # a donor gets the thank-you block in place of the appeal until then: after a gift
    # matched to their address, their own word (preferences page) or an admin's
    donor_until: datetime | None = _when()
    donor_by: str | None = None  # DonorBy
    # soft bounces as Mailman counts them: at most a point a day, bounced at [bounces]
    # soft_limit; the score lapses [bounces] score_days after its last point
    bounce_score: int = 0
    bounce_score_at: datetime | None = _when()  # when the score last gained a point
    # the languages the reader reads, comma-separated, the one mailer writes to them in
    # first ("fa-AF,en"); None: the publication's language alone
    languages: str | None = None


class Article(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    guid: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # "sha256:<hex>" of the cleaned text: the same article, whether or not a url came with it
    fingerprint: str = Field(default="", index=True)
    url: str | None = None
    title: str
    author: str | None = None
    published_at: datetime | None = _when()
    summary: str = ""
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    source: str = ""
    # BCP 47, when the source says (or its letters show) it is not the publication's
    language: str | None = None
    # JSON: the blocks the cleaner dropped as boilerplate, for the editor to put back
    left_out: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    ingested_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))


class Issue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = "article"
    # "article:<id>" or "digest:<ISO week>": one issue per key, however often it is asked for
    key: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    subject: str
    preheader: str = ""
    article_ids: str = ""  # comma-separated Article ids, in the order shown
    html: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = "draft"  # IssueStatus
    scheduled_at: datetime | None = _when()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    sent_at: datetime | None = _when()
    # a digest: the articles published (or brought in) after period_start, up to period_end
    period_start: datetime | None = _when()
    period_end: datetime | None = _when()
    # why a held issue is held: the relay's reply
    held_reason: str | None = None
    # what an editor typed at the desk instead of the subject and preheader the article
    # gives: kept when the issue is rendered again
    edited_subject: str | None = None
    edited_preheader: str | None = None
    # what readers write on a transfer or a Vipps gift ("DMC-2640", references.py); the
    # issues from before references have none
    reference: str | None = Field(default=None, sa_column=Column(Text, unique=True))
    # the donors' copy: the thank-you block in place of the appeal (empty: as the others)
    thanks_html: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    thanks_text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # the images the HTML shows by cid: (the appeal's QR codes), as JSON: built once
    images: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))

    @property
    def article_id_list(self) -> list[int]:
        """The ids in `article_ids`, in the order shown."""
        return [int(part) for part in self.article_ids.split(",") if part]


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        # a claim reads the next rows of one status in id order, straight off this index
        Index("ix_delivery_issue_status_id", "issue_id", "status", "id"),
        # a reader's deliveries, latest first (the desk's reader page, a purge)
        Index("ix_delivery_subscriber_id", "subscriber_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id")
    subscriber_id: int = Field(foreign_key="subscriber.id")
    status: str = DeliveryStatus.QUEUED
    attempts: int = 0
    first_attempt_at: datetime | None = _when()
    next_attempt_at: datetime | None = _when()
    # the sender run holding the row while status is "sending", and until when
    claimed_by: str | None = None
    lease_until: datetime | None = _when()
    message_id: str | None = None
    smtp_response: str | None = None
    # a failure that counts against the reader (replies.Verdict.blames_reader): only
    # these make an address bounced after repeated failures
    blames_reader: bool | None = None
    sent_at: datetime | None = _when()
    # the reader was a donor when queued: their copy thanks instead of asking
    donor: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    # the issue's variant the reader gets (models_editions.IssueVariant, their language's
    # edition), chosen when queued; None: the issue's own (the publication's language)
    variant_id: int | None = None


class MailKind(StrEnum):
    CONFIRMATION = "confirmation"  # the double opt-in link
    PASSWORD_RESET = "password-reset"  # an editor's link to set a new desk password
    GIFT_THANKS = "gift-thanks"  # a reader's thanks for a gift (gift_thanks.py)
    WELCOME = "welcome"  # the first mail after a reader confirms
    FOLLOW_UP = "follow-up"  # a later mail of the welcome series ([welcome] follow_ups)


class MailStatus(StrEnum):
    QUEUED = "queued"  # due at next_attempt_at
    SENDING = "sending"  # claimed by a sender until lease_until
    SENT = "sent"
    FAILED = "failed"  # refused for good, or retries used up
    SKIPPED = "skipped"  # no longer wanted when its turn came (confirmed, left, erased)


# at most one confirmation waiting per subscriber, however many requests come at once
_OPEN_MAIL = text("status IN ('queued', 'sending')")
# Partial indexes, their WHERE kept in `info` and given to a dialect by
# declare_partial_indexes: naming a dialect in Index(postgresql_where=...) loads that
# dialect's whole package (PostgreSQL's, with its asyncpg module) at import: 30 ms and
# more of every command's start on SQLite.
_OPEN_MAIL_INDEX = Index(
    "ux_transactional_mail_open", "subscriber_id", "kind", unique=True, info={"where": _OPEN_MAIL}
)
PARTIAL_INDEXES = (_OPEN_MAIL_INDEX,)


def declare_partial_indexes(dialect: str) -> None:
    """Give the partial indexes their WHERE in `dialect`'s words (sqlite, postgresql), so
    DDL and schema comparisons on that dialect see them whole. db.create_db_engine does
    it for the engine it makes, whose dialect is loaded by then anyway."""
    for index in PARTIAL_INDEXES:
        index.dialect_kwargs[f"{dialect}_where"] = index.info["where"]


class TransactionalMail(SQLModel, table=True):
    """A mail to one subscriber outside any issue (the confirmation link), queued by the
    site and sent by a background sender: recorded, retried with backoff, and kept
    across a restart. Its content (and the link's token) is made when it is sent.

    A sign-up queues one before anybody looks the address up (so the site does the same
    work for every address): `subscriber_id` is empty and `email`, `name`, `frequency`
    hold what the form said, until the sender makes the request and clears them."""

    __tablename__ = "transactional_mail"
    __table_args__ = (
        _OPEN_MAIL_INDEX,
        Index("ix_transactional_mail_status_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id")
    # a mail to an editor (the password reset link) rather than to a reader
    editor_id: int | None = None
    email: str | None = None
    name: str | None = None
    frequency: str | None = None
    kind: str = MailKind.CONFIRMATION
    status: str = MailStatus.QUEUED
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    lease_until: datetime | None = _when()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    sent_at: datetime | None = _when()
    last_reply: str | None = None
    # which mail of a series it is (a follow-up's name), when its kind has several
    step: str | None = None
    # a sign-up's languages as the form gave them, until the sender makes the request
    languages: str | None = None


class PolledSource(SQLModel, table=True):
    """A place the scheduler looks for new articles (a folder, later a feed), and what
    it remembers between looks."""

    __tablename__ = "polled_source"

    id: int | None = Field(default=None, primary_key=True)
    location: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # the first look only takes stock: what was there already is never sent by itself
    first_polled_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    last_polled_at: datetime | None = _when()
    etag: str | None = None
    last_modified: str | None = None


class IssueLink(SQLModel, table=True):
    """A link an issue carries through base_url/r/<reference>/<link_id> (its appeal's, or
    all of them), and how often it was followed: per issue and link, never per reader."""

    __tablename__ = "issue_link"

    issue_id: int = Field(foreign_key="issue.id", primary_key=True)
    link_id: str = Field(sa_column=Column(Text, primary_key=True))
    url: str = Field(sa_column=Column(Text, nullable=False))
    appeal: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    clicks: int = 0


class DonorBy(StrEnum):
    GIFT = "gift"  # a gift matched to the reader's address
    READER = "reader"  # "I already support you" on the preferences page
    ADMIN = "admin"  # `mailer subscribers donor`


class Gift(SQLModel, table=True):
    """Money that arrived (a bank statement's credit, a Vipps report's line, a row of a
    plain CSV), attributed to the issue whose reference it carries, if any."""

    id: int | None = Field(default=None, primary_key=True)
    source: str  # GiftSource
    # what makes the same gift in the same or another file the same: never counted twice
    source_key: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    received_on: date = Field(sa_column=Column(Date, nullable=False, index=True))
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))  # øre, cents
    currency: str
    reference: str | None = None  # the issue reference found in it
    issue_id: int | None = Field(default=None, foreign_key="issue.id", index=True)
    remittance: str = Field(default="", sa_column=Column(Text, nullable=False))
    payer_name: str | None = None
    email: str | None = None
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", index=True)
    imported_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    # when its thank-you mail was queued ([donation] thank_gift_mail): once per gift
    thanked_at: datetime | None = _when()


class BounceKind(StrEnum):
    HARD = "hard"  # the address is gone: the reader is bounced at once
    SOFT = "soft"  # a mailbox problem that may pass: a point on the bounce score
    COMPLAINT = "complaint"  # marked as spam (an ARF report): unsubscribed at once
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe mailto: address


class BounceEvent(SQLModel, table=True):
    """Something that came back about a reader after the relay took the message: a
    bounce, a complaint, an unsubscribe by mail. Kept to show why a reader was bounced
    or left (`mailer subscribers show`, the desk); a purge erases them."""

    __tablename__ = "bounce_event"
    __table_args__ = (
        # the same message read twice (a file processed again) counts once
        UniqueConstraint("message_key", "subscriber_id", name="uq_bounce_event_message"),
        Index("ix_bounce_event_subscriber_id", "subscriber_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id")
    issue_id: int | None = Field(default=None, foreign_key="issue.id")
    delivery_id: int | None = None  # from the VERP return path, when it had one
    kind: str  # BounceKind
    status: str = ""  # the RFC 3463 status the report gave ("5.1.1"), if any
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    source: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # sha256 of the message it came in (with the recipient): what makes it the same
    message_key: str = Field(sa_column=Column(Text, nullable=False))
    occurred_at: datetime | None = _when()  # the report's own date, if it had one
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))


class ServiceBeat(SQLModel, table=True):
    """A long-running part (the scheduler, the desk's sender) saying it is alive (beats.py)."""

    __tablename__ = "service_beat"

    name: str = Field(sa_column=Column(Text, primary_key=True))
    host: str = ""
    pid: int = 0
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))
    beat_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))


# The tables as SQLAlchemy Core sees them, for set-based statements (no ORM objects per row).
def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


SUBSCRIBERS = _table(Subscriber)
ARTICLES = _table(Article)
ISSUES = _table(Issue)
ISSUE_LINKS = _table(IssueLink)
GIFTS = _table(Gift)
DELIVERIES = _table(Delivery)
TRANSACTIONAL_MAILS = _table(TransactionalMail)
BOUNCE_EVENTS = _table(BounceEvent)


def queued_mail(kind: MailKind, now: datetime, **to: object) -> Insert:
    """A transactional mail of `kind` queued, due `now`, for `to` (a subscriber_id, an
    editor_id, an address)."""
    return TRANSACTIONAL_MAILS.insert().values(
        kind=kind, status=MailStatus.QUEUED, attempts=0, next_attempt_at=now, created_at=now, **to
    )


# moved out for room; still importable from here, and known to the metadata
from mailer.models_desk import AUDIT_EVENTS as AUDIT_EVENTS  # noqa: E402
from mailer.models_desk import EDITORS as EDITORS  # noqa: E402
from mailer.models_desk import AuditAction as AuditAction  # noqa: E402
from mailer.models_desk import AuditEvent as AuditEvent  # noqa: E402
from mailer.models_desk import Editor as Editor  # noqa: E402
from mailer.models_desk import EditorRole as EditorRole  # noqa: E402
from mailer.models_editions import ISSUE_VARIANTS as ISSUE_VARIANTS  # noqa: E402
from mailer.models_editions import IssueVariant as IssueVariant  # noqa: E402
