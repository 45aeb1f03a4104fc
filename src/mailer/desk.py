"""What the editors' desk shows, as use cases: the dashboard's figures (what needs a
person, what is scheduled, the next digest and its readers, the last issues and their
counts), the articles, one issue's report (as a page and as CSV), and the subscriber
list (admins only: the route checks), each read from the pipeline's own queries."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailer.articles import search_articles
from mailer.bounce_processing import bounce_history
from mailer.digest import next_digest_at
from mailer.errors import MailerError
from mailer.models import Article, BounceEvent, DeliveryStatus, Issue, IssueStatus, Subscriber
from mailer.report import IssueReport, issue_report, list_issues
from mailer.roster import (
    Found,
    Received,
    Search,
    received_issues,
    search_subscribers,
    status_counts,
    subscriber_by_id,
)
from mailer.runs import readers
from mailer.settings import Settings
from mailer.subscriber_csv import neutralised

RECENT_ISSUES = 10
ARTICLES_PER_PAGE = 50
REPORT_COLUMNS = ["status", "count", "reply", "example", "next_attempt_at"]


@dataclass(frozen=True)
class Dashboard:
    held: list[Issue]  # the relay refused them: someone must look (held_reason says why)
    scheduled: list[Issue]  # soonest first
    next_digest: datetime | None  # None: no digest schedule
    digest_readers: int
    recent: list[IssueReport]  # newest first, with counts per delivery state


def _issues(engine: Engine, status: IssueStatus) -> list[Issue]:
    query = select(Issue).where(Issue.status == status)
    with Session(engine) as session:
        return list(session.exec(query.order_by(col(Issue.scheduled_at), col(Issue.id))).all())


def dashboard(engine: Engine, settings: Settings, now: datetime) -> Dashboard:
    schedule = settings.schedule
    return Dashboard(
        held=_issues(engine, IssueStatus.HELD),
        scheduled=_issues(engine, IssueStatus.SCHEDULED),
        next_digest=next_digest_at(schedule.digest_cron, settings.publication.timezone, now),
        digest_readers=readers(engine, "digest"),
        recent=list_issues(engine, RECENT_ISSUES),
    )


@dataclass(frozen=True)
class Roster:
    found: Found
    by_status: dict[str, int]  # the whole list, whatever the search


@dataclass(frozen=True)
class ReaderRecord:
    subscriber: Subscriber  # with its consent: created_at, confirmed_at, consent_ip
    received: list[Received]  # latest first, at most roster.RECEIVED_LIMIT
    # bounces and complaints that came back by mail: latest first, at most HISTORY_LIMIT
    bounces: list[BounceEvent]


def subscriber_list(engine: Engine, search: Search) -> Roster:
    return Roster(search_subscribers(engine, search), status_counts(engine))


def reader_record(engine: Engine, subscriber_id: int) -> ReaderRecord | None:
    subscriber = subscriber_by_id(engine, subscriber_id)
    if subscriber is None:
        return None
    return ReaderRecord(
        subscriber, received_issues(engine, subscriber_id), bounce_history(engine, subscriber_id)
    )


@dataclass(frozen=True)
class ArticleRow:
    article: Article
    sent: bool  # an issue of it went out


@dataclass(frozen=True)
class ArticlePage:
    rows: list[ArticleRow]  # newest first
    search: str
    page: int  # from 1
    more: bool  # a next page exists


def articles(engine: Engine, search: str, page: int) -> ArticlePage:
    """One page of the articles, newest first, those whose title holds `search`."""
    page, search = max(1, page), search.strip()
    found = search_articles(engine, search, (page - 1) * ARTICLES_PER_PAGE, ARTICLES_PER_PAGE + 1)
    shown = found[:ARTICLES_PER_PAGE]
    keys = [f"article:{a.id}" for a in shown]
    query = select(Issue.key).where(col(Issue.key).in_(keys), Issue.status == IssueStatus.SENT)
    with Session(engine) as session:
        sent = set(session.exec(query).all())
    rows = [ArticleRow(a, f"article:{a.id}" in sent) for a in shown]
    return ArticlePage(rows, search, page, len(found) > ARTICLES_PER_PAGE)


def issue_page(engine: Engine, issue_id: int) -> IssueReport | None:
    """The issue's report (counts per state, the deferred and failed replies), or None
    when there is no such issue."""
    try:
        return issue_report(engine, issue_id)
    except MailerError:
        return None


def report_rows(report: IssueReport) -> list[list[str]]:
    """The report as the CSV's rows (after REPORT_COLUMNS): each delivery state and its
    count, then each deferred or failed reply with its count, an example reader and the
    next try, as the issue's page shows them."""
    rows = [[state, str(report.counts.get(state, 0)), "", "", ""] for state in DeliveryStatus.ALL]
    for problem in report.problems:
        when = problem.next_attempt_at.isoformat() if problem.next_attempt_at else ""
        rows.append([problem.status, str(problem.count), problem.reply, problem.example, when])
    return rows


def report_csv(report: IssueReport) -> str:
    """The report as CSV, text a spreadsheet would run as a formula neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    writer.writerows([neutralised(cell) for cell in row] for row in report_rows(report))
    return out.getvalue()
