"""What the CSV readers share: the file's text and rows (with their line numbers), its
dates, and the giver's address."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime

from mailer.errors import SubscriberError
from mailer.gifts.parsed import GiftFileError
from mailer.subscribers import normalise_address


def rows_of(data: bytes, name: str) -> Iterator[tuple[int, list[str]]]:
    """Each non-empty row and the line it starts on; the delimiter (, ; or tab) as the
    first line uses it."""
    text = _decoded(data)
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield line, [cell.strip() for cell in row]
            line = reader.line_num + 1
    except csv.Error as exc:
        raise GiftFileError(f"{name}: line {line}: {exc}") from None


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # an export from an older Excel


_DAY_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d.%m.%y", "%d/%m/%Y")


def day_of(text: str, where: str) -> date:
    """A date as exports write it: 2026-11-30, 30.11.2026, 30/11/2026 (a time after it is
    ignored)."""
    head = text.strip().replace("T", " ").split(" ")[0]
    for form in _DAY_FORMATS:
        try:
            return datetime.strptime(head, form).date()
        except ValueError:
            continue
    raise GiftFileError(f"{where}: {text!r} is not a date (write 2026-11-30 or 30.11.2026)")


def address_of(text: str, where: str) -> str | None:
    if not text.strip():
        return None
    try:
        return normalise_address(text)
    except SubscriberError as exc:
        raise GiftFileError(f"{where}: {exc}") from None


def cell(row: list[str], columns: dict[str, int], column: str) -> str:
    index = columns.get(column)
    return row[index] if index is not None and index < len(row) else ""
