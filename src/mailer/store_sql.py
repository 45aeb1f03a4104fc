"""The outbox's hot statements, per dialect: how a claim picks its rows, and the outcomes
of a batch written with one `executemany` on the raw DBAPI cursor (sqlite3 or psycopg 3,
which pipelines it). A send records an outcome for every message; through SQLAlchemy's
per-row parameter handling that cost a quarter of the send's CPU (bench/README.md).
Only outbox.py uses this module: SQL stays behind the store."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Dialect, Select, any_, func

from mailer.models import DELIVERIES, DeliveryStatus, UTCDateTime

d = DELIVERIES.c

# One outcome, in the order of OutcomeWriter's placeholders (see Outbox.record).
OutcomeRow = tuple[
    str,  # status
    int,  # attempts
    str,  # the server's reply
    bool | None,  # blames the reader (failures only)
    str | None,  # Message-ID (sent only)
    datetime | None,  # sent at
    datetime | None,  # next attempt at (deferred only)
    datetime,  # when it was tried: the first attempt's time if there was none
    int,  # the delivery's id
]


def picked(ids: Select[Any], dialect: Dialect) -> ColumnElement[bool]:
    """`delivery.id` among the rows `ids` picks (LIMIT, and on PostgreSQL FOR UPDATE SKIP
    LOCKED). PostgreSQL gets `= ANY(ARRAY(...))`, an init plan run exactly once: as an
    `IN (subquery)` the planner may run it again inside the UPDATE (seen with statistics
    of an empty table), each run locking more rows, and a claim of 3 took 40."""
    if dialect.name == "postgresql":
        return d.id == any_(func.array(ids.scalar_subquery()))
    return d.id.in_(ids.scalar_subquery())


class OutcomeWriter:
    """Writes a batch of outcomes, each only while `token` still holds the row (status
    sending, claimed by it), clearing the claim; variant_id and donor stay as they are."""

    def __init__(self, dialect: Dialect, token: str):
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._sql = (
            f"UPDATE {DELIVERIES.name} SET status = {mark}, attempts = {mark}, "
            f"smtp_response = {mark}, blames_reader = {mark}, message_id = {mark}, "
            f"sent_at = {mark}, next_attempt_at = {mark}, "
            f"first_attempt_at = COALESCE(first_attempt_at, {mark}), "
            "claimed_by = NULL, lease_until = NULL "
            f"WHERE id = {mark} AND status = {mark} AND claimed_by = {mark}"
        )
        self._mine = (str(DeliveryStatus.SENDING), token)
        # datetimes as SQLAlchemy binds them (SQLite keeps text, compared as text)
        stamp = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._stamp: Callable[[datetime | None], Any] = stamp or (lambda value: value)

    def write(self, connection: Connection, rows: Sequence[OutcomeRow]) -> None:
        """In `connection`'s transaction, on its DBAPI connection."""
        stamp, mine = self._stamp, self._mine
        params = [
            (str(row[0]), *row[1:5], stamp(row[5]), stamp(row[6]), stamp(row[7]), row[8], *mine)
            for row in rows
        ]
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self._sql, params)
        finally:
            cursor.close()


class WriterLock:
    """On SQLite, the engine's writers of one database file (a send's processes, workers)
    take turns by a lock of their own: SQLite makes a writer that finds the file locked
    sleep a millisecond or more before it looks again, where a commit holds it for a
    fraction of that, and two processes recording outcomes lost a third of their
    commits to those sleeps (bench/README.md); the kernel wakes the next flock holder at
    once. Any other writer (the desk, the CLI) waits on SQLite as before. On PostgreSQL,
    nothing: rows are locked one by one there.

    The lock only spares those sleeps: SQLite's own locking keeps the writes apart. So a
    writer that cannot open the lock file (a folder it may not write, a file another
    user made) writes without it."""

    def __init__(self, url: URL):
        name = url.database or ""
        sqlite_file = url.get_backend_name() == "sqlite" and name not in ("", ":memory:")
        self._database = name if sqlite_file else None

    @contextmanager
    def held(self) -> Iterator[None]:
        lock = self._open()
        if lock is None:
            yield
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # lets go, whatever happened

    def _open(self) -> int | None:
        """The lock file, opened anew for each transaction (a few microseconds)."""
        if self._database is None:
            return None
        path = self._database + ".lock"
        try:
            return os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return _new_lock_file(path, self._database)
        except OSError:  # not ours to open: SQLite's locking alone
            return None


def _new_lock_file(path: str, database: str) -> int | None:
    """A new lock file with the database file's permissions, as SQLite makes its -wal and
    -shm files: whoever may write the database may take the lock."""
    try:
        mode = os.stat(database).st_mode & 0o777
        lock = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:  # another writer made it just now
        return _opened(path)
    except OSError:
        return None
    os.fchmod(lock, mode)  # past the umask, as SQLite does
    return lock


def _opened(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDWR)
    except OSError:
        return None
