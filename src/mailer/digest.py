"""The weekly digest: which week it is, when it is due, and which articles it holds.

A digest is keyed by its ISO week ("digest:2026-W49") in the publication's time zone,
so however it is started (the scheduler, a crontab line, an editor, all at once) there
is one per week. It holds every article published since the previous digest's end (the
first one: the last 7 days), newest first, and those brought in late, after that
digest went out, though dated before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import and_, col, or_, select

from mailer.articles import LATEST_FIRST
from mailer.crontab import crontab_trigger
from mailer.db import session_scope
from mailer.errors import MailerError
from mailer.models import Article, Issue, IssueStatus

FIRST_PERIOD = timedelta(days=7)
# An article dated this much before the period is old news, however late it came in.
LATE_ARRIVALS = timedelta(days=7)


@dataclass(frozen=True)
class DigestPlan:
    key: str  # "digest:2026-W49"
    week: str  # "2026-W49"
    since: datetime
    until: datetime
    articles: list[Article]


def week_of(when: datetime, timezone: str) -> str:
    year, week, _ = when.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{week:02d}"


def plan_digest(
    engine: Engine,
    timezone: str,
    now: datetime,
    since: datetime | None = None,
    due: datetime | None = None,
) -> DigestPlan:
    """This week's digest as it would be built now; `since` overrides where it starts.
    `due` is the time it was scheduled for, whose week it is (a Sunday 23:55 digest
    that runs late, after midnight, is still Sunday's week's)."""
    week = week_of(due or now, timezone)
    key = f"digest:{week}"
    with session_scope(engine) as session:
        earlier = session.exec(
            select(Issue)
            .where(Issue.kind == "digest", Issue.key != key, col(Issue.period_end).is_not(None))
            .where(col(Issue.status).in_(IssueStatus.STARTED))
            .order_by(col(Issue.period_end).desc())
            .limit(3)
        ).all()
        start = since or (earlier[0].period_end if earlier else None) or now - FIRST_PERIOD
        assert start is not None
        shown = {i for issue in earlier for i in issue.article_id_list}
        published_in = and_(col(Article.published_at) > start, col(Article.published_at) <= now)
        came_late = and_(
            col(Article.ingested_at) > start,
            col(Article.ingested_at) <= now,
            col(Article.published_at) > start - LATE_ARRIVALS,
            col(Article.published_at) <= now,
        )
        query = select(Article).where(or_(published_in, came_late)).order_by(*LATEST_FIRST)
        articles = [a for a in session.exec(query).all() if a.id not in shown]
    return DigestPlan(key, week, start, now, articles)


def next_digest_at(expression: str, timezone: str, now: datetime) -> datetime | None:
    """When the digest is due next (none: no schedule), as `mailer status` shows it."""
    if not expression:
        return None
    try:
        fire: datetime | None = crontab_trigger(expression, timezone).get_next_fire_time(None, now)
    except ValueError as exc:
        raise MailerError(f"schedule.digest_cron = {expression!r}: {exc}") from None
    return fire
