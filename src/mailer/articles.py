"""Storing ingested articles: a draft from `sources` becomes an Article row, deduplicated
by its guid (canonical url, or a hash of the text), so ingesting again updates it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, or_, select

from mailer.db import session_scope
from mailer.donation import payment_numbers
from mailer.errors import MailerError
from mailer.models import Article, PolledSource, utcnow
from mailer.settings import Settings
from mailer.sources import FEED_SUFFIXES, ArticleDraft, read_article, read_source
from mailer.sources.cleanup import Boilerplate
from mailer.sources.reach import Reach


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


@dataclass(frozen=True)
class IngestReport:
    results: list[IngestResult]
    problems: list[str]  # one line per entry of a feed that was left out
    not_modified: bool = False  # a polled URL unchanged since the last look


def ingest_source(
    engine: Engine,
    settings: Settings,
    location: str,
    *,
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
    full_text: bool | None = None,
    conditional: bool = False,
) -> IngestReport:
    """Every article at `location` (a file or an http(s) URL), stored or updated. With
    `conditional`, a URL is fetched only if it changed since the last time (ETag /
    Last-Modified, remembered per URL). Nothing is stored when the source cannot be
    read; a feed entry that cannot be read is reported and the others are kept."""
    if not location.startswith(("http://", "https://")):
        path = Path(location)
        if path.suffix.lower() not in FEED_SUFFIXES:
            result = ingest_file(engine, settings, path, title=title, url=url, published=published)
            return IngestReport([result], [])
    known = remembered(engine, location) if conditional else None
    web = location.startswith(("http://", "https://"))
    reach = Reach.of(location if web else None, settings.sources.allow_private_addresses)
    read = read_source(
        location,
        boilerplate(settings),
        timezone=settings.publication.timezone,
        title=title,
        url=url,
        published=published,
        full_text=settings.sources.fetch_full_text if full_text is None else full_text,
        etag=known.etag if known else None,
        last_modified=known.last_modified if known else None,
        reach=reach,
    )
    results = [store(engine, draft) for draft in read.drafts]
    if conditional:
        # with entries left out, the next look fetches the feed again to retry them
        fresh = not read.problems
        _remember(
            engine, location, read.etag if fresh else None, read.last_modified if fresh else None
        )
    return IngestReport(results, read.problems, read.not_modified)


def remembered(engine: Engine, location: str) -> PolledSource | None:
    """What was noted of a polled source at its last successful look, if any."""
    with session_scope(engine) as session:
        query = select(PolledSource).where(PolledSource.location == location)
        return session.exec(query).first()


def _remember(engine: Engine, location: str, etag: str | None, modified: str | None) -> None:
    with session_scope(engine) as session:
        query = select(PolledSource).where(PolledSource.location == location)
        polled = session.exec(query).first() or PolledSource(location=location)
        polled.etag, polled.last_modified = etag, modified
        polled.last_polled_at = utcnow()
        session.add(polled)


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
    zone = settings.publication.timezone
    draft = read_article(path, rules, title=title, url=url, published=published, timezone=zone)
    existing = _stored(engine, draft)
    if existing is not None and title is None and draft.title_derived:
        # The editor's title stays, and the body is built around it as before.
        draft = read_article(
            path, rules, title=existing.title, url=url, published=published, timezone=zone
        )
        draft = replace(draft, title_derived=True)
    return store(engine, draft)


def _stored(engine: Engine, draft: ArticleDraft) -> Article | None:
    """The article a draft is a new version of: the same guid; else the same text or
    address, unless both have guids of their own that differ (two feed entries that
    share a description or a link are two articles)."""
    with session_scope(engine) as session:
        same = select(Article).where(Article.guid == draft.guid)
        found = session.exec(same).first()
        if found is not None:
            return found
        alike = [Article.fingerprint == draft.fingerprint]
        if draft.url:
            alike.append(Article.url == draft.url)
        for candidate in session.exec(select(Article).where(or_(*alike))):
            if _anonymous(candidate.guid, candidate.url) or _anonymous(draft.guid, draft.url):
                return candidate
        return None


def _anonymous(guid: str, url: str | None) -> bool:
    """A guid that names nothing but the text or the address itself."""
    return guid.startswith("sha256:") or guid == url


def store(engine: Engine, draft: ArticleDraft) -> IngestResult:
    try:
        return _store(engine, draft)
    except IntegrityError:  # another process (the scheduler, an editor) stored it just now
        return _store(engine, draft)


def _store(engine: Engine, draft: ArticleDraft) -> IngestResult:
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
                language=draft.language,
            )
            session.add(article)
            session.flush()
            return IngestResult(article, "new", draft)
        article = existing
        changes = {
            "guid": draft.guid if not draft.guid.startswith("sha256:") else article.guid,
            "fingerprint": draft.fingerprint,
            "url": draft.url or article.url,
            "author": draft.author or article.author,
            "published_at": draft.published_at or article.published_at,
            "summary": draft.summary,
            "body_html": draft.body_html,
            "title": draft.title,
            "language": draft.language,
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


def search_articles(engine: Engine, search: str, offset: int, limit: int) -> list[Article]:
    """A slice of the articles newest first (as list_articles), only those whose title
    holds `search` (any case; % and _ match themselves) when it is not empty."""
    query = select(Article)
    if search:
        query = query.where(col(Article.title).icontains(search, autoescape=True))
    query = query.order_by(*LATEST_FIRST).offset(offset).limit(limit)
    with session_scope(engine) as session:
        return list(session.exec(query).all())
