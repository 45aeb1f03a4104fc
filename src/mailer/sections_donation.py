"""The donation sections of config/mailer.toml: `[donation]`, the appeal and the payment
details every issue carries (with its texts per language, `[donation.languages.fa-AF]`),
and `[donations]`, how `mailer donations import` reads the files it is given."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.no import kontonr

from mailer.sections import LANGUAGE_TAG, Section, _listed


class DonationTexts(Section):
    """The appeal's words in one language (`[donation.languages.fa-AF]`): any left empty
    are the catalog's (the buttons' labels) or the publication's own (heading, appeal,
    thanks). The payment details are the same in every language."""

    heading: str = ""
    appeal: str = ""
    thanks_heading: str = ""
    thanks_text: str = ""
    donate_label: str = ""  # the donate page's button ("" : the catalog's "Donate")
    vipps_label: str = ""  # the Vipps button ("": the catalog's "Give with Vipps")


class Donation(Section):
    heading: str = ""
    appeal: str = ""
    # the buttons' labels in the publication's language ("": the catalog's)
    donate_label: str = ""
    vipps_label: str = ""
    # the appeal's words per language, by BCP 47 tag: [donation.languages.fa-AF]
    languages: dict[str, DonationTexts] = Field(default_factory=dict)
    bank_name: str = ""
    account_holder: str = Field(default="", max_length=70)  # EPC069-12: the name, 70 at most
    account_number: str = ""
    iban: str = ""
    bic: str = ""
    vipps: str = Field(default="", pattern=r"^[0-9 ]*$")
    # a Vipps donation link, https://qr.vipps.no/donations/<alias>: a button and a QR code
    vipps_link: str = Field(default="", pattern=r"^(https://[^\s?#]+)?$")
    url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    # the query parameter that carries the reference on `url` (empty: none)
    url_reference_parameter: str = Field(default="ref", pattern=r"^[A-Za-z0-9_.-]*$")
    # an amount the EPC QR code fills in (0: the reader types one)
    suggested_amount_eur: float = Field(default=0, ge=0, le=999_999_999.99)
    # what each issue's reference starts with ("DMC" -> DMC-2640)
    reference_prefix: str = Field(default="", pattern=r"^([A-Z][A-Z0-9]{0,7})?$")
    # --- thanking those who give (issue 15) ---
    # a reader counts as a donor this long after a gift matched to their address
    thank_donors_days: int = Field(default=90, ge=0)
    # the block a donor's copy carries in place of the appeal
    thanks_heading: str = ""
    thanks_text: str = ""
    # a goal the block shows progress towards (0: none), in goal_currency, per
    # goal_period: "month", "quarter" or "YYYY-MM-DD/YYYY-MM-DD"
    goal_amount: float = Field(default=0, ge=0)
    goal_currency: str = Field(default="NOK", pattern=r"^[A-Z]{3}$")
    goal_period: str = Field(
        default="month", pattern=r"^(month|quarter|\d{4}-\d{2}-\d{2}/\d{4}-\d{2}-\d{2})$"
    )
    # what one unit of another currency counts as in goal_currency ({ EUR = 11.7 })
    goal_rates: dict[str, float] = Field(default_factory=dict)
    # a gift matched to a subscriber by address brings them one thank-you mail
    thank_gift_mail: bool = False

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        if not value:
            return ""
        try:
            return IBAN(value).formatted
        except SchwiftyException as exc:
            raise ValueError(f"a valid IBAN ({exc})") from None

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str) -> str:
        if not value:
            return ""
        try:
            return str(BIC(value.replace(" ", "")))
        except SchwiftyException as exc:
            raise ValueError(f"a valid BIC ({exc})") from None

    @field_validator("account_number")
    @classmethod
    def _account_number(cls, value: str) -> str:
        """A Norwegian account number (kontonummer, 11 digits and a mod 11 check)."""
        if value and not kontonr.is_valid(value):
            raise ValueError(
                f"a Norwegian account number, 11 digits with a valid check digit ({value!r})"
            )
        return value

    @model_validator(mode="after")
    def _epc_needs_both(self) -> Donation:
        if bool(self.bic) != bool(self.account_holder) and self.iban:
            raise ValueError(
                "donation.bic and donation.account_holder: expected both or neither (the EPC "
                "QR code for transfers in euros needs both)"
            )
        bank = IBAN(self.iban).bic if self.iban and self.bic else None
        if bank is not None and str(bank) != self.bic[:8]:
            raise ValueError(
                f"donation.bic = {self.bic!r}: expected the BIC of the IBAN's bank ({bank}, "
                f"the bank of {self.iban}), or a transfer from the EPC QR code would go astray"
            )
        return self

    @field_validator("languages")
    @classmethod
    def _tags(cls, value: dict[str, DonationTexts]) -> dict[str, DonationTexts]:
        wrong = [tag for tag in value if not LANGUAGE_TAG.match(tag)]
        if wrong:
            raise ValueError(f"BCP 47 language tags such as fa-AF as its keys, not {wrong}")
        return value

    def in_language(self, language: str) -> Donation:
        """The appeal as readers of `language` get it: that language's texts where the
        config gives them (the tag itself, else its primary language: fa for fa-AF), the
        publication's elsewhere. The payment details never change."""
        found = self.languages.get(language) or self.languages.get(language.split("-")[0])
        if found is None:
            return self
        given = {key: text for key, text in found.model_dump().items() if text}
        return self.model_copy(update=given)

    @property
    def vipps_link_warning(self) -> str | None:
        """Why a vipps_link may not be one (it is not on Vipps' own host), or None."""
        host = urlsplit(self.vipps_link).hostname
        if self.vipps_link and host != VIPPS_HOST:
            return (
                f"[donation] vipps_link is on {host}, not {VIPPS_HOST}: readers' Vipps "
                "app may not open it"
            )
        return None


VIPPS_HOST = "qr.vipps.no"


class Donations(Section):
    """How `mailer donations import` reads the files it is given (issue 15)."""

    # --- the import's keys (issue 15, part A) ---
    # the Vipps report's columns, by their header names (config/mailer.toml says which)
    vipps_date_column: str = Field(default="SalesDate", min_length=1)
    vipps_amount_column: str = Field(default="Gross", min_length=1)
    vipps_currency_column: str = "Currency"
    vipps_transaction_column: str = Field(default="TransactionId", min_length=1)
    vipps_message_column: str = "Message"
    vipps_name_column: str = "Name"
    vipps_email_column: str = "Email"
    # the currency of a Vipps report without a currency column
    vipps_currency: str = Field(default="NOK", pattern=r"^[A-Z]{3}$")
    # a bank credit that is Vipps paying out its settlement (on the payer's name and the
    # remittance): not a gift, the Vipps report holds the gifts in it; empty: none
    vipps_payout_pattern: str = (
        r"(?im)^vipps( mobilepay)? as$|\bvipps\b.*\b(oppgjør|utbetaling|settlement)\b"
        r"|\b(oppgjør|utbetaling|settlement)\b.*\bvipps\b"
    )

    # the newsroom's own accounts (IBANs or account numbers): a credit from one of them
    # is money moved between its accounts, not a gift
    own_accounts: tuple[str, ...] = ()

    @field_validator("own_accounts", mode="before")
    @classmethod
    def _accounts(cls, value: object) -> object:
        return _listed(value)

    @field_validator("own_accounts")
    @classmethod
    def _compact(cls, accounts: tuple[str, ...]) -> tuple[str, ...]:
        """As a statement writes them: no spaces or dots, upper case."""
        return tuple(re.sub(r"[\s.]", "", account).upper() for account in accounts)

    @field_validator("vipps_payout_pattern")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
        return pattern
