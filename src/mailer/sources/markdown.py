"""Ingest, Markdown files: optional front matter (YAML between ``---`` lines, or Hugo's
TOML between ``+++`` lines or JSON object between ``{`` and ``}`` lines), then
CommonMark rendered with markdown-it-py and cleaned like every other source's HTML.
Front matter written for Hugo or Jekyll is read as it is: mailer takes the keys it uses
under their common names and ignores, and names, the rest; a draft (Hugo's `draft:
true`, Jekyll's `published: false`) is refused."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import frontmatter
import markdown_it
import yaml
from frontmatter.default_handlers import BaseHandler, JSONHandler, YAMLHandler

from mailer.errors import SourceError
from mailer.sources.cleanup import Boilerplate
from mailer.sources.draft import ArticleDraft, draft_from_html

# What mailer uses, each under the names site generators give it, first found first.
# (Hugo's `date` is when a post was begun, its `publishDate` when it went out.)
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "date": ("publishdate", "pubdate", "date"),
    "author": ("author", "authors"),
    "url": ("url", "canonical_url", "canonical", "link"),
    "summary": ("summary", "description", "excerpt"),
    "language": ("language", "lang"),
}
FIELDS = tuple(ALIASES)


class _TOMLHandler(BaseHandler):
    """Hugo's TOML front matter, read with the standard library's tomllib."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)


_HANDLERS = (YAMLHandler(), _TOMLHandler(), JSONHandler())


def parse_markdown(
    text: str, name: str, rules: Boilerplate, timezone: str = "UTC", **given: Any
) -> ArticleDraft:
    """The article in Markdown ``text`` (a file called ``name``). Raises SourceError."""
    try:
        post = frontmatter.loads(text, handler=frontmatter.detect_format(text, _HANDLERS))
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise SourceError(
            f"{name}: the front matter is not valid YAML, TOML or JSON: {exc}"
        ) from None
    meta = {str(key).lower(): value for key, value in post.metadata.items()}
    _refuse_drafts(meta, name)
    used, ignored = _used(meta)
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True, "typographer": False})
    html = renderer.render(post.content)
    draft = draft_from_html(
        html,
        name,
        rules,
        source=f"markdown:{name}",
        title=given.get("title") or _text(used.get("title")),
        url=given.get("url") or _text(used.get("url")),
        author=_names(used.get("author")),
        published=given.get("published") or _when(used.get("date"), timezone, name),
        summary=_text(used.get("summary")),
        language=_text(used.get("language")),
    )
    if ignored:
        note = f"front matter mailer does not use, ignored: {', '.join(ignored)}"
        return replace(draft, notes=(note,))
    return draft


def _refuse_drafts(meta: dict[str, Any], name: str) -> None:
    """A post its site does not publish yet is not mailed either."""
    for key, value, unpublished in (("draft", "true", _yes), ("published", "false", _no)):
        if key in meta and unpublished(meta[key]):
            raise SourceError(
                f"{name} is a draft ({key}: {value} in its front matter); publish it first "
                "or remove the key"
            )


def _used(meta: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The value of each field mailer uses (the first of its names that is set), and the
    keys left unused, by name."""
    used: dict[str, Any] = {}
    taken = {"draft", "published"}
    for field, names in ALIASES.items():
        for key in names:
            if key in meta and meta[key] not in (None, "", []) and not _path(field, meta[key]):
                used[field] = meta[key]
                taken.add(key)
                break
    return used, sorted(key for key in meta if key not in taken)


def _path(field: str, value: object) -> bool:
    """Hugo's `url` is a path on the site ("/2025/story/"), not the article's address."""
    return field == "url" and str(value).startswith("/") and not str(value).startswith("//")


def _yes(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "on")


def _no(value: object) -> bool:
    return value is False or str(value).strip().lower() in ("false", "no", "off")


def _text(value: object) -> str | None:
    return " ".join(str(value).split()) or None if value is not None else None


def _names(value: object) -> str | None:
    """An author, or a list of them ("A", "A and B", "A, B and C"); Jekyll's author may
    be a mapping with a name."""
    if isinstance(value, dict):
        value = value.get("name")
    if not isinstance(value, list | tuple):
        return _text(value)
    names = [name for name in (_names(item) for item in value) if name]
    if len(names) < 2:
        return names[0] if names else None
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _when(value: object, timezone: str, name: str) -> datetime | None:
    """A front matter date: YAML's or TOML's own, or ISO 8601 text; without an offset, in
    the publication's time zone."""
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
