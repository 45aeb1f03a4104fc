"""Storing gifts once each, attributed to the issue whose reference they carry, and the
donor status a gift matched to a subscriber's address gives them.

One transaction for a whole file: it counts entirely or not at all. `source_key` is
unique, so a gift already stored (the same file, or an overlapping statement, imported
again) is skipped and counted as known, and gives nothing a second time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import Connection, Engine, select

from mailer.db import insert_new, with_retries
from mailer.donors import extend_donor
from mailer.gifts.attribution import references_in
from mailer.gifts.parsed import ArrivedGift
from mailer.models import GIFTS, ISSUES, SUBSCRIBERS, DonorBy, utcnow
from mailer.references import is_welcome_reference
from mailer.subscribers import without_controls

s = SUBSCRIBERS.c


@dataclass
class Stored:
    """What storing a file's gifts did."""

    new: int = 0
    known: int = 0  # stored by an earlier import: skipped
    attributed: int = 0  # of the new ones, attributed to an issue
    matched: int = 0  # of the new ones, matched to a subscriber by address
    donors: list[int] = field(default_factory=list)  # subscribers made or kept donors


def store_gifts(engine: Engine, gifts: list[ArrivedGift], prefix: str, donor_days: int) -> Stored:
    def attempt() -> Stored:
        stored = Stored()
        with engine.begin() as connection:
            for gift in gifts:
                _store(engine, connection, gift, prefix, donor_days, stored)
        return stored

    return with_retries(attempt)


def _store(
    engine: Engine,
    connection: Connection,
    gift: ArrivedGift,
    prefix: str,
    donor_days: int,
    stored: Stored,
) -> None:
    reference, issue_id = _issue_of(connection, gift, prefix)
    subscriber_id = _subscriber_of(connection, gift.email)
    values = {
        "source": gift.source.value,
        "source_key": gift.source_key,
        "received_on": gift.received_on,
        "amount_minor": gift.amount_minor,
        "currency": gift.currency,
        "reference": reference,
        "issue_id": issue_id,
        "remittance": _shown(" ".join(part for part in (gift.reference, gift.remittance))),
        "payer_name": _shown(gift.payer_name or "") or None,
        "email": gift.email,
        "subscriber_id": subscriber_id,
        "imported_at": utcnow(),
    }
    query = insert_new(engine, GIFTS).values(values)
    query = query.on_conflict_do_nothing(index_elements=["source_key"]).returning(GIFTS.c.id)
    if connection.execute(query).scalar() is None:  # rowcount is not to be trusted here
        stored.known += 1
        return
    stored.new += 1
    stored.attributed += issue_id is not None
    if subscriber_id is not None:
        stored.matched += 1
        _make_donor(connection, subscriber_id, gift, donor_days)
        stored.donors.append(subscriber_id)


def _shown(text: str) -> str:
    """A bank's or a giver's text as the desk and reports may show it: no control or
    bidi characters, white space as single spaces."""
    return " ".join(without_controls(text).split())


def _issue_of(
    connection: Connection, gift: ArrivedGift, prefix: str
) -> tuple[str | None, int | None]:
    """The first reference in the structured reference, then in the text, that is an
    issue's or the welcome mails' (kept with no issue: tally.py counts those as the
    welcome's); a valid reference of neither attributes nothing."""
    candidates = references_in(gift.reference, prefix) + references_in(gift.remittance, prefix)
    for reference in candidates:
        if is_welcome_reference(reference, prefix):
            return reference, None
        found = connection.execute(
            select(ISSUES.c.id).where(ISSUES.c.reference == reference)
        ).scalar_one_or_none()
        if found is not None:
            return reference, int(found)
    return None, None


def _subscriber_of(connection: Connection, email: str | None) -> int | None:
    """The subscriber with exactly this address (normalised as the list keeps it); never
    a guess from a name."""
    if not email:
        return None
    found = connection.execute(select(s.id).where(s.email == email)).scalar_one_or_none()
    return int(found) if found is not None else None


def _make_donor(connection: Connection, subscriber_id: int, gift: ArrivedGift, days: int) -> None:
    """A donor until `days` after the gift, never shortening a later date (an admin's, or
    the reader's own word)."""
    until = datetime.combine(gift.received_on + timedelta(days=days), time.min, UTC)
    extend_donor(connection, subscriber_id, until, DonorBy.GIFT)
