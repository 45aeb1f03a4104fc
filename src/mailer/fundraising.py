"""The use cases of the money that arrived (issue 15): import a bank statement, a Vipps
report or a plain CSV of gifts, and report what each issue raised. The CLI's
`mailer donations` and the desk call these; the reading and storing is in mailer.gifts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from mailer.gift_thanks import thank_new_gifts
from mailer.gifts.files import read_gift_file
from mailer.gifts.parsed import GiftSource, exponent_of
from mailer.gifts.store import store_gifts
from mailer.gifts.tally import GiftTally, Sums, tally
from mailer.settings import Settings

__all__ = ["GiftImport", "GiftSource", "GiftTally", "Sums", "gifts_report", "import_gifts", "money"]


@dataclass(frozen=True)
class GiftImport:
    """What an import did."""

    kind: GiftSource
    new: int  # gifts stored
    known: int  # gifts an earlier import stored: skipped
    debits: int  # money going out: skipped
    returns: int  # returned payments (reversals, refunds): skipped
    payouts: int  # Vipps paying out its settlement: skipped
    transfers: int  # from the newsroom's own other accounts: skipped
    pending: int  # not booked by the bank yet: skipped
    attributed: int  # new gifts attributed to an issue
    matched: int  # new gifts matched to a subscriber, who is a donor now
    thanked: int  # gifts whose thank-you mail was queued ([donation] thank_gift_mail)


def import_gifts(
    engine: Engine, settings: Settings, path: Path, kind: GiftSource | None = None
) -> GiftImport:
    """Read `path` (its kind told by its content unless given) and store its gifts, all
    in one transaction; a file that cannot be read changes nothing."""
    kind, parsed = read_gift_file(path, kind, settings.donations)
    donation = settings.donation
    stored = store_gifts(
        engine, parsed.gifts, donation.reference_prefix, donation.thank_donors_days
    )
    report = GiftImport(
        kind,
        stored.new,
        stored.known,
        parsed.debits,
        parsed.returns,
        parsed.payouts,
        parsed.transfers,
        parsed.pending,
        stored.attributed,
        stored.matched,
        thank_new_gifts(engine, settings),
    )
    return report


def gifts_report(engine: Engine) -> GiftTally:
    """The gifts per issue (with the appeal links' clicks), per month, and not attributed."""
    return tally(engine)


def money(minor: int, currency: str) -> str:
    """An amount as the report prints it, exact to the øre: "1234.50 NOK"."""
    exponent = exponent_of(currency)
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), 10**exponent)
    decimals = f".{part:0{exponent}d}" if exponent else ""
    return f"{sign}{whole}{decimals} {currency}"
