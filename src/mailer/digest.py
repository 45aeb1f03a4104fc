"""The weekly digest: which week it is, when it is due, and which articles it holds.

A digest is keyed by its ISO week ("digest:2026-W49") in the publication's time zone,
so however it is started (the scheduler, a crontab line, an editor, all at once) there
is one per week. It holds every article published since the previous digest's end (the
first one: the last 7 days), newest first, and those brought in late, after that
digest went out, though dated before it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine
from sqlmodel import and_, col, or_, select

from mailer.articles import LATEST_FIRST
from mailer.db import session_scope
from mailer.errors import MailerError
from mailer.models import Article, Issue, IssueStatus

FIRST_PERIOD = timedelta(days=7)
# An article dated this much before the period is old news, however late it came in.
LATE_ARRIVALS = timedelta(days=7)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FULL_DAYS = {
    day[:3]: day
    for day in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
}


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


def crontab_trigger(expression: str, timezone: str) -> CronTrigger:
    """A crontab line's five fields as an APScheduler trigger. The weekday is crontab's
    (0 or 7 = Sunday, 1 = Monday), which APScheduler 3 numbers from Monday = 0: numbers
    are turned into day names first, so "0 8 * * 1" is Monday 08:00 as in cron."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    if fields[2] != "*" and fields[4] != "*":
        # cron runs on either; APScheduler only when both match: neither is what was meant
        raise ValueError("set the day of the month or the weekday, not both")
    fields[4] = _weekday_names(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo(timezone))


def _weekday_names(field: str) -> str:
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", part)
        if match is None:
            raise ValueError(f"weekday {part!r}")
        if match[1] == "*":
            low, high = 0, 6
        else:  # crontab: "1/2" steps from Monday to the end of the week
            low = _day_number(match[1])
            high = _day_number(match[2]) if match[2] else 7 if match[3] else low
            if high < low:
                raise ValueError(f"weekday range {part!r} runs backwards; write it as a list")
        days.update(day % 7 for day in range(low, high + 1, int(match[3] or 1)))
    return ",".join(_DAYS[day] for day in sorted(days))


def _day_number(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token[:3] in _DAYS and len(token) in (3, len(_FULL_DAYS.get(token[:3], ""))):
        return _DAYS.index(token[:3])
    raise ValueError(f"weekday {token!r}: 0-7 (0 and 7 are Sunday) or sun, mon, ...")


def last_due(expression: str, timezone: str, now: datetime, within: timedelta) -> datetime | None:
    """The latest time the schedule was due at, if that is no longer ago than `within`."""
    if not expression:
        return None
    trigger = crontab_trigger(expression, timezone)
    due, start = None, now - within
    while (fire := trigger.get_next_fire_time(None, start)) is not None and fire <= now:
        due, start = fire, fire + timedelta(seconds=1)
    return due


def next_digest_at(expression: str, timezone: str, now: datetime) -> datetime | None:
    if not expression:
        return None
    try:
        return crontab_trigger(expression, timezone).get_next_fire_time(None, now)
    except ValueError as exc:
        raise MailerError(f"schedule.digest_cron = {expression!r}: {exc}") from None
