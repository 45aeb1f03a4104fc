"""Ingest, feeds: RSS 2.0, RSS 1.0 and Atom, read with feedparser. Each entry becomes an
article: its title, author, date, link, summary and the fullest body on offer
(content:encoded or Atom content over the description); for a feed that carries only
excerpts, the article page at each entry's link can be read instead (--full-text)."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import feedparser
from lxml import etree

from mailer.errors import SourceError
from mailer.sources.cleanup import Boilerplate, shorten
from mailer.sources.draft import SUMMARY_CHARS, ArticleDraft, draft_from_html, plain_text


@dataclass
class FeedRead:
    title: str
    drafts: list[ArticleDraft] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per entry left out


_ROOTS = (b"<rss", b"<feed", b"<rdf:rdf")


def is_feed(data: bytes) -> bool:
    """RSS, RDF or Atom: an XML document with one of their root elements."""
    head = data[:4096].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if head.startswith(_ROOTS):
        return True
    return head.startswith((b"<?xml", b"<!--")) and any(root in head for root in _ROOTS)


def parse_feed(
    data: bytes,
    name: str,
    rules: Boilerplate,
    *,
    url: str | None = None,
    content_type: str | None = None,
    full_page: Callable[[str], ArticleDraft] | None = None,
) -> FeedRead:
    """Every entry of the feed in ``data``; an entry that cannot be read is reported in
    `problems` and the others are kept. Raises SourceError when it is not a feed."""
    headers = {"content-location": url or "", "content-type": content_type or "application/xml"}
    parsed = feedparser.parse(data, response_headers=headers, sanitize_html=False)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception") or "no RSS or Atom root element"
        raise SourceError(f"{name} is not an RSS or Atom feed ({reason})")
    feed = parsed.feed
    read = FeedRead(plain_text(feed.get("title")) or name)
    for number, entry in enumerate(parsed.entries, 1):
        label = plain_text(entry.get("title")) or entry.get("link") or f"entry {number}"
        try:
            read.drafts.append(_entry(entry, feed, name, rules, full_page))
        except SourceError as exc:
            read.problems.append(f"{label}: {exc}")
        except (ValueError, LookupError, AssertionError, etree.LxmlError) as exc:
            read.problems.append(f"{label}: cannot be read ({exc or type(exc).__name__})")
    return read


def _entry(
    entry: Any,
    feed: Any,
    name: str,
    rules: Boilerplate,
    full_page: Callable[[str], ArticleDraft] | None,
) -> ArticleDraft:
    link = entry.get("link") or None
    contents = [c for c in entry.get("content", []) if c.get("value", "").strip()]
    body = max(contents, key=lambda c: len(c["value"])) if contents else None
    summary = entry.get("summary", "")
    language = (body or {}).get("language") or feed.get("language")
    guid = entry.get("id") or link
    published = _when(entry.get("published_parsed") or entry.get("updated_parsed"))
    if full_page is not None and link:
        page = full_page(link)  # the article's own page, for a feed of excerpts
        guid = guid or page.guid
        return _with(page, guid, plain_text(entry.get("title")), published, summary)
    html = body["value"] if body else summary
    if body and plain_text(body["value"]).startswith(plain_text(summary)[:200]):
        summary = ""  # the content again (feedparser's fallback), not a summary of its own
    return draft_from_html(
        html,
        f"{name}: {link or guid or 'an entry'}",
        rules,
        source=f"feed:{name}",
        title=plain_text(entry.get("title")) or None,
        url=link if link and link.startswith(("http://", "https://")) else None,
        author=entry.get("author"),
        published=published,
        summary=summary if body else None,
        language=language,
        guid=guid,
    )


def _with(
    page: ArticleDraft, guid: str | None, title: str, when: datetime | None, summary: str
) -> ArticleDraft:
    return replace(
        page,
        guid=guid or page.guid,
        title=title or page.title,
        published_at=when or page.published_at,
        summary=shorten(plain_text(summary), SUMMARY_CHARS) or page.summary,
    )


def _when(parsed: Any) -> datetime | None:
    """feedparser's time (a UTC struct_time) as an aware datetime; None when absent."""
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
