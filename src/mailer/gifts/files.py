"""A gift file read by the reader of its kind: given, or told by its content (XML is a
bank statement; a header `date,amount,currency,...` is the plain CSV; any other CSV a
Vipps report)."""

from __future__ import annotations

from pathlib import Path

from mailer.gifts.camt import looks_like_camt, read_camt
from mailer.gifts.parsed import GiftFileError, GiftSource, ParsedFile
from mailer.gifts.plain_csv import looks_like_plain_csv, read_plain_csv
from mailer.gifts.table import rows_of
from mailer.gifts.vipps import read_vipps
from mailer.sections_donation import Donations


def read_gift_file(
    path: Path, kind: GiftSource | None, keys: Donations
) -> tuple[GiftSource, ParsedFile]:
    """The file's kind and what it holds, or GiftFileError naming the line or element at
    fault (and nothing read)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GiftFileError(f"cannot read {path}: {exc.strerror}") from None
    kind = kind or kind_of(data, path.name)
    if kind is GiftSource.CAMT:
        return kind, read_camt(data, path.name, keys.vipps_payout_pattern, keys.own_accounts)
    if kind is GiftSource.CSV:
        return kind, read_plain_csv(data, path.name)
    return kind, read_vipps(data, path.name, keys)


def kind_of(data: bytes, name: str) -> GiftSource:
    if not data.strip():
        raise GiftFileError(f"{name} is empty")
    if looks_like_camt(data):
        return GiftSource.CAMT
    first = next(rows_of(data, name), None)
    if first is not None and looks_like_plain_csv(first[1]):
        return GiftSource.CSV
    return GiftSource.VIPPS
