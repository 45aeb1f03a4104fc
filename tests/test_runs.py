"""The use cases in mailer.runs, and the one set of rules by which the scheduled service
and `mailer send --resume` go on with an issue left unfinished: a dead sender's leases
are taken back at once, an issue with nothing left is marked sent, and one a live sender
is at work on is left to it. Real SMTP servers on 127.0.0.1; SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from mailer.articles import find_article
from mailer.models import DELIVERIES, Delivery, Issue, utcnow
from mailer.outbox import Outbox
from mailer.runs import (
    RunOutcome,
    article_send,
    dry_run,
    resume,
    resume_unfinished,
    send_article,
    send_test_copy,
)
from mailer.settings import Settings
from mailer.testing import RecordingHandler, import_readers, mailer_on, new_issue


def _ended_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _claimed_by(engine: Engine, settings: Settings, issue: Issue, pid: int, count: int) -> None:
    """`count` deliveries of the issue claimed, leases live, by a sender with this pid on
    this machine."""
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.enqueue()
    where = outbox.token.partition(":")[0]
    outbox.token = f"{where}:{pid}:00000000"
    assert len(outbox.claim(limit=count)) == count


def _statuses(engine: Engine, issue: Issue) -> Counter[str]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.issue_id == issue.id)).all()
    return Counter(row.status for row in rows)


def _status(engine: Engine, issue: Issue) -> str:
    with Session(engine) as session:
        stored = session.get(Issue, issue.id)
        assert stored is not None
        return stored.status


def test_send_resume_takes_over_a_dead_senders_deliveries_at_once(
    engine, settings, tmp_path, smtp: RecordingHandler
):
    """Rows a killed sender on this machine held, leases still running, go out now."""
    addresses = import_readers(engine, tmp_path, 5)
    issue = new_issue(engine, settings, tmp_path)
    _claimed_by(engine, settings, issue, _ended_pid(), count=3)
    result = mailer_on(settings, tmp_path, "send", "--resume")
    assert result.returncode == 0, result.stderr
    assert "5 deliveries open" in result.stdout and "Sent 5" in result.stdout, result.stdout
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(addresses)
    assert _status(engine, issue) == "sent"


def test_send_resume_marks_an_issue_with_nothing_left_sent_and_sends_nothing(
    engine, settings, tmp_path, smtp: RecordingHandler
):
    """An issue left `sending` after its last delivery was recorded (the sender stopped
    in between) is marked sent, as the service does."""
    import_readers(engine, tmp_path, 3)
    issue = new_issue(engine, settings, tmp_path)
    Outbox(engine, issue, settings.delivery).enqueue()
    with engine.begin() as connection:
        connection.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.issue_id == issue.id)
            .values(status="sent", sent_at=utcnow())
        )
    result = mailer_on(settings, tmp_path, "send", "--resume")
    assert result.returncode == 0, result.stderr
    assert "0 deliveries open" in result.stdout and "Sent 0" in result.stdout, result.stdout
    assert _status(engine, issue) == "sent" and smtp.received == []


def test_send_resume_leaves_an_issue_a_live_sender_is_at_work_on(
    engine, settings, tmp_path, smtp: RecordingHandler
):
    """Another sender, alive, holds some of its deliveries: `send --resume` and the
    service leave the issue to it rather than race it."""
    import_readers(engine, tmp_path, 4)
    issue = new_issue(engine, settings, tmp_path)
    _claimed_by(engine, settings, issue, os.getpid(), count=2)  # this process
    result = mailer_on(settings, tmp_path, "send", "--resume")
    assert result.returncode == 0, result.stderr
    assert "Another send is at work on it (2 deliveries held until" in result.stdout
    assert list(resume_unfinished(engine, settings)) == []
    assert smtp.received == [] and _statuses(engine, issue) == {"sending": 2, "queued": 2}
    assert _status(engine, issue) == "sending"


def test_resume_waits_for_deferred_messages_until_due(engine, settings, tmp_path, smtp):
    """Deferred messages not due yet: nothing goes, and the run says when they are."""
    import_readers(engine, tmp_path, 2)
    issue = new_issue(engine, settings, tmp_path)
    Outbox(engine, issue, settings.delivery).enqueue()
    due = utcnow() + timedelta(hours=1)
    with engine.begin() as connection:
        connection.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.issue_id == issue.id)
            .values(status="deferred", attempts=1, next_attempt_at=due)
        )
    run = resume(engine, settings, issue)
    assert run.outcome == RunOutcome.WAITING and run.report.counts == {}
    assert run.next_attempt is not None and abs(run.next_attempt - due) < timedelta(seconds=1)
    assert smtp.received == [] and _status(engine, issue) == "sending"


def test_an_article_send_reports_whom_it_reaches_and_then_sends(
    engine, settings, tmp_path, smtp: RecordingHandler
):
    """The plan before the confirmation, a dry run, a test copy, then the send."""
    import_readers(engine, tmp_path, 3)
    issue = new_issue(engine, settings, tmp_path)
    article = find_article(engine, int(issue.article_ids))
    planned = article_send(engine, settings, article)
    assert (planned.pending, planned.readers) == (3, 3)
    assert dry_run(engine, settings, article).recipients == 3
    copy = send_test_copy(settings, article, " Editor@Example.org ")
    assert copy.address == "editor@example.org" and "250" in copy.reply
    assert smtp.received[0].message["Subject"].startswith("[Test] ")
    run = send_article(engine, settings, planned.issue)
    assert run.outcome == RunOutcome.SENT and run.report.sent == 3 and run.held_elsewhere == 0
    assert article_send(engine, settings, article).pending == 0
    assert _status(engine, planned.issue) == "sent"
