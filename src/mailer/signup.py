"""The opt-in sequence, a use case the subscriber site (and any other front door) calls:
check a sign-up and queue it, show and act on a confirmation link, renew an expired
link, read a reader's link, save their preferences, unsubscribe them. Each step returns
a plain result the caller turns into a page; the caller keeps what belongs to how the
request came (the form, the client's address, the per-client limit).

Every confirmation mail goes out through transactional.py's queue, never in the step
itself, so the answer is the same, in the same time, whoever the address belongs to.
How many mails one mailbox may get is the caller's `may_mail(address)`: the rule that
it is asked before anything is queued, and that a refusal answers as if the mail had
gone, lives here; the counter (in memory, per serving process) with the caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine

from mailer.errors import SubscriberError
from mailer.models import Subscriber, SubscriberStatus
from mailer.reader_languages import KEEP, Keep, checked_languages
from mailer.settings import Settings
from mailer.subscribers import (
    FREQUENCIES,
    checked_request,
    clean_name,
    confirm_subscription,
    find_subscriber,
    normalise_address,
    renew_request,
    resolve,
    unsubscribe,
    update_preferences,
)
from mailer.supporting import reader_says_donor
from mailer.tokens import CONFIRM, PREFERENCES, TokenError, read_token
from mailer.transactional import queue_confirmation, queue_sign_up
from mailer.welcome import on_confirmed

# How long a confirmation link is good for; after that its page offers a fresh one.
CONFIRM_SECONDS = 7 * 24 * 3600

MayMail = Callable[[str], bool]


def any_address(_address: str) -> bool:
    return True


@dataclass(frozen=True)
class SignUpRequest:
    """A sign-up's fields, checked and normalised (`languages` as stored)."""

    email: str
    name: str | None
    frequency: str
    languages: str | None = None


class Field(StrEnum):
    """The field of the sign-up form a refusal is about, for the page to say so."""

    EMAIL = "email"
    NAME = "name"
    FREQUENCY = "frequency"
    LANGUAGES = "languages"


class SignUpRefused(SubscriberError):
    def __init__(self, field: Field, reason: str):
        super().__init__(reason)
        self.field = field


def check_request(
    email: str,
    name: str | None,
    frequency: str,
    languages: Sequence[str] = (),
    offered: tuple[str, ...] = ("en",),
) -> SignUpRequest:
    """The sign-up form's fields, checked whoever the address belongs to (nothing is
    looked up); SignUpRefused says which field is wrong and why. `languages`: those the
    reader reads, their own first, each one of `offered` (the publication's)."""
    checks: tuple[tuple[Field, Callable[[], object]], ...] = (
        (Field.EMAIL, lambda: normalise_address(email)),
        (Field.NAME, lambda: clean_name(name)),
        (Field.LANGUAGES, lambda: checked_languages(languages, offered)),
        (Field.FREQUENCY, lambda: checked_request(email, name, frequency)),
    )
    for field, check in checks:
        try:
            check()
        except SubscriberError as exc:
            raise SignUpRefused(field, str(exc)) from None
    chosen = checked_languages(languages, offered)
    return SignUpRequest(*checked_request(email, name, frequency), chosen)


def queue_request(engine: Engine, request: SignUpRequest, may_mail: MayMail = any_address) -> bool:
    """Queue the sign-up for the sender, which makes it and sends the link if one is due:
    the same work for every address. False when the mailbox had its share of mails
    (nothing queued; the caller answers as if it had been)."""
    if not may_mail(request.email):
        return False
    queue_sign_up(engine, request.email, request.name, request.frequency, request.languages)
    return True


class Outcome(StrEnum):
    """What a reader's link turned out to be."""

    INVALID = "invalid"  # forged, for another purpose, or for nobody we know
    EXPIRED = "expired"  # a genuine confirmation link, too old: a fresh one may be asked
    PENDING = "pending"  # a confirmation link waiting for its button
    CONFIRMED = "confirmed"  # the subscription is active
    VALID = "valid"  # a preferences or unsubscribe link of a known reader
    SAVED = "saved"  # preferences stored
    REFUSED = "refused"  # preferences not stored (a hand-made form, a name too long)
    LEFT = "left"  # unsubscribed


@dataclass(frozen=True)
class LinkResult:
    outcome: Outcome
    subscriber: Subscriber | None = None
    subscriber_id: int | None = None  # whom an expired link's button renews (confirm)


def reader_of(
    engine: Engine, settings: Settings, purpose: str, token: str, max_age: int | None = None
) -> int:
    """The subscriber a link is for; TokenError or SubscriberError if none."""
    return resolve(engine, read_token(settings.signing_keys, purpose, token, max_age))


def confirmation(engine: Engine, settings: Settings, token: str) -> LinkResult:
    """What a confirmation link shows, changing nothing (link scanners fetch every link
    in a message): PENDING (the button), CONFIRMED, EXPIRED or INVALID."""
    try:
        subscriber = find_subscriber(
            engine, reader_of(engine, settings, CONFIRM, token, CONFIRM_SECONDS)
        )
    except TokenError as exc:  # its page offers a fresh link; who it was for is not looked up
        genuine = exc.expired and exc.subscriber_id is not None
        return LinkResult(Outcome.EXPIRED if genuine else Outcome.INVALID)
    except SubscriberError:
        return LinkResult(Outcome.INVALID)
    if subscriber.status == SubscriberStatus.ACTIVE:
        return LinkResult(Outcome.CONFIRMED, subscriber)
    if subscriber.status != SubscriberStatus.PENDING:
        return LinkResult(Outcome.INVALID)
    return LinkResult(Outcome.PENDING, subscriber)


def confirm(engine: Engine, settings: Settings, token: str, ip: str) -> LinkResult:
    """The confirmation link's button, from the client at `ip`: CONFIRMED (a pending
    subscriber becomes active, with when and from where as the proof of consent, and
    their welcome mail is queued), EXPIRED (`renew` may send a fresh link) or INVALID."""
    try:
        subscriber_id = reader_of(engine, settings, CONFIRM, token, CONFIRM_SECONDS)
        # the welcome mail, queued in the confirmation's transaction (welcome.py)
        subscriber = confirm_subscription(engine, subscriber_id, ip, on_confirmed(settings))
    except TokenError as exc:
        if exc.expired and exc.subscriber_id is not None:
            try:  # a fresh link may go to a subscriber still on file
                renewable = resolve(engine, exc.subscriber_id)
            except SubscriberError:
                return LinkResult(Outcome.INVALID)
            return LinkResult(Outcome.EXPIRED, subscriber_id=renewable)
        return LinkResult(Outcome.INVALID)
    except SubscriberError:
        return LinkResult(Outcome.INVALID)
    if subscriber.status != SubscriberStatus.ACTIVE:
        return LinkResult(Outcome.INVALID)
    return LinkResult(Outcome.CONFIRMED, subscriber)


def renew(engine: Engine, subscriber_id: int, may_mail: MayMail = any_address) -> bool:
    """A fresh confirmation link for the subscriber of an expired one, queued if they are
    still pending, were not sent one a moment ago and their mailbox may get one; whether
    a mail was queued (the caller answers the same either way)."""
    subscriber = renew_request(engine, subscriber_id)
    if subscriber is None or not may_mail(subscriber.email):
        return False
    return queue_confirmation(engine, subscriber_id)


def reader_link(engine: Engine, settings: Settings, purpose: str, token: str) -> LinkResult:
    """A preferences or unsubscribe link, read without changing anything: VALID with its
    subscriber, or INVALID."""
    try:
        return LinkResult(
            Outcome.VALID, find_subscriber(engine, reader_of(engine, settings, purpose, token))
        )
    except (TokenError, SubscriberError):
        return LinkResult(Outcome.INVALID)


def save_preferences(
    engine: Engine,
    settings: Settings,
    token: str,
    name: str | None,
    frequency: str | None,
    donor: bool | None = None,
    languages: Sequence[str] | None = None,
) -> LinkResult:
    """The preferences form: SAVED, REFUSED (the subscriber as stored, for the form
    again) or INVALID. `donor`: "I already support you" ticked or not (None: not asked);
    `languages`: those the reader reads, their own first (None: not asked)."""
    try:
        subscriber_id = reader_of(engine, settings, PREFERENCES, token)
        subscriber = find_subscriber(engine, subscriber_id)
    except (TokenError, SubscriberError):
        return LinkResult(Outcome.INVALID)
    if frequency not in FREQUENCIES:  # only a hand-made form does that
        return LinkResult(Outcome.REFUSED, subscriber)
    try:
        offered = settings.publication.languages
        chosen: str | Keep | None = (
            KEEP if languages is None else checked_languages(languages, offered)
        )
        saved = update_preferences(engine, subscriber_id, name, frequency, chosen)
    except SubscriberError:  # a name too long, no language: the form again, as it was
        return LinkResult(Outcome.REFUSED, subscriber)
    if donor is not None:
        saved = reader_says_donor(engine, settings, subscriber_id, donor)
    return LinkResult(Outcome.SAVED, saved)


def leave(engine: Engine, settings: Settings, purpose: str, token: str) -> LinkResult:
    """Unsubscribe the reader an unsubscribe (or preferences) link names: LEFT, the same
    however often, or INVALID."""
    try:
        return LinkResult(
            Outcome.LEFT, unsubscribe(engine, reader_of(engine, settings, purpose, token))
        )
    except (TokenError, SubscriberError):
        return LinkResult(Outcome.INVALID)
