"""The scheduled service (`mailer scheduler`): the weekly digest, issues scheduled for a
time, issues left unfinished (the runs it shares with the command line, in runs.py), new
articles picked up from a folder, and bounces fetched from the [bounces] mailbox.

APScheduler 3 keeps the digest's next time in mailer's own database (SQLAlchemyJobStore),
so a service that was down at digest time sends it when it is back within the misfire
grace time, and logs a skipped run when it is back later. Every run is safe to repeat:
the digest is keyed by its ISO week and the outbox claims each delivery, so however many
services, crontab lines and editors start it, each reader gets one copy.

Each event is one line on stdout: a time, a level, a name and key=value fields."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from mailer.beats import SCHEDULER, beat
from mailer.bounce_fetching import fetch_bounces
from mailer.bounce_processing import LineKind
from mailer.crontab import crontab_trigger, last_due
from mailer.digest import week_of
from mailer.errors import MailerError
from mailer.events import event, log
from mailer.issues import find_issue
from mailer.models import IssueStatus, utcnow
from mailer.processes import stop_on_signals
from mailer.runs import (
    IssueHeld,
    log_held,
    resume_unfinished,
    schedule_article,
    send_digest,
    sent_counts,
    start_due_issues,
)
from mailer.settings import Settings
from mailer.transactional import send_queued
from mailer.watches import FeedWatch, FolderWatch, where
from mailer.welcome import queue_follow_ups

DIGEST_JOB = "weekly-digest"
BOUNCES_JOB = "bounces"  # reads the [bounces] mailbox every [bounces] poll_minutes
OUTBOX_SECONDS = 15  # how often scheduled issues and due retries are looked for
# how often the service says it is alive: a job of its own, so a send that takes an hour
# (the outbox job busy all along) does not look like a stopped service
BEAT_SECONDS = 30
# how often the welcome series' follow-ups that have come due are queued (a day's
# precision is all they need); the outbox job sends them
FOLLOW_UP_SECONDS = 3600


# --- the service -------------------------------------------------------------------


class Service:
    """What the scheduled jobs run, and what they share: the stop request, and one send
    at a time ([smtp] max_connections is the relay's budget for the whole service)."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.stop = threading.Event()
        self.sending = threading.Lock()
        schedule = settings.schedule
        self.watches: list[FolderWatch | FeedWatch] = []
        if schedule.watch_dir:
            self.watches.append(FolderWatch(Path(schedule.watch_dir)))
        if schedule.feed_url:
            self.watches.append(FeedWatch(schedule.feed_url))
        self.digest_lock = threading.Lock()
        self.digest_done: datetime | None = None  # the due time of the last digest run
        self.started_at = utcnow()

    def digest(self) -> None:
        if not self.digest_lock.acquire(blocking=False):
            return  # the digest job and a catch-up at once: one is enough
        try:
            self._digest()
        finally:
            self.digest_lock.release()

    def _digest(self) -> None:
        schedule, zone = self.settings.schedule, self.settings.publication.timezone
        now = self.clock()
        # the time it was due at, if it runs on time or within the grace time: its week
        # is the digest's, even when a late run falls in the next week
        due = last_due(schedule.digest_cron, zone, now, self._grace())
        if self.watches:
            try:
                self.poll()  # an article published just now belongs in it
            except Exception as exc:  # the digest goes out with what is in, whatever happens
                event("poll-failed", logging.ERROR, job="digest", error=repr(exc))
        with self._turn():
            try:
                run = send_digest(self.engine, self.settings, now, due=due, stop=self.stop)
            except IssueHeld as held:  # refused by the relay now: it waits for an editor
                self.digest_done = due
                week = week_of(due or now, self.settings.publication.timezone)
                log_held(held, "digest-held", week=week)
                return
        self.digest_done = due
        plan = run.plan
        if run.outcome == "empty":
            event(
                "digest-empty",
                week=plan.week,
                since=plan.since,
                reason="no new article since then: nothing sent",
            )
        elif run.outcome == "already sent":
            assert run.issue is not None
            event(
                "digest-already-sent", week=plan.week, issue=run.issue.id, sent_at=run.issue.sent_at
            )
        elif run.outcome == "held":
            assert run.issue is not None
            event(
                "digest-held",
                logging.WARNING,
                week=plan.week,
                issue=run.issue.id,
                reason=run.issue.held_reason,
                resume=f"mailer send --issue {run.issue.id}",
            )
        else:
            assert run.issue is not None and run.report is not None
            event(
                "digest-sent",
                week=plan.week,
                issue=run.issue.id,
                articles=len(run.issue.article_id_list),
                **sent_counts(run.report),
            )

    def outbox(self) -> None:
        self.transactional()
        if self._digest_missed():
            self.digest()
        if not self.sending.acquire(blocking=False):
            return  # a send of this service is under way; look again next time
        try:
            if self.stop.is_set():
                return
            now = self.clock()
            for issue, report in start_due_issues(self.engine, self.settings, now, self.stop):
                event("issue-sent", issue=issue.id, **sent_counts(report))
            for issue, report in resume_unfinished(self.engine, self.settings, self.stop):
                event("issue-resumed", issue=issue.id, **sent_counts(report))
        finally:
            self.sending.release()

    def beat(self) -> None:
        """Tell the desk the service is alive; a beat lost to a busy database is no loss."""
        try:
            beat(self.engine, SCHEDULER, self.started_at)
        except DBAPIError as exc:
            event("beat-failed", logging.WARNING, error=str(exc.orig))

    def bounces(self) -> None:
        """The [bounces] mailbox read and its bounces applied; a mailbox that cannot be
        read is logged, and the next round tries again."""
        try:
            fetched = fetch_bounces(self.engine, self.settings, self.clock())
        except MailerError as exc:
            every = f"{self.settings.bounces.poll_minutes:g} minutes"
            event("bounces-fetch-failed", logging.ERROR, error=str(exc), retry=f"in {every}")
            return
        report = fetched.report
        if report.messages:
            event(
                "bounces-fetched",
                messages=report.messages,
                bounced=report.bounced,
                unsubscribed=report.unsubscribed,
                moved_to=fetched.processed_folder,
                moved=fetched.moved,
            )
        for line in report.lines:
            if line.kind == LineKind.NOT_APPLIED:  # left in the mailbox, read again next time
                event("bounce-not-applied", logging.ERROR, message=line.source, error=line.reason)

    def transactional(self) -> None:
        """Confirmation links queued by the site and not sent yet (retries, or a site that
        stopped before sending them); never held up by an issue being sent."""
        try:
            counts = send_queued(self.engine, self.settings, self.stop)
        except Exception as exc:  # the issues' part of the job goes on
            event("transactional-mail-failed", logging.ERROR, error=repr(exc))
            return
        if counts:
            event("transactional-mail", **counts)

    def follow_ups(self) -> None:
        """Queue the welcome series' follow-ups that have come due ([welcome] follow_ups)."""
        queued = queue_follow_ups(self.engine, self.settings, self.clock())
        if queued:
            event("follow-ups-queued", count=queued)

    def _digest_missed(self) -> bool:
        """Was the digest due within the grace time and never run (the service stopped
        or failed after APScheduler had moved the job on to next week)?"""
        schedule, zone = self.settings.schedule, self.settings.publication.timezone
        due = last_due(schedule.digest_cron, zone, self.clock(), self._grace())
        if due is None or due == self.digest_done or self.digest_lock.locked():
            return False
        issue = find_issue(self.engine, f"digest:{week_of(due, zone)}")
        return issue is None or issue.status not in IssueStatus.STARTED

    def _grace(self) -> timedelta:
        return timedelta(minutes=max(self.settings.schedule.misfire_grace_minutes, 1))

    def poll(self) -> None:
        """New articles from the folder and the feed: each one sent (as an issue
        scheduled for now, so one that cannot go out yet is retried by the outbox job),
        or left for an editor."""
        now = self.clock()
        new = []
        for watch in self.watches:  # one source that fails leaves the others to be read
            try:
                new += watch.poll(self.engine, self.settings, now)
            except (MailerError, DBAPIError, OSError) as exc:
                event("poll-failed", logging.ERROR, source=where(watch), error=str(exc))
        for article in new:
            if not self.settings.schedule.auto_send_new_articles:
                event(
                    "article-waiting",
                    article=article.id,
                    hint=f"mailer send --article {article.id}",
                )
                continue
            issue = schedule_article(self.engine, self.settings, article, now)
            event("article-scheduled", article=article.id, issue=issue.id, at=now)
        with self._turn():
            for issue, report in start_due_issues(self.engine, self.settings, now, self.stop):
                event("issue-sent", issue=issue.id, **sent_counts(report))

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This job's turn to send; none once the service is stopping."""
        with self.sending:
            if self.stop.is_set():
                raise KeyboardInterrupt
            yield


# The jobs as the job store names them ("mailer.scheduler:digest_job"): module-level
# functions, working on the service this process runs.
_service: Service | None = None


def digest_job() -> None:
    _run("digest", lambda service: service.digest())


def outbox_job() -> None:
    _run("outbox", lambda service: service.outbox())


def bounces_job() -> None:
    _run("bounces", lambda service: service.bounces())


def beat_job() -> None:
    _run("beat", lambda service: service.beat())


def poll_job() -> None:
    _run("poll", lambda service: service.poll())


def follow_up_job() -> None:
    _run("follow-ups", lambda service: service.follow_ups())


def _run(job: str, work: Callable[[Service], None]) -> None:
    service = _service
    if service is None or service.stop.is_set():
        return
    try:
        work(service)
    except KeyboardInterrupt:
        event("job-stopped", job=job, note="what was not sent stays queued for the next start")
    except MailerError as exc:
        event("job-failed", logging.ERROR, job=job, error=str(exc))
    except Exception as exc:
        event("job-failed", logging.ERROR, job=job, error=repr(exc))
        log.exception("the %s job failed unexpectedly", job)


def run_service(settings: Settings, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
    """Run the scheduled jobs until SIGTERM or Ctrl-C; then let the message being sent
    finish, leave the rest queued, and return."""
    global _service
    service = _service = Service(settings, engine, clock)
    scheduler = make_scheduler(settings, engine)
    with stop_on_signals(service.stop):
        scheduler.start(paused=True)
        install_jobs(scheduler, settings, clock())
        scheduler.resume()
        digest = scheduler.get_job(DIGEST_JOB)
        event(
            "started",
            pid=os.getpid(),
            next_digest=digest.next_run_time if digest else "none",
            watch_dir=settings.schedule.watch_dir or "none",
            feed_url=settings.schedule.feed_url or "none",
        )
        while not service.stop.wait(1.0):
            pass
        event("stopping", note="letting the messages being sent finish")
        scheduler.shutdown(wait=True)
    _service = None
    event("stopped")


def make_scheduler(settings: Settings, engine: Engine) -> BackgroundScheduler:
    """The digest job is kept in mailer's database; the others live in memory, made
    again at each start."""
    scheduler = _Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine), "local": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=ZoneInfo(settings.publication.timezone),
    )
    scheduler.add_listener(_missed, EVENT_JOB_MISSED)
    return scheduler


class _Scheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 has no types
    def _process_jobs(self) -> Any:
        # APScheduler's loop looks for due jobs once more after shutdown, and would move a
        # job due at that moment to its next time without running it: a lost digest.
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


def install_jobs(scheduler: BackgroundScheduler, settings: Settings, now: datetime) -> None:
    """The digest job is kept as stored when its schedule has not changed, so a time it
    missed while the service was down is still due (or reported missed) now."""
    schedule = settings.schedule
    try:
        stored = scheduler.get_job(DIGEST_JOB)
    except Exception as exc:  # stored by another version that cannot be read back
        event("job-unreadable", logging.WARNING, job=DIGEST_JOB, error=repr(exc), note="replaced")
        scheduler.remove_job(DIGEST_JOB)
        stored = None
    if not schedule.digest_cron:
        if stored is not None:
            stored.remove()
    else:
        trigger = crontab_trigger(schedule.digest_cron, settings.publication.timezone)
        grace = max(1, round(schedule.misfire_grace_minutes * 60))
        same = stored is not None and (repr(stored.trigger), stored.misfire_grace_time) == (
            repr(trigger),
            grace,
        )
        if not same:
            scheduler.add_job(
                digest_job,
                trigger,
                id=DIGEST_JOB,
                name="weekly digest",
                misfire_grace_time=grace,
                replace_existing=True,
            )
    local = {"jobstore": "local", "misfire_grace_time": None, "next_run_time": now}
    scheduler.add_job(outbox_job, "interval", seconds=OUTBOX_SECONDS, id="outbox", **local)
    scheduler.add_job(beat_job, "interval", seconds=BEAT_SECONDS, id="beat", **local)
    if settings.welcome.enabled and settings.welcome.follow_ups:
        seconds = FOLLOW_UP_SECONDS
        scheduler.add_job(follow_up_job, "interval", seconds=seconds, id="follow-ups", **local)
    if schedule.watch_dir or schedule.feed_url:
        minutes = schedule.feed_poll_minutes
        scheduler.add_job(poll_job, "interval", minutes=minutes, id="poll", **local)
    if settings.bounces.imap_host:  # the bounce mailbox, read at start and then every round
        minutes = settings.bounces.poll_minutes
        scheduler.add_job(bounces_job, "interval", minutes=minutes, id=BOUNCES_JOB, **local)


def _missed(job_event: JobEvent) -> None:
    event(
        "job-skipped",
        logging.WARNING,
        job=job_event.job_id,
        due=job_event.scheduled_run_time,
        reason="the service was not running then, and is back after the misfire grace time",
    )
