"""Engine, sessions and schema migrations. SQLite (WAL, busy timeout) is the embedded
default; the same code runs on PostgreSQL. Every command opens the database through
`open_database`, which upgrades an older schema in place first."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlmodel import Session

from mailer.errors import MailerError
from mailer.models import declare_partial_indexes
from mailer.settings import masked_url

T = TypeVar("T")
# How long a write that must not fail (an unsubscribe) waits out a busy database, on top
# of SQLite's own busy timeout per attempt.
RETRY_SECONDS = 60.0


def create_db_engine(url: str) -> Engine:
    shown = masked_url(url)  # errors never print the password
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MailerError(f"database.url = {shown!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise MailerError(f"database.url = {shown!r}: mailer runs on sqlite:// or postgresql://")
    declare_partial_indexes(backend)  # its dialect is loaded by create_engine anyway
    if backend == "postgresql":
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ImportError, NoSuchModuleError) as exc:
            raise MailerError(
                f"database.url = {shown!r} needs a driver that is not installed ({exc}); "
                "install psycopg: pip install 'psycopg[binary]'"
            ) from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, the web site) work while a send writes outcomes.
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it returns, so a power cut cannot take back a
    # "sent" and send it again. Outcomes are committed in groups: it costs a fifth.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The newest migration in migrations/versions; a test keeps the two in step.
SCHEMA_REVISION = "0017"

# The subscriber search's trigram indexes (name: column), which migration 0011 makes on
# PostgreSQL when the server allows pg_trgm. Not in the models, which hold what every
# database has: a comparison of the schema with the models leaves these out.
TRIGRAM_INDEXES = {"ix_subscriber_email_trgm": "email", "ix_subscriber_name_trgm": "name"}


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("mailer") / "migrations"))
    return config


def head_revision() -> str | None:
    """The newest migration, as alembic sees it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    """Create the schema, or bring an older one up to date, keeping every row. Alembic is
    loaded only when there is work for it, so an up-to-date database costs one query."""
    try:
        if current_revision(engine) == SCHEMA_REVISION:
            return
        from alembic import command

        with engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        # Another process may have created the schema at the same moment: that is fine.
        if current_revision(engine) != SCHEMA_REVISION:
            shown = masked_url(str(engine.url))
            raise MailerError(f"cannot open the database {shown!r}: {exc.orig}") from None


def open_database(url: str) -> Engine:
    engine = create_db_engine(url)
    upgrade(engine)
    return engine


def is_contention(exc: DBAPIError) -> bool:
    """The database was busy, not wrong: SQLite's writer held by another process past the
    busy timeout, or PostgreSQL's serialization failure, deadlock or lock timeout."""
    if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01", "55P03"):
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


def with_retries(work: Callable[[], T], seconds: float = RETRY_SECONDS) -> T:
    """`work` (one whole transaction), done again after a pause growing from 50 ms to
    2 s while the database is busy, for up to `seconds`; then the error stands. For
    what must not fail because of somebody else's long write (a reader's unsubscribe)."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        try:
            return work()
        except DBAPIError as exc:
            if not is_contention(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))  # apart, not in step with another
        pause = min(pause * 2, 2.0)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_new(engine: Engine, table: Table) -> Any:
    """INSERT that can skip rows already there (`.on_conflict_do_nothing()`), in the
    dialect's own words. Each dialect's package is imported here, when its engine is
    in use (and loaded by then): at the top, SQLite's commands would load PostgreSQL's."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
