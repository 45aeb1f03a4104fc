"""Bounces and complaints that came back by mail, applied to the readers: the use case
behind `mailer bounces process` (and `bounces fetch`). Each message is read into its
failures (bounces.parse.read_bounce); each failure is matched to a subscriber (the VERP
return path first, then the address it names) and classified by the one table
(replies.report_verdict). A hard bounce bounces the reader at once; a soft one is a
point on their bounce score, as Mailman counts it; a complaint or an unsubscribe by mail
unsubscribes them; a refusal of the message's content or of our sender counts against
nobody. Every counted event is kept (bounce_event), once per message and reader however
often the message is read. One transaction per message: a crash never leaves half a
message applied."""

from __future__ import annotations

import hmac
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, col, select

from mailer.bounces.findings import Action, Bounce, Failure
from mailer.bounces.mailboxes import MailboxError
from mailer.bounces.mime import one_line
from mailer.bounces.parse import read_bounce
from mailer.db import insert_new, session_scope, with_retries
from mailer.errors import SubscriberError
from mailer.messages import id_mac, message_id_tag
from mailer.models import (
    BOUNCE_EVENTS,
    BounceEvent,
    BounceKind,
    Delivery,
    Subscriber,
    SubscriberStatus,
    TransactionalMail,
)
from mailer.replies import Verdict, report_verdict
from mailer.settings import Settings
from mailer.subscribers import normalise_address
from mailer.tokens import VERP_DELIVERY, VERP_MAIL, VERP_UNSUBSCRIBE


class LineKind(StrEnum):
    """What one recipient of one message came to: a BounceKind, or nothing at all."""

    HARD = BounceKind.HARD
    SOFT = BounceKind.SOFT
    COMPLAINT = BounceKind.COMPLAINT
    UNSUBSCRIBE = BounceKind.UNSUBSCRIBE
    IGNORED = "ignored"
    NOT_APPLIED = "not applied"  # the database refused it: left where it was, said why


@dataclass(frozen=True)
class Line:
    """One recipient of one message, as `bounces process` prints it."""

    source: str  # the message's name: its file, or its place in a mailbox
    recipient: str  # the address it names ("" when it names none)
    kind: LineKind
    reason: str  # the report's status and words, and what was done


@dataclass
class BounceReport:
    lines: list[Line] = field(default_factory=list)
    messages: int = 0
    bounced: int = 0  # readers this run marked bounced
    unsubscribed: int = 0  # readers this run unsubscribed (complaints, mails to unsubscribe)
    not_applied: list[str] = field(default_factory=list)  # messages the database refused

    @property
    def counts(self) -> Counter[str]:
        """How many lines of each kind (hard, soft, complaint, unsubscribe, ignored)."""
        return Counter(line.kind for line in self.lines)


def process(
    engine: Engine,
    settings: Settings,
    messages: Iterable[tuple[str, bytes]],
    source_label: str,
    now: datetime,
) -> BounceReport:
    """Every message of `messages` ((name, bytes), as bounces.mailboxes.read_messages
    yields them) read and applied, one transaction each. Each event keeps where its
    message came from: `source_label` ("imap:INBOX") and the message's name, or the name
    alone (a file's path) when the label is ""."""
    report = BounceReport()
    for name, data in messages:
        process_message(engine, settings, (name, data), source_label, now, report)
    return report


def process_message(
    engine: Engine,
    settings: Settings,
    message: tuple[str, bytes],
    source_label: str,
    now: datetime,
    report: BounceReport,
) -> None:
    """One message (name, bytes) read and applied in its own transaction, its lines added
    to `report`: for a reader of a mailbox that moves each message once it is applied."""
    name, data = message
    bounce = read_bounce(data, settings.bounces.address, settings.signing_keys)
    source = f"{source_label} {name}" if source_label else name
    try:
        apply_bounce(engine, settings, bounce, name, source, now, report)
    except (OperationalError, InterfaceError):
        raise  # the database is not there: the run stops, the next one tries again
    except Exception as exc:  # this message alone: the others are applied all the same
        why = f"could not be applied, left where it was: {type(exc).__name__}: {exc}"
        report.lines.append(Line(name, "", LineKind.NOT_APPLIED, one_line(why)[:500]))
        report.not_applied.append(name)


def check_paths(paths: Iterable[Path]) -> None:
    """Every path there and readable, before any message is applied: MailboxError says
    which is not (a file in a folder that cannot be read stops the run where it is met,
    each message before it applied whole)."""
    for path in paths:
        if not path.exists():
            raise MailboxError(
                f"{path}: no such file or folder; give message files, folders of them, "
                "Maildirs or mbox files"
            )
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise MailboxError(f"{path}: cannot be read; check that this user may read it")


def apply_bounce(
    engine: Engine,
    settings: Settings,
    bounce: Bounce,
    name: str,
    source: str,
    now: datetime,
    report: BounceReport,
) -> None:
    """One message's failures applied in one transaction, its lines added to `report`."""
    report.messages += 1
    if bounce.ignored or not bounce.failures:
        why = bounce.ignored or "names no recipient that failed"
        report.lines.append(Line(name, "", LineKind.IGNORED, why))
        return
    applied = with_retries(lambda: _apply_message(engine, settings, bounce, name, source, now))
    for line, change in applied:
        report.lines.append(line)
        report.bounced += change == SubscriberStatus.BOUNCED
        report.unsubscribed += change == SubscriberStatus.UNSUBSCRIBED


# what one failure did: its line, and the status the reader was moved to ("" if none)
Applied = tuple[Line, str]


@dataclass(frozen=True)
class _Message:
    """One message being applied: what it is, where it came from, and its time."""

    bounce: Bounce
    name: str
    source: str
    when: datetime  # the report's own date (never later than now), for the score


def _apply_message(
    engine: Engine, settings: Settings, bounce: Bounce, name: str, source: str, now: datetime
) -> list[Applied]:
    message = _Message(bounce, name, source, min(_utc(bounce.date), now) if bounce.date else now)
    seen: set[int] = set()  # the readers this message counted against already
    with session_scope(engine) as session:
        return [
            _apply_failure(session, engine, settings, message, failure, seen)
            for failure in bounce.failures
        ]


def _apply_failure(
    session: Session,
    engine: Engine,
    settings: Settings,
    message: _Message,
    failure: Failure,
    seen: set[int],
) -> Applied:
    kind = _kind(message.bounce, failure)
    if not isinstance(kind, BounceKind):
        return _line(message, failure, LineKind.IGNORED, kind)
    target = find_target(session, settings, message.bounce, failure)
    if not isinstance(target, Target):
        return _line(message, failure, LineKind(kind), f"{_words(failure)}: {target}")
    if target.subscriber_id in seen:
        why = f"{_words(failure)}: the same reader again, counted once"
        return _line(message, failure, LineKind(kind), why)
    seen.add(target.subscriber_id)
    return _count(session, engine, settings, message, failure, kind, target)


@dataclass(frozen=True)
class Target:
    """Whom a failure is about, and the issue and delivery, when known."""

    subscriber_id: int
    issue_id: int | None = None
    delivery_id: int | None = None


def _line(message: _Message, failure: Failure, kind: LineKind, why: str) -> Applied:
    return Line(message.name, failure.recipient, kind, why), ""


def _kind(bounce: Bounce, failure: Failure) -> BounceKind | str:
    """The kind of event a failure is, or why it counts against nobody."""
    if failure.action == Action.COMPLAINT:
        return BounceKind.COMPLAINT
    if failure.action == Action.UNSUBSCRIBE or (bounce.verp and bounce.verp[0] == VERP_UNSUBSCRIBE):
        return BounceKind.UNSUBSCRIBE
    verdict = report_verdict(failure.action, failure.status, failure.diagnostic)
    words = _words(failure)
    if verdict == Verdict.BOUNCE:
        return BounceKind.HARD
    if verdict == Verdict.SOFT:
        return BounceKind.SOFT
    if verdict == Verdict.SENT:
        return f"{words}: a report of a delivery, nothing to do"
    if verdict == Verdict.STOP:
        return f"{words}: our sender was refused, which counts against nobody"
    return f"{words}: the message's content was refused, which counts against nobody"


_SAID = {Action.COMPLAINT: "marked as spam", Action.UNSUBSCRIBE: "a mail to unsubscribe"}


def _words(failure: Failure) -> str:
    """The report's status and words, short: "5.1.1 User unknown"."""
    words = failure.diagnostic.strip() or _SAID.get(failure.action, "")
    if failure.status and failure.status not in words:
        words = f"{failure.status} {words}"
    words = " ".join(words.split())
    return (words[:157] + "...") if len(words) > 160 else (words or "no status given")


# an issue's id has at most 9 digits here: a longer number is no Message-ID of ours (and
# too large for the database's integer, which refused the whole message)
# our Message-ID: <ISSUE.TAG@domain>, TAG keyed on the issue and the reader (messages.py);
# an issue's id has at most 9 digits here: a longer number is no Message-ID of ours (and
# too large for the database's integer, which refused the whole message)
_MESSAGE_ID = re.compile(r"<?(\d{1,9})\.([0-9a-f]{20})@")


def find_target(
    session: Session, settings: Settings, bounce: Bounce, failure: Failure
) -> Target | str:
    """Whom a failure is about: the delivery or mail its VERP return path names (signed:
    it holds even when the report names a forwarded address), else the subscriber of the
    address it names, with the issue and delivery when the report quotes our Message-ID
    for that reader's copy; or why nobody.

    With [bounces] address set, every message goes out with a signed return path, and a
    report that carries neither it nor our Message-ID for the reader it names is one
    anybody could write: it counts against nobody."""
    if bounce.verp:
        kind, number = bounce.verp
        if kind in (VERP_DELIVERY, VERP_UNSUBSCRIBE):
            delivery = session.get(Delivery, number)
            if delivery is not None:
                return Target(delivery.subscriber_id, delivery.issue_id, delivery.id)
        if kind == VERP_MAIL:
            mail = session.get(TransactionalMail, number)
            if mail is not None and mail.subscriber_id is not None:
                return Target(mail.subscriber_id)
    address = _address(failure.recipient)
    found = session.exec(select(Subscriber.id).where(Subscriber.email == address)).first()
    if not address:
        return "names no one, nothing changed"
    if found is None:
        return f"{failure.recipient} is not a subscriber, nothing changed"
    issue = _issue_quoted(bounce.original_message_id, found, settings.signing_keys)
    if issue is not None:
        query = select(Delivery.id).where(
            Delivery.issue_id == issue, Delivery.subscriber_id == found
        )
        delivery_id = session.exec(query).first()
        if delivery_id is not None:
            return Target(found, issue, delivery_id)
    if settings.bounces.address and issue is None:
        return (
            "neither our signed return path nor our Message-ID for that reader: "
            "not counted (anybody could write such a report)"
        )
    return Target(found)


def _issue_quoted(message_id: str, subscriber_id: int, keys: list[str]) -> int | None:
    """The issue whose copy to this reader `message_id` is, when it is ours (keyed)."""
    quoted = _MESSAGE_ID.match(message_id.strip())
    if quoted is None:
        return None
    issue, tag = int(quoted[1]), quoted[2]
    ours = (message_id_tag(id_mac(key), issue, subscriber_id) for key in keys)
    if any(hmac.compare_digest(tag, expected) for expected in ours):
        return issue
    return None


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(words: str) -> str:
    """A report's words as stored: without control characters (PostgreSQL refuses a NUL
    in text, and a report may encode one)."""
    return _CONTROLS.sub("", words)


def _address(recipient: str) -> str:
    """The address as the list keeps it (normalised as subscribers are), "" if none."""
    raw = recipient.strip().strip("<>")
    if not raw:
        return ""
    try:
        return normalise_address(raw)
    except SubscriberError:
        return raw.lower()


def _count(
    session: Session,
    engine: Engine,
    settings: Settings,
    message: _Message,
    failure: Failure,
    kind: BounceKind,
    target: Target,
) -> Applied:
    """The event stored (once per message and reader) and its effect on the reader."""
    bounce, line_kind, words = message.bounce, LineKind(kind), _words(failure)
    reader = session.get(Subscriber, target.subscriber_id, with_for_update=True)
    assert reader is not None  # the foreign key holds
    if reader.email.startswith("erased:"):  # nothing more of theirs is kept
        return _line(message, failure, line_kind, f"{words}: erased, nothing kept")
    stored = session.connection().execute(
        insert_new(engine, BOUNCE_EVENTS)
        .values(
            subscriber_id=target.subscriber_id,
            issue_id=target.issue_id,
            delivery_id=target.delivery_id,
            kind=kind,
            status=_text(failure.status)[:20],
            reason=_text(failure.diagnostic or failure.status)[:1000],
            source=message.source[:500],
            message_key=bounce.key,
            occurred_at=_utc(bounce.date) if bounce.date else None,
            recorded_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(BOUNCE_EVENTS.c.id)
    )
    if stored.scalar() is None:  # the same message read before: it counted then
        return _line(message, failure, line_kind, f"{words}: counted already")
    done, change = _effect(reader, kind, message.when, settings)
    session.add(reader)
    return Line(message.name, failure.recipient, line_kind, f"{words}: {done}"), change


def _effect(
    reader: Subscriber, kind: BounceKind, when: datetime, settings: Settings
) -> tuple[str, str]:
    """What the event does to the reader: (what it did, the status it moved them to)."""
    if kind in (BounceKind.COMPLAINT, BounceKind.UNSUBSCRIBE):
        # a complaint also moves a bounced reader to unsubscribed: never reactivated
        if reader.status == SubscriberStatus.UNSUBSCRIBED:
            return "already unsubscribed", ""
        reader.status = SubscriberStatus.UNSUBSCRIBED
        reader.unsubscribed_at = datetime.now(UTC)
        return "unsubscribed", SubscriberStatus.UNSUBSCRIBED
    if reader.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return f"already {reader.status}: recorded, nothing changed", ""
    if kind == BounceKind.HARD:
        reader.status = SubscriberStatus.BOUNCED
        return "bounced", SubscriberStatus.BOUNCED
    return _score(reader, when, settings)


def _score(reader: Subscriber, when: datetime, settings: Settings) -> tuple[str, str]:
    """A soft bounce as Mailman counts it: at most a point a day; the score starts again
    from nothing when [bounces] score_days have passed since its last point; the reader
    is bounced when it reaches [bounces] soft_limit."""
    limit, last = settings.bounces.soft_limit, reader.bounce_score_at
    if last is not None and when.date() <= _utc(last).date():
        return f"bounce score {reader.bounce_score} of {limit} (a point a day at most)", ""
    if last is None or when - _utc(last) >= timedelta(days=settings.bounces.score_days):
        reader.bounce_score = 0
    reader.bounce_score += 1
    reader.bounce_score_at = when
    if reader.bounce_score >= limit:
        reader.status = SubscriberStatus.BOUNCED
        return f"bounce score {reader.bounce_score} of {limit}: bounced", SubscriberStatus.BOUNCED
    return f"bounce score {reader.bounce_score} of {limit}", ""


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# -- what came back about one reader (`mailer subscribers show`, the desk) -------------

HISTORY_LIMIT = 100


def bounce_history(
    engine: Engine, subscriber_id: int, limit: int = HISTORY_LIMIT
) -> list[BounceEvent]:
    """The bounces, complaints and mails to unsubscribe kept for a reader, latest first,
    at most `limit`."""
    query = (
        select(BounceEvent)
        .where(BounceEvent.subscriber_id == subscriber_id)
        .order_by(col(BounceEvent.id).desc())
        .limit(limit)
    )
    with Session(engine) as session:
        return list(session.exec(query).all())


@dataclass(frozen=True)
class ReaderFacts:
    subscriber: Subscriber
    history: list[BounceEvent]  # latest first, at most HISTORY_LIMIT


def reader_facts(engine: Engine, email: str) -> ReaderFacts:
    """A reader by their address, with what came back about them; SubscriberError if
    the address is not one or not on the list."""
    address = normalise_address(email)
    with Session(engine) as session:
        found = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
    if found is None or found.id is None:
        raise SubscriberError(f"{address} is not on the list")
    return ReaderFacts(found, bounce_history(engine, found.id))
