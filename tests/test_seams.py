"""The engine's narrow seams: the retry policy, the liveness of a sender, and the Store
the send loop sees (the outbox is one)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from mailer.backoff import Backoff
from mailer.models import Issue
from mailer.outbox import Outbox
from mailer.processes import HERE, is_dead_here, sender_token
from mailer.seams import Store
from mailer.settings import Delivery

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_backoff_doubles_each_time_and_gives_up_after_the_attempts_and_the_hours():
    backoff = Backoff(max_attempts=3, retry_hours=24, retry_base_seconds=300)
    first = backoff.retry_at(0, None, START, jitter=1.0)
    assert first == START + timedelta(seconds=300)
    assert backoff.retry_at(1, START, START, jitter=1.0) == START + timedelta(seconds=600)
    # the jitter spreads the retries of one outage
    assert backoff.retry_at(1, START, START, jitter=1.2) == START + timedelta(seconds=720)
    # out of attempts, but the hours have not passed: tried again, by the deadline at latest
    late = START + timedelta(hours=23, minutes=59)
    assert backoff.retry_at(5, START, late, jitter=1.0) == START + timedelta(hours=24)
    # out of attempts and hours: failed for good
    assert backoff.retry_at(2, START, START + timedelta(hours=24), jitter=1.0) is None


def test_backoff_reads_the_delivery_settings():
    settings = Delivery(max_attempts=7, retry_hours=2, retry_base_seconds=60)
    assert Backoff.of(settings) == Backoff(7, 2, 60)


def test_a_sender_of_this_machine_is_dead_once_its_process_is_gone():
    mine = sender_token()
    assert mine.startswith(f"{HERE}:") and not is_dead_here(mine)
    gone = subprocess.run(
        [sys.executable, "-c", "from mailer.processes import sender_token; print(sender_token())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert is_dead_here(gone) == (HERE != "unknown")
    # another machine's sender is left to its lease, as is a name that is no token
    elsewhere = "0123456789abcdef:" + mine.partition(":")[2]
    assert not is_dead_here(elsewhere)
    assert not is_dead_here("not a token")


def test_the_outbox_is_a_store(engine, settings):
    with Session(engine) as session:
        issue = Issue(key="seam:1", subject="s")
        session.add(issue)
        session.commit()
        session.refresh(issue)
    store: Store = Outbox(engine, issue, settings.delivery)  # checked by mypy too
    assert store.claim() == [] and store.finish()


FORK_OR_SPAWN = """
import sys, threading
from sqlalchemy import text
from mailer.db import create_db_engine
from mailer.processes import start_method
url = sys.argv[1]
engine = create_db_engine(url)
print(start_method(url))
with engine.connect() as connection:
    connection.execute(text("select 1"))
print(start_method(url))  # the pool keeps the connection, and the file open
engine.dispose()
print(start_method(url))
threading.Thread(target=threading.Event().wait, daemon=True).start()
print(start_method(url))
"""


def test_helper_processes_are_forked_only_where_it_is_safe(tmp_path):
    """Forked (at once, with everything imported) with no other thread and no SQLite
    file open; spawned (a fresh interpreter) otherwise."""
    url = f"sqlite:///{tmp_path / 'mailer.db'}"
    done = subprocess.run(
        [sys.executable, "-c", FORK_OR_SPAWN, url], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["fork", "spawn", "fork", "spawn"]


HELPER_KILLED = """
import os, signal, sys
from pathlib import Path
from mailer.errors import DeliveryError
from mailer.processes import with_helpers
from mailer.testing import make_settings

def killed(settings, issue_id, connections, progress):
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does

try:
    with_helpers(
        make_settings(Path(sys.argv[1])), 1, [1, 1], None,
        lambda connections: ({"sent": 1}, 0), killed, lambda: None,
    )
except DeliveryError as exc:
    print(exc)
"""


def test_a_helper_process_killed_without_a_word_ends_the_send_with_an_error(tmp_path):
    """Its end never comes: the send used to wait for it for ever (a scheduler's send
    too, whose helpers a relay that is down had stopped before they could report)."""
    done = subprocess.run(
        [sys.executable, "-c", HELPER_KILLED, str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "a sending process died (exit code -9)"
