"""The plain CSV for any other way money arrives (a card processor, cash at an event):
a header `date,amount,currency,reference,email,name` (reference, email and name may be
empty or left out), one gift a row. An email matched to a subscriber makes them a donor."""

from __future__ import annotations

import hashlib

from mailer.gifts.parsed import (
    ArrivedGift,
    GiftFileError,
    GiftSource,
    Occurrences,
    ParsedFile,
    checked_currency,
    minor_units,
)
from mailer.gifts.table import address_of, cell, day_of, rows_of

COLUMNS = ("date", "amount", "currency", "reference", "email", "name")
REQUIRED = COLUMNS[:3]


def looks_like_plain_csv(first_row: list[str]) -> bool:
    return set(REQUIRED) <= {name.strip().lower() for name in first_row}


def read_plain_csv(data: bytes, name: str) -> ParsedFile:
    rows = rows_of(data, name)
    header = next(rows, None)
    if header is None or not looks_like_plain_csv(header[1]):
        raise GiftFileError(f"{name}: line 1 must be the header {','.join(COLUMNS)}")
    columns = {title.lower(): index for index, title in enumerate(header[1])}
    parsed = ParsedFile()
    same = Occurrences()
    for line, row in rows:
        where = f"{name}: line {line}"
        if len(row) != len(header[1]):
            raise GiftFileError(f"{where}: {len(row)} fields, the header has {len(header[1])}")
        gift = _gift(row, columns, where, same)
        if gift.amount_minor <= 0:
            parsed.returns += 1  # money paid back
        else:
            parsed.gifts.append(gift)
    return parsed


def _gift(row: list[str], columns: dict[str, int], where: str, same: Occurrences) -> ArrivedGift:
    values = {column: cell(row, columns, column) for column in COLUMNS}
    if not values["amount"]:
        raise GiftFileError(f"{where}: the amount is missing")
    currency = checked_currency(values["currency"], f"{where}: currency")
    content = "|".join(values[column] for column in COLUMNS)
    return ArrivedGift(
        source=GiftSource.CSV,
        source_key="csv:" + same.key(hashlib.sha256(content.encode()).hexdigest()),
        received_on=day_of(values["date"], f"{where}: date"),
        amount_minor=minor_units(values["amount"], currency, f"{where}: amount"),
        currency=currency,
        reference=values["reference"],
        email=address_of(values["email"], f"{where}: email"),
        payer_name=values["name"] or None,
    )
