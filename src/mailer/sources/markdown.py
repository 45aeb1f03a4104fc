"""Ingest, Markdown files: optional front matter (title, date, author, url, summary), then
CommonMark rendered with markdown-it-py and cleaned like every other source's HTML."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import frontmatter
import markdown_it
import yaml

from mailer.errors import SourceError
from mailer.sources import ArticleDraft
from mailer.sources.cleanup import Boilerplate
from mailer.sources.draft import draft_from_html

FIELDS = ("title", "date", "author", "url", "summary", "language")


def parse_markdown(
    text: str, name: str, rules: Boilerplate, timezone: str = "UTC", **given: Any
) -> ArticleDraft:
    """The article in Markdown ``text`` (a file called ``name``). Raises SourceError."""
    try:
        post = frontmatter.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise SourceError(f"{name}: the front matter is not valid YAML: {exc}") from None
    meta = {key.lower(): value for key, value in post.metadata.items()}
    unknown = sorted(set(meta) - set(FIELDS))
    if unknown:
        raise SourceError(
            f"{name}: unknown front matter {', '.join(unknown)}; mailer reads {', '.join(FIELDS)}"
        )
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True, "typographer": False})
    html = renderer.render(post.content)
    return draft_from_html(
        html,
        name,
        rules,
        source=f"markdown:{name}",
        title=given.get("title") or _text(meta.get("title")),
        url=given.get("url") or _text(meta.get("url")),
        author=_text(meta.get("author")),
        published=given.get("published") or _when(meta.get("date"), timezone, name),
        summary=_text(meta.get("summary")),
        language=_text(meta.get("language")),
    )


def _text(value: object) -> str | None:
    return " ".join(str(value).split()) or None if value is not None else None


def _when(value: object, timezone: str, name: str) -> datetime | None:
    """A front matter date: YAML's own, or ISO 8601 text; without an offset, in the
    publication's time zone."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time())
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise SourceError(
                f"{name}: date {value!r} is not an ISO date or time, e.g. 2026-11-27 or "
                "2026-11-27T08:30+01:00"
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(timezone))
