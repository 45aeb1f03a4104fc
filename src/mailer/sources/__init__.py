"""Ingest, the first stage of the pipeline: a source becomes an ``ArticleDraft``.

One module per input kind (text.py now; Markdown, HTML and feeds later) turns its input
into paragraphs; cleanup.py removes the site's boilerplate and sanitises the HTML they
all build. The caller (the CLI, the feed poller) stores the draft as an ``Article``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mailer.errors import SourceError
from mailer.sources.cleanup import DEFAULT_PATTERNS, Boilerplate
from mailer.sources.decode import decode_text
from mailer.sources.draft import ArticleDraft

if TYPE_CHECKING:
    from mailer.sources.reach import Reach

__all__ = [
    "ARTICLE_SUFFIXES",
    "DEFAULT_PATTERNS",
    "FEED_SUFFIXES",
    "UPLOAD_SUFFIXES",
    "ArticleDraft",
    "Boilerplate",
    "SourceRead",
    "read_article",
    "read_bytes",
    "read_source",
]

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
PAGE_SUFFIXES = frozenset({".html", ".htm"})
FEED_SUFFIXES = frozenset({".rss", ".atom", ".xml"})
# What a watched folder's article files are called (other files there are left alone).
ARTICLE_SUFFIXES = frozenset({".txt", ".text"}) | MARKDOWN_SUFFIXES | PAGE_SUFFIXES
# What an editor may upload at the desk: one article, as text, Markdown or an HTML page.
UPLOAD_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm"})


@dataclass
class SourceRead:
    """What a source held: its articles, and one line per entry that had to be left out."""

    drafts: list[ArticleDraft]
    problems: list[str] = field(default_factory=list)
    not_modified: bool = False  # a URL unchanged since the ETag / Last-Modified given
    etag: str | None = None
    last_modified: str | None = None


def read_source(
    location: str,
    rules: Boilerplate,
    *,
    timezone: str = "UTC",
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
    full_text: bool = False,
    etag: str | None = None,
    last_modified: str | None = None,
    reach: Reach | None = None,
) -> SourceRead:
    """The articles at ``location``: a file (text, Markdown, HTML page, RSS/Atom feed) or
    an http(s) URL (a feed or a page). `reach` says where fetching may connect, for the
    location and every page it leads to (default: `Reach.of` the location, with no
    private addresses allowed beyond it). Raises SourceError."""
    from mailer.sources.fetch import fetch
    from mailer.sources.reach import Reach

    given: dict[str, Any] = {
        "title": title,
        "url": url,
        "published": published,
        "timezone": timezone,
    }
    web = location.startswith(("http://", "https://"))
    given["reach"] = reach or Reach.of(location if web else None)
    if web:
        got = fetch(location, etag=etag, last_modified=last_modified, reach=given["reach"])
        if got.content is None:
            return SourceRead([], not_modified=True, etag=got.etag, last_modified=got.last_modified)
        kind = _kind_of(got.content, got.content_type, location)
        given["url"] = url or (got.url if kind == "page" else None)
        given["base"] = got.url
        read = _read(got.content, location, rules, kind, got.charset, full_text, given)
        read.etag, read.last_modified = got.etag, got.last_modified
        return read
    path = Path(location)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(
            f"Cannot read {path}: {error.strerror}. Check the path and that the file is readable."
        ) from None
    return _read(data, path.name, rules, _kind_of_file(path, data), None, full_text, given)


def read_article(
    path: Path,
    boilerplate: Boilerplate,
    *,
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
    timezone: str = "UTC",
) -> ArticleDraft:
    """The one article in the file at ``path`` (not a feed). Raises SourceError."""
    read = read_source(
        str(path), boilerplate, title=title, url=url, published=published, timezone=timezone
    )
    if len(read.drafts) != 1:
        raise SourceError(f"{path} is a feed of {len(read.drafts)} articles, not one article")
    return read.drafts[0]


def read_bytes(
    data: bytes,
    name: str,
    rules: Boilerplate,
    *,
    timezone: str = "UTC",
    title: str | None = None,
) -> ArticleDraft:
    """The one article in `data`, a file called `name` (.txt, .md or .html, by its
    suffix) that came without a path: an upload, a pasted text. Raises SourceError."""
    from mailer.sources.reach import Reach

    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise SourceError(
            f"{name} is not an article file mailer reads: give a .txt, .md or .html file"
        )
    kind = "markdown" if suffix in MARKDOWN_SUFFIXES else "text"
    kind = "page" if suffix in PAGE_SUFFIXES else kind
    given: dict[str, Any] = {"title": title, "url": None, "published": None}
    given |= {"timezone": timezone, "reach": Reach.of(None)}
    return _read(data, name, rules, kind, None, False, given).drafts[0]


def _full_page(
    link: str, feed_url: str | None, rules: Boilerplate, zone: str, reach: Reach
) -> ArticleDraft:
    """An entry's own page, for a feed of excerpts: only a web page, and only on the
    feed's own site when the feed came from the web, and only where the feed's `reach`
    allows (an entry must not make mailer read a local file, or a page on the newsroom's
    internal network, into an email)."""
    if not link.startswith(("http://", "https://")):
        raise SourceError(f"its link {link!r} is not a web address: the page was not read")
    if feed_url and urlsplit(link).hostname != urlsplit(feed_url).hostname:
        raise SourceError(
            f"its link {link} is on another site than the feed: the page was not read"
        )
    read = read_source(link, rules, timezone=zone, reach=reach)
    if len(read.drafts) != 1:
        raise SourceError(f"{link} is not an article page")
    return read.drafts[0]


def _kind_of_file(path: Path, data: bytes) -> str:
    from mailer.sources.feed import is_feed

    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in FEED_SUFFIXES or is_feed(data):
        return "feed"
    if suffix in PAGE_SUFFIXES or _is_page(data):
        return "page"
    return "text"


def _kind_of(data: bytes, content_type: str, url: str) -> str:
    from mailer.sources.feed import is_feed

    if is_feed(data) or content_type.endswith(("rss+xml", "atom+xml", "rdf+xml")):
        return "feed"
    if content_type in ("text/html", "application/xhtml+xml") or _is_page(data):
        return "page"
    raise SourceError(f"{url}: neither a feed nor a web page ({content_type or 'no content type'})")


def _is_page(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _read(
    data: bytes,
    name: str,
    rules: Boilerplate,
    kind: str,
    charset: str | None,
    full_text: bool,
    given: dict[str, Any],
) -> SourceRead:
    # Imported here: the readers import ArticleDraft from this package.
    from mailer.sources.decode import decode_page
    from mailer.sources.feed import parse_feed
    from mailer.sources.markdown import parse_markdown
    from mailer.sources.page import parse_page
    from mailer.sources.text import parse_text

    zone = given.pop("timezone")
    base = given.pop("base", None)
    reach = given.pop("reach")
    if kind == "feed":

        def full_page(link: str) -> ArticleDraft:
            return _full_page(link, base, rules, zone, reach)

        pages = full_page if full_text else None
        feed = parse_feed(data, name, rules, url=base, full_page=pages)
        return SourceRead(feed.drafts, feed.problems)
    if kind == "page":
        page = decode_page(data, name, charset)
        return SourceRead([parse_page(page, name, rules, timezone=zone, **given)])
    text = decode_text(data, name)
    if kind == "markdown":
        return SourceRead([parse_markdown(text, name, rules, zone, **given)])
    return SourceRead([parse_text(text, name, rules, **given)])
