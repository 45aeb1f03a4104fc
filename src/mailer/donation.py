"""The newsroom's donation call to action: the configured payment details, ready for the
templates (IBAN validated and grouped in fours by the settings, via schwifty)."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.settings import Donation


@dataclass(frozen=True)
class DonationBlock:
    heading: str
    appeal: str
    bank_name: str
    account_number: str
    iban: str
    vipps: str
    url: str


def donation_block(donation: Donation) -> DonationBlock | None:
    """The block to append to every issue, or None when nothing is configured."""
    block = DonationBlock(**donation.model_dump())
    return block if any(vars(block).values()) else None


def payment_numbers(donation: Donation) -> tuple[str, ...]:
    """The numbers a reader pays to; an ingested article's copies of them are boilerplate."""
    return tuple(n for n in (donation.account_number, donation.iban, donation.vipps) if n)
