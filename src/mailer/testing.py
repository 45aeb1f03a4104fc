"""Test helpers that ship with the package: a real SMTP server on 127.0.0.1 that records
what it receives and can refuse, defer or drop on cue, and settings for a throwaway
database. Used by mailer's own tests; handy for a newsroom's too."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import create_engine, text

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
        return cast(EmailMessage, email.message_from_bytes(self.data, policy=email.policy.default))


@dataclass
class RecordingHandler:
    """Accepts and records every message, except as told: `refuse` maps a recipient to
    the reply its RCPT gets ("550 5.1.1 User unknown", "451 4.3.0 Try later"); `refuse_all`
    answers every RCPT so; `refuse_sender` answers MAIL FROM so, `refuse_data` the end of
    DATA; `drop` names recipients whose DATA makes the server hang up (the message
    received, no reply sent); `stall` maps a recipient to the seconds its RCPT waits
    before the reply, to outlast a client's time-out.

    `max_sessions` turns away sessions beyond that many open at once with a 421, at the
    greeting (as Postfix and Exim do) or, with `turn_away_at="ehlo"`, in reply to EHLO,
    and hangs up; `sessions`, `peak_sessions` and `turned_away` count them (kept by the
    server smtp_server starts)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_all: str | None = None
    refuse_sender: str | None = None
    refuse_data: str | None = None
    drop: set[str] = field(default_factory=set)
    stall: dict[str, float] = field(default_factory=dict)
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
        if self.drop.intersection(envelope.rcpt_tos):
            server.transport.close()
            return "421 closing"
        if self.refuse_data:
            return self.refuse_data
        self.received.append(
            Received(
                envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b""
            )
        )
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[EmailMessage]:
        """The messages received for one recipient."""
        return [r.message for r in self.received if address in r.rcpt_tos]


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
    handler: RecordingHandler | None = None,
) -> Iterator[tuple[Controller, RecordingHandler]]:
    """A started aiosmtpd server on 127.0.0.1 and a free port; stopped afterwards."""
    handler = handler or RecordingHandler()
    # ready_timeout: aiosmtpd's 5 s can pass on a loaded machine before the thread is up
    controller = _Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=30)
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
def running_site(app: Any) -> Iterator[str]:
    """An ASGI app (the subscriber site) served by uvicorn on a free port of 127.0.0.1,
    in a thread; yields its base URL and stops it after."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
        thread.join(10)
