"""The SMTP wire (smtpwire.py under smtp.py) against smtplib's own transcript on aiosmtpd,
and pipelined (RFC 2920) into Postfix's smtp-sink: the commands a relay sees are the ones
smtplib sent, MAIL, RCPT and DATA arrive in one write where PIPELINING is advertised, and
a refused recipient leaves the connection ready for the next message."""

from __future__ import annotations

import functools
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mailer import smtp
from mailer.catcher import free_port
from mailer.settings import Smtp
from mailer.smtp import PermanentFailure, SMTPTransport, TemporaryFailure
from mailer.testing import RecordingHandler, smtp_server
from mailer.testing.certs import self_signed

SENDER = "news@example.org"
# a line starting with a dot, to be stuffed; CRLF throughout, as messages.py builds it
MESSAGE = b"From: news@example.org\r\nSubject: Hello\r\n\r\nFirst line\r\n.dotted\r\nlast\r\n"


def _smtp(port: int, **settings: Any) -> Smtp:
    return Smtp(**{"host": "127.0.0.1", "port": port, "security": "none", **settings})


def _normalised(transcript: list[bytes]) -> list[bytes]:
    """Each line with its command word in capitals: smtplib sends "mail FROM:<...>"."""
    lines, in_data = [], False
    for line in transcript:
        if not in_data:
            word, space, rest = line.partition(b" ")
            line = word.upper() + space + rest
            in_data = line == b"DATA\r\n"
        elif line == b".\r\n":
            in_data = False
        lines.append(line)
    return lines


def _transcript(pipelining: bool, send: Any) -> list[bytes]:
    handler = RecordingHandler(pipelining=pipelining, transcript=[])
    with smtp_server(handler) as (_, server):
        send(server.port)
    assert handler.transcript is not None
    return handler.transcript


def _by_smtplib(port: int) -> None:
    # what SMTPTransport did before the wire: smtplib's commands, no size= or BODY=
    with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=10) as connection:
        connection.ehlo()
        assert connection.mail(SENDER)[0] == 250
        assert connection.rcpt("reader@example.org")[0] == 250
        assert connection.data(MESSAGE)[0] == 250
        connection.quit()


def _by_the_wire(port: int) -> None:
    with SMTPTransport(_smtp(port)) as transport:
        assert transport.send(SENDER, "reader@example.org", MESSAGE).startswith("250")


def test_the_wire_sends_what_smtplib_sent_with_and_without_pipelining():
    """The relay sees the same lines, byte for byte but the command words' case: EHLO,
    MAIL, RCPT, DATA, the message dot-stuffed and ended with a dot, QUIT."""
    expected = _normalised(_transcript(False, _by_smtplib))
    assert expected[1:4] == [
        b"MAIL FROM:<news@example.org>\r\n",
        b"RCPT TO:<reader@example.org>\r\n",
        b"DATA\r\n",
    ]
    assert b"..dotted\r\n" in expected and expected[-2:] == [b".\r\n", b"QUIT\r\n"]
    assert _normalised(_transcript(False, _by_the_wire)) == expected
    assert _normalised(_transcript(True, _by_the_wire)) == expected


class Together(RecordingHandler):
    """Notes, at each MAIL, whether RCPT and DATA had already arrived with it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.together: list[bool] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, *args: Any) -> str:
        # aiosmtpd's reader holds what arrived after the MAIL line and is not read yet
        waiting = bytes(server._reader._buffer)
        self.together.append(b"RCPT TO:" in waiting and b"DATA\r\n" in waiting)
        return await super().handle_MAIL(server, session, envelope, *args)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
def test_mail_rcpt_and_data_go_together_only_where_pipelining_is_advertised(pipelining):
    handler = Together(pipelining=pipelining)
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        for n in range(3):
            transport.send(SENDER, f"r{n}@example.org", MESSAGE)
    assert handler.together == [pipelining] * 3
    assert [r.rcpt_tos for r in handler.received] == [[f"r{n}@example.org"] for n in range(3)]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
def test_a_refused_recipient_is_reset_and_the_next_message_goes_on_the_same_connection(
    pipelining,
):
    """Pipelined, the DATA written with the refused RCPT gets its 503 and is read past;
    then RSET, as one at a time, and the next message is the server's next command."""
    unknown = "550 5.1.1 <gone@example.org>: User unknown"
    handler = RecordingHandler(pipelining=pipelining, refuse={"gone@example.org": unknown})
    handler.transcript = []
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        with pytest.raises(PermanentFailure) as refused:
            transport.send(SENDER, "gone@example.org", MESSAGE)
        assert transport.send(SENDER, "here@example.org", MESSAGE).startswith("250")
    assert refused.value.reply == unknown and refused.value.bounce
    assert handler.connections == 1
    commands = [line.split(b" ")[0].strip() for line in handler.transcript[1:7]]
    first = [b"MAIL", b"RCPT", b"DATA"] if pipelining else [b"MAIL", b"RCPT"]
    assert commands[: len(first) + 2] == [*first, b"RSET", b"MAIL"]
    assert [r.rcpt_tos for r in handler.received] == [["here@example.org"]]


@pytest.mark.parametrize(
    "idle_reply", [None, "421 4.4.2 relay.example Error: timeout exceeded"], ids=["closed", "421"]
)
def test_a_connection_the_relay_closed_while_idle_is_replaced_before_the_next_message(
    idle_reply,
):
    """A relay closes a connection left idle (Postfix after 300 s, saying 421 first): a
    send held back by its hourly limit finds it so. The next message goes on a new
    connection; it used to read the 421 as its own reply (the sender stopped) or be put
    off for a lost connection, a message the relay never saw."""
    handler = RecordingHandler(idle_timeout=0.5, idle_reply=idle_reply)
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        assert transport.send(SENDER, "first@example.org", MESSAGE).startswith("250")
        deadline = time.monotonic() + 10
        while handler.sessions and time.monotonic() < deadline:
            time.sleep(0.05)  # until the relay has closed it
        assert transport.send(SENDER, "second@example.org", MESSAGE).startswith("250")
    assert handler.connections == 2
    assert [r.rcpt_tos for r in handler.received] == [["first@example.org"], ["second@example.org"]]


def test_a_relay_that_says_more_than_asked_gets_a_new_connection_not_a_reply_out_of_step():
    """A reply line too many after a message: the next message would have read each
    reply one step late (put off, with a 250 where 354 belongs), and RSET the 354, and
    the one after that be written into a message body."""
    handler = RecordingHandler(data_reply="250 2.0.0 Ok: queued\r\n250 2.0.0 and more")
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        for n in range(3):
            assert transport.send(SENDER, f"r{n}@example.org", MESSAGE).startswith("250 2.0.0 Ok")
    assert [r.rcpt_tos for r in handler.received] == [[f"r{n}@example.org"] for n in range(3)]


class RefusesReset(RecordingHandler):
    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        return "421 4.3.2 relay.example going down"


def test_a_connection_whose_reset_was_refused_is_not_used_again():
    """After a refused recipient the transaction is reset; a relay that does not answer
    RSET with 250 is not in step with us (or going away): the next message starts anew."""
    handler = RefusesReset(refuse={"gone@example.org": "550 5.1.1 User unknown"})
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        with pytest.raises(PermanentFailure):
            transport.send(SENDER, "gone@example.org", MESSAGE)
        assert transport.send(SENDER, "here@example.org", MESSAGE).startswith("250")
    assert handler.connections == 2


def _editor_only(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=(data.login, data.password) == (b"editor", b"secret"))


class TakesDataAnyway(RecordingHandler):
    """Refuses gone@example.org at RCPT, yet keeps it: its DATA gets a 354."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, *args: Any) -> str:
        if args[0] == "gone@example.org":
            envelope.rcpt_tos.append(args[0])
            return "550 5.1.1 User unknown"
        return await super().handle_RCPT(server, session, envelope, *args)


def test_a_data_taken_after_a_refused_recipient_is_ended_with_a_lone_dot():
    """RFC 2920 3.1: the message is not sent; the transaction ends empty, then RSET."""
    handler = TakesDataAnyway(pipelining=True, transcript=[])
    with smtp_server(handler) as (_, server), SMTPTransport(_smtp(server.port)) as transport:
        with pytest.raises(PermanentFailure, match="User unknown"):
            transport.send(SENDER, "gone@example.org", MESSAGE)
        assert transport.send(SENDER, "here@example.org", MESSAGE).startswith("250")
    assert handler.transcript is not None and handler.transcript[4:7] == [
        b".\r\n",
        b"RSET\r\n",
        b"MAIL FROM:<news@example.org>\r\n",
    ]
    assert [(r.rcpt_tos, r.data) for r in handler.received] == [
        (["gone@example.org"], b""),
        (["here@example.org"], MESSAGE),
    ]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_the_wire_sends_pipelined_over_tls_and_starttls_after_a_login(
    security, tmp_path, monkeypatch
):
    """smtplib greets, shakes hands and logs in; the wire then speaks through the TLS
    socket it leaves."""
    certificate = self_signed(tmp_path, "relay", ("127.0.0.1",))
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(*certificate)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # as a system trusts a CA
    smtp._tls_context.cache_clear()
    monkeypatch.setattr(smtp, "_tls_context", functools.cache(smtp._tls_context.__wrapped__))
    handler = Together(pipelining=True)
    tls: dict[str, Any] = {"tls_context": server_side}
    if security == "tls":  # aiosmtpd does not count its implicit TLS as TLS for AUTH
        tls = {"ssl_context": server_side, "auth_require_tls": False}
    login = {"username": "editor", "password": "secret"}
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        ready_timeout=30,
        authenticator=_editor_only,
        **tls,
    )
    controller.start()
    try:
        with SMTPTransport(_smtp(controller.port, security=security, **login)) as transport:
            for n in range(2):
                assert transport.send(SENDER, f"r{n}@example.org", MESSAGE).startswith("250")
    finally:
        controller.stop()
    assert handler.together == [True, True]
    assert [r.rcpt_tos for r in handler.received] == [["r0@example.org"], ["r1@example.org"]]


# -- Postfix's smtp-sink: a C server that advertises PIPELINING ---------------------------

SINK = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin")


@pytest.fixture
def sink() -> Iterator[tuple[int, Path, list[str]]]:
    """smtp-sink on a free port, appending what it receives to a dump file; its options
    go in the list the test fills before the first connection."""
    if SINK is None:
        pytest.skip("Postfix's smtp-sink is not installed (apt-get install postfix)")
    # started as root, smtp-sink writes its dump as nobody: a folder nobody can reach
    with tempfile.TemporaryDirectory() as folder:
        Path(folder).chmod(0o777)
        yield free_port(), Path(folder) / "dump", []


def _start(sink: tuple[int, Path, list[str]]) -> subprocess.Popen[bytes]:
    port, dump, options = sink
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    command = [SINK or "", "-c", *user, "-D", str(dump), *options, f"127.0.0.1:{port}", "16"]
    with (dump.parent / "counters").open("wb") as counters:
        process = subprocess.Popen(command, stdout=counters, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "smtp-sink is not up"
            time.sleep(0.02)


def _counted(sink: tuple[int, Path, list[str]], expected: str) -> str:
    """smtp-sink's running counters once they read `expected`, or after 10 s: it counts
    a session when it has seen the line close (and _start's probe is one)."""
    path, deadline = sink[1].parent / "counters", time.monotonic() + 10
    while expected not in (counters := path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return counters


def test_messages_pipelined_into_smtp_sink_arrive_each_once_in_one_session(sink):
    process = _start(sink)
    try:
        with SMTPTransport(_smtp(sink[0])) as transport:
            transport.open()
            assert transport._wire is not None and transport._wire.pipelining
            for n in range(5):
                assert transport.send(SENDER, f"r{n}@example.org", MESSAGE).startswith("250")
        counters = _counted(sink, "sess=2 quit=1 mesg=5")
    finally:
        process.kill()
        process.wait()
    dump = sink[1].read_bytes()
    assert [dump.count(f"X-Rcpt-Args: <r{n}@example.org>".encode()) for n in range(5)] == [1] * 5
    assert dump.count(b"\n..dotted") == 0 and dump.count(b"\n.dotted") == 5, "stuffed, unstuffed"
    assert "sess=2 quit=1 mesg=5" in counters, counters


def test_recipients_smtp_sink_puts_off_are_deferred_and_the_session_goes_on(sink):
    """Every RCPT put off ("450 4.3.0"): the DATA written with it is refused too, and read
    past; RSET, and the next message on the same connection."""
    sink[2].extend(["-r", "rcpt"])
    process = _start(sink)
    try:
        with SMTPTransport(_smtp(sink[0])) as transport:
            for n in range(3):
                with pytest.raises(TemporaryFailure, match=r"^4\d\d"):
                    transport.send(SENDER, f"r{n}@example.org", MESSAGE)
        counters = _counted(sink, "sess=2 quit=1 mesg=0")
    finally:
        process.kill()
        process.wait()
    assert "sess=2 quit=1 mesg=0" in counters, counters
