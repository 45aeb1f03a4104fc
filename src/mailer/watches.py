"""The watches of the scheduled service: new and changed articles in [schedule] watch_dir
and [schedule] feed_url, brought in and handed to the service, which sends those worth
sending by themselves. Each poll is logged as events (mailer.events)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from mailer.articles import ingest_file, ingest_source, remembered
from mailer.db import session_scope
from mailer.errors import MailerError
from mailer.events import event
from mailer.models import Article, PolledSource
from mailer.settings import Settings
from mailer.sources import ARTICLE_SUFFIXES

SETTLED_SECONDS = 2.0  # a file changed more recently may still be being written
RECENT = timedelta(days=7)  # a new article older than this is not sent by itself


class FolderWatch:
    """New and changed article files in [schedule] watch_dir. A file is read once it
    has settled (not changed for a moment), and again only when it changes. The first
    look ever only takes stock: what is there already is not sent by itself."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.seen: dict[Path, tuple[int, int]] = {}  # file -> (mtime_ns, size) when read
        self.lock = threading.Lock()

    def changed_files(self, now: float) -> list[Path]:
        try:
            entries = sorted(self.folder.iterdir())
        except OSError as exc:
            raise MailerError(f"schedule.watch_dir {self.folder}: {exc.strerror}") from None
        found = []
        for path in entries:
            if path.name.startswith((".", "~", "#")) or path.suffix.lower() not in ARTICLE_SUFFIXES:
                continue
            try:
                info = path.stat()
            except OSError:
                continue  # gone since the listing
            stamp = (info.st_mtime_ns, info.st_size)
            if self.seen.get(path) != stamp and now - info.st_mtime >= SETTLED_SECONDS:
                found.append(path)
                self.seen[path] = stamp
        return found

    def first_look(self, engine: Engine, now: datetime) -> bool:
        """Record this look; True when it is the first one ever for the folder."""
        location = str(self.folder)
        with session_scope(engine) as session:
            query = select(PolledSource).where(PolledSource.location == location)
            polled = session.exec(query).first()
            first = polled is None
            polled = polled or PolledSource(location=location, first_polled_at=now)
            polled.last_polled_at = now
            session.add(polled)
        return first

    def poll(self, engine: Engine, settings: Settings, now: datetime) -> list[Article]:
        """Bring in what changed; the new articles (none on the first look ever)."""
        with self.lock:
            first = self.first_look(engine, now)
            name = f"folder {self.folder}"
            new = []
            for path in self.changed_files(time.time()):
                try:
                    result = ingest_file(engine, settings, path)
                except MailerError as exc:
                    event("article-refused", logging.WARNING, file=path.name, error=str(exc))
                    continue
                if result.outcome == "unchanged":
                    continue
                article = result.article
                event(
                    f"article-{result.outcome}",
                    article=article.id,
                    file=path.name,
                    title=article.title,
                )
                for note in result.draft.notes:  # e.g. the front matter it ignored
                    event("article-note", article=article.id, file=path.name, note=note)
                if result.outcome == "new":
                    new.append(article)
        return _worth_sending(new, first, now, name)


class FeedWatch:
    """New and changed entries of [schedule] feed_url, fetched only when the feed has
    changed (conditional GET). The first successful look only takes stock."""

    def __init__(self, url: str):
        self.url = url
        self.lock = threading.Lock()

    def poll(self, engine: Engine, settings: Settings, now: datetime) -> list[Article]:
        with self.lock:
            first = remembered(engine, self.url) is None
            try:
                report = ingest_source(engine, settings, self.url, conditional=True)
            except MailerError as exc:
                event("feed-failed", logging.WARNING, url=self.url, error=str(exc))
                return []
        for problem in report.problems:
            event("entry-skipped", logging.WARNING, url=self.url, reason=problem)
        new = []
        for result in report.results:
            if result.outcome != "unchanged":
                article = result.article
                event(f"article-{result.outcome}", article=article.id, title=article.title)
                if result.outcome == "new":
                    new.append(article)
        return _worth_sending(new, first, now, f"feed {self.url}")


def where(watch: FolderWatch | FeedWatch) -> str:
    """The source a watch reads, as the events name it."""
    return f"folder {watch.folder}" if isinstance(watch, FolderWatch) else f"feed {watch.url}"


def _worth_sending(new: list[Article], first: bool, now: datetime, where: str) -> list[Article]:
    """The new articles to send by themselves: none found on the first look ever at a
    source, nor any published more than a week ago (an old entry that reappeared)."""
    if first and new:
        event(
            "articles-found",
            source=where,
            count=len(new),
            note="there before mailer first looked: not sent by themselves",
        )
        return []
    recent = [a for a in new if a.published_at is None or now - a.published_at <= RECENT]
    for article in new:
        if article not in recent:
            event("article-old", article=article.id, note="published over a week ago: not sent")
    return recent
