"""The donors' copy of an issue: the thank-you block that takes the appeal's place for
readers who already give (fixed on each delivery when it is queued). It keeps the
payment details, in small print, for another gift; not the QR codes (see thanks.html)."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.donation import DonationBlock
from mailer.settings import Donation


@dataclass(frozen=True)
class ThanksBlock:
    heading: str
    text: str
    appeal: DonationBlock  # its details and (counted) links, for the small print


def thanks_block(donation: Donation, appeal: DonationBlock | None) -> ThanksBlock | None:
    """The block donors get in place of `appeal`, or None when there is no thank-you
    configured (or no appeal to replace): then donors get the same copy as the others."""
    if appeal is None or not (donation.thanks_heading or donation.thanks_text):
        return None
    return ThanksBlock(donation.thanks_heading, donation.thanks_text, appeal)
