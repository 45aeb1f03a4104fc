"""Transactional mail: one message to one person outside any issue: a subscriber's double
opt-in link, a reader's thanks for a gift (gift_thanks.py), the welcome mail and its
follow-ups (welcome.py), or an editor's link to set
their desk password. The site only queues it, in the database, and answers at once, so
the answer is the same, in the same time, whoever the address belongs to and whether the
relay is up or down. A sender then sends what is due: a thread of `mailer serve`
(`BackgroundSender`), the scheduler's outbox job and `mailer send --resume`
(`send_queued`). A temporary failure is retried with backoff; a refusal of the recipient
fails the mail for good; a queued mail survives a restart.

Each mail is claimed with a compare-and-set on its row, so however many senders drain
the queue at once (the site, the scheduler, cron), each mail goes out once."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from mailer.errors import MailerError, SubscriberError
from mailer.gift_thanks import thanks_mail
from mailer.i18n import own_language
from mailer.links import confirm_url
from mailer.messages import MessageBuilder, OutgoingMessage, Recipient, with_return_path
from mailer.models import (
    EDITORS,
    SUBSCRIBERS,
    TRANSACTIONAL_MAILS,
    MailKind,
    MailStatus,
    SubscriberStatus,
    queued_mail,
    utcnow,
)
from mailer.password_links import make_reset_token, password_mail, reset_url
from mailer.render import render_confirmation
from mailer.settings import Settings
from mailer.smtp import ConnectionFailure, PermanentFailure, SMTPTransport, TemporaryFailure
from mailer.subscribers import checked_request, request_subscription
from mailer.waking import WakingThread
from mailer.welcome import KINDS as WELCOME_KINDS
from mailer.welcome import welcome_mail

log = logging.getLogger(__name__)

# A reader waits for this mail: its retries start sooner than an issue's ([delivery]
# retry_base_seconds, if that is shorter), doubling up to [delivery] retry_hours.
RETRY_BASE_SECONDS = 30.0
# How often the site's sender looks for retries that have come due.
POLL_SECONDS = 5.0

MAILS = TRANSACTIONAL_MAILS


def queue_sign_up(
    engine: Engine, email: str, name: str | None, frequency: str, languages: str | None = None
) -> None:
    """Record a sign-up from the form, checked (SubscriberError) but not looked up: the
    same work, and so the same time, whether the address is new, pending, subscribed or
    erased. The sender makes the request (`request_subscription`) and sends the link if
    one is due. `languages`: as stored (reader_languages.checked_languages)."""
    address, name, frequency = checked_request(email, name, frequency)
    form = {"email": address, "name": name, "frequency": frequency, "languages": languages}
    with engine.begin() as connection:
        connection.execute(queued_mail(MailKind.CONFIRMATION, utcnow(), **form))


def queue_confirmation(engine: Engine, subscriber_id: int) -> bool:
    """Queue a confirmation link for the subscriber, due now; False if one is waiting to
    be sent already (the database keeps at most one, even for requests at the same time)."""
    try:
        with engine.begin() as connection:
            connection.execute(
                queued_mail(MailKind.CONFIRMATION, utcnow(), subscriber_id=subscriber_id)
            )
    except IntegrityError:
        return False
    return True


def queue_password_mail(
    engine: Engine, editor_id: int | None = None, email: str | None = None
) -> None:
    """Queue the link that sets an editor's password: for an account (`editor_id`, an
    admin added it), or for whoever has the address (`email`, a forgotten password: the
    sender looks it up, and sends nothing if nobody has it)."""
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            queued_mail(MailKind.PASSWORD_RESET, now, editor_id=editor_id, email=email)
        )


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    attempts: int  # this attempt included
    created_at: datetime
    subscriber_id: int | None  # None: a sign-up still to be made
    email: str
    name: str | None
    status: str
    frequency: str | None = None
    public_id: str | None = None  # what the link names (tokens.py)
    editor_id: int | None = None  # a mail to an editor (MailKind.PASSWORD_RESET)
    step: str | None = None  # a follow-up's name (MailKind.FOLLOW_UP)
    languages: str | None = None  # the reader's (subscriber.languages), once the row exists


def send_queued(
    engine: Engine,
    settings: Settings,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Counter[str]:
    """Send every transactional mail that is due, one connection for all; how many ended
    in each state. An unreachable or refusing relay ends the run: the rest stay queued."""
    counts: Counter[str] = Counter()
    transport: SMTPTransport | None = None
    try:
        while stop is None or not stop.is_set():
            claimed = _claim_next(engine, settings, clock)
            if claimed is None:
                break
            if claimed.kind == MailKind.PASSWORD_RESET:
                build = _editor_mail(engine, settings, claimed, clock, counts)
            elif claimed.kind == MailKind.GIFT_THANKS:
                build = _thanks_mail(engine, settings, claimed, counts)
            elif claimed.kind in WELCOME_KINDS:
                build = _welcome_mail(engine, settings, claimed, counts)
            else:
                build = _reader_mail(engine, settings, claimed, counts)
            if build is None:
                continue
            if transport is None:
                transport = SMTPTransport(settings.smtp, local_hostname=_domain(settings))
            outcome = _attempt(settings, transport, claimed, clock, build)
            _record(engine, claimed.id, outcome.status, outcome.reply, outcome.retry_at, clock)
            counts[outcome.status] += 1
            if not outcome.go_on:
                break
    finally:
        if transport is not None:
            transport.close()
    return counts


Build = Callable[[], OutgoingMessage]


def _reader_mail(
    engine: Engine, settings: Settings, claimed: _Claimed, counts: Counter[str]
) -> Build | None:
    """How to build a reader's confirmation, or None if none is due after all."""
    if claimed.subscriber_id is None:
        made = _make_request(engine, settings, claimed)
        if made is None:  # no link due: nothing is kept of the request
            return None
        claimed = made
    if claimed.status != SubscriberStatus.PENDING or claimed.email.startswith("erased:"):
        # confirmed with an earlier link, left, or erased since it was queued
        _record(engine, claimed.id, MailStatus.SKIPPED, f"subscriber is {claimed.status}")
        counts[MailStatus.SKIPPED] += 1
        return None
    return partial(_build, settings, claimed)


def _thanks_mail(
    engine: Engine, settings: Settings, claimed: _Claimed, counts: Counter[str]
) -> Build | None:
    """How to build a reader's thanks for a gift, or None if it is due no more."""
    reader = Recipient(
        claimed.subscriber_id or 0, claimed.email, claimed.name, claimed.public_id or ""
    )
    build = thanks_mail(engine, settings, reader, claimed.status, claimed.created_at)
    if build is None:  # left, erased, or the gifts are no longer theirs
        _record(engine, claimed.id, MailStatus.SKIPPED, f"no thanks due (reader {claimed.status})")
        counts[MailStatus.SKIPPED] += 1
    return build


def _welcome_mail(
    engine: Engine, settings: Settings, claimed: _Claimed, counts: Counter[str]
) -> Build | None:
    """How to build a reader's welcome or follow-up, or None if it is due no more."""
    reader = Recipient(
        claimed.subscriber_id or 0, claimed.email, claimed.name, claimed.public_id or ""
    )
    made = welcome_mail(engine, settings, reader, claimed.status, claimed.kind, claimed.step)
    if isinstance(made, str):  # why not
        _record(engine, claimed.id, MailStatus.SKIPPED, made)
        counts[MailStatus.SKIPPED] += 1
        return None
    return made


def _editor_mail(
    engine: Engine,
    settings: Settings,
    claimed: _Claimed,
    clock: Callable[[], datetime],
    counts: Counter[str],
) -> Build | None:
    """How to build an editor's password link, or None if nobody is to get it."""
    editor = _editor_of(engine, claimed)
    if editor is None:
        if claimed.editor_id is not None:
            _record(engine, claimed.id, MailStatus.SKIPPED, "the account was removed")
            counts[MailStatus.SKIPPED] += 1
        return None
    return partial(_password_mail, settings, editor, clock)


@dataclass(frozen=True)
class _Outcome:
    status: str
    reply: str
    retry_at: datetime | None = None  # queued again for then
    go_on: bool = True  # with the other mails due (the relay is not the problem)


def _attempt(
    settings: Settings,
    transport: SMTPTransport,
    claimed: _Claimed,
    clock: Callable[[], datetime],
    build: Build,
) -> _Outcome:
    try:
        message = with_return_path(settings, build(), claimed.id)
        reply = transport.send(message.sender, message.recipient, message.data)
    except PermanentFailure as exc:  # the relay refused this recipient for good
        return _Outcome(MailStatus.FAILED, exc.reply)
    except ConnectionFailure as exc:  # the relay is down or turned us away: later
        return _retry(settings, claimed, exc.reply, clock, go_on=False)
    except TemporaryFailure as exc:
        return _retry(settings, claimed, exc.reply, clock)
    except MailerError as exc:  # refused every message (sender, login, content): later
        log.error("transactional mail %s not sent: %s", claimed.id, exc)
        return _retry(settings, claimed, str(exc), clock, go_on=False)
    return _Outcome(MailStatus.SENT, reply)


def _build(settings: Settings, claimed: _Claimed) -> OutgoingMessage:
    """The message, made now: the link's token dates from the sending, not the queueing.
    It carries nothing a stranger typed into the form but the address: the name waits
    until the reader confirms, so nobody can put words in a signed mail from the newsroom
    to somebody else's inbox. It is in the language the reader chose (their row's)."""
    assert claimed.subscriber_id is not None and claimed.public_id is not None
    url = confirm_url(settings, claimed.public_id)
    language = own_language(claimed.languages, settings.publication.language)
    rendered = render_confirmation(settings, claimed.email, None, url, language)
    builder = MessageBuilder(settings, rendered)
    recipient = Recipient(claimed.subscriber_id, claimed.email, None, claimed.public_id)
    return builder.build(recipient)


@dataclass(frozen=True)
class _Editor:
    id: int
    email: str
    password_hash: str


def _editor_of(engine: Engine, claimed: _Claimed) -> _Editor | None:
    """The editor a password mail goes to, or None: an account removed since, or an
    address nobody has (that mail is deleted: nothing is kept of it). A mail queued for
    an address becomes the account's, the address cleared."""
    columns = select(EDITORS.c.id, EDITORS.c.email, EDITORS.c.password_hash)
    mail = MAILS.c.id == claimed.id
    with engine.begin() as connection:
        if claimed.editor_id is not None:
            row = connection.execute(columns.where(EDITORS.c.id == claimed.editor_id)).first()
            return _Editor(*tuple(row)) if row is not None else None
        row = connection.execute(columns.where(EDITORS.c.email == claimed.email)).first()
        if row is None:
            connection.execute(delete(MAILS).where(mail))
            return None
        connection.execute(update(MAILS).where(mail).values(editor_id=row[0], email=None))
        return _Editor(*tuple(row))


def _password_mail(
    settings: Settings, editor: _Editor, clock: Callable[[], datetime]
) -> OutgoingMessage:
    """The link is made now, so its hour runs from the sending."""
    token = make_reset_token(settings.signing_keys, editor.id, editor.password_hash, clock())
    return password_mail(settings, editor.email, reset_url(settings, token))


def _retry(
    settings: Settings,
    claimed: _Claimed,
    reply: str,
    clock: Callable[[], datetime],
    go_on: bool = True,
) -> _Outcome:
    """Queued again with exponential backoff, or failed once the retries are used up:
    [delivery] max_attempts tries and retry_hours since it was queued."""
    rules, now = settings.delivery, clock()
    if claimed.attempts >= rules.max_attempts and now >= claimed.created_at + timedelta(
        hours=rules.retry_hours
    ):
        return _Outcome(MailStatus.FAILED, reply, go_on=go_on)
    base = min(RETRY_BASE_SECONDS, rules.retry_base_seconds)
    delay = min(base * 2 ** (claimed.attempts - 1), 6 * 3600.0)
    return _Outcome(MailStatus.QUEUED, reply, now + timedelta(seconds=delay), go_on)


def _claim_next(
    engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> _Claimed | None:
    """The next due mail, now held by this sender until its lease ends (a sender that
    died lets go of it that way)."""
    now = clock()
    due = or_(
        and_(MAILS.c.status == MailStatus.QUEUED, MAILS.c.next_attempt_at <= now),
        and_(MAILS.c.status == MailStatus.SENDING, MAILS.c.lease_until < now),
    )
    lease = now + timedelta(seconds=settings.delivery.lease_seconds)
    for _ in range(10):  # another sender may take the one picked first: pick again
        with engine.connect() as connection:
            mail_id = connection.execute(
                select(MAILS.c.id).where(due).order_by(MAILS.c.next_attempt_at).limit(1)
            ).scalar()
        if mail_id is None:
            return None
        # the write first, then the read: SQLite takes its write lock (waiting its turn)
        # rather than fail to upgrade a read transaction another writer overtook
        with engine.begin() as connection:
            taken = connection.execute(
                update(MAILS)
                .where(MAILS.c.id == mail_id, due)
                .values(status=MailStatus.SENDING, lease_until=lease, attempts=MAILS.c.attempts + 1)
            )
            if taken.rowcount == 1:
                row = connection.execute(_CLAIMED.where(MAILS.c.id == mail_id)).one()
                return _Claimed(*tuple(row))
    return None


_CLAIMED = select(
    MAILS.c.id,
    MAILS.c.kind,
    MAILS.c.attempts,
    MAILS.c.created_at,
    SUBSCRIBERS.c.id,
    func.coalesce(SUBSCRIBERS.c.email, MAILS.c.email),
    func.coalesce(SUBSCRIBERS.c.name, MAILS.c.name),
    func.coalesce(SUBSCRIBERS.c.status, ""),
    MAILS.c.frequency,
    SUBSCRIBERS.c.public_id,
    MAILS.c.editor_id,
    MAILS.c.step,
    func.coalesce(SUBSCRIBERS.c.languages, MAILS.c.languages),
).outerjoin(SUBSCRIBERS, SUBSCRIBERS.c.id == MAILS.c.subscriber_id)


def _make_request(engine: Engine, settings: Settings, claimed: _Claimed) -> _Claimed | None:
    """A sign-up from the form, made now: the mail becomes the confirmation of the
    subscriber a link is due to, or is deleted (active, erased, a link sent a moment
    ago, or one waiting already)."""
    try:
        subscriber = request_subscription(
            engine,
            claimed.email,
            claimed.name,
            claimed.frequency or "every",
            claimed.languages,
            purge_key=settings.purge_key,
        )
    except SubscriberError as exc:  # checked when queued: only a changed rule gets here
        log.error("sign-up %s not made: %s", claimed.id, exc)
        subscriber = None
    except IntegrityError:  # the same new address, made by another sender this instant
        _record(engine, claimed.id, MailStatus.QUEUED, "", utcnow() + timedelta(seconds=1))
        return None
    mail = MAILS.c.id == claimed.id
    try:
        with engine.begin() as connection:
            if subscriber is None:
                connection.execute(delete(MAILS).where(mail))
                return None
            cleared = {"email": None, "name": None, "frequency": None, "languages": None}
            connection.execute(
                update(MAILS).where(mail).values(subscriber_id=subscriber.id, **cleared)
            )
    except IntegrityError:  # a link waits for them already (the relay was down)
        with engine.begin() as connection:
            connection.execute(delete(MAILS).where(mail))
        return None
    return replace(
        claimed,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=subscriber.status,
        public_id=subscriber.public_id,
        languages=subscriber.languages,
    )


def _record(
    engine: Engine,
    mail_id: int,
    status: str,
    reply: str,
    retry_at: datetime | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    values: dict[str, object] = {"status": status, "last_reply": reply[:1000], "lease_until": None}
    if status == MailStatus.SENT:
        values["sent_at"] = clock()
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    with engine.begin() as connection:
        connection.execute(update(MAILS).where(MAILS.c.id == mail_id).values(**values))


def _domain(settings: Settings) -> str:
    return settings.publication.from_address.rpartition("@")[2]


class BackgroundSender(WakingThread):
    """`mailer serve`'s sender of transactional mail: woken when a sign-up was just
    queued, and every POLL_SECONDS for retries."""

    name = "transactional-mail"

    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = POLL_SECONDS):
        super().__init__(poll_seconds)
        self.engine, self.settings = engine, settings

    def round(self) -> None:
        send_queued(self.engine, self.settings, self.stopping)
