"""A real SMTP server on 127.0.0.1 for tests: it records what it receives and can refuse,
defer, stall or drop on cue, and count (and turn away) concurrent sessions."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.catcher import free_port

# Whether test servers advertise PIPELINING (RFC 2920) unless a handler says otherwise:
# on, so every test exercises the client's pipelined path; MAILER_TEST_PIPELINING=0 runs
# a suite over the one-command-at-a-time path instead.
ADVERTISE_PIPELINING = os.environ.get("MAILER_TEST_PIPELINING", "1") != "0"


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
    server smtp_server starts).

    `pipelining` says whether EHLO advertises PIPELINING (None: ADVERTISE_PIPELINING,
    looked up at each EHLO); `transcript`, given a list, gets every line the client
    sends, commands and message alike, as received.

    `idle_timeout` closes a session idle that long, as a relay does (Postfix after 300 s),
    saying `idle_reply` first if given (Postfix: "421 4.4.2 ... Error: timeout exceeded";
    aiosmtpd says nothing)."""

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
    pipelining: bool | None = None
    transcript: list[bytes] | None = None
    idle_timeout: float = 0.0  # 0: aiosmtpd's own (300 s)
    idle_reply: str | None = None  # said before closing an idle session; None: nothing

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        advertise = ADVERTISE_PIPELINING if self.pipelining is None else self.pipelining
        if advertise:  # aiosmtpd takes pipelined commands, but does not say so
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
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
        if handler.transcript is not None:
            self._record_lines(handler.transcript)

    def _timeout_cb(self) -> None:
        if self.handler.idle_reply and self.transport is not None:
            cast(asyncio.WriteTransport, self.transport).write(
                f"{self.handler.idle_reply}\r\n".encode()
            )
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _record_lines(self, transcript: list[bytes]) -> None:
        reader = self._reader
        read = reader.readuntil

        async def readuntil(separator: bytes = b"\n") -> bytes:
            line = await read(separator)
            transcript.append(line)
            return line

        reader.readuntil = readuntil  # type: ignore[method-assign,assignment]

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


@contextmanager
def smtp_server(
    handler: RecordingHandler | None = None, port: int = 0
) -> Iterator[tuple[Controller, RecordingHandler]]:
    """A started aiosmtpd server on 127.0.0.1 and a free port (or `port`: a relay back
    where it was); stopped afterwards."""
    handler = handler or RecordingHandler()
    # ready_timeout: aiosmtpd's 5 s can pass on a loaded machine before the thread is up
    idle: dict[str, Any] = {"timeout": handler.idle_timeout} if handler.idle_timeout else {}
    controller = _Controller(
        handler, hostname="127.0.0.1", port=port or free_port(), ready_timeout=30, **idle
    )
    controller.start()
    handler.port = controller.port
    _await_probe_gone(handler)
    try:
        yield controller, handler
    finally:
        controller.stop()


def _await_probe_gone(handler: RecordingHandler) -> None:
    """Controller.start() connects once to see the server is up; until the server has
    seen that probe hang up it counts as an open session and would take a max_sessions
    place, so wait for it and leave the counts as if it never came."""
    deadline = time.monotonic() + 10
    while handler.sessions and time.monotonic() < deadline:
        time.sleep(0.01)
    handler.peak_sessions = handler.sessions
