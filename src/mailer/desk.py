"""What the editors' desk shows, as use cases: the dashboard's figures (what needs a
person, what is scheduled, the next digest and its readers, the last issues and their
counts), and the subscriber list (admins only: the route checks), each read from the
pipeline's own queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailer.digest import next_digest_at
from mailer.models import Issue, IssueStatus, Subscriber
from mailer.report import IssueReport, list_issues
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

RECENT_ISSUES = 10


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


def subscriber_list(engine: Engine, search: Search) -> Roster:
    return Roster(search_subscribers(engine, search), status_counts(engine))


def reader_record(engine: Engine, subscriber_id: int) -> ReaderRecord | None:
    subscriber = subscriber_by_id(engine, subscriber_id)
    if subscriber is None:
        return None
    return ReaderRecord(subscriber, received_issues(engine, subscriber_id))
