"""Erasing a person at their request (`subscribers remove --purge`, the desk): their row
keeps only a keyed marker that stops the address coming back by mistake, and nothing
else anywhere names them."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import ColumnElement, case, delete, func, or_, update
from sqlmodel import Session, col, select

from mailer.donors import erase_donor_data
from mailer.models import BOUNCE_EVENTS, Delivery, Issue, MailStatus, Subscriber, new_public_id
from mailer.models import TRANSACTIONAL_MAILS as MAILS
from mailer.replies import redacted_reply


def erased_marker(address: str, purge_key: str) -> str:
    """What an erased subscriber's row keeps: a keyed hash that blocks re-adding. Keyed
    (HMAC-SHA256 under the purge key, kept outside the database) so that hashing a list
    of guessed addresses cannot tell who was on the list."""
    return "erased:hmac:" + hmac.new(purge_key.encode(), address.encode(), "sha256").hexdigest()


def _legacy_marker(address: str) -> str:
    """The plain hash older versions left: still checked, it cannot be re-keyed."""
    return "erased:" + hashlib.sha256(address.encode()).hexdigest()


def erased_markers(address: str, purge_key: str) -> tuple[str, ...]:
    legacy = _legacy_marker(address)
    return (erased_marker(address, purge_key), legacy) if purge_key else (legacy,)


def _mail_to(subscriber_id: int | None, address: str) -> ColumnElement[bool]:
    return or_(MAILS.c.subscriber_id == subscriber_id, MAILS.c.email == address)


def erase(session: Session, subscriber: Subscriber, address: str, purge_key: str) -> None:
    """Erase a person from every table: their row keeps only the keyed marker that stops
    the address coming back by mistake, and their deliveries keep the relay's status
    code without its text (a reply quotes the address). Whatever else comes to store
    personal data (an audit log, donors, bounce events) is erased here too, and in the
    test that scans every table for the address."""
    assert subscriber.id is not None
    subscriber.email = erased_marker(address, purge_key)
    subscriber.public_id = new_public_id()  # links already sent name nobody now
    subscriber.name = None
    subscriber.consent_ip = None
    erase_donor_data(session, subscriber, address)
    # their mails: what is queued is not sent, and nothing of them is kept; the rows stay,
    # so that a mail's number, which a late bounce's address names, is never another's
    # (SQLite gives a deleted row's number to the next one)
    open_mail = MAILS.c.status.in_([MailStatus.QUEUED, MailStatus.SENDING])
    session.exec(
        update(MAILS)
        .where(_mail_to(subscriber.id, address))
        .values(
            status=case((open_mail, MailStatus.SKIPPED), else_=MAILS.c.status),
            subscriber_id=subscriber.id,
            **dict.fromkeys(("email", "name", "frequency", "languages", "last_reply")),
        )
    )
    # what came back by mail about them: a report quotes the address
    session.exec(delete(BOUNCE_EVENTS).where(BOUNCE_EVENTS.c.subscriber_id == subscriber.id))
    replies = session.exec(
        select(Delivery).where(
            Delivery.subscriber_id == subscriber.id, col(Delivery.smtp_response).is_not(None)
        )
    ).all()
    for delivery in replies:
        delivery.smtp_response = redacted_reply(delivery.smtp_response or "")
        session.add(delivery)
    # a relay's refusal that held an issue may quote the reader it was sending to
    quoted = col(Issue.held_reason).contains(address)
    session.exec(
        update(Issue)
        .where(quoted)
        .values(held_reason=func.replace(Issue.held_reason, address, "[erased]"))
    )
