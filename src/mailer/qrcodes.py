"""The appeal's QR codes, as PNG images (segno): a Vipps donation link for a phone's camera,
and an EPC QR code ("GiroCode", EPC069-12) that banking apps in the euro area scan to fill
in a transfer. Each says what it is for and carries its details as text too."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from mailer.settings import Donation


@dataclass(frozen=True)
class QrCode:
    """A QR code of the appeal, carried in the message as a related part (cid:)."""

    name: str  # "vipps" or "epc": its file name and the first part of its Content-ID
    payload: str  # what it encodes
    png: bytes
    cid: str  # its Content-ID, without the angle brackets; the HTML shows "cid:" + cid
    alt: str
    caption: str  # what it is for, under the code
    details: tuple[tuple[str, str], ...]  # the same, as text: (label, value)


# The European Payments Council's QR code, EPC069-12 version 002: one field a line
EPC_SERVICE_TAG = "BCD"
EPC_VERSION = "002"
EPC_UTF8 = "1"
EPC_CREDIT_TRANSFER = "SCT"  # SEPA Credit Transfer
EPC_MAX_BYTES = 331
# The pixels a module of a code takes in its PNG: sharp when a client shows it at 160 px
SCALE = 5


def epc_payload(donation: Donation, reference: str) -> str:
    """What an EPC QR code holds: the BIC, the account holder, the IBAN, an amount in
    euros only when the newsroom suggests one, and the reference as the remittance text."""
    amount = ""
    if donation.suggested_amount_eur:
        euros = Decimal(str(donation.suggested_amount_eur)).quantize(Decimal("0.01"))
        amount = f"EUR{euros}"
    fields = [
        EPC_SERVICE_TAG,
        EPC_VERSION,
        EPC_UTF8,
        EPC_CREDIT_TRANSFER,
        donation.bic,
        donation.account_holder,
        donation.iban.replace(" ", ""),
        amount,
        "",  # purpose: none
        "",  # structured remittance (ISO 11649): none; the text below instead
        reference[:140],
    ]
    payload = "\n".join(fields)
    if len(payload.encode("utf-8")) > EPC_MAX_BYTES:  # the names are held to 70 already
        raise ValueError(f"an EPC QR code holds {EPC_MAX_BYTES} bytes at most")
    return payload


@lru_cache(maxsize=16)
def png(payload: str) -> bytes:
    """The payload as a QR code (error correction M, as EPC069-12 asks), in PNG. Kept for
    the issue's other languages, whose codes carry the same payloads (8 ms a code)."""
    import segno  # 10-15 ms to import: only an appeal with codes pays it

    code = segno.make(payload, error="m", boost_error=False, micro=False, encoding="utf-8")
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=SCALE, border=4)
    return buffer.getvalue()


def untranslated(text: str) -> str:
    """The gettext of no catalog: the English as written."""
    return text


def appeal_codes(
    donation: Donation,
    reference: str,
    vipps_url: str,
    domain: str,
    gettext: Callable[[str], str] = untranslated,
) -> tuple[QrCode, ...]:
    """The codes the appeal shows: Vipps when there is a Vipps link, EPC when the
    account holder, IBAN and BIC are all known. `domain` ends each Content-ID; `gettext`
    is the reader's catalog, for what the codes say."""
    codes = []
    link = gettext("Link")
    if vipps_url:
        codes.append(
            QrCode(
                name="vipps",
                payload=vipps_url,
                png=png(vipps_url),
                cid=f"vipps.{reference or 'appeal'}@{domain}",
                alt=gettext("QR code: give with Vipps"),
                caption=gettext("Scan with your phone's camera to give with Vipps."),
                details=(("Vipps", donation.vipps), (link, vipps_url))
                if donation.vipps
                else ((link, vipps_url),),
            )
        )
    if donation.iban and donation.bic and donation.account_holder:
        payload = epc_payload(donation, reference)
        amount = f"€{donation.suggested_amount_eur:g}" if donation.suggested_amount_eur else ""
        details = [
            (gettext("Account holder"), donation.account_holder),
            ("IBAN", donation.iban),
            ("BIC", donation.bic),
            (gettext("Reference"), reference),
            (gettext("Amount"), amount),
        ]
        codes.append(
            QrCode(
                name="epc",
                payload=payload,
                png=png(payload),
                cid=f"epc.{reference or 'appeal'}@{domain}",
                alt=gettext("QR code: a bank transfer in euros (EPC QR code, GiroCode)"),
                caption=gettext("Scan in your banking app to fill in a transfer in euros."),
                details=tuple((label, value) for label, value in details if value),
            )
        )
    return tuple(codes)
