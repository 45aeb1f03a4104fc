"""The scheduled service as an operator runs it: `mailer scheduler` as a real process on a
real database and SMTP server. It sends the digest when due and a scheduled issue at its
time; SIGTERM in the middle of a slow send stops it cleanly and a restart finishes the
digest, nobody missed and nobody doubled; a digest time missed while it was down is
caught up within the grace time and logged as skipped beyond it. Also `send --at`,
`send --cancel`, `send --resume` for cron users, and new articles from a folder."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, func, select

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import MailerError
from mailer.issues import article_issue, cancel_issue, schedule_issue
from mailer.models import Delivery, Issue, IssueStatus
from mailer.outbox import Outbox
from mailer.scheduler import DIGEST_JOB, Service, install_jobs, make_scheduler
from mailer.subscribers import add_subscriber
from mailer.testing import commands, smtp_server
from test_crash import SlowServer, _environment


def _away() -> str:
    """A digest schedule three days from today: never due while a test runs, whatever
    the day (the tests set the digest job's next time themselves)."""
    day = datetime.now(ZoneInfo("Europe/Oslo")) + timedelta(days=3)
    return f"0 8 * * {day.strftime('%a').lower()}"


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.replace(schedule={"digest_cron": _away()})


def service_env(settings: Any, port: int) -> dict[str, str]:
    env = _environment(settings.database.url, port)
    env["MAILER_SCHEDULE_DIGEST_CRON"] = settings.schedule.digest_cron
    return env


class ServiceProcess:
    """`mailer scheduler` in a subprocess, its log lines gathered as they come."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailer", "scheduler"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            assert self.process.poll() is None, f"the service ended:\n{self.log}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the log after {timeout} s:\n{self.log}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:  # a failed test: do not leave it running
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def start_service() -> Iterator[Callable[[Path, dict[str, str]], ServiceProcess]]:
    """Starts services; closes them after the test, killing any a failed test left."""
    started: list[ServiceProcess] = []

    def start(cwd: Path, env: dict[str, str]) -> ServiceProcess:
        started.append(ServiceProcess(cwd, env))
        return started[-1]

    yield start
    for service in started:
        service.close()


def seed_digest_job(settings: Any, due: datetime) -> None:
    """Store the digest job as a running service would have left it, due at `due`."""
    engine = open_database(settings.database.url)
    scheduler = make_scheduler(settings, engine)
    scheduler.start(paused=True)
    install_jobs(scheduler, settings, datetime.now(UTC))
    # a due job must stay due through a shutdown (APScheduler's own loop would move it
    # on, unrun: mailer's scheduler does not)
    scheduler.modify_job(DIGEST_JOB, next_run_time=due)
    scheduler.shutdown(wait=False)
    engine.dispose()


@contextmanager
def digest_job_store(settings: Any) -> Iterator[Any]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    engine = open_database(settings.database.url)
    store = SQLAlchemyJobStore(engine=engine)
    store.start(make_scheduler(settings, engine), "default")
    try:
        yield store
    finally:
        engine.dispose()


def stored_digest_time(settings: Any) -> datetime:
    with digest_job_store(settings) as store:
        job = store.lookup_job(DIGEST_JOB)
    assert job is not None
    return job.next_run_time  # type: ignore[no-any-return]


def readers(engine: Any, count: int, frequency: str = "every") -> list[str]:
    addresses = [f"r{i}@example.org" for i in range(count)]
    for address in addresses:
        add_subscriber(engine, address, confirmed=True, frequency=frequency)
    return addresses


def sent_rows(engine: Any) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        return int(session.exec(query).one())


def test_the_service_sends_the_digest_when_due_and_an_issue_at_its_time(
    engine, settings, tmp_path, start_service
):
    addresses = readers(engine, 3)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    now = datetime.now(UTC)
    digest_due, issue_due = now + timedelta(seconds=4), now + timedelta(seconds=5)
    seed_digest_job(settings, digest_due)
    schedule_issue(engine, article_issue(engine, settings, article), issue_due)
    with smtp_server() as (_controller, server):
        service = start_service(tmp_path, service_env(settings, server.port))
        service.wait_for("INFO started")
        line = service.wait_for("digest-sent")
        assert "sent=3 deferred=0 failed=0" in line
        assert datetime.fromisoformat(line.split()[0]) >= digest_due.replace(microsecond=0)
        service.wait_for("issue-sent")
        assert service.stop() == 0
    assert "INFO stopped" in service.log
    subjects = Counter((r, m.message["Subject"]) for m in server.received for r in m.rcpt_tos)
    assert sorted(subjects.values()) == [1] * 6  # a digest and the article for each reader
    assert {r for r, _ in subjects} == set(addresses)
    assert stored_digest_time(settings) > datetime.now(UTC) + timedelta(days=1)  # next week


class SlowerServer(SlowServer):
    delay = 0.04


def test_sigterm_mid_digest_stops_cleanly_and_a_restart_finishes_it(
    engine, settings, tmp_path, start_service
):
    addresses = readers(engine, 300, "weekly")
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    seed_digest_job(settings, datetime.now(UTC) - timedelta(seconds=5))  # due at start
    with smtp_server(SlowerServer()) as (_controller, server):
        env = service_env(settings, server.port)
        first = start_service(tmp_path, env)
        deadline = time.monotonic() + 60
        while len(server.received) < 40:
            assert time.monotonic() < deadline, f"the digest did not start:\n{first.log}"
            time.sleep(0.01)
        assert first.stop() == 0, first.log
        assert "job-stopped job=digest" in first.log and "INFO stopped" in first.log
        stopped_at = len(server.received)
        assert stopped_at < len(addresses)
        assert sent_rows(engine) == stopped_at  # every message that went out is recorded

        second = start_service(tmp_path, env)  # resumes the digest at start
        second.wait_for("issue-resumed")
        assert second.stop() == 0
    copies = Counter(r for message in server.received for r in message.rcpt_tos)
    assert copies == Counter(addresses)  # each reader exactly once
    assert len({m.message["Subject"] for m in server.received}) == 1


@pytest.mark.parametrize(
    ("late", "sent"), [(timedelta(minutes=10), True), (timedelta(hours=2), False)]
)
def test_a_digest_missed_while_down_is_sent_within_the_grace_time_else_skipped(
    engine, settings, tmp_path, start_service, late, sent
):
    readers(engine, 2)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    due = datetime.now(UTC) - late  # the grace time is 60 minutes
    seed_digest_job(settings, due)
    with smtp_server() as (_controller, server):
        service = start_service(tmp_path, service_env(settings, server.port))
        if sent:
            service.wait_for("digest-sent")
        else:
            line = service.wait_for("job-skipped")
            assert f"job={DIGEST_JOB}" in line and "misfire grace time" in line
            time.sleep(1)
        assert service.stop() == 0
    assert len(server.received) == (2 if sent else 0)
    assert ("digest-sent" in service.log) is sent
    assert stored_digest_time(settings) > datetime.now(UTC)  # waiting for next week


def _mailer(tmp_path: Path, settings: Any, port: int, *args: str) -> subprocess.CompletedProcess:
    return commands.mailer(args, tmp_path, service_env(settings, port))


def _time_passes(engine: Any, issue_id: int) -> None:
    """The scheduled time comes: moved to a second ago rather than waited for."""
    with Session(engine) as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        issue.scheduled_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(issue)
        session.commit()


def test_send_at_schedules_status_lists_it_and_send_resume_sends_it_when_due(
    engine, settings, smtp, tmp_path
):
    readers(engine, 2)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    past = _mailer(tmp_path, settings, smtp.port, "send", "--latest", "--at", "2020-01-01T07:00")
    assert past.returncode == 1 and "in the past" in past.stderr
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = _mailer(tmp_path, settings, smtp.port, "send", "--latest", "--at", later)
    assert scheduled.returncode == 0, scheduled.stderr
    assert "is scheduled for" in scheduled.stdout and "mailer send --cancel 1" in scheduled.stdout
    status = _mailer(tmp_path, settings, smtp.port, "status")
    assert "scheduled" in status.stdout and "scheduled for" in status.stdout
    early = _mailer(tmp_path, settings, smtp.port, "send", "--resume")
    assert early.returncode == 0 and smtp.received == []
    _time_passes(engine, 1)
    resumed = _mailer(tmp_path, settings, smtp.port, "send", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "(scheduled) started" in resumed.stdout and "Sent 2" in resumed.stdout
    assert len(smtp.received) == 2
    late = _mailer(tmp_path, settings, smtp.port, "send", "--cancel", "1")
    assert late.returncode == 1 and "has been sent" in late.stderr


def test_a_cancelled_issue_is_not_sent_and_cannot_be_cancelled_twice(
    engine, settings, smtp, tmp_path
):
    readers(engine, 2)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = _mailer(tmp_path, settings, smtp.port, "send", "--latest", "--at", later)
    assert scheduled.returncode == 0, scheduled.stderr
    cancelled = _mailer(tmp_path, settings, smtp.port, "send", "--cancel", "1")
    assert cancelled.returncode == 0 and "Cancelled issue 1" in cancelled.stdout
    again = _mailer(tmp_path, settings, smtp.port, "send", "--cancel", "1")
    assert again.returncode == 1 and "cancelled already" in again.stderr
    _time_passes(engine, 1)
    assert _mailer(tmp_path, settings, smtp.port, "send", "--resume").returncode == 0
    assert smtp.received == []


def _race(engine: Any, settings: Any, issue: Any) -> dict[str, bool]:
    """A cancel and the scheduler's start of the issue, let go at the same moment."""
    outcome: dict[str, bool] = {}
    both = threading.Barrier(2)

    def cancel() -> None:
        both.wait()
        try:
            cancel_issue(engine, issue.id)
            outcome["cancelled"] = True
        except MailerError:
            outcome["cancelled"] = False

    def start() -> None:
        both.wait()
        outbox = Outbox(engine, issue, settings.delivery)
        outcome["started"] = outbox.enqueue(only_from=(IssueStatus.SCHEDULED,))

    racers = [threading.Thread(target=cancel), threading.Thread(target=start)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    return outcome


def test_a_cancel_and_the_start_of_a_scheduled_issue_cannot_both_win(engine, settings, tmp_path):
    """Over and over: exactly one of them wins, and a cancelled issue has nothing queued."""
    readers(engine, 3)
    for n in range(10):
        path = tmp_path / f"race-{n}.txt"
        path.write_text(f"Race {n}\n\nA story told {n} times over, for the race.\n")
        article = ingest_file(engine, settings, path).article
        later = datetime.now(UTC) + timedelta(hours=1)
        issue = schedule_issue(engine, article_issue(engine, settings, article), later)
        outcome = _race(engine, settings, issue)
        assert outcome["cancelled"] != outcome["started"], outcome
        queued = Outbox(engine, issue, settings.delivery).open_deliveries()
        assert queued == (3 if outcome["started"] else 0)


def _article_file(folder: Path, name: str, title: str, settled: bool = True) -> Path:
    path = folder / name
    path.write_text(f"{title}\n\nThe story of {title.lower()}, told in one paragraph.\n")
    # settled: changed 10 s ago; not: changed "in an hour", never settled however slow the test
    stamp = time.time() + (-10 if settled else 3600)
    os.utime(path, (stamp, stamp))
    return path


def test_new_article_files_are_brought_in_and_sent_after_the_first_look(
    engine, settings, smtp, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="mailer.scheduler")
    readers(engine, 2)
    folder = tmp_path / "incoming"
    folder.mkdir()
    _article_file(folder, "before.txt", "Already there")
    watching = settings.replace(schedule={"watch_dir": str(folder), "auto_send_new_articles": True})
    service = Service(watching, engine)
    service.poll()  # the first look only takes stock
    assert smtp.received == [] and "articles-found" in caplog.text and "count=1" in caplog.text

    _article_file(folder, "new.txt", "Fresh news")
    partial = _article_file(folder, "partial.txt", "Still being written", settled=False)
    _article_file(folder, ".draft.txt", "A hidden draft")
    _article_file(folder, "notes.csv", "Not an article")
    (folder / "broken.txt").write_bytes(b"\x81\x8d\x8f\x90\x9d" * 20)
    os.utime(folder / "broken.txt", (time.time() - 10, time.time() - 10))
    service.poll()
    assert [m.message["Subject"] for m in smtp.received] == ["Fresh news"] * 2
    assert "article-refused" in caplog.text and "broken.txt" in caplog.text
    assert "Still being written" not in caplog.text and "hidden draft" not in caplog.text

    os.utime(partial, (time.time() - 10, time.time() - 10))
    service.poll()
    assert Counter(m.message["Subject"] for m in smtp.received) == {
        "Fresh news": 2,
        "Still being written": 2,
    }
    service.poll()  # nothing changed: nothing read, nothing sent
    assert len(smtp.received) == 4


def test_without_auto_send_new_articles_wait_for_an_editor(
    engine, settings, smtp, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="mailer.scheduler")
    readers(engine, 1)
    folder = tmp_path / "incoming"
    folder.mkdir()
    service = Service(settings.replace(schedule={"watch_dir": str(folder)}), engine)
    service.poll()
    _article_file(folder, "new.txt", "Waiting story")
    service.poll()
    assert smtp.received == []
    assert "article-waiting article=1" in caplog.text and "mailer send --article 1" in caplog.text


def test_a_digest_the_service_missed_is_caught_up_within_the_grace_time(engine, settings, smtp):
    """APScheduler moves the digest job on to next week as it starts it: if the service
    stopped or failed before the digest was queued, it is caught up at the next look,
    within the grace time, once; later than that it waits for next week."""
    readers(engine, 2)
    monday = datetime(2026, 11, 30, 7, 10, tzinfo=UTC)  # 08:10 in Oslo
    ingest_file(engine, settings, SAMPLE_ARTICLE, published=monday - timedelta(days=1))
    weekly = settings.replace(schedule={"digest_cron": "0 8 * * mon"})
    Service(weekly, engine, clock=lambda: monday + timedelta(minutes=80)).outbox()
    assert smtp.received == []  # 09:30: beyond the grace time
    service = Service(weekly, engine, clock=lambda: monday)
    service.outbox()
    service.outbox()
    assert len(smtp.received) == 2
    with Session(engine) as session:
        assert [i.key for i in session.exec(select(Issue))] == ["digest:2026-W49"]


def test_a_late_digest_belongs_to_the_week_it_was_due_in(engine, settings, smtp):
    readers(engine, 1)
    sunday_night = datetime(2026, 11, 29, 22, 55, tzinfo=UTC)  # 23:55 in Oslo, week 48
    ingest_file(engine, settings, SAMPLE_ARTICLE, published=sunday_night - timedelta(days=1))
    weekly = settings.replace(schedule={"digest_cron": "55 23 * * sun"})
    Service(weekly, engine, clock=lambda: sunday_night + timedelta(minutes=25)).outbox()
    with Session(engine) as session:
        assert [i.key for i in session.exec(select(Issue))] == ["digest:2026-W48"]
    assert len(smtp.received) == 1
