"""The newsroom's donation call to action: the configured payment details and the
issue's reference, the links a reader gives through in one tap (the donate page, Vipps),
and the QR codes a phone scans, ready for the templates. The details are validated by
the settings (account number mod 11, IBAN and BIC via schwifty)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mailer.qrcodes import QrCode, appeal_codes, untranslated
from mailer.settings import Donation, Settings


@dataclass(frozen=True)
class DonationBlock:
    heading: str
    appeal: str
    bank_name: str
    account_holder: str
    account_number: str
    iban: str
    bic: str
    vipps: str
    reference: str  # "mark your transfer DMC-2640"
    url: str  # the donate button's page, carrying the reference (empty: no button)
    vipps_url: str  # the "Give with Vipps" button's link, carrying the reference
    codes: tuple[QrCode, ...] = ()
    # the buttons' labels from the config ("": the catalog's "Donate", "Give with Vipps")
    donate_label: str = ""
    vipps_label: str = ""


def donation_block(
    donation: Donation,
    reference: str,
    domain: str,
    gettext: Callable[[str], str] = untranslated,
) -> DonationBlock | None:
    """The block to append to every issue, or None when nothing is configured. `domain`
    ends the Content-IDs of its QR codes; `gettext` is the reader's catalog, for what the
    codes say (`donation` is already in the reader's language: Donation.in_language)."""
    parameter = donation.url_reference_parameter
    vipps_url = with_query(donation.vipps_link, "reference", vipps_reference(reference))
    block = DonationBlock(
        heading=donation.heading,
        appeal=donation.appeal,
        bank_name=donation.bank_name,
        account_holder=donation.account_holder,
        account_number=donation.account_number,
        iban=donation.iban,
        bic=donation.bic,
        vipps=donation.vipps,
        reference=reference,
        url=with_query(donation.url, parameter, reference),
        vipps_url=vipps_url,
        codes=appeal_codes(donation, reference, vipps_url, domain, gettext),
        donate_label=donation.donate_label,
        vipps_label=donation.vipps_label,
    )
    labels = {"reference", "donate_label", "vipps_label"}
    shown = {k: v for k, v in vars(block).items() if k not in labels}
    return block if any(shown.values()) else None


def appeal_in(donation: Donation, language: str, publication_language: str) -> Donation:
    """The appeal for readers of `language` (Donation.in_language), whose buttons' labels
    are that language's own ([donation.languages.X]) or else the catalog's: [donation]'s
    labels are in the publication's language, and a catalog's translation reads better
    than a label in a language the reader may not read."""
    texts = donation.in_language(language)
    if language.lower() == publication_language.lower():
        return texts
    own = donation.languages.get(language) or donation.languages.get(language.split("-")[0])
    labels = {"donate_label": own.donate_label, "vipps_label": own.vipps_label} if own else {}
    return texts.model_copy(update=labels or {"donate_label": "", "vipps_label": ""})


def appeal_language_warning(settings: Settings) -> str | None:
    """Which of [publication] languages have no appeal of their own ([donation.languages.X]):
    their readers get the publication's, in a language they may not read. None when each
    has one, or when there is no appeal to translate."""
    donation, publication = settings.donation, settings.publication
    texts = (donation.heading, donation.appeal, donation.thanks_heading, donation.thanks_text)
    if not any(texts):
        return None
    own = publication.language.lower()
    given = {tag.lower() for tag in donation.languages}
    missing = [
        tag
        for tag in publication.languages
        if tag.lower() != own and not {tag.lower(), tag.split("-")[0].lower()} & given
    ]
    if not missing:
        return None
    return (
        f"[publication] languages has {', '.join(missing)} without an appeal of its own: "
        f"those readers get the [donation] appeal in {publication.language}; add "
        f"[donation.languages.{missing[0]}] with heading, appeal, thanks_heading and "
        "thanks_text to config/mailer.toml"
    )


def vipps_reference(reference: str) -> str:
    """What Vipps takes as a reference: 50 characters of A-Za-z0-9, space, - and _."""
    return "".join(c for c in reference if c.isascii() and (c.isalnum() or c in " -_"))[:50]


def with_query(url: str, name: str, value: str) -> str:
    """`url` with name=value added to its query (as it is when any of them is empty)."""
    if not (url and name and value):
        return url
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def payment_numbers(donation: Donation) -> tuple[str, ...]:
    """The numbers a reader pays to; an ingested article's copies of them are boilerplate."""
    return tuple(n for n in (donation.account_number, donation.iban, donation.vipps) if n)
