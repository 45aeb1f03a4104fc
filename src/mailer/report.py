"""Reporting: what happened to each issue, from the recorded outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from mailer.errors import MailerError
from mailer.models import (
    DELIVERIES,
    ISSUE_LINKS,
    ISSUE_VARIANTS,
    SUBSCRIBERS,
    DeliveryStatus,
    Issue,
    UTCDateTime,
)

d, s, k = DELIVERIES.c, SUBSCRIBERS.c, ISSUE_LINKS.c


@dataclass(frozen=True)
class Problem:
    status: str
    reply: str
    count: int
    example: str
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class LinkClicks:
    """How often one of the issue's counted links was followed (never by whom)."""

    link_id: str  # "donate", "vipps"; with count_clicks = "all", 1, 2, ...
    url: str
    appeal: bool
    clicks: int


@dataclass(frozen=True)
class IssueReport:
    issue: Issue
    counts: dict[str, int]
    problems: list[Problem]
    rate: float | None = None  # messages a second, first to last sent
    links: tuple[LinkClicks, ...] = ()  # the appeal's first, then the others in order
    # counts per state of each edition, by its language (None: the issue's own, in the
    # publication's language)
    editions: dict[str | None, dict[str, int]] = field(default_factory=dict)


def issue_counts(engine: Engine, issue_ids: list[int]) -> dict[int, dict[str, int]]:
    query = (
        select(d.issue_id, d.status, func.count())
        .where(d.issue_id.in_(issue_ids))
        .group_by(d.issue_id, d.status)
    )
    counts = {i: dict.fromkeys(DeliveryStatus.ALL, 0) for i in issue_ids}
    with engine.connect() as connection:
        for issue_id, status, count in connection.execute(query):
            counts[issue_id][status] = count
    return counts


def list_issues(engine: Engine, limit: int = 20) -> list[IssueReport]:
    with Session(engine) as session:
        issues = session.exec(select_rows(Issue).order_by(col(Issue.id).desc()).limit(limit)).all()
    ids = [i.id for i in issues if i.id is not None]
    counts, editions = issue_counts(engine, ids), edition_counts(engine, ids)
    return [IssueReport(i, counts[i.id or 0], [], editions=editions[i.id or 0]) for i in issues]


def issue_report(engine: Engine, issue_id: int) -> IssueReport:
    """Counts per state, and the failed and deferred replies grouped by reply."""
    with Session(engine) as session:
        issue = session.get(Issue, issue_id)
    if issue is None:
        raise MailerError(f"no issue with id {issue_id}; `mailer status` lists them")
    query = (
        select(
            d.status,
            d.smtp_response,
            func.count(),
            func.min(s.email),
            func.min(d.next_attempt_at, type_=UTCDateTime()),
        )
        .join(SUBSCRIBERS, s.id == d.subscriber_id)
        .where(
            d.issue_id == issue_id, d.status.in_((DeliveryStatus.FAILED, DeliveryStatus.DEFERRED))
        )
        .group_by(d.status, d.smtp_response)
        .order_by(func.count().desc())
    )
    span = select(
        func.count(),
        func.min(d.sent_at, type_=UTCDateTime()),
        func.max(d.sent_at, type_=UTCDateTime()),
    ).where(d.issue_id == issue_id, d.status == DeliveryStatus.SENT)
    with engine.connect() as connection:
        problems = [
            Problem(st, r or "", n, _shown(e), t) for st, r, n, e, t in connection.execute(query)
        ]
        sent, first, last = connection.execute(span).one()
    seconds = (last - first).total_seconds() if sent > 1 else 0
    rate = (sent - 1) / seconds if seconds > 0 else None
    counts = issue_counts(engine, [issue_id])[issue_id]
    clicks, editions = link_clicks(engine, issue_id), edition_counts(engine, [issue_id])
    return IssueReport(issue, counts, problems, rate, clicks, editions[issue_id])


Editions = dict[str | None, dict[str, int]]


def edition_counts(engine: Engine, issue_ids: list[int]) -> dict[int, Editions]:
    """Counts per state of each issue's editions, by language (None: the issue's own)."""
    v = ISSUE_VARIANTS.c
    query = (
        select(d.issue_id, v.language, d.status, func.count())
        .select_from(DELIVERIES.outerjoin(ISSUE_VARIANTS, v.id == d.variant_id))
        .where(d.issue_id.in_(issue_ids))
        .group_by(d.issue_id, v.language, d.status)
    )
    editions: dict[int, Editions] = {i: {} for i in issue_ids}
    with engine.connect() as connection:
        for issue_id, language, status, count in connection.execute(query):
            counts = editions[issue_id].setdefault(language, dict.fromkeys(DeliveryStatus.ALL, 0))
            counts[status] += count
    return editions


def link_clicks(engine: Engine, issue_id: int) -> tuple[LinkClicks, ...]:
    """The issue's counted links and their clicks: the appeal's first, then the others
    in the order the issue shows them."""
    query = select(k.link_id, k.url, k.appeal, k.clicks).where(k.issue_id == issue_id)
    with engine.connect() as connection:
        rows = [LinkClicks(*row) for row in connection.execute(query)]
    return tuple(sorted(rows, key=_shown_order))


def _shown_order(link: LinkClicks) -> tuple[bool, int, str]:
    number = int(link.link_id) if link.link_id.isdigit() else 0
    return (not link.appeal, number, link.link_id)


def _shown(address: str) -> str:
    """An example address as a report prints it: an erased one's marker is not shown."""
    return "an erased subscriber" if address.startswith("erased:") else address
