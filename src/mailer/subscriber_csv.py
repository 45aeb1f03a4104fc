"""Subscribers in and out as CSV: `mailer subscribers import` checks a whole file, then
adds its good rows in short transactions; `export` writes what import reads back, with
text a spreadsheet would run as a formula neutralised."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, select

from mailer.db import insert_new, with_retries
from mailer.erasure import erased_markers
from mailer.errors import SubscriberError
from mailer.i18n import parse_languages
from mailer.models import SUBSCRIBERS, Subscriber, SubscriberStatus, new_public_id
from mailer.reader_languages import checked_languages
from mailer.subscribers import (
    FREQUENCIES,
    list_subscribers,
    new_values,
    normalise_address,
    refusal_of,
)

# language: the languages the reader reads, their own first ("fa-AF,en"; empty: the
# publication's language), as `subscribers add --language` takes them
IMPORT_COLUMNS = ("email", "name", "status", "frequency", "language")
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "frequency",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "language",  # last: a column added later, where scripts reading by position miss it
)


@dataclass
class ImportReport:
    added: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    to_add: int = 0  # the good rows, once the whole file is checked


# Rows added per transaction: each holds the writer a few milliseconds, so a reader's
# unsubscribe (or a sign-up) waits no longer than that while a big list comes in.
IMPORT_BATCH = 1000


def import_csv(
    engine: Engine,
    path: Path,
    purge_key: str = "",
    progress: Callable[[ImportReport], None] | None = None,
    batch_size: int = IMPORT_BATCH,
    languages: tuple[str, ...] = (),
) -> ImportReport:
    """Add every good row of a CSV file (header: email[,name][,status][,frequency]
    [,language]; `languages`: the publication's, which a row's language must be among) and
    report each rejected row with its line number and reason. A file that is not UTF-8
    CSV with an email column is refused whole and changes nothing. The whole file is
    checked first; then the rows go in, in short transactions of `batch_size`, with
    `progress` told after each. An address on the list already (or erased) is skipped,
    so the same file imported again after an interruption adds the rest, nothing twice."""
    rows, report = _read_csv(path)
    good = _checked_rows(rows, report, languages)
    report.to_add = len(good)
    if progress is not None:
        progress(report)
    for start in range(0, len(good), batch_size):
        batch = good[start : start + batch_size]
        added, skipped = with_retries(partial(_add_batch, engine, batch, purge_key))
        report.added += added
        report.skipped += skipped
        if progress is not None:
            progress(report)
    return report


def _checked_rows(
    rows: list[tuple[int, dict[str, str]]], report: ImportReport, languages: tuple[str, ...]
) -> list[tuple[int, dict[str, Any]]]:
    """The rows to add, as column values; a bad or repeated row goes to the report."""
    good: dict[str, tuple[int, dict[str, Any]]] = {}
    for line, values in rows:
        try:
            row = _row_values(values, languages)
        except SubscriberError as exc:
            report.rejected.append((line, str(exc)))
            continue
        if row["email"] in good:
            report.rejected.append((line, f"{row['email']} repeats line {good[row['email']][0]}"))
            continue
        good[row["email"]] = (line, row)
    return list(good.values())


def _add_batch(
    engine: Engine, batch: list[tuple[int, dict[str, Any]]], purge_key: str
) -> tuple[int, list[tuple[int, str]]]:
    """One transaction: the batch's rows whose address is new. Returns how many were
    added and the skipped rows with why."""
    markers = {m: row["email"] for _, row in batch for m in erased_markers(row["email"], purge_key)}
    wanted = [row["email"] for _, row in batch] + list(markers)
    s = SUBSCRIBERS.c
    with engine.begin() as connection:
        found = connection.execute(select(s.email, s.status).where(s.email.in_(wanted))).all()
        taken = {markers.get(email, email): refusal_of(email, status) for email, status in found}
        new = [
            row | {"public_id": new_public_id()} for _, row in batch if row["email"] not in taken
        ]
        added: set[str] = set()
        if new:
            # an address that arrived since the look (a sign-up) is left as it is
            statement = insert_new(engine, SUBSCRIBERS).on_conflict_do_nothing().returning(s.email)
            added = set(connection.execute(statement, new).scalars())
    skipped = [
        (line, f"{row['email']} is {taken.get(row['email'], 'already on the list')}")
        for line, row in batch
        if row["email"] not in added
    ]
    return len(added), skipped


def _read_csv(path: Path) -> tuple[list[tuple[int, dict[str, str]]], ImportReport]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubscriberError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubscriberError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as “CSV UTF-8” and import again. Nothing was imported."
        ) from None
    if "\x00" in text:
        raise SubscriberError(f"{path} is not a CSV text file. Nothing was imported.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if "email" not in header:
            raise SubscriberError(
                f"{path}: the first row must be a header with an 'email' column "
                f"(found {', '.join(repr(h) for h in header) or 'nothing'}). Nothing was imported."
            )
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise SubscriberError(
                f"{path}: the header names {', '.join(repeated)} more than once. "
                "Nothing was imported."
            )
        report = ImportReport(ignored_columns=[h for h in header if h not in IMPORT_COLUMNS])
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                report.rejected.append(
                    (reader.line_num, f"expected {len(header)} fields, found {len(values)}")
                )
                continue
            values += [""] * (len(header) - len(values))  # trailing empty fields left out
            rows.append((reader.line_num, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise SubscriberError(
            f"{path}: not valid CSV at line {reader.line_num}: {exc}. Nothing was imported."
        ) from None
    return rows, report


def _row_values(values: dict[str, str], languages: tuple[str, ...]) -> dict[str, Any]:
    status = values.get("status", "").strip().lower() or SubscriberStatus.ACTIVE
    if status not in SubscriberStatus.ALL:
        raise SubscriberError(f"unknown status {status!r} (use {', '.join(SubscriberStatus.ALL)})")
    frequency = values.get("frequency", "").strip().lower() or "every"
    if frequency not in FREQUENCIES:
        raise SubscriberError(f"unknown frequency {frequency!r} (use every, weekly or articles)")
    name = unneutralised(values["name"]) if values.get("name") else None
    address = normalise_address(unneutralised(values["email"]))
    return new_values(address, name, status, frequency, _languages(values, languages))


def _languages(values: dict[str, str], offered: tuple[str, ...]) -> str | None:
    """A row's languages as stored; without `offered`, any well-formed tags."""
    read = values.get("language", "").strip()
    if offered:
        return checked_languages(read, offered)
    try:
        return ",".join(parse_languages(read)) or None
    except ValueError as exc:
        raise SubscriberError(str(exc)) from None


def export_csv(engine: Engine, out: TextIO, status: str | None = None) -> int:
    """Write the list as CSV (importable again); erased subscribers are left out. Text a
    spreadsheet would run as a formula is neutralised (see `neutralised`)."""
    return write_csv(out, list_subscribers(engine, status))


def write_csv(out: TextIO, subscribers: Iterable[Subscriber]) -> int:
    """Write these subscribers as export_csv does (the desk's export of a search); how
    many rows were written."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for subscriber in subscribers:
        if subscriber.email.startswith("erased:"):
            continue
        row = [getattr(subscriber, _FIELDS.get(column, column)) for column in EXPORT_COLUMNS]
        writer.writerow([_cell(v) for v in row])
        count += 1
    return count


# a column whose field is named otherwise
_FIELDS = {"language": "languages"}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return neutralised(str(value))


# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"); quotes in
# front count too, so a value that begins with "'=" comes back as it was.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def neutralised(value: str) -> str:
    """A cell a spreadsheet shows as text: a value that would start a formula (=, +, -,
    @, tab, carriage return; web sign-ups supply names) gets a single quote in front."""
    return "'" + value if _FORMULA.match(value) else value


def unneutralised(value: str) -> str:
    """The value `neutralised` was given: the one quote it added taken off again. A value
    that starts with a quote and then anything else is left as it is."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value, 1) else value
