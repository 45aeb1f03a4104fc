"""The desk's articles, as use cases: bring one in (from a URL, an uploaded file or pasted
Markdown), one article's page (the body as readers will see it, and what the cleaner
left out), and the editor's changes to it (put a block back, take one out, edit the
title, summary and date). Each change is recorded in the audit log as "article N"."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePath

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer import editors
from mailer.articles import (
    IngestResult,
    block_key,
    edit_article,
    find_article,
    ingest_bytes,
    ingest_source,
    put_back_block,
    take_out_block,
)
from mailer.errors import MailerError, SourceError
from mailer.models import Article, AuditAction, Issue, IssueStatus, utcnow
from mailer.settings import Settings
from mailer.sources import UPLOAD_SUFFIXES
from mailer.sources.blocks import LeftOut, block_text, body_blocks, left_out_of
from mailer.sources.fetch import MAX_BYTES
from mailer.sources.reach import desk_reach

MAX_UPLOAD_BYTES = MAX_BYTES  # as much as a fetched page may hold
PASTED_NAME = "pasted.md"


class Brought(StrEnum):
    """What bringing an article in did, as the article's page tells it."""

    NEW = "new"
    UPDATED = "updated"  # it was here; its source's text changed, and the new one is kept
    UNCHANGED = "unchanged"  # it was here, the same: nothing changed


@dataclass(frozen=True)
class BroughtIn:
    article_id: int
    outcome: Brought
    others: int = 0  # more articles of the same feed, brought in with it
    skipped: int = 0  # entries of the feed that could not be read


def _record(engine: Engine, editor_id: int | None, result: IngestResult, origin: str) -> None:
    if result.outcome == Brought.UNCHANGED:
        return
    again = "" if result.outcome == Brought.NEW else ", again: its text had changed"
    subject = f"article {result.article.id}"
    editors.record(engine, editor_id, AuditAction.ARTICLE_ADDED, subject, f"{origin}{again}")


def bring_in_url(engine: Engine, settings: Settings, editor_id: int | None, url: str) -> BroughtIn:
    """The article at a web page, or every entry of a feed (as `mailer ingest` does); the
    one to show is the page's, or the feed's newest. A URL on this server or the
    newsroom's network is refused unless [sources] allow_private_addresses. Raises
    MailerError with what to tell the editor."""
    url = url.strip()
    if not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise MailerError(
            "Give the address of a web page or a feed, starting with https:// or http://."
        )
    reach = desk_reach(url, settings.sources.allow_private_addresses)
    report = ingest_source(engine, settings, url, reach=reach)
    if not report.results:
        raise SourceError(
            "; ".join(report.problems) or f"{url}: no article was found there to bring in"
        )
    for result in report.results:
        _record(engine, editor_id, result, f"from {url}")
    newest = max(report.results, key=lambda r: (r.article.published_at or utcnow(), r.article.id))
    others = len(report.results) - 1
    return BroughtIn(_id(newest), Brought(newest.outcome), others, len(report.problems))


def bring_in_file(
    engine: Engine, settings: Settings, editor_id: int | None, filename: str, data: bytes
) -> BroughtIn:
    """The article in an uploaded .txt, .md or .html file. Raises MailerError."""
    name = PurePath(filename.replace("\\", "/")).name or "upload"
    if PurePath(name).suffix.lower() not in UPLOAD_SUFFIXES:
        raise MailerError(
            f"{name} is not a file the desk reads: upload the article as a .txt, .md or .html file."
        )
    if not data:
        raise MailerError(f"{name} is empty: choose the file that holds the article.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise MailerError(
            f"{name} is larger than the {MAX_UPLOAD_BYTES // 1024 // 1024} MB an article "
            "file may be."
        )
    result = ingest_bytes(engine, settings, name, data)
    _record(engine, editor_id, result, f"uploaded file {name}")
    return BroughtIn(_id(result), Brought(result.outcome))


def bring_in_markdown(
    engine: Engine, settings: Settings, editor_id: int | None, title: str, text: str
) -> BroughtIn:
    """The article pasted as Markdown, with its title (derived from the text when
    empty). Raises MailerError."""
    if not text.strip():
        raise MailerError("Paste the article's text (Markdown) into the box first.")
    data = text.replace("\r\n", "\n").encode("utf-8")
    result = ingest_bytes(engine, settings, PASTED_NAME, data, title=title.strip() or None)
    _record(engine, editor_id, result, "pasted Markdown")
    return BroughtIn(_id(result), Brought(result.outcome))


def _id(result: IngestResult) -> int:
    assert result.article.id is not None  # stored
    return result.article.id


@dataclass(frozen=True)
class Block:
    html: str  # sanitised at ingest
    text: str
    key: str  # block_key: the forms that move it name it by this too


@dataclass(frozen=True)
class ArticleView:
    article: Article
    body: list[Block]  # as readers will see it
    left_out: list[Block]  # what the cleaner (or an editor) left out
    places: list[int]  # each left-out block's place: how many body blocks come before it
    sent: list[Issue]  # the sent issues of this article (not changed by edits)
    published_local: str  # the publication time in the publication's zone, for the form


def article_page(engine: Engine, settings: Settings, article_id: int) -> ArticleView | None:
    """Everything the article's page shows; None when there is no such article."""
    with Session(engine) as session:
        article = session.get(Article, article_id)
        if article is None:
            return None
        query = select(Issue).where(
            Issue.key == f"article:{article_id}", Issue.status == IssueStatus.SENT
        )
        sent = list(session.exec(query).all())
    body = [Block(b, block_text(b), block_key(b)) for b in body_blocks(article.body_html)]
    left: list[LeftOut] = left_out_of(article.left_out)
    zone = zoneinfo.ZoneInfo(settings.publication.timezone)
    when = article.published_at.astimezone(zone) if article.published_at else None
    return ArticleView(
        article,
        body,
        [Block(b.html, b.text, block_key(b.html)) for b in left],
        [b.at for b in left],
        sent,
        when.strftime("%Y-%m-%dT%H:%M") if when else "",
    )


def put_back(engine: Engine, editor_id: int | None, article_id: int, index: int, key: str) -> None:
    """Put a left-out block back in the body, at its place. Raises MailerError."""
    text = put_back_block(engine, article_id, index, key)
    detail = f"put back in the body: {_quoted(text)}"
    editors.record(engine, editor_id, AuditAction.ARTICLE_EDITED, f"article {article_id}", detail)


def take_out(engine: Engine, editor_id: int | None, article_id: int, index: int, key: str) -> None:
    """Take a block out of the body (it joins what is left out). Raises MailerError."""
    text = take_out_block(engine, article_id, index, key)
    detail = f"taken out of the body: {_quoted(text)}"
    editors.record(engine, editor_id, AuditAction.ARTICLE_EDITED, f"article {article_id}", detail)


def _quoted(text: str) -> str:
    return f"“{text[:80]}{'…' if len(text) > 80 else ''}”"


def edit(
    engine: Engine,
    settings: Settings,
    editor_id: int | None,
    article_id: int,
    *,
    title: str,
    summary: str,
    published: str,
) -> list[str]:
    """Set the title, summary and publication time (`published` as the form gives it,
    in the publication's zone); what changed. Raises MailerError."""
    when = _local_time(published, settings.publication.timezone)
    stored = find_article(engine, article_id).published_at
    if stored is not None and stored.replace(second=0, microsecond=0) == when:
        when = stored  # the form shows minutes: the same minute is no change
    changed = edit_article(engine, article_id, title=title, summary=summary, published=when)
    if changed:
        detail = "changed " + ", ".join(c.replace("published_at", "date") for c in changed)
        subject = f"article {article_id}"
        editors.record(engine, editor_id, AuditAction.ARTICLE_EDITED, subject, detail)
    return changed


def _local_time(value: str, zone: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MailerError(
            f"“{value[:40]}” is not a date and time: give it as 2026-11-30 09:00."
        ) from None
    if when.utcoffset() is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return when
