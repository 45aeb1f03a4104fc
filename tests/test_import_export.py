"""Import and export of the list: an export opened in a spreadsheet runs no formula and
reads back to the same names."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine, event, text, update
from sqlmodel import Session, select

from mailer.db import create_db_engine, open_database, upgrade
from mailer.models import Subscriber
from mailer.subscriber_csv import IMPORT_BATCH, export_csv, import_csv, neutralised, unneutralised
from mailer.subscribers import add_subscriber, unsubscribe
from mailer.testing import TEST_PURGE_KEY, TEST_SECRET_KEY, make_settings, running_site
from mailer.tokens import UNSUBSCRIBE, make_token
from mailer.web import create_app

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = "List-Unsubscribe=One-Click"

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


# --- a big import while readers unsubscribe -------------------------------------------


def write_list(path: Path, count: int, first: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for number in range(first, first + count):
            out.write(f"reader{number}@example.org,Reader {number}\n")
    return path


def start_import(tmp_path: Path, database_url: str, listing: Path) -> subprocess.Popen[str]:
    """`mailer subscribers import` in a process of its own, its output in files."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env = clean | {
        "MAILER_DATABASE_URL": database_url,
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_PURGE_KEY": TEST_PURGE_KEY,
    }
    with (
        (tmp_path / f"{listing.stem}.out").open("w") as out,
        (tmp_path / f"{listing.stem}.err").open("w") as err,
    ):  # the process writes to its own copies of these
        return subprocess.Popen(
            [sys.executable, "-m", "mailer", "subscribers", "import", str(listing)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
        )


def count_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM subscriber")).scalar_one()


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT email, status FROM subscriber")).all())


def test_one_click_unsubscribes_during_a_big_import_all_succeed(tmp_path):
    """A 100,000-row import held SQLite's writer for over 30 s in one transaction, and a
    one-click unsubscribe meanwhile got a 500. Now every one answers 200 and counts."""
    settings = make_settings(tmp_path)  # a real SQLite file
    engine = open_database(settings.database.url)
    readers = [add_subscriber(engine, f"a{n}@example.org", confirmed=True) for n in range(30)]
    tokens = [make_token(settings.secret_key, UNSUBSCRIBE, r.public_id) for r in readers]
    size = 30_000
    listing = write_list(tmp_path / "big.csv", size)
    with listing.open("a", encoding="utf-8") as out:  # the readers come again at its end
        out.writelines(f"a{n}@example.org,Again\n" for n in range(30))
    importing = start_import(tmp_path, settings.database.url, listing)
    posts = mid_import = 0
    try:
        with running_site(create_app(settings, engine)) as site:

            def one_click(token: str) -> None:
                url = f"{site}/unsubscribe/{token}"
                answer = httpx.post(url, headers=FORM, content=ONE_CLICK, timeout=120)
                assert answer.status_code == 200, answer.text

            while importing.poll() is None:  # again and again while the rows go in
                one_click(tokens[posts % len(tokens)])
                posts += 1
                mid_import += 30 < count_rows(engine) < size + 30
            for token in tokens:  # and once more each, the import done
                one_click(token)
        assert importing.wait(120) == 0, (tmp_path / "big.err").read_text()
    finally:
        importing.kill()
        importing.wait()
    after = statuses(engine)
    engine.dispose()
    assert mid_import >= 1, "no unsubscribe came while rows went in: make the file bigger"
    assert len(after) == size + 30
    assert {after[f"a{n}@example.org"] for n in range(30)} == {"unsubscribed"}
    output = (tmp_path / "big.out").read_text() + (tmp_path / "big.err").read_text()
    assert f"Imported {size}; skipped 30 already on the list" in output
    assert f"{size + 30}/{size + 30} rows" in output  # progress, off a terminal


def test_an_import_killed_midway_finishes_on_a_rerun_without_duplicates(
    tmp_path, engine, database_url
):
    """The rows go in batch by batch: a killed import leaves whole batches; an
    unsubscribe made since stands; the same file again adds exactly the rest."""
    size = 20_000
    listing = write_list(tmp_path / "list.csv", size)
    importing = start_import(tmp_path, database_url, listing)
    try:
        wait_for(lambda: count_rows(engine) >= 2 * IMPORT_BATCH, "the import added nothing")
    finally:
        importing.kill()
        importing.wait()
    done = count_rows(engine)
    assert 0 < done < size, "the import finished before it was stopped: make the file bigger"
    assert done % IMPORT_BATCH == 0, "a batch is committed whole or not at all"
    first = statuses(engine)
    assert first["reader0@example.org"] == "active"
    with Session(engine) as session:
        reader = session.exec(
            select(Subscriber).where(Subscriber.email == "reader0@example.org")
        ).one()
    unsubscribe(engine, reader.id or 0)

    again = start_import(tmp_path, database_url, listing)
    assert again.wait(120) == 0, (tmp_path / "list.err").read_text()
    output = (tmp_path / "list.out").read_text()
    assert f"Imported {size - done}; skipped {done} already on the list" in output
    after = statuses(engine)
    assert len(after) == size and count_rows(engine) == size
    assert after["reader0@example.org"] == "unsubscribed"
    assert sorted(after) == sorted(f"reader{n}@example.org" for n in range(size))


def impatient_engine(database_url: str) -> Engine:
    """The site's engine, but giving up on a lock after 0.1 s instead of 30 s: what a
    longer wait meets, sooner."""
    engine = create_db_engine(database_url)

    def short_waits(connection, _record) -> None:
        if engine.dialect.name == "sqlite":
            connection.execute("PRAGMA busy_timeout=100")
            return
        connection.autocommit = True  # a SET that a rollback cannot take back
        connection.execute("SET lock_timeout = 100")
        connection.autocommit = False

    event.listen(engine, "connect", short_waits)
    upgrade(engine)
    return engine


@contextmanager
def writer_held(database_url: str, seconds: float) -> Iterator[None]:
    """Another process's long write (a big import): the database's writer (SQLite) or
    every subscriber row (PostgreSQL) held for `seconds`, from when the block starts."""
    other = create_db_engine(database_url)
    connection = other.connect()
    if other.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("SELECT id FROM subscriber FOR UPDATE")
    release = threading.Timer(seconds, connection.rollback)
    release.start()
    try:
        yield
    finally:
        release.join()
        connection.close()
        other.dispose()


def test_an_unsubscribe_waits_out_a_busy_database(settings, database_url):
    """A one-click unsubscribe that met a held writer answered 500 and was lost; now it
    waits, tries again, and answers 200."""
    engine = impatient_engine(database_url)
    try:
        reader = add_subscriber(engine, "ana@example.org", confirmed=True)
        token = make_token(settings.secret_key, UNSUBSCRIBE, reader.public_id)
        with running_site(create_app(settings, engine)) as site, writer_held(database_url, 1.5):
            answer = httpx.post(
                f"{site}/unsubscribe/{token}", headers=FORM, content=ONE_CLICK, timeout=120
            )
        assert answer.status_code == 200, answer.text
        assert statuses(engine) == {"ana@example.org": "unsubscribed"}
    finally:
        engine.dispose()
