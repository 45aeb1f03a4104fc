"""Backups of the embedded SQLite database: a consistent copy, taken with SQLite's online
backup API while a send and the site go on writing. A copy is written under a temporary
name next to the target and renamed only when complete and checked, so no half-written
backup is ever left under the name asked for. PostgreSQL has its own tool for this
(pg_dump), which mailer points to rather than imitates."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailer.errors import MailerError
from mailer.settings import masked_url


@dataclass(frozen=True)
class Backup:
    path: Path
    pages: int
    size: int  # bytes


def backup_database(url: str, target: Path, *, force: bool = False) -> Backup:
    """Copy the SQLite database at `url` to `target`. Raises MailerError."""
    source = _sqlite_file(url)
    target = Path(target)
    if target.exists() and not force:
        raise MailerError(f"{target} exists already: choose another name, or --force to replace it")
    if target.exists() and target.resolve() == source.resolve():
        raise MailerError(f"{target} is the database itself: give the backup another name")
    if not target.parent.is_dir():
        raise MailerError(f"{target.parent} is not a folder: create it first")
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        pages = _copy(source, partial)
        _sync(partial)
        _move(partial, target, force)
    finally:
        for leftover in [partial, *(Path(f"{partial}-{end}") for end in ("journal", "wal", "shm"))]:
            leftover.unlink(missing_ok=True)
    return Backup(target, pages, target.stat().st_size)


def _sqlite_file(url: str) -> Path:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MailerError(f"database.url = {masked_url(url)!r} is not a database URL") from None
    if parsed.get_backend_name() == "postgresql":
        raise MailerError(
            "the database is PostgreSQL: back it up with its own tool, e.g. "
            "`pg_dump -Fc -f mailer.dump DBNAME` (consistent while mailer runs), and "
            "restore with `pg_restore --clean -d DBNAME mailer.dump`"
        )
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise MailerError(
            f"database.url = {masked_url(url)!r}: only a SQLite file can be backed up this way"
        )
    source = Path(parsed.database)
    if not source.is_file():
        raise MailerError(f"there is no database at {source}: check database.url")
    return source


def _copy(source: Path, partial: Path) -> int:
    """The whole database in one backup step. In WAL mode that step reads one snapshot
    while sends and the site go on writing (readers do not block writers); a copy in
    several steps would start again each time another connection wrote, and on a busy
    database might never finish."""
    with contextlib.closing(sqlite3.connect(source, timeout=30)) as origin:
        origin.execute("PRAGMA busy_timeout=30000")
        with contextlib.closing(sqlite3.connect(partial)) as copy:
            origin.backup(copy)
            # one self-contained file: no -wal beside it to forget when copying it back
            copy.execute("PRAGMA journal_mode=DELETE")
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise MailerError(f"the copy of {source} does not check out ({check}); try again")
            return int(copy.execute("PRAGMA page_count").fetchone()[0])


def _sync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def _move(partial: Path, target: Path, force: bool) -> None:
    """Give the finished copy its name; without `force`, never over a file that has
    appeared there meanwhile (a hard link fails when the name is taken)."""
    if force:
        os.replace(partial, target)
    else:
        try:
            os.link(partial, target)
        except FileExistsError:
            raise MailerError(
                f"{target} exists already: choose another name, or --force to replace it"
            ) from None
        except OSError:  # a file system without hard links
            os.replace(partial, target)
    with contextlib.suppress(OSError):  # the new name itself survives a power cut
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
