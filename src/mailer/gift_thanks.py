"""The thank-you mail for a gift ([donation] thank_gift_mail): a gift matched to a reader
by address brings them one, through the transactional outbox (transactional.py sends it,
with its retries), once per gift.

A gift is marked thanked (`gift.thanked_at`) in the transaction that queues its mail, and
the mail is made, when it is sent, from the gifts marked at the moment it was queued
(`thanked_at` = the mail's `created_at`): so gifts that arrive together share one mail,
and a gift that arrives while its reader's thank-you still waits joins that one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from mailer.gifts.parsed import exponent_of
from mailer.goal import format_amount, money
from mailer.i18n import own_language
from mailer.messages import MessageBuilder, OutgoingMessage, Recipient
from mailer.models import (
    GIFTS,
    SUBSCRIBERS,
    TRANSACTIONAL_MAILS,
    MailKind,
    MailStatus,
    SubscriberStatus,
    queued_mail,
    utcnow,
)
from mailer.render import RenderedIssue, email_context, one_line, render_pair, translator
from mailer.settings import Settings

MAILS = TRANSACTIONAL_MAILS


@dataclass(frozen=True)
class ThankedGift:
    received_on: date
    amount_minor: int
    currency: str

    @property
    def amount(self) -> str:
        """ "NOK 1 500", or "EUR 12.50" when there is a part of a unit."""
        exponent = exponent_of(self.currency)
        whole, part = divmod(self.amount_minor, 10**exponent)
        shown = format_amount(Decimal(whole))
        return f"{self.currency} {shown}" + (f".{part:0{exponent}}" if part else "")

    def amount_in(self, language: str) -> str:
        """The amount as readers of `language` write it ("NOK 1,500", "1 500 kr")."""
        exact = Decimal(self.amount_minor).scaleb(-exponent_of(self.currency))
        return money(exact, self.currency, language)


@dataclass(frozen=True)
class ShownGift:
    """A gift as the thank-you shows it: its amount in the reader's way, its day."""

    amount: str
    received_on: date


def thank_new_gifts(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Queue the thank-you for every gift matched to an active reader that has not been
    thanked, received within [donation] thank_donors_days (a gift from long ago, imported
    late, is not thanked as if it had just come); how many gifts were thanked. Nothing
    without [donation] thank_gift_mail."""
    donation = settings.donation
    if not donation.thank_gift_mail:
        return 0
    now = now or utcnow()
    query = (
        select(GIFTS.c.subscriber_id, GIFTS.c.id)
        .join(SUBSCRIBERS, SUBSCRIBERS.c.id == GIFTS.c.subscriber_id)
        .where(GIFTS.c.thanked_at.is_(None), SUBSCRIBERS.c.status == SubscriberStatus.ACTIVE)
        .order_by(GIFTS.c.id)
    )
    if donation.thank_donors_days:
        query = query.where(
            GIFTS.c.received_on >= now.date() - timedelta(days=donation.thank_donors_days)
        )
    gifts: dict[int, list[int]] = defaultdict(list)
    with engine.connect() as connection:
        for subscriber_id, gift_id in connection.execute(query):
            gifts[subscriber_id].append(gift_id)
    return sum(_thank(engine, reader, ids, now) for reader, ids in gifts.items())


class _Overtaken(Exception):
    """Another run thanked one of the gifts a moment ago: this one leaves them."""


def _thank(engine: Engine, subscriber_id: int, gift_ids: list[int], now: datetime) -> int:
    """Queue one thank-you for these gifts of one reader, marking them in the same
    transaction; or add them to the one waiting for them. How many gifts it thanked."""
    try:
        with engine.begin() as connection:
            connection.execute(queued_mail(MailKind.GIFT_THANKS, now, subscriber_id=subscriber_id))
            return _mark(connection, gift_ids, now)
    except IntegrityError:  # one waits for them already (at most one may)
        pass
    except _Overtaken:
        return 0
    try:
        with engine.begin() as connection:
            return _join_waiting(connection, subscriber_id, gift_ids)
    except _Overtaken:
        return 0


def _join_waiting(connection: Connection, subscriber_id: int, gift_ids: list[int]) -> int:
    """Add the gifts to the reader's thank-you still queued. The row is written first, so
    no sender claims it until this is committed (and then makes it with these gifts);
    one a sender holds already is left alone, and the gifts wait for the next run."""
    waiting = MAILS.c.subscriber_id == subscriber_id, MAILS.c.kind == MailKind.GIFT_THANKS
    queued = (*waiting, MAILS.c.status == MailStatus.QUEUED)
    held = connection.execute(update(MAILS).where(*queued).values(attempts=MAILS.c.attempts))
    if held.rowcount != 1:
        return 0
    created_at = connection.execute(select(MAILS.c.created_at).where(*queued)).scalar_one()
    return _mark(connection, gift_ids, created_at)


def _mark(connection: Connection, gift_ids: list[int], when: datetime) -> int:
    marked = connection.execute(
        update(GIFTS)
        .where(GIFTS.c.id.in_(gift_ids), GIFTS.c.thanked_at.is_(None))
        .values(thanked_at=when)
    ).rowcount
    if marked != len(gift_ids):
        raise _Overtaken  # rolls the transaction back: no mail, no mark
    return marked


def thanks_mail(
    engine: Engine, settings: Settings, recipient: Recipient, status: str, queued_at: datetime
) -> Callable[[], OutgoingMessage] | None:
    """How to make the thank-you queued at `queued_at` for this reader, or None if there is
    none to send: they left, bounced or were erased since, or the gifts are no longer
    matched to them."""
    if status != SubscriberStatus.ACTIVE or recipient.email.startswith("erased:"):
        return None
    query = (
        select(GIFTS.c.received_on, GIFTS.c.amount_minor, GIFTS.c.currency)
        .where(GIFTS.c.subscriber_id == recipient.subscriber_id)
        .where(GIFTS.c.thanked_at == queued_at)
        .order_by(GIFTS.c.received_on, GIFTS.c.id)
    )
    with engine.connect() as connection:
        gifts = [ThankedGift(*row) for row in connection.execute(query)]
        languages = connection.execute(
            select(SUBSCRIBERS.c.languages).where(SUBSCRIBERS.c.id == recipient.subscriber_id)
        ).scalar()
    if not gifts:
        return None
    language = own_language(languages, settings.publication.language)
    return partial(_message, settings, recipient, tuple(gifts), language)


def _message(
    settings: Settings, recipient: Recipient, gifts: tuple[ThankedGift, ...], language: str
) -> OutgoingMessage:
    rendered = render_gift_thanks(settings, recipient.name, gifts, language)
    return MessageBuilder(settings, rendered).build(recipient)


def render_gift_thanks(
    settings: Settings,
    name: str | None,
    gifts: tuple[ThankedGift, ...],
    language: str | None = None,
) -> RenderedIssue:
    """The thank-you: the newsletter's look, each gift's amount and date, the thanks, no
    appeal; the footer of a subscriber's mail (their preferences and unsubscribe links,
    filled in by the message builder). In the reader's `language` (None: the
    publication's), the thanks' heading from its [donation.languages] texts."""
    language = language or settings.publication.language
    t = translator(settings, language)
    values = {"name": one_line(settings.publication.name)}
    subject = t.gettext("Thank you for your gift to %(name)s") % values
    shown = tuple(ShownGift(gift.amount_in(language), gift.received_on) for gift in gifts)
    amounts = " · ".join(gift.amount for gift in shown)
    preheader = t.ngettext(
        "%(amounts)s: your gift reached us.", "%(amounts)s: your gifts reached us.", len(shown)
    ) % {"amounts": amounts}
    heading = settings.donation.in_language(language).thanks_heading
    context = {
        **email_context(settings, subject, preheader, language=language),
        "donation": None,
        "name": name and one_line(name),
        "heading": heading or t.gettext("Thank you for your gift"),
        "gifts": shown,
    }
    html, text = render_pair(settings, "email/gift_thanks", context, language)
    return RenderedIssue(subject=subject, preheader=preheader, html=html, text=text)
