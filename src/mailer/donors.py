"""Who counts as a donor: a reader whose `donor_until` is still ahead, set by a gift
matched to their address, by their own word (the preferences page) or by an admin
(`mailer subscribers donor`). Read when an issue's deliveries are queued (outbox.py),
which fixes each copy as the thanks or the appeal."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, or_, update
from sqlmodel import Session

from mailer.models import GIFTS, SUBSCRIBERS, DonorBy, Subscriber, utcnow

s = SUBSCRIBERS.c


def is_donor(subscriber: Subscriber, now: datetime | None = None) -> bool:
    until = subscriber.donor_until
    return until is not None and until > (now or utcnow())


def donor_for(days: int, now: datetime | None = None) -> datetime:
    """Until when a reader counts as a donor from now: `[donation] thank_donors_days`."""
    return (now or utcnow()) + timedelta(days=days)


def extend_donor(connection: Connection, subscriber_id: int, until: datetime, by: DonorBy) -> bool:
    """The reader is a donor until `until`, unless already until later: a gift never
    shortens what an earlier one (or the reader's word) gave. True if it changed."""
    changed = connection.execute(
        update(SUBSCRIBERS)
        .where(s.id == subscriber_id, or_(s.donor_until.is_(None), s.donor_until < until))
        .values(donor_until=until, donor_by=by)
    )
    return changed.rowcount == 1


def set_donor(
    engine: Engine, subscriber_id: int, until: datetime | None, by: DonorBy | None
) -> None:
    """The reader's donor status exactly as given (None: not a donor): an admin's say,
    or a reader taking back their word."""
    with engine.begin() as connection:
        connection.execute(
            update(SUBSCRIBERS)
            .where(s.id == subscriber_id)
            .values(donor_until=until, donor_by=by if until is not None else None)
        )


def erase_donor_data(session: Session, subscriber: Subscriber, address: str) -> None:
    """A purge: the reader's donor status goes, and so do the name, the address and the
    link to them on every gift that was theirs (the gift itself, an amount on a date,
    stays in the figures)."""
    subscriber.donor_until = None
    subscriber.donor_by = None
    g = GIFTS.c
    session.execute(
        update(GIFTS)
        .where(or_(g.subscriber_id == subscriber.id, g.email == address))
        .values(payer_name=None, email=None, subscriber_id=None)
    )
