"""Reporting: what happened to each issue, from the recorded outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlmodel import col

from mailer.errors import MailerError
from mailer.models import Delivery, DeliveryStatus, Issue, Subscriber, UTCDateTime


@dataclass(frozen=True)
class Problem:
    status: str
    reply: str
    count: int
    example: str
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class IssueReport:
    issue: Issue
    counts: dict[str, int]
    problems: list[Problem]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def issue_counts(engine: Engine, issue_ids: list[int]) -> dict[int, dict[str, int]]:
    query = (
        select(Delivery.issue_id, Delivery.status, func.count())
        .where(col(Delivery.issue_id).in_(issue_ids))
        .group_by(Delivery.issue_id, Delivery.status)
    )
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(DeliveryStatus.ALL, 0) for i in issue_ids}
    with engine.connect() as connection:
        for issue_id, status, count in connection.execute(query):
            counts[issue_id][status] = count
    return counts


def list_issues(engine: Engine, limit: int = 20) -> list[IssueReport]:
    with engine.connect() as connection:
        rows = connection.execute(select(Issue).order_by(col(Issue.id).desc()).limit(limit)).all()
    issues = [Issue.model_validate(row._mapping) for row in rows]
    counts = issue_counts(engine, [i.id for i in issues if i.id is not None])
    return [IssueReport(i, counts[i.id or 0], []) for i in issues]


def issue_report(engine: Engine, issue_id: int) -> IssueReport:
    """Counts per state, and the failed and deferred replies grouped by reply."""
    with engine.connect() as connection:
        row = connection.execute(select(Issue).where(col(Issue.id) == issue_id)).first()
        if row is None:
            raise MailerError(f"no issue with id {issue_id}; `mailer status` lists them")
        problems = connection.execute(
            select(
                Delivery.status,
                Delivery.smtp_response,
                func.count(),
                func.min(Subscriber.email),
                func.min(Delivery.next_attempt_at, type_=UTCDateTime()),
            )
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(
                Delivery.issue_id == issue_id,
                col(Delivery.status).in_((DeliveryStatus.FAILED, DeliveryStatus.DEFERRED)),
            )
            .group_by(Delivery.status, Delivery.smtp_response)
            .order_by(func.count().desc())
        ).all()
    issue = Issue.model_validate(row._mapping)
    listed = [Problem(s, r or "", n, e, t) for s, r, n, e, t in problems]
    return IssueReport(issue, issue_counts(engine, [issue_id])[issue_id], listed)
