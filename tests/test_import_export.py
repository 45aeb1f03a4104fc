"""Import and export of the list: an export opened in a spreadsheet runs no formula and
reads back to the same names."""

from __future__ import annotations

import csv
import io

from sqlalchemy import update
from sqlmodel import Session, select

from mailer.db import open_database
from mailer.models import Subscriber
from mailer.subscribers import (
    add_subscriber,
    export_csv,
    import_csv,
    neutralised,
    unneutralised,
)

HOSTILE = [
    '=HYPERLINK("http://evil","x")',
    "+1",
    "-2",
    "@SUM(A1)",
    "'=already",
    "''+twice",
    "'quoted name",
    "Ana",
    "=x",  # what "\t=x" becomes once its spaces are tidied
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def names(engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return {s.email: s.name for s in session.exec(select(Subscriber))}


def test_export_neutralises_formulas_and_import_reads_the_same_names_back(engine, tmp_path):
    for number, name in enumerate(HOSTILE):
        add_subscriber(engine, f"r{number}@example.org", name, confirmed=True)
    add_subscriber(engine, "-dash@example.org", "Raw tab", confirmed=True)
    add_subscriber(engine, "cr@example.org", "Raw cr", confirmed=True)
    with Session(engine) as session:  # as a form that kept them would have stored them
        session.exec(
            update(Subscriber)
            .where(Subscriber.name == "Raw tab")
            .values(name="\t=cmd|' /C calc'!A0")
        )
        session.exec(update(Subscriber).where(Subscriber.name == "Raw cr").values(name="\r=1+1"))
        session.commit()
    out = io.StringIO()
    assert export_csv(engine, out) == len(HOSTILE) + 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(FORMULA_START), row
    cells = {row[0]: row[1] for row in rows[1:]}
    assert cells["r0@example.org"] == '\'=HYPERLINK("http://evil","x")'
    assert cells["r4@example.org"] == "''=already"
    assert cells["r6@example.org"] == "'quoted name"  # no formula: left as it is
    assert cells["'-dash@example.org"] == "'\t=cmd|' /C calc'!A0"

    exported = tmp_path / "export.csv"
    exported.write_text(out.getvalue(), encoding="utf-8")
    other = open_database(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        report = import_csv(other, exported)
        assert report.rejected == [] and report.added == len(HOSTILE) + 2
        back = names(other)
    finally:
        other.dispose()
    for number, name in enumerate(HOSTILE):
        assert back[f"r{number}@example.org"] == name
    assert "-dash@example.org" in back
    assert back["cr@example.org"] == "=1+1"  # the import tidies spaces, as for any name


def test_neutralising_is_undone_exactly():
    for value in [*HOSTILE, "\t=x", "\r=x", "'", "''", "", "'a", "'-", "-"]:
        assert unneutralised(neutralised(value)) == value
    assert unneutralised("'hello") == "'hello"
