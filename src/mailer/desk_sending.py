"""Sending from the editors' desk, as use cases: an article's send page (its email as a
sample reader gets it, the plain-text part, the subject and preheader an editor may
change, whom it reaches), test copies, "send now" and a schedule, a cancel, and an
issue's live progress and the readers who left after it. A send started here only
schedules the issue (for now, or later): the desk's sender in `mailer serve` sends it,
never the request, so it goes on when the browser closes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from mailer import runs
from mailer.articles import find_article
from mailer.errors import MailerError
from mailer.i18n import supported
from mailer.issues import (
    OPEN_STATUSES,
    article_issue,
    as_rendered,
    edit_issue,
    find_issue,
    find_issue_by_id,
    issue_goal,
    variants_of,
)
from mailer.messages import preview
from mailer.models import (
    DELIVERIES,
    SUBSCRIBERS,
    Article,
    DeliveryStatus,
    Issue,
    IssueStatus,
    IssueVariant,
    SubscriberStatus,
    UTCDateTime,
)
from mailer.render import RenderedIssue, one_line, render_article_issue
from mailer.report import issue_counts
from mailer.settings import Settings
from mailer.subscribers import normalise_address

MAX_TEST_ADDRESSES = 10
SUBJECT_MAX = 200
PREHEADER_MAX = 150
RATE_WINDOW = timedelta(minutes=1)
LEFT_SHOWN = 50  # readers who left listed on an issue's page; the count says the rest

d, s = DELIVERIES.c, SUBSCRIBERS.c


class DeskSendError(MailerError):
    """What an editor asked for at the send page cannot be done; the message says why."""


def issue_key(article_id: int) -> str:
    return f"article:{article_id}"


@dataclass(frozen=True)
class SendPage:
    article: Article
    issue: Issue | None  # the article's issue, once it has one
    rendered: RenderedIssue  # as it would go now (or went, once started)
    html: str  # as a sample reader gets it: sample address, sample unsubscribe link
    text: str
    readers: int  # active readers who get every article
    thanks_html: str = ""  # the donors' copy, as a sample donor gets it (empty: none)
    thanks_text: str = ""
    language: str = ""  # the edition shown: its readers' language
    languages: tuple[str, ...] = ()  # the publication's: the editions one may look at

    @property
    def open(self) -> bool:
        """Its content may still change and it may be sent (not started)."""
        return self.issue is None or self.issue.status in OPEN_STATUSES

    @property
    def scheduled(self) -> bool:
        return self.issue is not None and self.issue.status == IssueStatus.SCHEDULED


def _article(engine: Engine, article_id: int) -> Article | None:
    try:
        return find_article(engine, article_id)
    except MailerError:
        return None


def send_page(
    engine: Engine, settings: Settings, article_id: int, language: str | None = None
) -> SendPage | None:
    """What the article's send page shows (with `language`, the edition of readers of
    that language), or None for no such article. Nothing is written: the email is
    rendered for the page, not stored."""
    article = _article(engine, article_id)
    if article is None:
        return None
    publication = settings.publication
    language = supported(language or "", publication.languages) or publication.language
    own = language == publication.language
    issue = find_issue(engine, issue_key(article_id))
    started = issue is not None and issue.status not in OPEN_STATUSES
    edition = _edition_sent(engine, issue, language) if issue and started and not own else None
    if issue is not None and started and (own or edition is not None):
        # started: the content its readers get
        rendered = as_rendered(edition or issue, issue.reference)
    else:
        edits = (issue.edited_subject, issue.edited_preheader) if issue and own else (None, None)
        goal = issue_goal(engine, settings)
        rendered = render_article_issue(settings, article, *edits, goal, language)
    return SendPage(
        article,
        issue,
        rendered,
        preview(settings, rendered),
        preview(settings, rendered, text=True),
        runs.readers(engine, "article"),
        preview(settings, rendered, donor=True) if rendered.thanks_html else "",
        preview(settings, rendered, text=True, donor=True) if rendered.thanks_text else "",
        language,
        publication.languages,
    )


def _edition_sent(engine: Engine, issue: Issue, language: str) -> IssueVariant | None:
    """The started issue's edition in `language`, if it has one."""
    found = variants_of(engine, issue.id or 0).values()
    return next((variant for variant in found if variant.key == language), None)


def _edit(value: str, own: str, limit: int, what: str) -> str | None:
    """An editor's subject or preheader: None when it is the article's own (or empty), so
    a fix to the article still shows."""
    value = one_line(value)
    if len(value) > limit:
        raise DeskSendError(f"The {what} is {len(value)} characters long; keep it to {limit}.")
    return None if value in ("", own) else value


def edit_subject(
    engine: Engine, settings: Settings, article_id: int, subject: str, preheader: str
) -> Issue:
    """Keep the editor's subject and preheader on the article's issue and render it
    again with them. An empty field goes back to the article's own."""
    article = find_article(engine, article_id)
    own = render_article_issue(settings, article)
    edited_subject = _edit(subject, own.subject, SUBJECT_MAX, "subject")
    edited_preheader = _edit(preheader, own.preheader, PREHEADER_MAX, "preheader")
    issue = article_issue(engine, settings, article)
    if not edit_issue(engine, issue.id or 0, edited_subject, edited_preheader):
        raise DeskSendError(f"Issue {issue.id} has started: its subject can no longer change.")
    return article_issue(engine, settings, article)


def addresses_for_test(raw: str) -> list[str]:
    """The addresses typed (separated by commas, semicolons, spaces or lines), each
    checked; DeskSendError naming every bad one and why."""
    typed = [part for part in re.split(r"[\s,;]+", raw) if part]
    if not typed:
        raise DeskSendError("Type at least one address to send a test to.")
    if len(typed) > MAX_TEST_ADDRESSES:
        raise DeskSendError(
            f"That is {len(typed)} addresses; a test goes to at most {MAX_TEST_ADDRESSES}."
        )
    addresses, errors = [], []
    for address in typed:
        try:
            addresses.append(normalise_address(address))
        except MailerError as exc:
            errors.append(str(exc))
    if errors:
        raise DeskSendError("Nothing was sent. " + " ".join(f"{e.rstrip('.')}." for e in errors))
    return list(dict.fromkeys(addresses))


def send_test_copies(
    engine: Engine,
    settings: Settings,
    article_id: int,
    raw: str,
    donor: bool = False,
    language: str | None = None,
) -> list[str]:
    """A test copy of the article as the issue would go now (with the editor's subject
    and preheader) to each address typed, the donors' copy with `donor`, the edition of
    readers of `language` with it (one of the publication's); the addresses it went to."""
    addresses = addresses_for_test(raw)
    offered = settings.publication.languages
    if language and supported(language, offered) is None:
        raise DeskSendError(f"{language!r} is not one of the publication's: {', '.join(offered)}.")
    language = supported(language, offered) if language else None
    article = find_article(engine, article_id)
    issue = find_issue(engine, issue_key(article_id))
    subject, preheader = (issue.edited_subject, issue.edited_preheader) if issue else (None, None)
    for address in addresses:
        runs.send_test_copy(
            settings,
            article,
            address,
            subject=subject,
            preheader=preheader,
            donor=donor,
            language=language,
        )
    return addresses


def send_now(engine: Engine, settings: Settings, article_id: int, now: datetime) -> Issue:
    """Schedule the article's issue for `now`: the desk's sender (woken by the caller)
    sends it in the service."""
    return _schedule(engine, settings, article_id, now)


def _schedule(engine: Engine, settings: Settings, article_id: int, when: datetime) -> Issue:
    article = find_article(engine, article_id)
    issue = find_issue(engine, issue_key(article_id))
    if issue is not None and issue.status not in OPEN_STATUSES:
        raise DeskSendError(f"Issue {issue.id} has started already ({issue.status}).")
    return runs.schedule_article(engine, settings, article, when)


def local_time(value: str, timezone: str) -> datetime:
    """A date and time typed in the publication's zone (as a datetime-local field sends
    it), in UTC; DeskSendError if it is not one."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DeskSendError(
            f"“{value}” is not a date and time; pick one, e.g. 2026-12-01 07:00."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(ZoneInfo("UTC"))


def schedule(
    engine: Engine, settings: Settings, article_id: int, typed: str, now: datetime
) -> Issue:
    """Schedule the article's issue for a time typed in the publication's zone; a time
    past is refused."""
    zone = settings.publication.timezone
    when = local_time(typed, zone)
    if when <= now:
        shown = when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
        raise DeskSendError(f"{shown} ({zone}) has passed; choose a later time, or send it now.")
    return _schedule(engine, settings, article_id, when)


def cancel(engine: Engine, article_id: int) -> Issue:
    """Cancel the article's scheduled issue before it starts."""
    issue = find_issue(engine, issue_key(article_id))
    if issue is None:
        raise DeskSendError("This article has no issue scheduled: nothing to cancel.")
    return runs.cancel_scheduled(engine, issue.id or 0)


# --- an issue going out ------------------------------------------------------------


STATES: dict[str, str] = {
    IssueStatus.SENT: "Done: every message is settled.",
    IssueStatus.SCHEDULED: "Waiting for its time to start…",
    IssueStatus.HELD: "Stopped: the relay refused it, so it is held for an editor.",
    IssueStatus.DRAFT: "Not sent yet.",
    IssueStatus.CANCELLED: "Cancelled: nothing of it was sent.",
}


@dataclass(frozen=True)
class Progress:
    status: str  # the issue's
    sent: int
    deferred: int
    failed: int
    skipped: int  # readers who left after it was queued
    waiting: int  # queued or being sent now
    total: int
    per_minute: float | None  # sent over the last minute (or since the first was sent)
    seconds_left: float | None  # at that rate
    done: bool  # nothing more happens by itself: sent, held, or not started

    @property
    def state(self) -> str:
        """In words, as the issue page shows it."""
        started = self.status == IssueStatus.SCHEDULED and self.total  # queued a moment ago
        if self.status == IssueStatus.SENDING or started:
            return "Sending…"
        return STATES.get(self.status, self.status)

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "status": self.status,
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "total": self.total,
            "per_minute": None if self.per_minute is None else round(self.per_minute, 1),
            "seconds_left": None if self.seconds_left is None else round(self.seconds_left),
            "done": self.done,
        }


def _per_minute(engine: Engine, issue_id: int, now: datetime) -> float | None:
    sent = (d.issue_id == issue_id) & (d.status == DeliveryStatus.SENT)
    with engine.connect() as connection:
        first = connection.execute(select(func.min(d.sent_at, type_=UTCDateTime())).where(sent))
        started = first.scalar_one()
        if started is None:
            return None
        since = max(started, now - RATE_WINDOW)
        recent = select(func.count()).where(sent, d.sent_at >= since)
        count = int(connection.execute(recent).scalar_one())
    seconds = (now - since).total_seconds()
    return count * 60 / seconds if seconds >= 1 else None


def progress(engine: Engine, issue_id: int, now: datetime) -> Progress | None:
    """How far the issue has gone: counts, rate and time left; None for no such issue."""
    try:
        issue = find_issue_by_id(engine, issue_id)
    except MailerError:
        return None
    counts = issue_counts(engine, [issue_id])[issue_id]
    waiting = counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]
    rate = _per_minute(engine, issue_id, now) if waiting else None
    left = waiting * 60 / rate if rate else None
    return Progress(
        status=issue.status,
        sent=counts[DeliveryStatus.SENT],
        deferred=counts[DeliveryStatus.DEFERRED],
        failed=counts[DeliveryStatus.FAILED],
        skipped=counts[DeliveryStatus.SKIPPED],
        waiting=waiting,
        total=sum(counts.values()),
        per_minute=rate,
        seconds_left=left,
        done=issue.status not in (IssueStatus.SCHEDULED, IssueStatus.SENDING),
    )


@dataclass(frozen=True)
class Left:
    """The issue's readers who have bounced or unsubscribed since (now, whenever that was)."""

    bounced: int
    unsubscribed: int
    shown: list[tuple[int, str, str]]  # (subscriber id, address, status), at most LEFT_SHOWN


def readers_who_left(engine: Engine, issue_id: int) -> Left:
    gone = (SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED)
    theirs = (d.issue_id == issue_id) & s.status.in_(gone)
    joined = DELIVERIES.join(SUBSCRIBERS, s.id == d.subscriber_id)
    counts = select(s.status, func.count()).select_from(joined).where(theirs).group_by(s.status)
    rows = select(s.id, s.email, s.status).select_from(joined).where(theirs).order_by(s.id)
    with engine.connect() as connection:
        by_status: dict[str, int] = dict(connection.execute(counts).all())
        shown = list(connection.execute(rows.limit(LEFT_SHOWN)).all())
    return Left(
        by_status.get(SubscriberStatus.BOUNCED, 0),
        by_status.get(SubscriberStatus.UNSUBSCRIBED, 0),
        [(i, e, st) for i, e, st in shown if not e.startswith("erased:")],
    )
