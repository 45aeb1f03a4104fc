"""The public archive of sent issues, per language (issue 17): what `/issues` lists and
its Atom feed carries. With `[publication] editions = "by-language"` a language's list
holds the article issues in that language (an article with no stored language is in the
publication's; fa matches fa-AF) and every digest; with "all" every issue is in every
language's list. Nothing about any reader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree as ET

from sqlalchemy import ColumnElement, Engine, String, and_, cast, func, or_
from sqlmodel import col, select

from mailer.db import session_scope
from mailer.i18n import primary
from mailer.links import issue_url
from mailer.models import Article, Issue, IssueStatus, utcnow
from mailer.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml"
XML = "http://www.w3.org/XML/1998/namespace"


@dataclass(frozen=True)
class ArchivedIssue:
    """An issue as the archive lists it, with its address for readers of one language."""

    key: str
    subject: str
    sent_at: datetime | None  # None while it is still going out (or held)
    created_at: datetime
    url: str


def archive(
    engine: Engine, settings: Settings, language: str | None = None, limit: int = 50
) -> list[ArchivedIssue]:
    """The latest `limit` issues anyone may read online that belong to `language`'s
    archive (None: the publication's), newest first: any still going out, then the
    sent ones by when they finished; each linked to its page in that language."""
    publication = settings.publication
    language = language or publication.language
    query = (
        select(Issue.key, Issue.subject, Issue.sent_at, Issue.created_at)
        .where(col(Issue.status).in_(IssueStatus.STARTED))
        .order_by(col(Issue.sent_at).desc().nulls_first(), col(Issue.id).desc())
        .limit(limit)
    )
    if publication.editions == "by-language":
        query = query.outerjoin(
            Article,
            and_(col(Issue.kind) == "article", cast(Article.id, String) == Issue.article_ids),
        ).where(_in_language(language, publication.language))
    shown = None if language == publication.language else language
    with session_scope(engine) as session:
        rows = session.exec(query).all()
    return [
        ArchivedIssue(key, subject, sent, made, issue_url(publication.base_url, key, shown))
        for key, subject, sent, made in rows
    ]


def _in_language(language: str, default: str) -> ColumnElement[bool]:
    """Every digest, and the articles whose language is `language`'s (no language
    stored: the publication's, `default`)."""
    stored = func.lower(func.coalesce(func.nullif(Article.language, ""), default))
    wanted = primary(language)
    return or_(
        col(Issue.kind) != "article",
        stored == wanted,
        stored.like(f"{wanted}-%"),
        stored.like(f"{wanted}\\_%", escape="\\"),
    )


def atom_feed(
    issues: list[ArchivedIssue],
    *,
    title: str,
    author: str,
    feed_url: str,
    page_url: str,
    language: str,
) -> bytes:
    """An Atom feed (RFC 4287) of these issues: its id is the archive page's address,
    each entry's the issue's read-online address."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed", {f"{{{XML}}}lang": language})
    newest = max((_when(issue) for issue in issues), default=utcnow())
    _add(feed, "id", page_url)
    _add(feed, "title", title)
    _add(feed, "updated", newest.isoformat())
    ET.SubElement(_add(feed, "author"), f"{{{ATOM}}}name").text = author
    _add(feed, "link", rel="self", type=ATOM_TYPE, href=feed_url)
    _add(feed, "link", rel="alternate", type="text/html", href=page_url)
    for issue in issues:
        entry = _add(feed, "entry")
        _add(entry, "id", issue.url)
        _add(entry, "title", issue.subject)
        _add(entry, "updated", _when(issue).isoformat())
        _add(entry, "link", rel="alternate", type="text/html", href=issue.url)
    written: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return written


def _when(issue: ArchivedIssue) -> datetime:
    return issue.sent_at or issue.created_at


def _add(parent: ET.Element, name: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{name}", attributes)
    element.text = text
    return element
