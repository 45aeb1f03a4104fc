"""Storing ingested articles: a draft from `sources` becomes an Article row, deduplicated
by its guid (canonical url, or a hash of the text), so ingesting again updates it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import col, or_, select

from mailer.db import session_scope
from mailer.donation import payment_numbers
from mailer.errors import MailerError
from mailer.models import Article, utcnow
from mailer.settings import Settings
from mailer.sources import ArticleDraft, read_article
from mailer.sources.cleanup import Boilerplate


@dataclass(frozen=True)
class IngestResult:
    article: Article
    outcome: str  # "new", "updated" or "unchanged"
    draft: ArticleDraft


def boilerplate(settings: Settings) -> Boilerplate:
    """The newsroom's boilerplate rules: configured patterns and its own donation appeal."""
    donation = settings.donation
    return Boilerplate(
        patterns=settings.sources.boilerplate_patterns,
        phrases=tuple(p for p in (donation.heading, donation.appeal) if p),
        numbers=payment_numbers(donation),
    )


def ingest_file(
    engine: Engine,
    settings: Settings,
    path: Path,
    *,
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
) -> IngestResult:
    rules = boilerplate(settings)
    draft = read_article(path, rules, title=title, url=url, published=published)
    existing = _stored(engine, draft)
    if existing is not None and title is None and draft.title_derived:
        # The editor's title stays, and the body is built around it as before.
        draft = read_article(path, rules, title=existing.title, url=url, published=published)
        draft = replace(draft, title_derived=True)
    return store(engine, draft)


def _stored(engine: Engine, draft: ArticleDraft) -> Article | None:
    """The article a draft is a new version of: same guid, or the same text stored before
    it had a url."""
    with session_scope(engine) as session:
        query = select(Article).where(
            or_(Article.guid == draft.guid, Article.fingerprint == draft.fingerprint)
        )
        return session.exec(query.order_by(col(Article.guid) != draft.guid)).first()


def store(engine: Engine, draft: ArticleDraft) -> IngestResult:
    existing = _stored(engine, draft)
    with session_scope(engine) as session:
        if existing is None:
            article = Article(
                guid=draft.guid,
                fingerprint=draft.fingerprint,
                url=draft.url,
                title=draft.title,
                author=draft.author,
                published_at=draft.published_at or utcnow(),
                summary=draft.summary,
                body_html=draft.body_html,
                source=draft.source,
            )
            session.add(article)
            session.flush()
            return IngestResult(article, "new", draft)
        article = existing
        changes = {
            "guid": draft.url or article.guid,
            "fingerprint": draft.fingerprint,
            "url": draft.url or article.url,
            "author": draft.author or article.author,
            "published_at": draft.published_at or article.published_at,
            "summary": draft.summary,
            "body_html": draft.body_html,
            "title": draft.title,
        }
        changed = {k: v for k, v in changes.items() if getattr(article, k) != v}
        for key, value in changed.items():
            setattr(article, key, value)
        session.add(article)
        return IngestResult(article, "updated" if changed else "unchanged", draft)


# Newest first: by publication date, then by when it came in.
LATEST_FIRST = (col(Article.published_at).desc().nulls_last(), col(Article.id).desc())


def list_articles(engine: Engine) -> list[Article]:
    with session_scope(engine) as session:
        return list(session.exec(select(Article).order_by(*LATEST_FIRST)).all())


def find_article(engine: Engine, article_id: int | None = None) -> Article:
    """The article with this id, or the latest one."""
    with session_scope(engine) as session:
        if article_id is not None:
            article = session.get(Article, article_id)
            if article is None:
                raise MailerError(f"no article with id {article_id}; see `mailer articles list`")
            return article
        article = session.exec(select(Article).order_by(*LATEST_FIRST).limit(1)).first()
        if article is None:
            raise MailerError("there are no articles yet; add one with `mailer ingest FILE`")
        return article
