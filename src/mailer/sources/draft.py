"""Ingest, shared last step: cleaned article HTML and what is known about the article
(from a feed entry, a page's metadata, front matter) become an ``ArticleDraft``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import lxml.html

from mailer.errors import SourceError
from mailer.sources.blocks import LeftOut
from mailer.sources.cleanup import Boilerplate, shorten
from mailer.sources.htmlbody import clean_body
from mailer.sources.language import language_of

SUMMARY_CHARS = 300
TITLE_CHARS = 90
_WEB_ADDRESS = re.compile(r"https?://\S+")
_BREAKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr"}
_FIRST_SENTENCE = re.compile(r".{20,}?[.!?…][\"”’)\]]*(?=\s|$)")


@dataclass(frozen=True)
class ArticleDraft:
    """An ingested article, ready to store: text cleaned, HTML sanitised."""

    title: str
    body_html: str  # sanitised HTML
    summary: str  # plain text, ~300 chars max, cut at a sentence or word boundary
    guid: str  # stable identity: url if given, else "sha256:<hex of the cleaned article text>"
    url: str | None = None
    author: str | None = None
    published_at: datetime | None = None  # timezone-aware
    source: str = ""  # e.g. "text:moscow-format-article.txt"
    title_derived: bool = False  # True when no title was given and we derived one
    # "sha256:<hex>" of the cleaned text: finds the article again when a url is added
    fingerprint: str = ""
    removed: tuple[str, ...] = ()  # the paragraphs dropped as boilerplate, for the editor
    language: str | None = None  # BCP 47, when the article's differs from the publication's
    notes: tuple[str, ...] = ()  # what the editor should know, e.g. front matter ignored
    # the removed blocks whole (sanitised HTML) with their place, for the editor to put back
    left_out: tuple[LeftOut, ...] = ()


def draft_from_html(
    html: str,
    name: str,
    rules: Boilerplate,
    *,
    source: str,
    title: str | None = None,
    url: str | None = None,
    author: str | None = None,
    published: datetime | None = None,
    summary: str | None = None,
    language: str | None = None,
    guid: str | None = None,
    base_url: str | None = None,
) -> ArticleDraft:
    """Raises SourceError when nothing of the article is left, or a value is wrong."""
    url = check_url(url, name)
    base = base_url or url
    title = " ".join((title or "").split()) or None
    body = clean_body(html, base, rules, title)
    derived = title is None
    if title is None and body.first_heading:
        title = body.first_heading
        body = clean_body(html, base, rules, title)
    if not any(body.paragraphs):
        raise SourceError(
            f"{name} contains no article text after cleaning: every part of it is markup "
            "mailer leaves out, the donation appeal, payment details or matches [sources] "
            "boilerplate_patterns."
        )
    text = "\n".join(body.paragraphs)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    opening = next((p for p in body.paragraphs if len(p) > 40), body.paragraphs[0])
    if published is not None and published.utcoffset() is None:
        raise SourceError(f"{name}: the publication time {published.isoformat()} has no time zone")
    return ArticleDraft(
        title=title or derive_title(opening),
        body_html=body.html,
        summary=shorten(plain_text(summary) or opening, SUMMARY_CHARS),
        guid=guid or url or f"sha256:{digest}",
        fingerprint=f"sha256:{digest}",
        url=url,
        author=" ".join((author or "").split()) or None,
        published_at=published,
        source=source,
        title_derived=derived and body.first_heading is None,
        removed=body.removed,
        left_out=body.left_out,
        language=language_of(language, text),
    )


def derive_title(opening: str) -> str:
    match = _FIRST_SENTENCE.match(opening)
    sentence = match.group() if match else opening
    return shorten(sentence.removesuffix("."), TITLE_CHARS)


def plain_text(html: str | None) -> str:
    """The text of a bit of HTML (a feed's summary), on one line."""
    if not html or not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (ValueError, lxml.etree.ParserError):
        return " ".join(html.split())
    for element in root.iter():
        if element.tag in _BREAKS:  # "<p>a</p><p>b</p>" reads "a b", not "ab"
            element.tail = " " + (element.tail or "")
    return " ".join(root.text_content().split())


def check_url(url: str | None, name: str) -> str | None:
    url = (url or "").strip()
    if url and not _WEB_ADDRESS.fullmatch(url):
        raise SourceError(
            f"The url {url!r} given for {name} is not a web address: give the article's "
            "address on the site, starting with https:// or http://."
        )
    return url or None
