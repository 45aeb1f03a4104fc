"""Ingest, web pages: an article page as a newsroom's site serves it. readability-lxml
finds the main text (leaving out navigation, related links, comments and the like);
the title, byline, date, canonical address and language come from the page's own
metadata (Open Graph, article:*, JSON-LD, <time>, <html lang>)."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import lxml.html
from lxml import etree
from readability import Document

from mailer.errors import SourceError
from mailer.sources.cleanup import Boilerplate
from mailer.sources.draft import ArticleDraft, draft_from_html


def parse_page(
    page: str,
    name: str,
    rules: Boilerplate,
    *,
    url: str | None = None,
    timezone: str = "UTC",
    title: str | None = None,
    published: datetime | None = None,
) -> ArticleDraft:
    """The article on an HTML page (read from ``name``, served at ``url``)."""
    # lxml takes no encoding declaration in text that is decoded already, nor controls
    page = _CONTROL.sub("", _XML_DECLARATION.sub("", page, count=1))
    try:
        tree = lxml.html.document_fromstring(page)
        meta = _metadata(tree)
        main = _with_image_sizes(Document(page, url=url).summary(html_partial=True), tree, url)
    except Exception as exc:  # readability raises its own Unparseable, lxml its errors
        raise SourceError(
            f"{name}: no article found on the page ({exc or type(exc).__name__})"
        ) from None
    canonical = urljoin(url or "", meta["url"]) if meta.get("url") else None
    address = canonical or url
    return draft_from_html(
        main,
        name,
        rules,
        source=f"page:{url or name}",
        title=title or meta.get("title"),
        url=address if address and address.startswith(("http://", "https://")) else None,
        base_url=url,
        author=meta.get("author"),
        published=published or _when(meta.get("date"), timezone),
        summary=meta.get("description"),
        language=tree.get("lang") or meta.get("language"),
    )


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _with_image_sizes(main: str, tree: lxml.html.HtmlElement, url: str | None) -> str:
    """readability drops images' sizes (attributes and style), which tell a tracking
    pixel and an image wider than the column: they are put back from the page."""
    kept = ("width", "height", "style", "data-src")
    originals = {
        urljoin(url or "", img.get("src", "")): {name: img.get(name) for name in kept}
        for img in tree.iter("img")
    }
    fragment = lxml.html.fragment_fromstring(main, create_parent="div")
    for img in fragment.iter("img"):
        original = originals.get(urljoin(url or "", img.get("src", "")), {})
        for name, value in original.items():
            if value and not img.get(name):
                img.set(name, value)
    html: str = etree.tostring(fragment, encoding="unicode", method="html")
    return html


def _metadata(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """What the page says about itself, first match wins."""
    found: dict[str, str] = {}

    def take(key: str, value: Any) -> None:
        if isinstance(value, str) and value.strip() and key not in found:
            found[key] = " ".join(html.unescape(value).split())

    for item in _json_ld(tree):
        take("title", item.get("headline"))
        take("date", item.get("datePublished"))
        author = item.get("author")
        author = author[0] if isinstance(author, list) and author else author
        take("author", author.get("name") if isinstance(author, dict) else author)
    metas = {
        (m.get("property") or m.get("name") or m.get("itemprop") or "").lower(): m.get("content")
        for m in tree.iter("meta")
    }
    take("title", metas.get("og:title"))
    take("date", metas.get("article:published_time") or metas.get("datepublished"))
    take("author", metas.get("author") or metas.get("article:author"))
    take("description", metas.get("og:description") or metas.get("description"))
    take("language", metas.get("og:locale"))
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split():
            take("url", link.get("href"))
    for time in tree.iter("time"):
        take("date", time.get("datetime"))
    heading = next(tree.iter("h1"), None)
    take("title", heading.text_content() if heading is not None else None)
    take("title", tree.findtext(".//title"))
    return found


def _json_ld(tree: lxml.html.HtmlElement) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue
        for item in data if isinstance(data, list) else data.get("@graph", [data]):
            if isinstance(item, dict) and "Article" in str(item.get("@type", "")):
                items.append(item)
    return items


def _when(value: str | None, timezone: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None  # a date the page writes its own way: stored as when it came in
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(timezone))
