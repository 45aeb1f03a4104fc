"""The desk's overview, as use cases: what needs a person (held sends, a stopped
scheduler, a relay that does not answer), the readers week by week, this week's digest
and the audit log. Each reads the pipeline's own tables with a few narrow queries, so the
banner every desk page carries and the dashboard's chart stay cheap at 100,000 readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, Engine, Select, cast, func, literal_column, select, union_all
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col
from sqlmodel import select as select_model

from mailer import editors
from mailer.beats import SCHEDULER, is_stopped, last_beat
from mailer.digest import next_digest_at, plan_digest
from mailer.errors import MailerError
from mailer.i18n import supported
from mailer.issues import OPEN_STATUSES, as_rendered, find_issue, issue_goal, variants_of
from mailer.messages import data_uri, with_image_sources
from mailer.models import (
    EDITORS,
    ISSUES,
    SUBSCRIBERS,
    Article,
    AuditAction,
    AuditEvent,
    Issue,
    IssueVariant,
)
from mailer.models import IssueStatus as Status
from mailer.render import render_digest_issue
from mailer.runs import readers
from mailer.settings import Settings
from mailer.smtp import SMTPTransport, TemporaryFailure

# The scheduler beats every 15 s; this long without one, it has stopped (or hangs).
SCHEDULER_SILENT = timedelta(minutes=2)
RELAY_TIMEOUT = 10.0  # seconds: a relay slower than this to greet is failing anyway
CHART_WEEKS = 26
AUDIT_PER_PAGE = 50


# --- what needs a person ---------------------------------------------------------------


@dataclass(frozen=True)
class HeldSend:
    issue_id: int
    subject: str
    reason: str  # what the relay said


@dataclass(frozen=True)
class Attention:
    """What every desk page tells an editor until it is put right."""

    held: list[HeldSend]
    # the scheduler is silent while the newsroom relies on it: why it is needed, or ""
    scheduler_needed_for: str = ""
    scheduler_last_beat: datetime | None = None
    relay_problem: str = ""  # the last check of the relay failed: what it said

    @property
    def any(self) -> bool:
        return bool(self.held or self.scheduler_needed_for or self.relay_problem)


def attention(engine: Engine, settings: Settings, now: datetime, desk_sends: bool) -> Attention:
    """Held sends, and whether a silent scheduler leaves something undone. The scheduler
    sends the digest, so a digest schedule needs it; issues scheduled for a time need it
    only when the desk's own sender (`desk_sends`: its thread is alive in this process)
    is not there to start them. Two small queries."""
    wanted = (ISSUES.c.id, ISSUES.c.subject, ISSUES.c.held_reason, ISSUES.c.status)
    waiting = ISSUES.c.status.in_((Status.HELD, Status.SCHEDULED))
    with engine.connect() as connection:
        issues = connection.execute(select(*wanted).where(waiting).order_by(ISSUES.c.id)).all()
    beat = last_beat(engine, SCHEDULER)
    held = [
        HeldSend(i.id, i.subject, i.held_reason or "") for i in issues if i.status == Status.HELD
    ]
    scheduled = sum(1 for i in issues if i.status == Status.SCHEDULED)
    needed = ""
    if settings.schedule.digest_cron:
        needed = "the weekly digest"
    elif scheduled and not desk_sends:
        needed = f"{scheduled} scheduled issue{'' if scheduled == 1 else 's'}"
    silent = is_stopped(beat, now, SCHEDULER_SILENT)
    return Attention(held, needed if silent else "", beat.beat_at if beat else None)


def relay_problem(settings: Settings) -> str:
    """Connect to the relay, greet it (and sign in, if set) and say goodbye: what went
    wrong, or "" when it answered. Blocks up to RELAY_TIMEOUT per step: call it off the
    request path."""
    smtp = settings.smtp.model_copy(update={"timeout": min(settings.smtp.timeout, RELAY_TIMEOUT)})
    try:
        with SMTPTransport(smtp) as transport:
            transport.open()
    except (MailerError, TemporaryFailure, OSError) as exc:  # refused, unreachable, 4xx
        return str(exc) or type(exc).__name__
    return ""


# --- readers over time -------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderWeek:
    monday: date  # the week starting that Monday (UTC days)
    signed_up: int
    confirmed: int
    left: int


def _day(column: ColumnElement[datetime], dialect: str) -> ColumnElement[date]:
    """The UTC day of a timestamp, in SQL: SQLite keeps UTC text, PostgreSQL a timestamptz
    whose date() would follow the session's zone."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def readers_over_time(engine: Engine, now: datetime, weeks: int = CHART_WEEKS) -> list[ReaderWeek]:
    """Sign-ups, confirmations and departures in each of the last `weeks` weeks (this one
    last, so far): one query, each series counted per day by the database, the days put
    into weeks here."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    dialect = engine.dialect.name
    parts: list[Select[Any, date, int]] = []
    for series, column in enumerate(
        (SUBSCRIBERS.c.created_at, SUBSCRIBERS.c.confirmed_at, SUBSCRIBERS.c.unsubscribed_at)
    ):
        label = _day(column, dialect).label("day")
        parts.append(
            select(literal_column(str(series)).label("series"), label, func.count().label("n"))
            .where(column >= since)
            .group_by(label)
        )
    counts = [[0, 0, 0] for _ in range(weeks)]
    with engine.connect() as connection:
        for series, day, n in connection.execute(union_all(*parts)).all():
            if isinstance(day, str):
                day = date.fromisoformat(day)
            index = (day - first).days // 7
            if 0 <= index < weeks:
                counts[index][int(series)] += int(n)
    return [ReaderWeek(first + timedelta(weeks=i), *counts[i]) for i in range(weeks)]


# --- this week's digest --------------------------------------------------------------------


@dataclass(frozen=True)
class DigestPreview:
    week: str  # "2026-W49"
    articles: list[Article]  # what it would carry now (or carried, once started)
    readers: int  # readers on the digest
    next_at: datetime | None  # when the schedule sends it; None: no schedule
    issue: Issue | None  # this week's digest issue, if it was made
    html: str  # the email as readers would see it ("" with no article)
    text: str
    language: str = ""  # the edition shown: its readers' language
    languages: tuple[str, ...] = ()  # the publication's: the editions one may look at

    @property
    def started(self) -> bool:
        return self.issue is not None and self.issue.status not in OPEN_STATUSES


def digest_preview(
    engine: Engine, settings: Settings, now: datetime, language: str | None = None
) -> DigestPreview:
    """This week's digest as it would go now, or as it went if it has started; with
    `language`, the whole edition of readers of that language."""
    publication = settings.publication
    zone, offered = publication.timezone, publication.languages
    language = supported(language or "", offered) or publication.language
    plan = plan_digest(engine, zone, now)
    issue = find_issue(engine, plan.key)
    next_at = next_digest_at(settings.schedule.digest_cron, zone, now)
    count = readers(engine, "digest")
    if issue is not None and issue.status not in OPEN_STATUSES:
        carried = _articles(engine, issue.article_id_list)
        variant = next((v for v in variants_of(engine, issue.id or 0).values()
                        if v.key == language), None)  # fmt: skip
        shown_issue: Issue | IssueVariant = variant or issue
        # the appeal's codes from data: URIs, as in every preview (cid: means nothing here)
        shown_html = with_image_sources(shown_issue.html, as_rendered(issue).images, data_uri)
        shown_as = language if variant is not None else publication.language
        return DigestPreview(plan.week, carried, count, next_at, issue, shown_html,
                             shown_issue.text, shown_as, offered)  # fmt: skip
    if not plan.articles:
        return DigestPreview(plan.week, [], count, next_at, issue, "", "", language, offered)
    goal = issue_goal(engine, settings)
    shown = render_digest_issue(
        settings, plan.articles, plan.week, plan.since, plan.until, goal, language
    )
    shown_html = with_image_sources(shown.html, shown.images, data_uri)
    return DigestPreview(plan.week, plan.articles, count, next_at, issue, shown_html,
                         shown.text, language, offered)  # fmt: skip


def _articles(engine: Engine, ids: list[int]) -> list[Article]:
    with Session(engine) as session:
        query = select_model(Article).where(col(Article.id).in_(ids))
        found = {a.id: a for a in session.exec(query)}
    return [found[i] for i in ids if i in found]


# --- the audit log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    who: str  # the editor's address; "command line" for none; "editor N (removed)"


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]  # newest first
    action: str  # the filter, "" for all
    page: int  # from 1
    more: bool
    actions: list[str]  # every action, for the filter


def audit_page(engine: Engine, action: str, page: int) -> AuditPage:
    page = max(1, page)
    found = editors.audit_log(
        engine, AUDIT_PER_PAGE + 1, offset=(page - 1) * AUDIT_PER_PAGE, action=action or None
    )
    shown = found[:AUDIT_PER_PAGE]
    ids = {e.editor_id for e in shown if e.editor_id is not None}
    with engine.connect() as connection:
        query = select(EDITORS.c.id, EDITORS.c.email).where(EDITORS.c.id.in_(ids))
        emails = {row.id: row.email for row in connection.execute(query)} if ids else {}
    rows = [AuditRow(e, _who(e.editor_id, emails)) for e in shown]
    actions = sorted(str(action) for action in AuditAction)
    return AuditPage(rows, action, page, len(found) > AUDIT_PER_PAGE, actions)


def _who(editor_id: int | None, emails: dict[int, str]) -> str:
    if editor_id is None:
        return "command line"
    return emails.get(editor_id, f"editor {editor_id} (removed)")
