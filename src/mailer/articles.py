"""Storing ingested articles: a draft from `sources` becomes an Article row, deduplicated
by its guid (canonical url, or a hash of the text), so ingesting again updates it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from mailer.db import session_scope
from mailer.donation import payment_numbers
from mailer.errors import MailerError
from mailer.models import Article, AuditAction, AuditEvent, PolledSource, utcnow
from mailer.settings import Settings

if TYPE_CHECKING:  # the readers (lxml, httpx, feedparser...) load when something is read
    from mailer.sources import ArticleDraft
    from mailer.sources.cleanup import Boilerplate
    from mailer.sources.reach import Reach


@dataclass(frozen=True)
class IngestResult:
    article: Article
    outcome: str  # "new", "updated" or "unchanged"
    draft: ArticleDraft


def boilerplate(settings: Settings) -> Boilerplate:
    """The newsroom's boilerplate rules: configured patterns and its own donation appeal."""
    from mailer.sources.cleanup import Boilerplate

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
    reach: Reach | None = None,
) -> IngestReport:
    """Every article at `location` (a file or an http(s) URL), stored or updated. With
    `conditional`, a URL is fetched only if it changed since the last time (ETag /
    Last-Modified, remembered per URL). Nothing is stored when the source cannot be
    read; a feed entry that cannot be read is reported and the others are kept. `reach`
    says where a fetch may connect (default: `Reach.of` the URL, with [sources]
    allow_private_addresses)."""
    from mailer.sources import FEED_SUFFIXES, read_source
    from mailer.sources.reach import Reach

    if not location.startswith(("http://", "https://")):
        path = Path(location)
        if path.suffix.lower() not in FEED_SUFFIXES:
            result = ingest_file(engine, settings, path, title=title, url=url, published=published)
            return IngestReport([result], [])
    known = remembered(engine, location) if conditional else None
    web = location.startswith(("http://", "https://"))
    private_ok = settings.sources.allow_private_addresses
    reach = reach or Reach.of(location if web else None, private_ok)
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
    from mailer.sources import read_article

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


def ingest_bytes(
    engine: Engine, settings: Settings, name: str, data: bytes, *, title: str | None = None
) -> IngestResult:
    """The article in `data`, a .txt, .md or .html file called `name` (an upload, a
    pasted text), stored or updated as `ingest_file` does. Raises SourceError."""
    from mailer.sources import read_bytes

    zone = settings.publication.timezone
    draft = read_bytes(data, name, boilerplate(settings), timezone=zone, title=title)
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
    from mailer.sources.blocks import left_out_json

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
                left_out=left_out_json(draft.left_out),
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
            "left_out": left_out_json(draft.left_out),
        }
        if _edited(session, article):
            # The editor has the last word on the title, summary and date; and on the body
            # while the source's text is the same (the fingerprint never changes by edits).
            for kept in ("title", "summary", "published_at"):
                del changes[kept]
            if draft.fingerprint == article.fingerprint:
                del changes["body_html"], changes["left_out"]
        changed = {k: v for k, v in changes.items() if getattr(article, k) != v}
        for key, value in changed.items():
            setattr(article, key, value)
        session.add(article)
        return IngestResult(article, "updated" if changed else "unchanged", draft)


def _edited(session: Session, article: Article) -> bool:
    """Whether an editor changed the article at the desk (the audit log says so)."""
    query = select(AuditEvent.id).where(
        AuditEvent.action == AuditAction.ARTICLE_EDITED,
        AuditEvent.subject == f"article {article.id}",
    )
    return session.exec(query.limit(1)).first() is not None


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


# An editor's changes to a stored article. The fingerprint stays as ingested: it names
# the source's text, so the same source brought in again still finds this article.


def put_back_block(engine: Engine, article_id: int, index: int, expected: str) -> str:
    """Put left-out block `index` back in the body, at its place; its text. `expected`
    is `block_key` of that block as the editor saw it: the page must not be stale."""
    from mailer.sources.blocks import body_blocks, join_blocks, left_out_json, left_out_of, put_back

    with session_scope(engine) as session:
        article = _article(session, article_id)
        blocks, left_out = body_blocks(article.body_html), left_out_of(article.left_out)
        if not 0 <= index < len(left_out) or block_key(left_out[index].html) != expected:
            raise MailerError(STALE)
        text = left_out[index].text
        blocks, left_out = put_back(blocks, left_out, index)
        article.body_html, article.left_out = join_blocks(blocks), left_out_json(left_out)
        session.add(article)
        return text


def take_out_block(engine: Engine, article_id: int, index: int, expected: str) -> str:
    """Move body block `index` to what is left out, keeping its place; its text."""
    from mailer.sources.blocks import (
        block_text,
        body_blocks,
        join_blocks,
        left_out_json,
        left_out_of,
        take_out,
    )

    with session_scope(engine) as session:
        article = _article(session, article_id)
        blocks, left_out = body_blocks(article.body_html), left_out_of(article.left_out)
        if not 0 <= index < len(blocks) or block_key(blocks[index]) != expected:
            raise MailerError(STALE)
        if len(blocks) == 1:
            raise MailerError(
                "That is the article's only paragraph: put another one back before taking "
                "this one out."
            )
        text = block_text(blocks[index])
        blocks, left_out = take_out(blocks, left_out, index)
        article.body_html, article.left_out = join_blocks(blocks), left_out_json(left_out)
        session.add(article)
        return text


STALE = (
    "The article changed since this page was shown (another editor, or another tab), so "
    "nothing was changed: look at it again and choose once more."
)


def block_key(block_html: str) -> str:
    """A short name of one block's content, to tell that a form still means it."""
    return hashlib.sha256(block_html.encode("utf-8")).hexdigest()[:16]


def edit_article(
    engine: Engine, article_id: int, *, title: str, summary: str, published: datetime
) -> list[str]:
    """Set the title, summary and publication time; what changed, by name ("title", ...),
    empty when nothing did. Raises MailerError for an empty title."""
    title, summary = " ".join(title.split()), summary.strip()
    if not title:
        raise MailerError("The title cannot be empty: readers see it as the email's subject.")
    with session_scope(engine) as session:
        article = _article(session, article_id)
        wanted = {"title": title, "summary": summary, "published_at": published}
        changed = [k for k, v in wanted.items() if getattr(article, k) != v]
        for key in changed:
            setattr(article, key, wanted[key])
        session.add(article)
        return changed


def _article(session: Session, article_id: int) -> Article:
    # locked (on PostgreSQL) until the change is stored: two editors' changes in turn
    article = session.get(Article, article_id, with_for_update=True)
    if article is None:
        raise MailerError(f"There is no article {article_id}; the list of articles shows them all.")
    return article
