"""Test helpers that ship with the package: a real SMTP server on 127.0.0.1 that records
what it receives and can refuse, defer or drop on cue, and settings for a throwaway
database. Used by mailer's own tests; handy for a newsroom's too."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import create_engine, text

from mailer.catcher import free_port
from mailer.settings import Settings, load_settings

TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


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
    DATA; `drop` names recipients whose DATA makes the server hang up."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_all: str | None = None
    refuse_sender: str | None = None
    refuse_data: str | None = None
    drop: set[str] = field(default_factory=set)
    connections: int = 0
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
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
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
        "security": {"secret_key": TEST_SECRET_KEY},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return base.replace(**overrides)
