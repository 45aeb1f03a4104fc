"""The subscriber list as the desk reads it: a search by part of the address or name,
filtered by status and frequency, a page at a time newest first; and one reader with
the issues they got. Read-only; subscribers.py changes the list."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, or_
from sqlmodel import Session, col, select

from mailer.models import Delivery, Issue, Subscriber, SubscriberStatus

PAGE_SIZE = 50
RECEIVED_LIMIT = 100  # a reader's latest deliveries shown


@dataclass(frozen=True)
class Search:
    """What the editor asked for; empty strings mean "any"."""

    text: str = ""
    status: str = ""
    frequency: str = ""
    page: int = 1  # from 1


@dataclass(frozen=True)
class Found:
    subscribers: list[Subscriber]  # this page, newest first
    total: int  # matching the search, on every page
    page: int
    pages: int


@dataclass(frozen=True)
class Received:
    """One issue a reader was sent (or was to be sent)."""

    issue_id: int
    subject: str
    status: str  # DeliveryStatus
    at: datetime | None  # sent, or else first tried


def _like(text: str) -> str:
    """A LIKE pattern for `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(search: Search, dialect: str = "") -> list[Any]:
    conditions: list[Any] = []
    if search.text.strip():
        pattern = _like(search.text.strip())
        email, name = col(Subscriber.email), col(Subscriber.name)
        if dialect == "sqlite":
            # SQLite's LIKE already ignores (ASCII) case, as its lower() does: ilike's
            # lower() on both sides would only cost two calls a row
            found = or_(email.like(pattern, escape="\\"), name.like(pattern, escape="\\"))
        else:  # PostgreSQL: ILIKE, which the trigram indexes of migration 0011 answer
            found = or_(email.ilike(pattern, escape="\\"), name.ilike(pattern, escape="\\"))
        conditions.append(found)
    if search.status:
        conditions.append(col(Subscriber.status) == search.status)
    if search.frequency:
        conditions.append(col(Subscriber.frequency) == search.frequency)
    return conditions


NEWEST_FIRST = (col(Subscriber.created_at).desc(), col(Subscriber.id).desc())


def _ids_and_total(session: Session, conditions: list[Any], page: int) -> list[tuple[int, int]]:
    """A search's page of ids, each with how many match in all, in one pass over the
    matching rows: a text search reads every row (SQLite) or the trigram index's matches
    (PostgreSQL) once, not once for the page and again for the count; only the ids and
    their sign-up times are sorted. The sort is of the few that match: walking the
    sign-up index instead (as SQLite would choose) looks up most of the list."""
    found = (
        select(
            col(Subscriber.id).label("id"),
            col(Subscriber.created_at).label("created_at"),
            func.count().over().label("total"),
        )
        .where(*conditions)
        .subquery()
    )
    query = (
        select(found.c.id, found.c.total)
        .order_by(found.c.created_at.desc(), found.c.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    return [(int(i), int(n)) for i, n in session.execute(query).all()]


def _page_ids(session: Session, conditions: list[Any], page: int) -> list[int]:
    """A filtered (or whole) list's page of ids, newest first, straight off the sign-up
    index: the first rows that pass the filters, read in that order, make the page."""
    query = (
        select(col(Subscriber.id))
        .where(*conditions)
        .order_by(*NEWEST_FIRST)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    return [int(i or 0) for i in session.exec(query).all()]


def _count(session: Session, conditions: list[Any]) -> int:
    return session.exec(select(func.count()).select_from(Subscriber).where(*conditions)).one()


def _last_page(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def search_subscribers(engine: Engine, search: Search) -> Found:
    """One page of the readers matching `search` (case-insensitive on both backends),
    the newest first, and how many match in all. A page past the end shows the last."""
    conditions = _conditions(search, engine.dialect.name)
    page = max(1, search.page)
    with Session(engine) as session:
        if search.text.strip():
            found = _ids_and_total(session, conditions, page)
            total = found[0][1] if found else 0
            if not found and page > 1:  # past the end: how far it goes, then its last page
                page = _last_page(_count(session, conditions))
                found = _ids_and_total(session, conditions, page)
                total = found[0][1] if found else 0
            ids = [i for i, _ in found]
        else:
            total = _count(session, conditions)
            page = min(page, _last_page(total))
            ids = _page_ids(session, conditions, page) if total else []
        rows = session.exec(select(Subscriber).where(col(Subscriber.id).in_(ids))).all()
    by_id = {row.id: row for row in rows}
    return Found([by_id[i] for i in ids if i in by_id], total, min(page, _last_page(total)),
                 _last_page(total))  # fmt: skip


EXPORT_BATCH = 500


def matching_subscribers(engine: Engine, search: Search) -> Iterator[Subscriber]:
    """Every reader matching `search` (its page aside) in id order, read in batches (after
    id N) so a long list needs little memory: what the desk's export writes."""
    conditions = _conditions(search, engine.dialect.name)
    after = 0
    while True:
        query = select(Subscriber).where(col(Subscriber.id) > after, *conditions)
        with Session(engine) as session:
            batch = list(session.exec(query.order_by(col(Subscriber.id)).limit(EXPORT_BATCH)))
        if not batch:
            return
        yield from batch
        after = batch[-1].id or after


def subscriber_by_id(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with Session(engine) as session:
        return session.get(Subscriber, subscriber_id)


def received_issues(engine: Engine, subscriber_id: int) -> list[Received]:
    """The issues queued for a reader, latest first, at most RECEIVED_LIMIT."""
    query = (
        select(
            col(Issue.id),
            col(Issue.subject),
            col(Delivery.status),
            func.coalesce(col(Delivery.sent_at), col(Delivery.first_attempt_at)),
        )
        .join(Issue, col(Issue.id) == col(Delivery.issue_id))
        .where(col(Delivery.subscriber_id) == subscriber_id)
        .order_by(col(Delivery.id).desc())
        .limit(RECEIVED_LIMIT)
    )
    with Session(engine) as session:
        rows = session.exec(query).all()
    return [Received(int(i or 0), s, status, at) for i, s, status, at in rows]


def status_counts(engine: Engine) -> dict[str, int]:
    """How many readers are in each status (every status, zero or not)."""
    query = select(Subscriber.status, func.count()).group_by(col(Subscriber.status))
    with Session(engine) as session:
        found = {str(status): int(n) for status, n in session.exec(query).all()}
    return {status: found.get(status, 0) for status in SubscriberStatus.ALL}
