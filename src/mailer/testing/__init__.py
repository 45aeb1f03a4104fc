"""Test helpers that ship with the package: a real SMTP server on 127.0.0.1 that records
what it receives and can refuse, defer or drop on cue (`relay`), a private Dovecot on
127.0.0.1 for the bounce mailbox (`imap`), and settings for a throwaway database. Used
by mailer's own tests; handy for a newsroom's too."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from mailer.catcher import free_port
from mailer.settings import Settings, load_settings
from mailer.testing import commands

# a private Dovecot (IMAPS) for the bounce mailbox
from mailer.testing.imap import Mailbox as Mailbox
from mailer.testing.imap import dovecot_available as dovecot_available
from mailer.testing.imap import imap_server as imap_server

# the relay lives in its own module; its names are the package's too
from mailer.testing.relay import TOO_MANY_SESSIONS as TOO_MANY_SESSIONS
from mailer.testing.relay import FlakyHandler as FlakyHandler
from mailer.testing.relay import Received as Received
from mailer.testing.relay import RecordingHandler as RecordingHandler
from mailer.testing.relay import smtp_server as smtp_server

TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
TEST_PURGE_KEY = "test-purge-key-" + "p" * 32


def worker_database(url: str, worker: str) -> str:
    """The database a pytest-xdist `worker` empties: one of its own beside `url`'s, created
    when missing (the role needs CREATEDB), so parallel workers never drop each other's
    tables. Without a worker, or a url, the url itself."""
    if not url or not worker:
        return url
    base = make_url(url)
    own = base.set(database=f"{base.database}_{worker}")
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{own.database}"'))
    finally:
        engine.dispose()
    return own.render_as_string(hide_password=False)


def empty_postgres(url: str) -> str:
    """Drop every table of the PostgreSQL database at `url` (a throwaway test database)."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def make_settings(
    directory: Path,
    smtp_port: int = 25,
    database_url: str | None = None,
    **sections: dict[str, Any],
) -> Settings:
    """The shipped configuration, with a SQLite file in `directory` (or the database at
    `database_url`), a fixed secret key and SMTP on 127.0.0.1:smtp_port; more keys per
    section as keyword arguments."""
    base = load_settings(environ={})
    overrides: dict[str, dict[str, Any]] = {
        "database": {"url": database_url or f"sqlite:///{directory / 'subscribers.db'}"},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "username": "",
            "timeout": 5,
        },
        "security": {"secret_key": TEST_SECRET_KEY, "purge_key": TEST_PURGE_KEY},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return base.replace(**overrides)


@contextmanager
def web_server(build: Callable[[str], Any], port: int = 0) -> Iterator[str]:
    """The ASGI app `build(base_url)` makes (the subscriber site) served by uvicorn on
    127.0.0.1 and a free port, or `port`, as `mailer serve` runs it (uvicorn reads no
    proxy headers); yields the base URL. Stopped, lifespan and all, afterwards."""
    import uvicorn

    port = port or free_port()
    app = build(f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the site did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def served(settings: Settings, engine: Any, port: int = 0) -> Iterator[tuple[str, Settings]]:
    """`mailer serve`'s app (with its confirmation sender) run by uvicorn on 127.0.0.1 and
    a free port, or `port`; the site's address and the settings it runs with (base_url
    pointing at it, so the emails' links do too)."""
    from mailer.web import create_app

    running: list[Settings] = []

    def build(base_url: str) -> Any:
        running.append(settings.replace(publication={"base_url": base_url}))
        return create_app(running[0], engine)

    with web_server(build, port) as url:
        yield url, running[0]


def queued_mails(engine: Any) -> dict[str, int]:
    """The confirmation queue's rows by state, once nothing in it is waiting or sending."""
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT status, COUNT(*) FROM transactional_mail GROUP BY status"
            ).all()
        counts = {status: count for status, count in rows}
        if not {"queued", "sending"} & set(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


@contextmanager
def running_site(app: Any) -> Iterator[str]:
    """An ASGI app (the subscriber site) served as web_server serves one; its base URL."""
    with web_server(lambda _base_url: app) as url:
        yield url


# Names a stranger may type into the sign-up form, or that an older version stored
# unchecked: each must stay one display name of the one recipient.
HOSTILE_NAMES = [
    "Zoë <attacker@evil.example>, x",
    "a@b.c",
    '"quoted" <x@y>',
    "x\r\nBcc: evil@evil.example",
    "\x00\x1b[31m",
    "=?utf-8?q?evil?=",
    "Ali, Reza",
    "مریم\u200cجان",  # Persian, with a zero-width non-joiner
    "Zoë <a@evil.example>, " * 4 + "Zoë <b@evil.example>",  # 100 characters
    "Zoë <a@evil.example>, " * 5,  # 110: over the limit, stored before there was one
]


def import_readers(engine: Any, directory: Path, count: int) -> list[str]:
    """`count` active readers (reader000@example.org, ...) imported from a CSV file."""
    from mailer.subscriber_csv import import_csv

    addresses = [f"reader{i:03}@example.org" for i in range(count)]
    listing = directory / "readers.csv"
    listing.write_text("email\n" + "".join(f"{address}\n" for address in addresses))
    assert import_csv(engine, listing).added == count
    return addresses


def new_issue(engine: Any, settings: Settings, directory: Path, number: int = 0) -> Any:
    """A fresh article issue: the sample article first, then short articles of their own."""
    from mailer.articles import ingest_file
    from mailer.demo import SAMPLE_ARTICLE
    from mailer.issues import article_issue

    if number == 0:
        article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    else:
        source = directory / f"article-{number}.txt"
        source.write_text(
            f"OSLO – News item number {number}, told in a few plain sentences.\n"
            f"The council met on day {number} and agreed on the budget.\n",
            encoding="utf-8",
        )
        article = ingest_file(engine, settings, source, title=f"News {number}").article
    return article_issue(engine, settings, article)


def run_mailer(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `mailer` command as a user runs it, in `cwd`, with the MAILER_* variables in
    `env` and none of the caller's; its output as text."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    return commands.mailer(args, cwd, {**clean, **env})


def mailer_on(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `mailer` command on the test's database and SMTP server."""
    return run_mailer(
        cwd,
        *args,
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
        MAILER_DATABASE_URL=settings.database.url,
        MAILER_SMTP_HOST="127.0.0.1",
        MAILER_SMTP_PORT=str(settings.smtp.port),
        MAILER_SMTP_SECURITY="none",
    )
