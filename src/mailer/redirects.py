"""The use case behind a counted link (base_url/r/<issue reference>/<link id>, clicks.py):
where it leads, and one more click on it. The address only ever comes from the issue's
own `issue_link` rows, so the route redirects nowhere else (no open redirect); and the
count is per issue and link, with nothing about who followed it."""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from mailer.models import ISSUE_LINKS, ISSUES, IssueStatus

i, k = ISSUES.c, ISSUE_LINKS.c


def follow_link(engine: Engine, reference: str, link_id: str, count: bool) -> str | None:
    """Where the issue's link leads, or None when the issue holds no such link. With
    `count`, the link's clicks go up by one in one statement (concurrent clicks all
    count, on SQLite and PostgreSQL alike), once the issue has gone out: a test copy's
    links lead to the same places, uncounted."""
    with engine.begin() as connection:
        if count:
            gone_out = select(i.id).where(
                i.reference == reference, i.status.in_(IssueStatus.STARTED)
            )
            counted = connection.execute(
                update(ISSUE_LINKS)
                .where(k.issue_id == gone_out.scalar_subquery(), k.link_id == link_id)
                .values(clicks=k.clicks + 1)
                .returning(k.url)
            ).scalar()
            if counted is not None:
                return str(counted)
        query = (
            select(k.url)
            .join(ISSUES, i.id == k.issue_id)
            .where(i.reference == reference, k.link_id == link_id)
        )
        target = connection.execute(query).scalar()
        return None if target is None else str(target)
