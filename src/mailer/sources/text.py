"""Ingest, plain-text files: decoded text becomes an ``ArticleDraft``.

``read_article`` hands .txt files here after ``decode_text``. The text is what an editor
copied from the site: no markup, one paragraph per line (or prose hard-wrapped at a fixed
width), subheadings as short lines, and the site's donation appeal and "Comments are
closed." still attached. We split it into paragraphs, drop the boilerplate (cleanup.py),
recognise the title and subheadings, and build sanitised HTML.
"""

import hashlib
import html
import re
from datetime import datetime
from itertools import pairwise

from mailer.errors import SourceError
from mailer.sources.blocks import LeftOut
from mailer.sources.cleanup import Boilerplate, remove_boilerplate, sanitize_html, shorten
from mailer.sources.draft import ArticleDraft, check_url
from mailer.sources.language import language_of

SUMMARY_CHARS = 300
TITLE_CHARS = 90
# A subheading is a short line that does not end like a sentence, clause or quotation.
HEADING_MAX_CHARS = 100
HEADING_MAX_WORDS = 14
_CLOSING = tuple(".!?:;,…\"'”’»›)]}")
# Editors wrap at 60-80 columns; lines in this range, most of them, reveal a right margin.
WRAP_MIN_CHARS = 50
WRAP_MAX_CHARS = 100
# In wrapped prose a line this much shorter than the margin ends its paragraph.
RAGGED_FRACTION = 0.6

_BLANK_LINES = re.compile(r"\n\s*\n")
_SPACES = re.compile(r"[ \t\f\v]+")
_FIRST_SENTENCE = re.compile(r".{20,}?[.!?…][\"”’)\]]*(?=\s|$)")
# A dateline (a place in capitals, then a dash) opening a news paragraph; left out of a title
# derived from that paragraph.
_DATELINE = re.compile(r"[A-ZÀ-Þ][A-ZÀ-Þ .,'’/-]*\s[–—-]\s+")


def parse_text(
    text: str,
    name: str,
    boilerplate: Boilerplate,
    *,
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
) -> ArticleDraft:
    """The article in ``text`` (a file called ``name``). Raises SourceError."""
    every = split_paragraphs(text)
    paragraphs = remove_boilerplate(every, boilerplate)
    kept = set(paragraphs)
    if not paragraphs:
        raise SourceError(
            f"{name} contains no article text after removing boilerplate: every paragraph "
            "is the donation appeal, payment details, a repeat or matches [sources] "
            "boilerplate_patterns. Check that the file holds the article itself."
        )
    body, file_title = _split_title(paragraphs)
    headings = {i for i in range(1, len(body) - 1) if _is_heading(body[i])}
    given_title = " ".join((title or "").split())  # a subject line never holds a newline
    url = check_url(url, name)
    # Only the article text identifies it: a new --title must not make it a new article.
    digest = hashlib.sha256("\n".join(paragraphs).encode("utf-8")).hexdigest()
    title = given_title or file_title or _derive_title(body, headings)
    if any(body[i] == title for i in headings):
        # A subheading that is also the title is not shown again under it.
        body = [paragraph for paragraph in body if paragraph != title]
        headings = {i for i in range(1, len(body) - 1) if _is_heading(body[i])}
    return ArticleDraft(
        title=title,
        body_html=sanitize_html(_to_html(body, headings)),
        summary=shorten(body[0], SUMMARY_CHARS),
        guid=url or f"sha256:{digest}",
        fingerprint=f"sha256:{digest}",
        url=url,
        published_at=_check_published(published, name),
        source=f"text:{name}",
        title_derived=not (given_title or file_title),
        removed=tuple(paragraph for paragraph in every if paragraph not in kept),
        left_out=_left_out(every, kept, body),
        language=language_of(None, "\n".join(paragraphs)),
    )


def _left_out(every: list[str], kept: set[str], body: list[str]) -> tuple[LeftOut, ...]:
    """Each paragraph removed as boilerplate, as HTML, with the number of body
    paragraphs before it (the title line and repeats are not in the body)."""
    found: list[LeftOut] = []
    shown = 0
    for paragraph in every:
        if paragraph not in kept:
            escaped = html.escape(paragraph, quote=False)
            found.append(LeftOut(sanitize_html(f"<p>{escaped}</p>"), paragraph, shown))
        elif shown < len(body) and body[shown] == paragraph:
            shown += 1
    return tuple(found)


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of plain text: blank lines separate blocks, a block's lines are paragraphs
    unless the block is hard-wrapped prose, whose lines are joined."""
    paragraphs: list[str] = []
    for block in _BLANK_LINES.split(text):
        stripped = (_SPACES.sub(" ", line).strip() for line in block.split("\n"))
        lines = [line for line in stripped if line]
        paragraphs += _unwrap(lines) if _is_hard_wrapped(lines) else lines
    return paragraphs


def _is_hard_wrapped(lines: list[str]) -> bool:
    """Prose wrapped at a fixed width, not one paragraph per line.

    Wrapped prose has a right margin (at least half the lines but the last are
    WRAP_MIN..WRAP_MAX chars)
    and breaks mid-sentence somewhere (a line without closing punctuation, the next starting
    lowercase). One paragraph per line has neither: paragraphs outgrow any margin, and a
    line never continues the sentence above it.
    """
    if len(lines) < 2:
        return False
    at_margin = sum(WRAP_MIN_CHARS <= len(line) <= WRAP_MAX_CHARS for line in lines[:-1])
    mid_sentence = any(
        not line.endswith(_CLOSING) and following[:1].islower()
        for line, following in pairwise(lines)
    )
    return at_margin * 2 >= len(lines) - 1 and mid_sentence


def _unwrap(lines: list[str]) -> list[str]:
    """Wrapped lines joined; a ragged (short) line ends its paragraph or is a heading."""
    width = max(len(line) for line in lines if len(line) <= WRAP_MAX_CHARS)
    paragraphs: list[str] = []
    current: list[str] = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        current.append(line)
        if len(line) < RAGGED_FRACTION * width and not following[:1].islower():
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def _is_heading(paragraph: str) -> bool:
    letters = [ch for ch in paragraph if ch.isalpha()]
    return (
        len(paragraph) <= HEADING_MAX_CHARS
        and len(paragraph.split()) <= HEADING_MAX_WORDS
        and not paragraph.endswith(_CLOSING)
        # No letters is a separator ("* * *"); a lowercase start continues a sentence.
        and bool(letters)
        and not letters[0].islower()
    )


def _split_title(paragraphs: list[str]) -> tuple[list[str], str | None]:
    """The body, and the file's own title line when it opens with one."""
    if len(paragraphs) > 1 and _is_heading(paragraphs[0]):
        return paragraphs[1:], paragraphs[0]
    return paragraphs, None


def _derive_title(body: list[str], headings: set[int]) -> str:
    """The first subheading, else the opening sentence (without its dateline), shortened."""
    if headings:
        return body[min(headings)]
    opening = _DATELINE.sub("", body[0], count=1)
    match = _FIRST_SENTENCE.match(opening)
    sentence = match.group() if match else opening
    return shorten(sentence.removesuffix("."), TITLE_CHARS)


def _to_html(body: list[str], headings: set[int]) -> str:
    blocks = []
    for i, paragraph in enumerate(body):
        tag = "h2" if i in headings else "p"
        blocks.append(f"<{tag}>{html.escape(paragraph, quote=False)}</{tag}>")
    return "\n".join(blocks)


def _check_published(published: datetime | None, name: str) -> datetime | None:
    if published is not None and published.utcoffset() is None:
        raise SourceError(
            f"The publication time {published.isoformat()} given for {name} has no time "
            f"zone: add one, for example {published.isoformat()}+02:00."
        )
    return published
