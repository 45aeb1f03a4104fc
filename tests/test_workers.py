"""Several `mailer send --worker` processes on one issue, one of them killed with SIGKILL
midway: the others take over its deliveries, and every subscriber gets the issue once
(repeats only for what the killed worker had on the wire: one per connection)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from sqlmodel import Session, select

from mailer.articles import ingest_file
from mailer.demo import SAMPLE_ARTICLE
from mailer.models import Delivery
from mailer.subscriber_csv import import_csv
from mailer.testing import smtp_server
from test_crash import SlowServer, _environment

READERS = 2000
WORKERS = 3


def test_three_workers_one_killed_every_reader_once(engine, settings, tmp_path):
    listing = tmp_path / "readers.csv"
    listing.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(READERS)))
    import_csv(engine, listing)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    with smtp_server(SlowServer()) as (_controller, server):
        env = _environment(settings.database.url, server.port)
        command = [sys.executable, "-m", "mailer", "send", "--worker", "--latest", "--yes"]
        workers = [
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(WORKERS)
        ]
        deadline = time.monotonic() + 60
        while len(server.received) < READERS // 4:  # a quarter sent: kill one midway
            assert time.monotonic() < deadline and workers[0].poll() is None, "no progress"
            time.sleep(0.005)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].communicate()
        for worker in workers[1:]:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, out
            assert "Sent " in out
    copies = Counter(r for message in server.received for r in message.rcpt_tos)
    assert set(copies) == {f"r{i}@example.org" for i in range(READERS)}
    repeats = sum(n - 1 for n in copies.values())
    assert repeats <= settings.smtp.max_connections, f"{repeats} repeats after one kill"
    with Session(engine) as session:
        rows: Any = session.exec(select(Delivery)).all()
    assert {row.status for row in rows} == {"sent"}
    assert {row.message_id for row in rows} == {m.message["Message-ID"] for m in server.received}
