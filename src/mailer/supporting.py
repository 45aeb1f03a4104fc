"""The use cases of a reader's donor status: an admin setting or clearing it (`mailer
subscribers donor`), a reader saying "I already support you" or taking it back (the
preferences page). A gift matched to a reader's address extends it in the import
(donors.extend_donor). Their copies of the issues queued meanwhile thank instead of ask."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Engine
from sqlmodel import select

from mailer.db import session_scope
from mailer.donors import donor_for, is_donor, set_donor
from mailer.errors import SubscriberError
from mailer.models import DonorBy, Subscriber, utcnow
from mailer.settings import Settings
from mailer.subscribers import find_subscriber, normalise_address


@dataclass(frozen=True)
class DonorStatus:
    email: str
    until: datetime | None  # None: not a donor
    by: str | None  # DonorBy


def admin_sets_donor(
    engine: Engine, settings: Settings, email: str, until: date | None = None, off: bool = False
) -> DonorStatus:
    """The reader is a donor through `until` (a day in the publication's time zone; by
    default `[donation] thank_donors_days` from now), or, with `off`, no longer. An
    admin's date is kept as given, earlier or later than what a gift set."""
    address = normalise_address(email)
    with session_scope(engine) as session:
        found = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
    if found is None or found.id is None:
        raise SubscriberError(f"{address} is not on the list; see `mailer subscribers list`")
    if off:
        ends = None
    elif until is None:
        ends = donor_for(settings.donation.thank_donors_days)
    else:
        zone = zoneinfo.ZoneInfo(settings.publication.timezone)
        ends = datetime.combine(until + timedelta(days=1), time(), tzinfo=zone)
        if ends <= utcnow():
            raise SubscriberError(
                f"--until {until.isoformat()} has passed; to stop thanking {address}, use --off"
            )
    set_donor(engine, found.id, ends, DonorBy.ADMIN)
    return DonorStatus(address, ends, DonorBy.ADMIN if ends else None)


def reader_says_donor(
    engine: Engine, settings: Settings, subscriber_id: int, supports: bool
) -> Subscriber:
    """The preferences page's "I already support you": ticked, the reader is a donor for
    `[donation] thank_donors_days` from now (a donor already stays as they are);
    unticked, they are not one any more, whoever said they were."""
    subscriber = find_subscriber(engine, subscriber_id)
    if supports and not is_donor(subscriber):
        set_donor(
            engine, subscriber_id, donor_for(settings.donation.thank_donors_days), DonorBy.READER
        )
    elif not supports and subscriber.donor_until is not None:
        set_donor(engine, subscriber_id, None, None)
    return find_subscriber(engine, subscriber_id)


@dataclass(frozen=True)
class DonorView:
    """What the preferences page shows of a reader's donor status."""

    active: bool
    by: str | None  # DonorBy
    until: datetime | None
    said_on: datetime | None  # when the reader ticked the box (their own word only)


def donor_view(settings: Settings, subscriber: Subscriber | None) -> DonorView:
    if subscriber is None or not is_donor(subscriber) or subscriber.donor_until is None:
        return DonorView(False, None, None, None)
    until, by = subscriber.donor_until, subscriber.donor_by
    # a reader's word lasts thank_donors_days from the day they gave it
    said_on = until - timedelta(days=settings.donation.thank_donors_days)
    return DonorView(True, by, until, said_on if by == DonorBy.READER else None)
