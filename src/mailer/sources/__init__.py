"""Ingest, the first stage of the pipeline: a source becomes an ``ArticleDraft``.

One module per input kind (text.py now; Markdown, HTML and feeds later) turns its input
into paragraphs; cleanup.py removes the site's boilerplate and sanitises the HTML they
all build. The caller (the CLI, the feed poller) stores the draft as an ``Article``.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailer.errors import SourceError
from mailer.sources.cleanup import DEFAULT_PATTERNS, Boilerplate
from mailer.sources.decode import decode_text

__all__ = ["ARTICLE_SUFFIXES", "DEFAULT_PATTERNS", "ArticleDraft", "Boilerplate", "read_article"]

# Suffixes whose readers are still to come; every other suffix is read as plain text.
_NOT_YET_SUPPORTED = frozenset({".md", ".html", ".htm"})
# What a watched folder's article files are called (other files there are left alone).
ARTICLE_SUFFIXES = frozenset({".txt", ".text"})


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


def read_article(
    path: Path,
    boilerplate: Boilerplate,
    *,
    title: str | None = None,
    url: str | None = None,
    published: datetime | None = None,
) -> ArticleDraft:
    """The article in the file at ``path``. Raises SourceError."""
    # Imported here: text.py imports ArticleDraft from this package.
    from mailer.sources.text import parse_text

    if path.suffix.lower() in _NOT_YET_SUPPORTED:
        raise SourceError(
            f"{path}: {path.suffix} files are not supported yet. Save the article as plain "
            "text (.txt, one paragraph per line) and ingest that file."
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(
            f"Cannot read {path}: {error.strerror}. Check the path and that the file is readable."
        ) from None
    text = decode_text(data, str(path))
    return parse_text(text, path.name, boilerplate, title=title, url=url, published=published)
