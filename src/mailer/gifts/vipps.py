"""Vipps reports (the settlement report's CSV from portal.vipps.no) -> gifts.

The columns read, by their header names, each renamable in `[donations]` in case Vipps
renames one: the sale's date (`vipps_date_column`, default "SalesDate"), the gross amount
("Gross"), the currency ("Currency"; without one, `vipps_currency`), the transaction id
("TransactionId", what makes a gift the same in two reports), and when the report has
them the giver's message ("Message": where the issue's reference is), name ("Name") and
email ("Email"). Lines before the header row are skipped (the report's merchant and
settlement summaries); when the header row starts with a record type ("TransactionInfo"),
only the rows of that type are read. A line with no positive amount is a refund: skipped
and counted."""

from __future__ import annotations

from mailer.gifts.parsed import (
    ArrivedGift,
    GiftFileError,
    GiftSource,
    ParsedFile,
    checked_currency,
    minor_units,
)
from mailer.gifts.table import address_of, cell, day_of, rows_of
from mailer.sections_donation import Donations


def read_vipps(data: bytes, name: str, keys: Donations) -> ParsedFile:
    required = (keys.vipps_date_column, keys.vipps_amount_column, keys.vipps_transaction_column)
    rows = rows_of(data, name)
    header: list[str] | None = None
    for _line, row in rows:
        if set(required) <= set(row):
            header = row
            break
    if header is None:
        raise GiftFileError(
            f"{name}: no header row with the columns {', '.join(required)}; export the "
            "settlement report as CSV, or name its columns in [donations] (vipps_*_column)"
        )
    columns = {title: index for index, title in enumerate(header)}
    # the legacy report's rows start with their kind: "TransactionInfo", "SettlementInfo"
    record_type = header[0] if header[0] not in _named(keys) else None
    parsed = ParsedFile()
    for line, row in rows:
        if record_type and row[0] != record_type:
            continue  # another kind of record (a settlement's or fee's summary)
        where = f"{name}: line {line}"
        if row == header:
            continue  # the header again, before the next settlement's rows
        gift = _gift(row, columns, keys, where)
        if gift.amount_minor <= 0:
            parsed.returns += 1
        else:
            parsed.gifts.append(gift)
    return parsed


def _named(keys: Donations) -> set[str]:
    return {
        keys.vipps_date_column, keys.vipps_amount_column, keys.vipps_currency_column,
        keys.vipps_transaction_column, keys.vipps_message_column, keys.vipps_name_column,
        keys.vipps_email_column,
    }  # fmt: skip


def _gift(row: list[str], columns: dict[str, int], keys: Donations, where: str) -> ArrivedGift:
    amount = cell(row, columns, keys.vipps_amount_column)
    transaction = cell(row, columns, keys.vipps_transaction_column)
    if not amount:
        raise GiftFileError(f"{where}: the amount ({keys.vipps_amount_column}) is missing")
    if not transaction:
        raise GiftFileError(f"{where}: the {keys.vipps_transaction_column} is missing")
    currency = checked_currency(
        cell(row, columns, keys.vipps_currency_column) or keys.vipps_currency, f"{where}: currency"
    )
    return ArrivedGift(
        source=GiftSource.VIPPS,
        source_key=f"vipps:{transaction}",
        received_on=day_of(cell(row, columns, keys.vipps_date_column), f"{where}: date"),
        amount_minor=minor_units(amount, currency, f"{where}: {keys.vipps_amount_column}"),
        currency=currency,
        remittance=cell(row, columns, keys.vipps_message_column),
        payer_name=cell(row, columns, keys.vipps_name_column) or None,
        email=address_of(cell(row, columns, keys.vipps_email_column), f"{where}: email"),
    )
