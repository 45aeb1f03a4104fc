"""Crash safety: a real `mailer send` killed with SIGKILL at random moments of a slow send,
then run again, mails every subscriber; only the messages on the wire at a kill (one per
connection) can arrive twice, and the database agrees with what the server received."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from sqlmodel import Session, select

from mailer.articles import ingest_file
from mailer.demo import SAMPLE_ARTICLE
from mailer.models import Delivery
from mailer.subscriber_csv import import_csv
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, commands, smtp_server

READERS = 200
KILLS = 3


class SlowServer(RecordingHandler):
    """Takes 10 ms over each message, so a send lasts long enough to be killed midway."""

    delay = 0.01

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class TogetherServer(SlowServer):
    """Holds each message until messages from `senders` builders are waiting (told apart
    by their MIME boundary: each process or thread builds its own), so every sender has
    work in flight however long it took to start; slow as SlowServer after that."""

    senders = 2

    def __init__(self) -> None:
        super().__init__()
        self.builders: set[bytes] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.builders.add(_boundary(envelope.original_content or b""))
        give_up = time.monotonic() + 60
        while len(self.builders) < self.senders and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def readers(engine: Any, settings: Any, tmp_path: Any) -> None:
    """READERS active subscribers and the sample article, ready to send."""
    listing = tmp_path / "readers.csv"
    listing.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(READERS)))
    import_csv(engine, listing)
    ingest_file(engine, settings, SAMPLE_ARTICLE)


def _environment(database_url: str, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        MAILER_DATABASE_URL=database_url,
        MAILER_SMTP_PORT=str(smtp_port),
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
    )
    return env


def _run_until(command: list[str], env: dict[str, str], cwd: Any, server: Any, more: int) -> Any:
    """Start a send and return it once the server has received `more` further messages
    (or the send ended), however slow this machine is to start a process."""
    target = len(server.received) + more
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    sender = subprocess.Popen(command, cwd=cwd, env=env, text=True, **quiet)
    deadline = time.monotonic() + 60
    while len(server.received) < target and sender.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.002)
    return sender


def test_killed_sends_resume_and_every_reader_gets_the_issue(readers, settings, engine, tmp_path):
    seed = random.randrange(1_000_000)
    moments = random.Random(seed).sample(range(1, READERS // (KILLS + 1)), KILLS)
    with smtp_server(SlowServer()) as (_controller, server):
        env = _environment(settings.database.url, server.port)
        command = [sys.executable, "-m", "mailer", "send", "--latest", "--yes"]
        sent_at_kills = []
        for more in moments:  # killed after a random number of further messages
            sender = _run_until(command, env, tmp_path, server, more)
            sender.send_signal(signal.SIGKILL)
            sender.communicate()
            sent_at_kills.append(_sent(engine))
        assert any(0 < n < READERS for n in sent_at_kills), (
            f"no kill landed mid-send: {sent_at_kills}"
        )
        done = commands.mailer(command[3:], tmp_path, env)
        assert done.returncode == 0, done.stderr
    copies = Counter(r for message in server.received for r in message.rcpt_tos)
    assert set(copies) == {f"r{i}@example.org" for i in range(READERS)}, f"seed {seed}"
    repeats = sum(n - 1 for n in copies.values())
    # only what was on the wire at a kill: at most one message per connection
    most = settings.smtp.max_connections * KILLS
    assert repeats <= most, f"{repeats} repeats after {KILLS} kills (seed {seed})"
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert {row.status for row in rows} == {"sent"}
    received_ids = {message.message["Message-ID"] for message in server.received}
    assert {row.message_id for row in rows} == received_ids, "one stable Message-ID each"
    assert len(received_ids) == READERS, "a repeat carries the first copy's Message-ID"


def _sent(engine: Any) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Delivery).where(Delivery.status == "sent")).all())


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(readers, settings, engine, tmp_path):
    with smtp_server(SlowServer()) as (_controller, server):
        env = _environment(settings.database.url, server.port)
        command = [sys.executable, "-m", "mailer", "send", "--latest", "--yes"]
        sender = _run_until(command, env, tmp_path, server, 20)
        sender.send_signal(signal.SIGINT)
        _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 130, err
    assert "resume with: mailer send --article 1" in err and "Traceback" not in err
    with Session(engine) as session:
        statuses = Counter(row.status for row in session.exec(select(Delivery)).all())
    assert "sending" not in statuses and statuses["sent"] > 0 and statuses["queued"] > 0


def test_killing_a_send_kills_its_helper_processes(readers, settings, engine, tmp_path):
    if settings.database.url.startswith("postgresql"):
        pytest.skip("processes live and die the same on every database")
    slower = TogetherServer()
    slower.delay = 0.05
    with smtp_server(slower) as (_controller, server):
        env = {**_environment(settings.database.url, server.port), "MAILER_DELIVERY_PROCESSES": "2"}
        command = [sys.executable, "-m", "mailer", "send", "--latest", "--yes"]
        sender = _run_until(command, env, tmp_path, server, 1)
        deadline = time.monotonic() + 30
        while len({_boundary(m.data) for m in server.received}) < 2:  # both are sending
            assert time.monotonic() < deadline and sender.poll() is None, "no helper sent"
            time.sleep(0.005)
        sender.send_signal(signal.SIGKILL)
        sender.communicate()
        time.sleep(1.0)  # what was on the wire lands
        landed = len(server.received)
        time.sleep(1.0)
        assert len(server.received) == landed, "a helper process outlived the send"
        slower.delay = 0
        done = commands.mailer(command[3:], tmp_path, env)
        assert done.returncode == 0, done.stderr
    copies = Counter(r for message in server.received for r in message.rcpt_tos)
    assert set(copies) == {f"r{i}@example.org" for i in range(READERS)}
    assert sum(n - 1 for n in copies.values()) <= settings.smtp.max_connections


def _boundary(data: bytes) -> bytes:
    """The MIME boundary: each process's message builder makes its own."""
    return data.split(b"boundary=", 1)[-1].split(b"\r\n", 1)[0]
