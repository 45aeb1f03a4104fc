"""What every reader of a gift file returns: the gifts it found and what it skipped, with
amounts in minor units (øre, cents) read exactly, never through a float."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from mailer.errors import MailerError


class GiftFileError(MailerError):
    """A gift file cannot be read; nothing of it was imported."""


class GiftSource(StrEnum):
    CAMT = "camt"  # an ISO 20022 bank statement or credit notification
    VIPPS = "vipps"  # a Vipps report
    CSV = "csv"  # the plain CSV: date,amount,currency,reference,email,name


@dataclass(frozen=True)
class ArrivedGift:
    source: GiftSource
    source_key: str  # the same gift in the same or another file has the same key
    received_on: date
    amount_minor: int
    currency: str
    reference: str = ""  # the structured reference (camt CdtrRefInf/Ref, the CSV's column)
    remittance: str = ""  # the text the giver wrote
    payer_name: str | None = None
    email: str | None = None


@dataclass
class ParsedFile:
    """A whole file read: its gifts, and what was left out and why."""

    gifts: list[ArrivedGift] = field(default_factory=list)
    debits: int = 0  # money going out
    returns: int = 0  # payments returned (a reversal, a refund)
    payouts: int = 0  # Vipps paying out its settlement: counted from the Vipps report
    transfers: int = 0  # money moved from another of the newsroom's own accounts
    pending: int = 0  # entries the bank has not booked yet


# ISO 4217 currencies without the two decimals most have
_EXPONENTS = {
    **dict.fromkeys(("JPY", "KRW", "ISK", "CLP", "VND", "PYG", "UGX", "XAF", "XOF"), 0),
    **dict.fromkeys(("BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"), 3),
}
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def checked_currency(text: str, where: str) -> str:
    currency = text.strip().upper()
    if not _CURRENCY.match(currency):
        raise GiftFileError(f"{where}: {text!r} is not a currency code (NOK, EUR...)")
    return currency


def exponent_of(currency: str) -> int:
    """How many decimals the currency's amounts have (2 for NOK and EUR)."""
    return _EXPONENTS.get(currency, 2)


def minor_units(text: str, currency: str, where: str) -> int:
    """An amount as written ("1234.50", "1 234,50", "1.234,50") in the currency's minor
    units, exactly; more decimals than the currency has is an error, not a rounding."""
    cleaned = re.sub(r"[\s\u00a0\u202f']", "", text)
    if "," in cleaned and "." in cleaned:  # the last one is the decimal separator
        grouping = "." if cleaned.rfind(",") > cleaned.rfind(".") else ","
        cleaned = cleaned.replace(grouping, "")
    cleaned = cleaned.replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise GiftFileError(f"{where}: {text!r} is not an amount") from None
    if not amount.is_finite():
        raise GiftFileError(f"{where}: {text!r} is not an amount")
    scaled = amount.scaleb(exponent_of(currency))
    if scaled != scaled.to_integral_value():
        raise GiftFileError(f"{where}: {text!r} has more decimals than {currency} has")
    return int(scaled)


def is_payout(pattern: str, *texts: str | None) -> bool:
    """Whether a credit is Vipps paying out its settlement ([donations] vipps_payout_pattern
    on the payer's name and the remittance text)."""
    if not pattern:
        return False
    joined = "\n".join(text for text in texts if text)
    return re.search(pattern, joined) is not None


class Occurrences:
    """Keys for gifts a file does not name: the nth gift with the same content gets "#n",
    so two equal gifts in one file stay two, and the same file read again gives the same
    keys."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def key(self, content: str) -> str:
        count = self._seen[content] = self._seen.get(content, 0) + 1
        return f"{content}#{count}"
