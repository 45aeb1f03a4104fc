"""SMTP transport: one connection, reused across messages, in the configured security
mode. It sends one message and says what happened: a dropped connection or a time-out
is temporary; what a reply means is decided by the table in replies.py."""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
from types import TracebackType

from mailer.errors import DeliveryError
from mailer.replies import Stage, Verdict, classify
from mailer.settings import SMTP_DATA_TIMEOUT, Smtp

# smtplib refuses a reply line longer than this; a relay may still have accepted the
# message (a 250 with a long queue id or diagnostics): read it, and keep the start.
_MAXLINE = 8192
_KEPT = 1000  # characters of a reply kept for the record
# a VERP envelope sender ([bounces] address, tokens.verp_address): +, a kind letter and
# 18 or more characters of lower-case base32 before the @
_VERP_SENDER = re.compile(r"\+[dtu][a-z2-7]{18,39}@")


class TemporaryFailure(Exception):
    """Try again later: a 4xx reply, or the connection failed or dropped."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class ConnectionFailure(TemporaryFailure):
    """No connection could be made: nothing can be sent until the server is back."""


class PermanentFailure(Exception):
    """A 5xx reply about this recipient: this message to them will never be accepted.
    The verdict (replies.py) says whether it counts against the reader."""

    def __init__(self, reply: str, verdict: Verdict):
        super().__init__(reply)
        self.reply = reply
        self.verdict = verdict

    @property
    def bounce(self) -> bool:
        """The address does not exist: the reader is marked bounced at once."""
        return self.verdict == Verdict.BOUNCE


class ContentRefused(DeliveryError):
    """The relay refused the message itself (spam, policy, size), not one reader: every
    reader would get the same refusal, so the send stops and counts against nobody."""

    def __init__(self, reply: str):
        super().__init__(f"the relay refused the message itself, not a reader: {reply}")
        self.reply = reply


class _Refused(Exception):
    """A reply other than the one hoped for, at a stage of the transaction."""

    def __init__(self, stage: Stage, code: int, message: bytes | str):
        super().__init__(stage, code)
        self.stage, self.code, self.reply = stage, code, _reply(code, message)


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    reply = f"{code} {' '.join(text.split())}"
    return reply if len(reply) <= _KEPT else reply[: _KEPT - 1] + "…"


def _refuses_return_path(refused: _Refused, sender: str) -> bool:
    """A VERP sender refused as a sender: at MAIL, or later in words (Postfix's
    reject_sender_login_mismatch answers at RCPT)."""
    if not _VERP_SENDER.search(sender):
        return False
    return refused.stage == Stage.MAIL or "sender" in refused.reply.lower()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # loading the system's certificates takes tens of milliseconds: once per process
    return ssl.create_default_context()


def _command(connection: smtplib.SMTP, verb: str, argument: str = "") -> tuple[int, bytes]:
    connection.putcmd(verb, argument)  # refuses CR and LF in the line
    return _getreply(connection)


def _getreply(connection: smtplib.SMTP) -> tuple[int, bytes]:
    """smtplib's getreply, except that a line longer than its limit is cut short rather
    than refused with a made-up "500 Line too long": the relay's code still counts."""
    if connection.file is None:
        assert connection.sock is not None
        connection.file = connection.sock.makefile("rb")
    lines: list[bytes] = []
    while True:
        line = _readline(connection)
        if sum(map(len, lines)) < _KEPT:
            lines.append(line[4:].strip(b" \t\r\n"))
        try:
            code = int(line[:3])
        except ValueError:
            return -1, b"\n".join(lines)
        if line[3:4] != b"-":
            return code, b"\n".join(lines)


def _readline(connection: smtplib.SMTP) -> bytes:
    """One line of a reply: the first _MAXLINE bytes of it, the rest read and dropped."""
    assert connection.file is not None
    line: bytes = connection.file.readline(_MAXLINE + 1)
    rest = line
    while len(rest) > _MAXLINE and not rest.endswith(b"\n"):
        rest = connection.file.readline(_MAXLINE + 1)
    if not line or not rest:
        connection.close()
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
    return line


class SMTPTransport:
    """Sends messages over one SMTP connection, opened on first use, reopened after a
    drop and renewed after max_messages_per_connection messages; use it as a context
    manager so the connection is closed with QUIT."""

    def __init__(self, settings: Smtp, local_hostname: str = "localhost"):
        self.settings = settings
        self.local_hostname = local_hostname
        self._connection: smtplib.SMTP | None = None
        self._messages = 0  # on the current connection

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect now rather than on the first message (raises ConnectionFailure)."""
        if self._connection is None:
            self._connection = self._connect()
            self._messages = 0

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = _tls_context() if s.security != "none" else None
        try:
            if s.security == "tls":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, self.local_hostname, timeout=s.timeout, context=context
                )
            else:
                connection = smtplib.SMTP(s.host, s.port, self.local_hostname, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionFailure(f"cannot connect to {self.address}: {exc}") from None
        try:
            self._greet(connection, context)
        except BaseException:
            connection.close()
            raise
        return connection

    def _greet(self, connection: smtplib.SMTP, context: ssl.SSLContext | None) -> None:
        s = self.settings
        try:
            self._hello(connection)
            if s.security == "starttls":
                connection.starttls(context=context)
                self._hello(connection)
            if s.username:
                connection.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP server {self.address} refused the login of {s.username!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}; check [smtp] username and "
                "MAILER_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(
                f"SMTP server {self.address}: {exc}; check [smtp] security"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionFailure(f"cannot connect to {self.address}: {exc}") from None

    def _hello(self, connection: smtplib.SMTP) -> None:
        """EHLO, or HELO for a server without ESMTP. smtplib returns a refusal rather than
        raising it: a 421 here ("too many connections") means this connection is not to be."""
        code, message = connection.ehlo()
        if 500 <= code < 600:
            code, message = connection.helo()
        if code == 250:
            return
        reply = _reply(code, message)
        if classify(Stage.GREETING, code, reply) == Verdict.STOP:
            raise DeliveryError(
                f"SMTP server {self.address} refused our greeting: {reply}; check [smtp] host "
                "and port"
            )
        raise ConnectionFailure(f"SMTP server {self.address} turned the connection away: {reply}")

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        """Send one message; return the server's reply, or raise what the reply means
        (replies.py): TemporaryFailure or PermanentFailure for this recipient;
        ContentRefused when the relay refuses the message itself; DeliveryError when it
        refuses our sender or login, which concerns every message."""
        self.open()
        assert self._connection is not None
        self._messages += 1
        try:
            reply = self._transaction(self._connection, sender, recipient, data)
        except _Refused as refused:
            failure = self._failure(refused, sender)
            self._reset(closing=refused.code == 421)
            raise failure from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection to {self.address} lost: {exc}") from None
        else:
            if self._messages >= self.settings.max_messages_per_connection:
                self.close()  # relays limit messages per connection; start a fresh one
            return reply

    def _failure(self, refused: _Refused, sender: str) -> Exception:
        """The exception that says what the table makes of a refusal."""
        verdict, reply = classify(refused.stage, refused.code, refused.reply), refused.reply
        if verdict == Verdict.DEFERRED and refused.stage == Stage.MAIL:
            # every message would be put off alike: this connection stops for now
            return ConnectionFailure(
                f"SMTP server {self.address} put off the sender for now: {reply}"
            )
        if verdict in (Verdict.DEFERRED, Verdict.SENT):  # SENT: a 2xx where none belongs
            return TemporaryFailure(reply)
        if verdict == Verdict.CONTENT:
            return ContentRefused(reply)
        if verdict == Verdict.STOP and _refuses_return_path(refused, sender):
            return DeliveryError(
                f"SMTP server {self.address} refused the return path {sender} ([bounces] "
                f"address): {reply}; some submission services accept no envelope sender but "
                "the login's own address: send through a relay that accepts it from an "
                "authenticated client, such as Postfix, or leave [bounces] address empty"
            )
        if verdict == Verdict.STOP and refused.stage == Stage.MAIL:
            return DeliveryError(
                f"SMTP server {self.address} refused the sender {sender}: {reply}; check "
                "[smtp] username, MAILER_SMTP_PASSWORD and [publication] from_address"
            )
        if verdict == Verdict.STOP:
            return DeliveryError(
                f"SMTP server {self.address} refused the message from {sender} for a reason "
                f"every recipient would get: {reply}; check [smtp] username, "
                "MAILER_SMTP_PASSWORD and [publication] from_address"
            )
        return PermanentFailure(reply, verdict)

    def _transaction(
        self, connection: smtplib.SMTP, sender: str, recipient: str, data: bytes
    ) -> str:
        # MAIL and RCPT by hand: smtplib parses both addresses again for every message
        # (a fifth of its time), and ours are checked and normalised when stored
        code, message = _command(connection, "mail", f"FROM:<{sender}>")
        if code != 250:
            raise _Refused(Stage.MAIL, code, message)
        code, message = _command(connection, "rcpt", f"TO:<{recipient}>")
        if code not in (250, 251):
            raise _Refused(Stage.RCPT, code, message)
        code, message = self._data(connection, data)
        if 200 <= code < 300:  # delivered, whatever else the reply says
            return _reply(code, message)
        raise _Refused(Stage.DATA, code, message)

    def _data(self, connection: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
        """DATA, with dot-stuffing by bytes.replace rather than smtplib's regex: the
        message is CRLF throughout and starts with a header, never with a dot."""
        code, message = _command(connection, "data")
        if code != 354:
            raise _Refused(Stage.DATA, code, message)
        ending = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
        if connection.sock is not None:
            connection.sock.settimeout(max(self.settings.timeout, SMTP_DATA_TIMEOUT))
        connection.send(data.replace(b"\r\n.", b"\r\n..") + ending)
        reply = _getreply(connection)
        if connection.sock is not None:
            connection.sock.settimeout(self.settings.timeout)
        return reply

    def _reset(self, closing: bool) -> None:
        """After a refusal, clear the transaction so the connection can be reused."""
        if closing:
            self._drop()  # 421: the server is closing the connection
            return
        try:
            assert self._connection is not None
            self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
