"""ISO 20022 bank statements (camt.053, and camt.054 credit notifications) -> gifts.

What DNB and other banks export as "ISO 20022 kontoutskrift". Elements are found by
their local names, so every version from .001.02 to .001.08 reads the same, and so does
a bank's own namespace. Read: each booked credit entry (`Ntry` with `CdtDbtInd` CRDT),
its amount and currency, booking date, and per transaction (`NtryDtls/TxDtls`; a batched
entry holds several, each a gift of its own) the debtor's name, the unstructured
remittance (`RmtInf/Ustrd`) and the structured reference (`RmtInf/Strd/CdtrRefInf/Ref`).
Debits, reversals (returned payments), Vipps's settlement payouts and transfers from
the newsroom's own other accounts ([donations] own_accounts) are skipped and counted.
Parsed without entities, DTDs or network access."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from lxml import etree
from lxml.etree import _Element

from mailer.gifts.parsed import (
    ArrivedGift,
    GiftFileError,
    GiftSource,
    Occurrences,
    ParsedFile,
    checked_currency,
    is_payout,
    minor_units,
)

# the report's element, and the name of the statements in it: camt.053, .054, .052
_REPORTS = {"BkToCstmrStmt": "Stmt", "BkToCstmrDbtCdtNtfctn": "Ntfctn", "BkToCstmrAcctRpt": "Rpt"}


def looks_like_camt(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def read_camt(
    data: bytes, name: str, payout_pattern: str, own_accounts: tuple[str, ...] = ()
) -> ParsedFile:
    """The gifts of a camt.053/054 file, or GiftFileError naming the element at fault.
    `own_accounts`: the newsroom's other accounts, whose credits are transfers."""
    document = _parse(data, name)
    reading = _Reading(payout_pattern, frozenset(own_accounts))
    for number, (account, entry) in enumerate(_entries(document, name), start=1):
        where = f"{name}: entry {number} (line {entry.sourceline})"
        _read_entry(entry, account, where, reading)
    return reading.parsed


@dataclass
class _Reading:
    payout_pattern: str
    own_accounts: frozenset[str]
    parsed: ParsedFile = field(default_factory=ParsedFile)
    unnamed: Occurrences = field(default_factory=Occurrences)


def _parse(data: bytes, name: str) -> _Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False
    )
    try:
        document = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise GiftFileError(
            f"{name}: not well-formed XML at line {exc.lineno}: {exc.msg}; "
            "export the statement again (ISO 20022 camt.053)"
        ) from None
    if document.getroottree().docinfo.doctype:
        raise GiftFileError(f"{name}: a bank statement has no DOCTYPE; refusing this file")
    return document


def _entries(document: _Element, name: str) -> Iterator[tuple[str, _Element]]:
    """Each entry, with the account it is on (its IBAN or other id): a bank's reference
    is unique on one account, not across two."""
    for report, statement in _REPORTS.items():
        found = _child(document, report)
        if found is not None:
            for each in _all(found, statement):
                account = _text(each, "Acct", "Id", "IBAN") or _text(
                    each, "Acct", "Id", "Othr", "Id"
                )
                for entry in _all(each, "Ntry"):
                    yield account or "", entry
            return
    raise GiftFileError(
        f"{name}: not an ISO 20022 bank statement (no BkToCstmrStmt element under "
        f"<{etree.QName(document).localname}>); export a camt.053 statement"
    )


def _read_entry(entry: _Element, account: str, where: str, reading: _Reading) -> None:
    parsed = reading.parsed
    direction = _text(entry, "CdtDbtInd")
    if direction not in ("CRDT", "DBIT"):
        raise GiftFileError(f"{where}: CdtDbtInd is {direction!r}, expected CRDT or DBIT")
    status = _text(entry, "Sts", "Cd") or _text(entry, "Sts") or "BOOK"
    if (_text(entry, "RvslInd") or "").lower() in ("true", "1"):
        # a reversal: as a debit, a gift returned to its giver; as a credit, a payment of
        # ours that came back
        parsed.returns += 1
    elif direction == "DBIT":
        parsed.debits += 1
    elif status != "BOOK":
        parsed.pending += 1
    else:
        for gift, tx in _gifts_of(entry, account, where, reading.unnamed):
            if _debtor_account(tx) in reading.own_accounts:
                parsed.transfers += 1
            elif is_payout(
                reading.payout_pattern, gift.payer_name, gift.remittance, gift.reference
            ):
                parsed.payouts += 1
            else:
                parsed.gifts.append(gift)


def _gifts_of(
    entry: _Element, account: str, where: str, unnamed: Occurrences
) -> Iterator[tuple[ArrivedGift, _Element | None]]:
    amount_element = _child(entry, "Amt")
    if amount_element is None or not (amount_element.text or "").strip():
        raise GiftFileError(f"{where}: the amount (Amt) is missing")
    currency = checked_currency(amount_element.get("Ccy", ""), f"{where}: Amt/@Ccy")
    booked = _booking_date(entry, where)
    transactions = [tx for details in _all(entry, "NtryDtls") for tx in _all(details, "TxDtls")]
    own_key = _entry_key(entry, transactions, booked, unnamed)
    key = f"{account}:{own_key}" if account else own_key
    if len(transactions) <= 1:
        tx = transactions[0] if transactions else None
        amount = _unsigned(minor_units(amount_element.text or "", currency, f"{where}: Amt"), where)
        yield _gift(key, booked, amount, currency, entry, tx), tx
        return
    for number, tx in enumerate(transactions, start=1):
        at = f"{where}: TxDtls {number} (line {tx.sourceline})"
        tx_amount = _tx_amount(tx)
        if tx_amount is None:
            raise GiftFileError(f"{at}: a batched entry's transaction has no amount (Amt)")
        tx_currency = checked_currency(tx_amount.get("Ccy", currency), f"{at}: Amt/@Ccy")
        amount = _unsigned(minor_units(tx_amount.text or "", tx_currency, f"{at}: Amt"), at)
        own = _text(tx, "Refs", "AcctSvcrRef") or str(number)
        yield _gift(f"{key}/{own}", booked, amount, tx_currency, entry, tx), tx


def _unsigned(amount: int, where: str) -> int:
    """ISO 20022 amounts are never negative: the direction is CdtDbtInd."""
    if amount < 0:
        raise GiftFileError(
            f"{where}: Amt is negative; the schema gives the direction in CdtDbtInd"
        )
    return amount


def _gift(
    key: str, booked: date, amount: int, currency: str, entry: _Element, tx: _Element | None
) -> ArrivedGift:
    remittance = " ".join(t.strip() for t in _texts(tx, "RmtInf", "Ustrd") if t.strip())
    return ArrivedGift(
        source=GiftSource.CAMT,
        source_key=f"camt:{key}",
        received_on=booked,
        amount_minor=amount,
        currency=currency,
        reference=" ".join(_texts(tx, "RmtInf", "Strd", "CdtrRefInf", "Ref")),
        remittance=remittance or (_text(entry, "AddtlNtryInf") or ""),
        payer_name=_debtor(tx),
    )


def _debtor_account(tx: _Element | None) -> str | None:
    """The account the money came from, as the statement writes it (compacted)."""
    found = _text(tx, "RltdPties", "DbtrAcct", "Id", "IBAN") or _text(
        tx, "RltdPties", "DbtrAcct", "Id", "Othr", "Id"
    )
    return re.sub(r"[\s.]", "", found).upper() if found else None


def _debtor(tx: _Element | None) -> str | None:
    if tx is None:
        return None
    # .001.02 to .001.07: RltdPties/Dbtr/Nm; .001.08: RltdPties/Dbtr/Pty/Nm
    return _text(tx, "RltdPties", "Dbtr", "Nm") or _text(tx, "RltdPties", "Dbtr", "Pty", "Nm")


def _booking_date(entry: _Element, where: str) -> date:
    for path in (("BookgDt", "Dt"), ("BookgDt", "DtTm"), ("ValDt", "Dt"), ("ValDt", "DtTm")):
        value = _text(entry, *path)
        if value:
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                raise GiftFileError(f"{where}: {'/'.join(path)} {value!r} is not a date") from None
    raise GiftFileError(f"{where}: the booking date (BookgDt/Dt) is missing")


def _entry_key(
    entry: _Element, transactions: list[_Element], booked: date, unnamed: Occurrences
) -> str:
    """The bank's own reference of the entry, or one made from its content."""
    own = _text(entry, "AcctSvcrRef")
    if own:
        return own
    # some banks number their entries 1, 2... in each statement: NtryRef alone could be
    # another statement's entry
    numbered = _text(entry, "NtryRef")
    if numbered:
        return f"{numbered}/{booked}/{_text(entry, 'Amt')}"
    for tx in transactions[:1]:
        tx_ref = _text(tx, "Refs", "AcctSvcrRef") or _text(tx, "Refs", "EndToEndId")
        if tx_ref and tx_ref != "NOTPROVIDED":
            return tx_ref
    content = "|".join([booked.isoformat(), *(t.strip() for t in entry.itertext())])
    return "sha256:" + unnamed.key(hashlib.sha256(content.encode()).hexdigest())


def _tx_amount(tx: _Element) -> _Element | None:
    for path in (("Amt",), ("AmtDtls", "TxAmt", "Amt"), ("AmtDtls", "InstdAmt", "Amt")):
        found = _child(tx, *path)
        if found is not None and (found.text or "").strip():
            return found
    return None


def _local(element: _Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _all(parent: _Element, name: str) -> list[_Element]:
    return [child for child in parent if _local(child) == name]


def _child(parent: _Element | None, *names: str) -> _Element | None:
    for name in names:
        if parent is None:
            return None
        parent = next((c for c in parent if _local(c) == name), None)
    return parent


def _text(parent: _Element | None, *names: str) -> str | None:
    found = _child(parent, *names)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _texts(parent: _Element | None, *names: str) -> list[str]:
    """The texts of every element at this path (Ustrd and Strd may repeat)."""
    level = [parent] if parent is not None else []
    for name in names:
        level = [child for element in level for child in _all(element, name)]
    return [element.text or "" for element in level if (element.text or "").strip()]
