"""Backups: `mailer backup` copies a live SQLite database while a send writes to it; the
copy checks out, and a send resumed from it reaches everyone it does not record as sent,
and nobody it does. A backup is never half-written or written over by mistake."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.subscriber_csv import import_csv
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, commands, make_settings, smtp_server
from test_crash import _environment

READERS = 300
FIRST = 60  # messages let through at once
TRICKLE = 150  # then at most this many more, slowly, until the backup is done


class GatedServer(RecordingHandler):
    """Takes FIRST messages at once, then one per connection every 0.1 s up to FIRST +
    TRICKLE, then holds the rest until `done` is set: the send is mid-way, and writing,
    while the backup runs, however fast or slow this machine is."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.done = threading.Event(), threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if len(self.received) >= FIRST:
            self.reached.set()
            while not self.done.is_set():
                if len(self.received) < FIRST + TRICKLE:
                    await asyncio.sleep(0.1)
                    break
                await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def _mailer(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return commands.mailer(args, cwd, env)


def _sent_in(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        query = (
            "SELECT s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
            "WHERE d.status = 'sent'"
        )
        return {email for (email,) in db.execute(query)}


def _sign_ups(url: str, done: threading.Event) -> None:
    """Pending sign-ups, one after another, as the subscriber site writes them."""
    engine = open_database(url)
    n = 0
    while not done.is_set():
        add_subscriber(engine, f"new{n}@example.org")
        n += 1
    engine.dispose()


def test_a_backup_taken_mid_send_checks_out_and_a_send_resumes_from_it(tmp_path):
    database = tmp_path / "subscribers.db"
    url = f"sqlite:///{database}"
    settings = make_settings(tmp_path, database_url=url)
    engine = open_database(url)
    listing = tmp_path / "readers.csv"
    listing.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(READERS)))
    import_csv(engine, listing)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    engine.dispose()
    copy = tmp_path / "backups" / "mailer.db"
    copy.parent.mkdir()
    with smtp_server(GatedServer()) as (_controller, server):
        env = _environment(url, server.port)
        command = [sys.executable, "-m", "mailer", "send", "--latest", "--yes"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        sender = subprocess.Popen(command, cwd=tmp_path, env=env, text=True, **quiet)
        assert isinstance(server, GatedServer) and server.reached.wait(60), "the send never began"
        deadline = time.monotonic() + 60
        while not _sent_in(database):  # the first outcomes are on record
            assert time.monotonic() < deadline, "no outcome was recorded"
            time.sleep(0.05)
        signups = threading.Thread(target=_sign_ups, args=(url, server.done), daemon=True)
        signups.start()  # the site writes too
        made = _mailer("backup", str(copy), env=env, cwd=tmp_path)
        server.done.set()
        signups.join(60)
        _out, err = sender.communicate(timeout=120)
    assert made.returncode == 0, made.stderr
    assert f"Backed up the database to {copy}" in made.stdout
    assert sender.returncode == 0, err
    assert sorted(path.name for path in copy.parent.iterdir()) == ["mailer.db"]  # no partial
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    recorded = _sent_in(copy)
    assert 0 < len(recorded) <= FIRST + TRICKLE + settings.smtp.max_connections < READERS
    # restore as the README says: the database's -wal and -shm go, the backup takes its place
    for leftover in ("subscribers.db-wal", "subscribers.db-shm"):
        (tmp_path / leftover).unlink(missing_ok=True)
    shutil.copyfile(copy, database)
    with smtp_server() as (_controller, again):
        resumed = _mailer("send", "--resume", env=_environment(url, again.port), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    copies = Counter(rcpt for message in again.received for rcpt in message.rcpt_tos)
    everyone = {f"r{i}@example.org" for i in range(READERS)}
    assert set(copies) == everyone - recorded and set(copies.values()) == {1}
    assert _sent_in(database) == everyone


def test_a_backup_is_not_written_over_without_force_and_postgresql_points_to_pg_dump(tmp_path):
    url = f"sqlite:///{tmp_path / 'subscribers.db'}"
    open_database(url).dispose()
    env = _environment(url, 25)
    copy = tmp_path / "mailer-backup.db"
    copy.write_text("an older backup")
    refused = _mailer("backup", str(copy), env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{copy} exists already" in refused.stderr and "--force" in refused.stderr
    assert copy.read_text() == "an older backup"
    replaced = _mailer("backup", str(copy), "--force", env=env, cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT count(*) FROM subscriber").fetchone() == (0,)
    assert sorted(p.name for p in tmp_path.iterdir() if "mailer-backup" in p.name) == [copy.name]
    postgres = _environment("postgresql+psycopg://mailer:secret@127.0.0.1/mailer", 25)
    pointed = _mailer("backup", str(tmp_path / "pg.db"), env=postgres, cwd=tmp_path)
    assert pointed.returncode == 1 and "pg_dump -Fc" in pointed.stderr
    assert "pg_restore" in pointed.stderr and not (tmp_path / "pg.db").exists()
