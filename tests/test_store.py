"""The outbox's store seam: claims that keep their limit on PostgreSQL, and outcomes
written on the raw DBAPI cursor exactly as SQLAlchemy wrote them."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, text, update

from mailer.models import DELIVERIES, SUBSCRIBERS
from mailer.outbox import DEFERRED, FAILED, SENDING, SENT, SKIPPED, Outbox, Outcome
from mailer.testing import import_readers, new_issue

c = DELIVERIES.c


def test_a_claim_takes_no_more_than_its_limit_after_the_tables_were_emptied(
    engine, settings, tmp_path
):
    """Filled, emptied by DELETE, analysed while empty, and filled again: claim(limit=3)
    hands out 3 rows, never more (PostgreSQL ran the LIMIT ... SKIP LOCKED subquery
    again inside the UPDATE, and one claim took every row)."""
    import_readers(engine, tmp_path, 40)
    issue = new_issue(engine, settings, tmp_path)
    Outbox(engine, issue, settings.delivery).enqueue()
    with engine.begin() as connection:
        connection.execute(delete(DELIVERIES))
        connection.execute(delete(SUBSCRIBERS))
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:  # the planner now expects empty tables
            connection.execute(text("ANALYZE"))
    (tmp_path / "again").mkdir()
    import_readers(engine, tmp_path / "again", 40)
    outbox = Outbox(engine, new_issue(engine, settings, tmp_path, 1), settings.delivery)
    outbox.enqueue()
    claims = [len(outbox.claim(limit=3)) for _ in range(4)]
    outbox.release()
    assert claims == [3, 3, 3, 3]


def test_outcomes_are_stored_as_sqlalchemy_stores_them(engine, settings, tmp_path):
    """A mixed batch (sent, deferred, failed, skipped, and a row another sender took
    over) written on the DBAPI cursor: each held row gets its outcome, typed and
    timed as SQLAlchemy reads it (SQLite's text datetimes in its format, so they compare
    as before), the claim cleared, donor and edition untouched; the row taken over stays
    the other sender's."""
    import_readers(engine, tmp_path, 5)
    outbox = Outbox(engine, new_issue(engine, settings, tmp_path), settings.delivery)
    outbox.enqueue()
    sent, deferred, failed, skipped, lost = outbox.claim(limit=5)
    with engine.begin() as connection:
        connection.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == lost.delivery_id)
            .values(claimed_by="elsewhere:1:00000000")
        )
    at = datetime(2026, 11, 30, 11, 0, 0, 123456, tzinfo=UTC)
    later = datetime(2026, 11, 30, 12, 15, tzinfo=timezone(timedelta(hours=1)))  # 11:15 UTC
    outbox.record(
        [
            Outcome(sent, SENT, "250 2.0.0 Ok", message_id="<m@example.org>", at=at),
            Outcome(deferred, DEFERRED, "451 4.3.0 later", next_attempt_at=later),
            Outcome(failed, FAILED, "550 5.1.1 no such user", blames_reader=True),
            Outcome(skipped, SKIPPED, "not sent: subscriber is bounced"),
            Outcome(lost, SENT, "250 2.0.0 Ok", message_id="<lost@example.org>", at=at),
        ]
    )
    outbox.release()
    columns = [c.status, c.attempts, c.smtp_response, c.blames_reader, c.message_id]
    columns += [c.sent_at, c.next_attempt_at, c.claimed_by, c.lease_until, c.donor, c.variant_id]
    with engine.connect() as connection:
        stored = {
            row[0]: tuple(row[1:])
            for row in connection.execute(select(c.id, *columns).order_by(c.id))
        }
        firsts = dict(connection.execute(select(c.id, c.first_attempt_at)).all())
        # SQLite compares datetimes as text: written ones look like SQLAlchemy's
        raw = "SELECT sent_at, next_attempt_at FROM delivery WHERE id IN (:a, :b)"
        texts = connection.execute(text(raw), {"a": sent.delivery_id, "b": deferred.delivery_id})
        shapes = {value for row in texts for value in row if value is not None}
    recorded = firsts[deferred.delivery_id]
    assert recorded is not None and recorded.tzinfo is not None  # the time of recording
    assert stored[sent.delivery_id] == (
        SENT, 1, "250 2.0.0 Ok", None, "<m@example.org>", at, None, None, None, False, None
    )  # fmt: skip
    assert firsts[sent.delivery_id] == at
    assert stored[deferred.delivery_id] == (
        DEFERRED, 1, "451 4.3.0 later", None, None, None, later, None, None, False, None
    )  # fmt: skip
    assert stored[failed.delivery_id][:5] == (FAILED, 1, "550 5.1.1 no such user", True, None)
    assert stored[skipped.delivery_id][:2] == (SKIPPED, 0)
    assert stored[lost.delivery_id][:3] == (SENDING, 0, None)
    assert stored[lost.delivery_id][7] == "elsewhere:1:00000000"
    if engine.dialect.name == "sqlite":
        assert shapes == {"2026-11-30 11:00:00.123456", "2026-11-30 11:15:00.000000"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_senders_writes_wait_their_turn_at_the_writers_lock(engine, settings, tmp_path):
    """On SQLite the writers of one file take turns by the lock file beside it: while
    another sender holds it (another process; here another open of the file, which
    flock keeps apart alike), an outcome waits, and is stored once it is let go."""
    import_readers(engine, tmp_path, 1)
    outbox = Outbox(engine, new_issue(engine, settings, tmp_path), settings.delivery)
    outbox.enqueue()
    (claimed,) = outbox.claim(limit=1)
    other = os.open(f"{engine.url.database}.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    recorded = threading.Event()
    writer = threading.Thread(
        target=lambda: (outbox.record([Outcome(claimed, SENT, "250 ok")]), recorded.set())
    )
    writer.start()
    try:
        assert not recorded.wait(0.3), "written while another sender held the lock"
    finally:
        os.close(other)  # lets go
    assert recorded.wait(10)
    writer.join()
    with engine.connect() as connection:
        assert connection.execute(select(c.status)).scalar_one() == SENT


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_writers_lock_is_made_as_sqlite_makes_its_own_files(engine, settings, tmp_path):
    """The lock file gets the database file's permissions (a database shared by the
    desk's and the scheduler's users stays shared), and a lock file that cannot be
    opened leaves the writes to SQLite's own locking: the outcome is stored all the same."""
    import_readers(engine, tmp_path, 2)
    outbox = Outbox(engine, new_issue(engine, settings, tmp_path), settings.delivery)
    outbox.enqueue()
    first, second = outbox.claim(limit=2)
    database, lock = engine.url.database, f"{engine.url.database}.lock"
    os.remove(lock)
    os.chmod(database, 0o660)
    umask = os.umask(0o077)
    try:
        outbox.record([Outcome(first, SENT, "250 ok")])
    finally:
        os.umask(umask)
    assert os.stat(lock).st_mode & 0o777 == 0o660
    os.remove(lock)
    os.mkdir(lock)  # no file to lock: SQLite alone
    outbox.record([Outcome(second, SENT, "250 ok")])
    with engine.connect() as connection:
        assert connection.execute(select(c.status)).scalars().all() == [SENT, SENT]
