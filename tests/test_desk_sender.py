"""The desk's sender inside `mailer serve` (uvicorn on 127.0.0.1, a real SMTP server):
an issue scheduled for now is sent by the service with no request waiting on it, and
the scheduler and the desk's sender each leave a beat the desk can read."""

from __future__ import annotations

import time
from datetime import timedelta

from mailer.articles import find_article
from mailer.beats import DESK_SENDER, SCHEDULER, is_stopped, last_beat
from mailer.issues import find_issue_by_id
from mailer.models import IssueStatus, utcnow
from mailer.runs import schedule_article
from mailer.scheduler import Service, install_jobs, make_scheduler
from mailer.testing import import_readers, new_issue, served
from mailer.web.desk.sender import IssueSender


def wait_for(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_mailer_serve_sends_an_issue_due_with_no_request_waiting_on_it(
    engine, settings, smtp, tmp_path
):
    readers = import_readers(engine, tmp_path, 5)
    article = find_article(engine, new_issue(engine, settings, tmp_path).article_id_list[0])
    issue = schedule_article(engine, settings, article, utcnow())
    with served(settings, engine):
        assert wait_for(lambda: find_issue_by_id(engine, issue.id).status == IssueStatus.SENT)
        beat = last_beat(engine, DESK_SENDER)
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(readers)
    assert beat is not None and not is_stopped(beat, utcnow(), timedelta(minutes=1))


def test_a_wake_sends_at_once_what_the_desk_started(engine, settings, smtp, tmp_path):
    readers = import_readers(engine, tmp_path, 3)
    article = find_article(engine, new_issue(engine, settings, tmp_path).article_id_list[0])
    sender = IssueSender(engine, settings, poll_seconds=3600)
    sender.start()
    try:
        assert wait_for(lambda: last_beat(engine, DESK_SENDER) is not None)
        issue = schedule_article(engine, settings, article, utcnow())
        sender.wake()
        assert wait_for(lambda: find_issue_by_id(engine, issue.id).status == IssueStatus.SENT)
    finally:
        sender.stop()
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(readers)


def test_the_scheduler_beats_by_a_job_of_its_own_and_a_silent_one_reads_as_stopped(
    engine, settings
):
    scheduler = make_scheduler(settings, engine)
    scheduler.start(paused=True)
    try:
        install_jobs(scheduler, settings, utcnow())
        job = scheduler.get_job("beat")
        # its own job: a long send holding the outbox job does not silence it
        assert job is not None and job.trigger.interval <= timedelta(minutes=1)
    finally:
        scheduler.shutdown(wait=False)
    assert is_stopped(last_beat(engine, SCHEDULER), utcnow(), timedelta(minutes=2))
    Service(settings, engine).beat()
    beat = last_beat(engine, SCHEDULER)
    assert beat is not None and not is_stopped(beat, utcnow(), timedelta(minutes=2))
    assert is_stopped(beat, utcnow() + timedelta(minutes=3), timedelta(minutes=2))
