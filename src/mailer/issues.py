"""Issues: an article (or, later, a week of them) becomes one Issue row, rendered once.

An issue is keyed ("article:<id>"), so asking for it again returns the same row; once
anything has been queued its content is frozen, so every reader gets the same email."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mailer.db import session_scope
from mailer.models import Article, Issue, IssueStatus
from mailer.render import RenderedIssue, render_article_issue
from mailer.settings import Settings


def find_issue(engine: Engine, key: str) -> Issue | None:
    with session_scope(engine) as session:
        return session.exec(select(Issue).where(Issue.key == key)).first()


def unfinished_issues(engine: Engine) -> list[Issue]:
    """Issues queued and not yet sent to everyone (interrupted, or deferrals pending)."""
    with session_scope(engine) as session:
        query = select(Issue).where(Issue.status == IssueStatus.SENDING).order_by(col(Issue.id))
        return list(session.exec(query).all())


def article_issue(engine: Engine, settings: Settings, article: Article) -> Issue:
    """The issue for this article: created and rendered on first use; re-rendered while it
    is still a draft (the editor may have fixed the article); frozen once queued."""
    key = f"article:{article.id}"
    with session_scope(engine) as session:
        issue = session.exec(select(Issue).where(Issue.key == key)).first()
        if issue is not None and issue.status != IssueStatus.DRAFT:
            return issue
        rendered = render_article_issue(settings, article)
        if issue is None:
            issue = Issue(kind="article", key=key, subject="", article_ids=str(article.id))
        _apply(issue, rendered)
        session.add(issue)
        try:
            session.flush()
        except IntegrityError:  # another process created it first: use theirs
            session.rollback()
            return session.exec(select(Issue).where(Issue.key == key)).one()
        return issue


def _apply(issue: Issue, rendered: RenderedIssue) -> None:
    issue.subject = rendered.subject
    issue.preheader = rendered.preheader
    issue.html = rendered.html
    issue.text = rendered.text


def as_rendered(issue: Issue) -> RenderedIssue:
    return RenderedIssue(issue.subject, issue.preheader, issue.html, issue.text)
