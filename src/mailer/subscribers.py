"""The subscriber list: add, list, remove (or erase); CSV import and export are in
subscriber_csv.py.

Addresses are validated and normalised with email-validator (no DNS look-ups) and kept
lower-case, so the same reader never appears twice whatever the spelling."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Connection, Engine, and_, func, update
from sqlmodel import Session, col, select

from mailer.db import session_scope, with_retries
from mailer.erasure import erase, erased_markers
from mailer.errors import SubscriberError
from mailer.models import (
    DELIVERIES,
    SUBSCRIBERS,
    Delivery,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailer.reader_languages import KEEP, Keep

# every article and the weekly digest; the digest only; every article without the digest
FREQUENCIES = ("every", "weekly", "articles")

# What each frequency receives (the choices of the sign-up and preferences pages).
# what a confirmation does besides, in its transaction (the subscriber's id, the moment)
OnConfirmed = Callable[[Connection, int, datetime], object]

ARTICLE_READERS = ("every", "articles")  # every article; "articles": and no digest
DIGEST_READERS = ("every", "weekly")


def recipients_filter(kind: str) -> ColumnElement[bool]:
    """Who an issue of this kind goes to: active subscribers who asked for every article,
    or for the digest."""
    readers = ARTICLE_READERS if kind == "article" else DIGEST_READERS
    s = SUBSCRIBERS.c
    return and_(s.status == SubscriberStatus.ACTIVE, s.frequency.in_(readers))


def count_recipients(engine: Engine, kind: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(SUBSCRIBERS).where(recipients_filter(kind))
        return int(connection.execute(query).scalar_one())


def normalise_address(raw: str) -> str:
    """The canonical form of an address, or SubscriberError saying what is wrong with it."""
    try:
        # strict: the 64-character limit of the part before the @ (RFC 5321) as well
        checked = validate_email(
            raw.strip(), check_deliverability=False, allow_smtputf8=False, strict=True
        )
    except EmailNotValidError as exc:
        raise SubscriberError(f"{raw.strip()!r} is not a valid email address: {exc}") from None
    return (checked.ascii_email or checked.normalized).lower()


# A name is a display name in a header and a greeting in a mail from the newsroom: long
# enough for anybody's full name, too short for a paragraph of someone else's text.
NAME_MAX = 100


def clean_name(raw: str | None) -> str | None:
    """A name as it comes in (the site, preferences, `subscribers add`, an import): white
    space of any kind becomes single spaces, control characters are dropped (see
    `without_controls`), and a name longer than NAME_MAX characters is refused."""
    name = " ".join(without_controls(raw or "").split())
    if len(name) > NAME_MAX:
        raise SubscriberError(f"the name is {len(name)} characters long; give at most {NAME_MAX}")
    return name or None


def without_controls(text: str) -> str:
    """The text without what must never reach a header or a greeting: control characters
    (Unicode Cc: NUL, ESC, DEL...; white space among them becomes a space) and the bidi
    embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which can make a
    name show as somebody else's text. The zero-width joiner and non-joiner (U+200D,
    U+200C) stay: Persian names need them."""
    return "".join(" " if char.isspace() else char for char in text if not _hidden(char))


def _hidden(char: str) -> bool:
    if char.isspace():
        return False
    return unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _existing(session: Session, address: str, purge_key: str = "") -> Subscriber | None:
    known = (address, *erased_markers(address, purge_key))
    query = select(Subscriber).where(col(Subscriber.email).in_(known))
    return session.exec(query).first()


def _refusal(found: Subscriber) -> str:
    return refusal_of(found.email, found.status)


def refusal_of(email: str, status: str) -> str:
    if email.startswith("erased:"):
        return "erased at the reader's request; only they can subscribe again"
    return f"already on the list ({status})"


def add_subscriber(
    engine: Engine,
    email: str,
    name: str | None = None,
    *,
    confirmed: bool = False,
    frequency: str = "every",
    purge_key: str = "",
    languages: str | None = None,
) -> Subscriber:
    """Add a subscriber; refused if on the list already or erased (`purge_key`: the key
    of the erased addresses' markers, Settings.purge_key); `languages` as stored."""
    address = normalise_address(email)
    with session_scope(engine) as session:
        found = _existing(session, address, purge_key)
        if found is not None:
            raise SubscriberError(f"{address} is {_refusal(found)}")
        status = SubscriberStatus.ACTIVE if confirmed else None
        subscriber = Subscriber(**new_values(address, name, status, frequency, languages))
        session.add(subscriber)
        return subscriber


def new_values(
    address: str, name: str | None, status: str | None, frequency: str, languages: str | None = None
) -> dict[str, Any]:
    status = status or SubscriberStatus.PENDING
    now = utcnow()
    return {
        "email": address,
        "name": clean_name(name),
        "status": status,
        "frequency": frequency,
        "languages": languages,
        "created_at": now,
        "confirmed_at": now if status == SubscriberStatus.ACTIVE else None,
        "unsubscribed_at": now if status == SubscriberStatus.UNSUBSCRIBED else None,
    }


def list_subscribers(engine: Engine, status: str | None = None) -> Iterator[Subscriber]:
    """Every subscriber in id order, read in batches so a long list needs little memory."""
    if status is not None and status not in SubscriberStatus.ALL:
        raise SubscriberError(
            f"unknown status {status!r}; use one of {', '.join(SubscriberStatus.ALL)}"
        )
    after = 0
    while True:
        with session_scope(engine) as session:
            query = select(Subscriber).where(col(Subscriber.id) > after)
            if status is not None:
                query = query.where(Subscriber.status == status)
            batch = session.exec(query.order_by(col(Subscriber.id)).limit(500)).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].id or after


def remove_subscriber(
    engine: Engine, email: str, *, purge: bool = False, purge_key: str = ""
) -> Subscriber:
    """Unsubscribe; with purge, erase them: see `erase`."""
    address = normalise_address(email)
    if purge and not purge_key:
        raise SubscriberError("a purge needs the purge key (Settings.purge_key)")
    with session_scope(engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
        if subscriber is None:
            raise SubscriberError(f"{address} is not on the list")
        if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
            subscriber.status = SubscriberStatus.UNSUBSCRIBED
            subscriber.unsubscribed_at = utcnow()
        if purge:
            erase(session, subscriber, address, purge_key)
        session.add(subscriber)
        return subscriber


def reactivate(engine: Engine, email: str) -> Subscriber:
    """A bounced address made active again: its mailbox works again, or it was bounced
    wrongly (before the reply table, a relay's refusal of the content counted against
    every reader). Its past failures are forgiven, so one more does not bounce it at
    once, and their bounce score starts again from nothing (the events stay, as history).
    Only a bounced address: a reader who left (or complained) comes back by subscribing."""
    address = normalise_address(email)
    with session_scope(engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
        if subscriber is None:
            raise SubscriberError(f"{address} is not on the list")
        if subscriber.status != SubscriberStatus.BOUNCED:
            raise SubscriberError(
                f"{address} is {subscriber.status}, not bounced: only a bounced address is "
                "reactivated (a reader who left subscribes again on the site)"
            )
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.bounce_score, subscriber.bounce_score_at = 0, None
        session.add(subscriber)
        session.exec(
            update(Delivery)
            .where(col(Delivery.subscriber_id) == subscriber.id)
            .where(col(Delivery.blames_reader).is_(True))
            .values(blames_reader=False)
        )
        return subscriber


# A pending address gets a fresh confirmation link at most this often.
RESEND_AFTER = timedelta(minutes=10)


def checked_request(email: str, name: str | None, frequency: str) -> tuple[str, str | None, str]:
    """A sign-up's address, name and frequency, checked and normalised, whoever the
    address belongs to; SubscriberError says what is wrong with them."""
    if frequency not in FREQUENCIES:
        raise SubscriberError(f"frequency must be every, weekly or articles, not {frequency!r}")
    return normalise_address(email), clean_name(name), frequency


def request_subscription(
    engine: Engine,
    email: str,
    name: str | None,
    frequency: str,
    languages: str | None = None,
    *,
    purge_key: str = "",
) -> Subscriber | None:
    """Someone asks, on the site, for `email` to be subscribed: the subscriber a
    confirmation link should go to now, or None (already active, erased at their
    request, or sent a link less than RESEND_AFTER ago). Raises SubscriberError for an
    address that is not one."""
    address, name, frequency = checked_request(email, name, frequency)
    now = utcnow()
    with session_scope(engine) as session:
        found = _existing(session, address, purge_key)
        if found is None:
            subscriber = Subscriber(**new_values(address, name, None, frequency, languages))
            subscriber.confirmation_sent_at = now
            session.add(subscriber)
            return subscriber
        if found.email.startswith("erased:") or found.status == SubscriberStatus.ACTIVE:
            return None  # no second welcome; an erased address stays erased
        last = found.confirmation_sent_at
        if found.status == SubscriberStatus.PENDING and last and now - last < RESEND_AFTER:
            return None
        # pending, or back after leaving or bouncing: a new link, consent asked again
        found.status = SubscriberStatus.PENDING
        found.name = clean_name(name) or found.name
        found.frequency = frequency
        found.languages = languages or found.languages
        found.confirmation_sent_at = now
        session.add(found)
        return found


def renew_request(engine: Engine, subscriber_id: int) -> Subscriber | None:
    """A fresh confirmation link for a pending subscriber whose link expired: the
    subscriber to send it to, or None (no longer pending, or sent one just now)."""
    now = utcnow()
    with session_scope(engine) as session:
        found = session.get(Subscriber, subscriber_id)
        if found is None or found.status != SubscriberStatus.PENDING:
            return None
        last = found.confirmation_sent_at
        if last and now - last < RESEND_AFTER:
            return None
        found.confirmation_sent_at = now
        session.add(found)
        return found


def confirm_subscription(
    engine: Engine, subscriber_id: int, ip: str, then: OnConfirmed | None = None
) -> Subscriber:
    """The confirmation link was followed: a pending subscriber becomes active, with when
    and from where as the proof of consent, and `then` runs in the same transaction (the
    welcome mail is queued so). Anyone else is left as they are (an old link must not
    bring back somebody who has left since).

    A link followed is a mailbox that works: a reader back after bouncing starts with a
    clean slate, as `reactivate` gives one (else a single soft bounce, or one failure,
    would bounce them again at once)."""
    now = utcnow()
    with engine.begin() as connection:
        # the write first: two presses at once confirm (and welcome) once
        pending = (
            SUBSCRIBERS.c.id == subscriber_id,
            SUBSCRIBERS.c.status == SubscriberStatus.PENDING,
        )
        changed = connection.execute(
            update(SUBSCRIBERS)
            .where(*pending)
            .values(
                status=SubscriberStatus.ACTIVE,
                confirmed_at=now,
                consent_ip=ip,
                bounce_score=0,
                bounce_score_at=None,
            )
        ).rowcount
        if changed == 1:
            blamed = (
                DELIVERIES.c.subscriber_id == subscriber_id,
                DELIVERIES.c.blames_reader.is_(True),
            )
            connection.execute(update(DELIVERIES).where(*blamed).values(blames_reader=False))
        if changed == 1 and then is not None:
            then(connection, subscriber_id, now)
    return find_subscriber(engine, subscriber_id)


def update_preferences(
    engine: Engine,
    subscriber_id: int,
    name: str | None,
    frequency: str,
    languages: str | Keep | None = KEEP,
) -> Subscriber:
    """A subscriber's own choices, from their preferences page (KEEP: not asked)."""
    if frequency not in FREQUENCIES:
        raise SubscriberError(f"frequency must be every, weekly or articles, not {frequency!r}")
    name = clean_name(name)
    with session_scope(engine) as session:
        subscriber = _get(session, subscriber_id)
        if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING) or (
            subscriber.email.startswith("erased:")
        ):  # a page left open, or an old link: nothing of theirs is stored again
            raise SubscriberError(f"subscriber {subscriber_id} is not subscribed")
        subscriber.name = name
        subscriber.frequency = frequency
        if not isinstance(languages, Keep):
            subscriber.languages = languages
        session.add(subscriber)
        return subscriber


def find_subscriber(engine: Engine, subscriber_id: int) -> Subscriber:
    with session_scope(engine) as session:
        return _get(session, subscriber_id)


def resolve(engine: Engine, reference: int | str) -> int:
    """The id of the subscriber a link names: by their public id, or by the id itself in
    a link made before there were public ids. SubscriberError if there is none."""
    if isinstance(reference, int):
        return reference
    with session_scope(engine) as session:
        query = select(Subscriber.id).where(Subscriber.public_id == reference)
        found = session.exec(query).first()
    if found is None:
        raise SubscriberError("no subscriber with that link")
    return found


def _get(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise SubscriberError(f"no subscriber {subscriber_id}")
    return subscriber


def unsubscribe(engine: Engine, subscriber_id: int) -> Subscriber:
    """Unsubscribe by id (a signed link): idempotent; the first time is the one kept.
    Deliveries already queued for them are skipped when their turn comes. A reader's
    unsubscribe must never fail: a database busy with somebody else's writing (a big
    import, a send) is waited out and the change tried again."""
    return with_retries(lambda: _unsubscribe_once(engine, subscriber_id))


def _unsubscribe_once(engine: Engine, subscriber_id: int) -> Subscriber:
    with session_scope(engine) as session:
        # the write first: it queues for the writer's lock before anything is read, so
        # SQLite never finds what this transaction read overtaken by another's commit
        session.connection().execute(
            update(SUBSCRIBERS)
            .where(
                SUBSCRIBERS.c.id == subscriber_id,
                SUBSCRIBERS.c.status != SubscriberStatus.UNSUBSCRIBED,
            )
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=utcnow())
        )
        return _get(session, subscriber_id)
