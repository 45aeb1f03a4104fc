"""The use cases: every way an issue is sent, for every front door (the command line, the
scheduled service, the demo, and the site and desk to come). This is the only module that
builds an `Outbox` or calls the sending engine, so each use case picks the engine's mode
once: whether deferred messages are retried at once (an editor asked to send again) or
wait until due (the service, a resume), and whether a sender waits for others (a worker).

Each use case returns a plain report and prints nothing; the service's runs log through
`mailer.events`. A send stopped by Ctrl-C raises KeyboardInterrupt once what was on the
wire is recorded; a relay refusing the message itself raises IssueHeld."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine

from mailer import delivery
from mailer.articles import find_article
from mailer.delivery import IssueHeld as IssueHeld  # raised to the front doors
from mailer.delivery import SendReport as SendReport  # in the reports
from mailer.delivery import deliver
from mailer.digest import DigestPlan, plan_digest
from mailer.editions import audience, audience_count
from mailer.errors import MailerError
from mailer.events import event
from mailer.issues import (
    OPEN_STATUSES,
    article_issue,
    cancel_issue,
    digest_issue,
    due_issues,
    find_issue,
    find_issue_by_id,
    prepare_editions,
    refresh_held,
    schedule_issue,
    unfinished_issues,
)
from mailer.models import Article, Issue, IssueStatus
from mailer.outbox import Outbox
from mailer.render import render_article_issue
from mailer.settings import Settings
from mailer.subscribers import count_recipients, normalise_address

Progress = Callable[[str], None]  # called with each delivery's outcome as it is recorded


class RunOutcome(StrEnum):
    """What a run did with an issue."""

    SENT = "sent"  # its due deliveries were sent (some may be deferred again)
    SETTLED = "settled"  # nothing was left to send: it is marked sent now
    WAITING = "waiting"  # only deferred deliveries not due yet: nothing went
    BUSY = "busy"  # another live sender is at work on it: left to that sender


@dataclass(frozen=True)
class IssueRun:
    """One issue sent, resumed or looked at."""

    issue: Issue
    outcome: RunOutcome
    report: SendReport = field(default_factory=SendReport)
    next_attempt: datetime | None = None  # when its earliest deferred delivery is due
    held_elsewhere: int = 0  # deliveries another sender holds (or held, if it died)
    held_until: datetime | None = None  # until their leases run out


def _looked_at(
    engine: Engine, settings: Settings, issue: Issue, outcome: RunOutcome, report: SendReport
) -> IssueRun:
    outbox = Outbox(engine, issue, settings.delivery)
    held, until = outbox.held_elsewhere()
    return IssueRun(issue, outcome, report, outbox.next_attempt(), held, until)


def readers(engine: Engine, kind: str) -> int:
    """Active readers who get issues of this kind ("article" or "digest")."""
    return count_recipients(engine, kind)


# --- an article issue --------------------------------------------------------------


@dataclass(frozen=True)
class ArticleSend:
    """What sending an article would do now: its issue, and whom it would reach."""

    issue: Issue
    pending: int  # readers who get every article and have not had it yet
    readers: int  # readers who get every article


def article_send(
    engine: Engine, settings: Settings, article: Article, *, worker: bool = False
) -> ArticleSend:
    """The article's issue, made or found, ready to send. A held issue is rendered again
    (the editor may have fixed what the relay refused); a worker, one sender among
    several, never resumes a held issue: an editor does."""
    issue = article_issue(engine, settings, article)
    if issue.status == IssueStatus.HELD and worker:
        raise MailerError(
            f"issue {issue.id} is held: the relay refused it ({issue.held_reason}); an editor "
            f"resumes it, once that is put right, with: mailer send --issue {issue.id}"
        )
    issue = refresh_held(engine, settings, issue)
    who = audience(settings.publication, [article])  # by language, its language's readers
    pending = Outbox(engine, issue, settings.delivery).pending_recipients(who)
    return ArticleSend(
        issue, pending, audience_count(engine, "article", settings.publication, [article])
    )


def send_article(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    progress: Progress | None = None,
    *,
    worker: bool = False,
) -> IssueRun:
    """Queue the article's issue for every reader who gets it and send it. By hand,
    deferred messages are tried again at once; a worker leaves them until due, and waits
    for the deliveries other senders hold (taking over those of one that died). With no
    one left to send to, it settles the rows of readers who left."""
    report = deliver(
        engine,
        settings,
        issue,
        progress,
        enqueue=True,
        retry_deferred_now=not worker,
        wait_for_others=worker,
    )
    return _looked_at(engine, settings, issue, RunOutcome.SENT, report)


def schedule_article(engine: Engine, settings: Settings, article: Article, when: datetime) -> Issue:
    """Have the article sent at `when` by the service (or `send --resume`), rendered as
    it is then."""
    return schedule_issue(engine, article_issue(engine, settings, article), when)


def cancel_scheduled(engine: Engine, issue_id: int) -> Issue:
    """Cancel a scheduled issue that has not started; MailerError otherwise."""
    return cancel_issue(engine, issue_id)


@dataclass(frozen=True)
class TestCopy:
    __test__ = False  # not a test class, whatever pytest thinks of its name

    address: str
    reply: str  # the server's reply


def send_test_copy(
    settings: Settings,
    article: Article,
    address: str,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    donor: bool = False,
    language: str | None = None,
) -> TestCopy:
    """One copy of the article as it is now, marked [Test], to one address; recorded
    nowhere. `subject` and `preheader`: an editor's, as the issue keeps them (the
    publication's edition's only); `donor`: the donors' copy; `language`: the edition of
    readers of that language (None: the publication's)."""
    address = normalise_address(address)
    if language not in (None, settings.publication.language):
        subject = preheader = None
    rendered = render_article_issue(settings, article, subject, preheader, language=language)
    reply = delivery.send_test_copy(settings, rendered, address, donor)
    return TestCopy(address, reply)


@dataclass(frozen=True)
class DryRun:
    subject: str
    recipients: int


def dry_run(engine: Engine, settings: Settings, article: Article) -> DryRun:
    """The subject a send would use and how many it would go to now: an issue already
    queued keeps the content it was queued with."""
    issue = find_issue(engine, f"article:{article.id}")
    if issue is None or issue.status == IssueStatus.DRAFT:
        subject = render_article_issue(settings, article).subject
    else:
        subject = issue.subject
    publication = settings.publication
    if issue is None:
        return DryRun(subject, audience_count(engine, "article", publication, [article]))
    who = audience(publication, [article])
    return DryRun(subject, Outbox(engine, issue, settings.delivery).pending_recipients(who))


# --- resuming ----------------------------------------------------------------------


def open_deliveries(engine: Engine, settings: Settings, issue: Issue) -> int:
    """Deliveries of the issue not settled yet: queued, being sent, or deferred."""
    return Outbox(engine, issue, settings.delivery).open_deliveries()


def resume(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    progress: Progress | None = None,
    *,
    worker: bool = False,
    stop: threading.Event | None = None,
) -> IssueRun:
    """Go on with an issue left unfinished (a stopped send, deferred messages now due):
    the one set of rules of the service and `send --resume`. The leases of senders on
    this host that died are taken back; an issue another live sender is at work on is
    left to it (a worker waits for it instead); one with nothing left is marked sent;
    deferred messages wait until due."""
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.reclaim_from_the_dead()
    busy = outbox.held_elsewhere()[0] > 0
    if busy and not worker:
        return _looked_at(engine, settings, issue, RunOutcome.BUSY, SendReport())
    if not busy and not outbox.claimable():
        settled = outbox.finish()
        outcome = RunOutcome.SETTLED if settled else RunOutcome.WAITING
        return _looked_at(engine, settings, issue, outcome, SendReport())
    report = deliver(
        engine,
        settings,
        issue,
        progress,
        enqueue=False,
        retry_deferred_now=False,
        wait_for_others=worker,
        stop=stop,
    )
    return _looked_at(engine, settings, issue, RunOutcome.SENT, report)


def resume_unfinished(
    engine: Engine, settings: Settings, stop: threading.Event | None = None
) -> Iterator[tuple[Issue, SendReport]]:
    """The service's resume: every issue left unfinished that had something to send,
    with what was sent. A held issue is logged and left for an editor."""
    for issue in unfinished_issues(engine):
        try:
            run = resume(engine, settings, issue, stop=stop)
        except IssueHeld as held:
            log_held(held)
            continue
        if run.outcome == RunOutcome.SENT:
            yield issue, run.report


def resumable_issue(engine: Engine, issue_id: int) -> Issue:
    """An issue an editor may resume by hand: held, or being sent."""
    issue = find_issue_by_id(engine, issue_id)
    if issue.status not in (IssueStatus.HELD, IssueStatus.SENDING):
        raise MailerError(
            f"issue {issue_id} is {issue.status}, not held or being sent: nothing to resume; "
            "see `mailer status`"
        )
    return issue


def resume_issue(
    engine: Engine, settings: Settings, issue: Issue, progress: Progress | None = None
) -> IssueRun:
    """An editor finishes one issue (`send --issue`), deferred messages retried at once.
    A held one goes out as its article is now, to the readers still queued."""
    if issue.status == IssueStatus.HELD:
        issue = refresh_held(engine, settings, issue)
        Outbox(engine, issue, settings.delivery).unhold()
    report = deliver(engine, settings, issue, progress, enqueue=False, retry_deferred_now=True)
    return _looked_at(engine, settings, issue, RunOutcome.SENT, report)


def start_due_issues(
    engine: Engine,
    settings: Settings,
    now: datetime,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[Issue, SendReport]]:
    """Send each scheduled issue whose time has come, rendered afresh (the editor may
    have fixed the article since); one cancelled meanwhile is left alone."""
    for due in due_issues(engine, now):
        article = find_article(engine, due.article_id_list[0])
        issue = article_issue(engine, settings, article)
        outbox = Outbox(engine, issue, settings.delivery)
        editions = prepare_editions(engine, settings, issue)
        if not outbox.enqueue(only_from=(IssueStatus.SCHEDULED,), editions=editions):
            continue  # cancelled, or started by another process a moment ago
        event("issue-started", issue=issue.id, scheduled_at=due.scheduled_at, subject=issue.subject)
        try:
            report = deliver(
                engine,
                settings,
                issue,
                progress,
                enqueue=False,
                retry_deferred_now=False,
                stop=stop,
            )
        except IssueHeld as held:
            log_held(held)
            continue
        yield issue, report


def log_held(held: IssueHeld, name: str = "issue-held", **fields: object) -> None:
    """The relay refused an issue: it waits for an editor, and the other issues go on."""
    event(
        name,
        logging.WARNING,
        **fields,
        issue=held.issue_id,
        reason=held.reply,
        resume=f"mailer send --issue {held.issue_id}",
    )


def sent_counts(report: SendReport) -> dict[str, int]:
    """A run's counts as the service logs them."""
    return {status: report.counts.get(status, 0) for status in ("sent", "deferred", "failed")}


# --- the digest --------------------------------------------------------------------


class DigestOutcome(StrEnum):
    SENT = "sent"  # sent, or sending went on
    EMPTY = "empty"  # no article is new: nothing to send
    ALREADY_SENT = "already sent"  # one a week
    HELD = "held"  # the relay refused it: an editor resumes it


@dataclass(frozen=True)
class DigestRun:
    outcome: DigestOutcome
    plan: DigestPlan
    issue: Issue | None = None
    report: SendReport | None = None


def send_digest(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    since: datetime | None = None,
    due: datetime | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    by_hand: bool = False,
) -> DigestRun:
    """The week's digest (the week of `due`, else of `now`): built and sent, finished if
    it was interrupted, or nothing when it went out already or no article is new. By
    hand, deferred messages are tried again at once; the service leaves them until due."""
    plan = plan_digest(engine, settings.publication.timezone, now, since, due)
    issue = find_issue(engine, plan.key)
    if issue is None or issue.status in OPEN_STATUSES:
        if not plan.articles:
            return DigestRun(DigestOutcome.EMPTY, plan)
        issue = digest_issue(engine, settings, plan)
        # started only if nobody started it meanwhile; an interrupted digest is finished
        # for those it was queued for, never queued again
        editions = prepare_editions(engine, settings, issue)
        Outbox(engine, issue, settings.delivery).enqueue(OPEN_STATUSES, editions)
        issue = find_issue(engine, plan.key)
    assert issue is not None
    if issue.status == IssueStatus.SENT:
        return DigestRun(DigestOutcome.ALREADY_SENT, plan, issue)
    if issue.status == IssueStatus.HELD:
        return DigestRun(DigestOutcome.HELD, plan, issue)
    report = deliver(
        engine, settings, issue, progress, enqueue=False, retry_deferred_now=by_hand, stop=stop
    )
    return DigestRun(DigestOutcome.SENT, plan, find_issue(engine, plan.key), report)


def start_digest_now(engine: Engine, settings: Settings, now: datetime) -> DigestRun:
    """The week's digest built and queued for its readers now, for a sender (the desk's,
    the scheduler's) to send as an unfinished issue: nothing is delivered here, so a
    request that asks for it returns at once. Its key is the week's, so the scheduler's
    digest later this week finds it started and sends no second one. EMPTY when no
    article is new; ALREADY_SENT (or HELD) when this week's went out already."""
    plan = plan_digest(engine, settings.publication.timezone, now)
    issue = find_issue(engine, plan.key)
    if issue is None or issue.status in OPEN_STATUSES:
        if not plan.articles:
            return DigestRun(DigestOutcome.EMPTY, plan)
        issue = digest_issue(engine, settings, plan)
        editions = prepare_editions(engine, settings, issue)
        if Outbox(engine, issue, settings.delivery).enqueue(OPEN_STATUSES, editions):
            return DigestRun(DigestOutcome.SENT, plan, find_issue(engine, plan.key))
        issue = find_issue(engine, plan.key)  # another sender started it a moment ago
    assert issue is not None
    outcome = DigestOutcome.HELD if issue.status == IssueStatus.HELD else DigestOutcome.ALREADY_SENT
    return DigestRun(outcome, plan, issue)
