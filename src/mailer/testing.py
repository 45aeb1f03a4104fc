"""Test helpers that ship with the package: a real SMTP server on 127.0.0.1 that records
what it receives and can refuse, defer or drop on cue, and settings for a throwaway
database. Used by mailer's own tests; handy for a newsroom's too."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import create_engine, make_url, text

from mailer.catcher import free_port
from mailer.settings import Settings, load_settings

TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
TEST_PURGE_KEY = "test-purge-key-" + "p" * 32


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class RecordingHandler:
    """Accepts and records every message, except as told: `refuse` maps a recipient to
    the reply its RCPT gets ("550 5.1.1 User unknown", "451 4.3.0 Try later"); `refuse_all`
    answers every RCPT so; `refuse_sender` answers MAIL FROM so, `refuse_data` the end of
    DATA (once `accept_first` messages have been received: a relay whose filter or quota
    starts refusing mid-send), `refuse_data_to` the end of DATA for one recipient;
    `data_reply` is the reply to a message received (a long one, say); `drop` names
    recipients whose DATA makes the server hang up (the message received, no reply
    sent); `stall` maps a recipient to the seconds its RCPT waits before the reply, to
    outlast a client's time-out; `stall_data` the seconds the end of DATA waits before
    its reply (a relay that stalls after the dot), `in_data` is set once a message's
    data has arrived.

    `max_sessions` turns away sessions beyond that many open at once with a 421, at the
    greeting (as Postfix and Exim do) or, with `turn_away_at="ehlo"`, in reply to EHLO,
    and hangs up; `sessions`, `peak_sessions` and `turned_away` count them (kept by the
    server smtp_server starts)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_all: str | None = None
    refuse_sender: str | None = None
    refuse_data: str | None = None
    accept_first: int = 0
    refuse_data_to: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued"
    drop: set[str] = field(default_factory=set)
    stall: dict[str, float] = field(default_factory=dict)
    stall_data: float = 0.0
    in_data: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    max_sessions: int = 0  # 0: no limit
    turn_away_at: Literal["greeting", "ehlo"] = "greeting"
    connections: int = 0  # EHLOs answered with 250
    sessions: int = 0
    peak_sessions: int = 0
    turned_away: int = 0
    port: int = 0  # set when the server starts

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.stall:
            await asyncio.sleep(self.stall[address])
        reply = self.refuse_all or self.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.in_data.set()
        if self.stall_data:
            await asyncio.sleep(self.stall_data)
        if self.drop.intersection(envelope.rcpt_tos):
            server.transport.close()
            return "421 closing"
        for address in envelope.rcpt_tos:
            if address in self.refuse_data_to:
                return self.refuse_data_to[address]
        if self.refuse_data and len(self.received) >= self.accept_first:
            return self.refuse_data
        with self.arrived:
            self.received.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    envelope.original_content or b"",
                )
            )
            self.arrived.notify_all()
        return self.data_reply

    def to(self, address: str) -> list[EmailMessage]:
        """The messages received for one recipient."""
        return [r.message for r in self.received if address in r.rcpt_tos]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[EmailMessage]:
        """The messages received for one recipient, once there are `count` of them (mail
        sent in the background, such as a confirmation link); AssertionError after
        `timeout` seconds without."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(found := self.to(address)) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(found)} of {count} messages for {address} arrived"
                self.arrived.wait(left)
        return found

    def wait_for_count(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` messages in all have arrived."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} messages arrived"
            )


@dataclass
class FlakyHandler(RecordingHandler):
    """A RecordingHandler that also puts off a random share (`rate`) of RCPTs with one of
    `replies`, as an overloaded or greylisting relay does. Each recipient's n-th RCPT
    draws from a generator seeded with (seed, recipient, n), so a run replays exactly
    from its seed whatever order the connections go in. `replies_to` keeps every reply
    each recipient's RCPT got, in order."""

    seed: int = 0
    rate: float = 0.3
    replies: tuple[str, ...] = ("421 4.7.0 Try again later", "451 4.3.0 Try again later")
    replies_to: dict[str, list[str]] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        given = self.replies_to.setdefault(address, [])
        draw = random.Random(f"{self.seed}:{address}:{len(given)}")
        if draw.random() < self.rate:
            reply = draw.choice(self.replies)
        else:
            reply = await super().handle_RCPT(server, session, envelope, address, options)
        given.append(reply)
        return reply


TOO_MANY_SESSIONS = "421 4.7.0 Too many concurrent SMTP connections; try again later"


class _Server(SMTP):
    """aiosmtpd's SMTP session, counting open sessions on its handler and turning away
    those beyond the handler's max_sessions (one over the limit when it connected)."""

    counted = False
    over_limit = False
    hung_up = False  # at the greeting: the session never started

    @property
    def handler(self) -> RecordingHandler:
        return cast(RecordingHandler, self.event_handler)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.handler
        if not self.counted:  # not again for the same session after STARTTLS
            self.counted = True
            handler.sessions += 1
            handler.peak_sessions = max(handler.peak_sessions, handler.sessions)
            self.over_limit = 0 < handler.max_sessions < handler.sessions
            if self.over_limit and handler.turn_away_at == "greeting":
                handler.turned_away += 1
                self.hung_up = True
                cast(asyncio.WriteTransport, transport).write(f"{TOO_MANY_SESSIONS}\r\n".encode())
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.handler.sessions -= 1
        if not self.hung_up:
            super().connection_lost(error)

    async def smtp_EHLO(self, hostname: str) -> None:
        if self.over_limit:
            self.handler.turned_away += 1
            await self.push(TOO_MANY_SESSIONS)
            if self.transport is not None:
                self.transport.close()
            return
        await super().smtp_EHLO(hostname)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


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


@contextmanager
def smtp_server(
    handler: RecordingHandler | None = None, port: int = 0
) -> Iterator[tuple[Controller, RecordingHandler]]:
    """A started aiosmtpd server on 127.0.0.1 and a free port (or `port`: a relay back
    where it was); stopped afterwards."""
    handler = handler or RecordingHandler()
    # ready_timeout: aiosmtpd's 5 s can pass on a loaded machine before the thread is up
    controller = _Controller(
        handler, hostname="127.0.0.1", port=port or free_port(), ready_timeout=30
    )
    controller.start()
    handler.port = controller.port
    try:
        yield controller, handler
    finally:
        controller.stop()


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
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


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
