"""SMTP transport: one connection, reused across messages, in the configured security
mode. It sends one message and says what happened, classifying every failure:
temporary (4xx, a refused or dropped connection, a time-out) or permanent (5xx)."""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
from types import TracebackType

from mailer.errors import DeliveryError
from mailer.settings import SMTP_DATA_TIMEOUT, Smtp

# RFC 3463 codes. A bounce: the recipient's address does not exist (5.1.1 bad mailbox,
# 5.1.2 bad domain, 5.1.3 bad syntax, 5.1.6 moved, 5.1.10 null MX); without an enhanced
# code, the wording of a 550/551/553 reply. A policy refusal (spam, 5.7.x) is no bounce.
_ENHANCED = re.compile(r"^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b")
_BOUNCE_CODES = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10)}
_NO_SUCH_USER = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
    r"mailbox (unavailable|not found)|invalid (recipient|mailbox)",
    re.IGNORECASE,
)
# Refusals of our sender, login or message rather than of one recipient: every message
# would get them (5.1.7/5.1.8 bad sender, 5.3.4 too big, 5.5.x protocol, 5.7.0/5.7.8/
# 5.7.9 authentication, and relaying or sender wording without such a code).
_SENDER_CODES = {(1, 7), (1, 8), (3, 4), (7, 0), (7, 8), (7, 9)}
_SENDER_WORDING = re.compile(
    r"relay(ing)? (access )?(denied|not permitted)|authentication required|"
    r"sender address rejected|message size exceeds|too large",
    re.IGNORECASE,
)


class TemporaryFailure(Exception):
    """Try again later: a 4xx reply, or the connection failed or dropped."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class ConnectionFailure(TemporaryFailure):
    """No connection could be made: nothing can be sent until the server is back."""


class PermanentFailure(Exception):
    """A 5xx reply: this message to this recipient will never be accepted."""

    def __init__(self, reply: str, bounce: bool):
        super().__init__(reply)
        self.reply = reply
        self.bounce = bounce


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


def _failure(code: int, message: bytes | str) -> TemporaryFailure | PermanentFailure:
    reply = _reply(code, message)
    if 400 <= code < 500 or code < 200:
        return TemporaryFailure(reply)
    return PermanentFailure(reply, bounce=is_bounce(code, reply))


def _enhanced(reply: str) -> tuple[int, int] | None:
    found = _ENHANCED.match(reply)
    return (int(found.group(2)), int(found.group(3))) if found else None


def is_bounce(code: int, reply: str) -> bool:
    """Does a permanent failure say the recipient's address does not exist?"""
    enhanced = _enhanced(reply)
    if enhanced is not None:
        return enhanced in _BOUNCE_CODES
    return code in (550, 551, 553) and bool(_NO_SUCH_USER.search(reply))


def blames_sender(code: int, reply: str) -> bool:
    """Does a permanent failure refuse our sender, login or message, so that every
    recipient would get it too?"""
    enhanced = _enhanced(reply)
    if enhanced is not None and (enhanced in _SENDER_CODES or enhanced[0] == 5):
        return True
    return code in (530, 535) or bool(_SENDER_WORDING.search(reply))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # loading the system's certificates takes tens of milliseconds: once per process
    return ssl.create_default_context()


def _command(connection: smtplib.SMTP, verb: str, argument: str = "") -> tuple[int, bytes]:
    connection.putcmd(verb, argument)  # refuses CR and LF in the line
    return connection.getreply()


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
        if code != 250:
            raise ConnectionFailure(
                f"SMTP server {self.address} turned the connection away: {_reply(code, message)}"
            )

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        """Send one message; return the server's reply, or raise TemporaryFailure or
        PermanentFailure for this recipient. A refused sender concerns every message:
        that raises DeliveryError."""
        self.open()
        assert self._connection is not None
        self._messages += 1
        try:
            reply = self._transaction(self._connection, sender, recipient, data)
        except smtplib.SMTPResponseException as exc:
            code, failure = exc.smtp_code, _failure(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection to {self.address} lost: {exc}") from None
        else:
            if self._messages >= self.settings.max_messages_per_connection:
                self.close()  # relays limit messages per connection; start a fresh one
            return reply
        self._reset(failure)
        if isinstance(failure, PermanentFailure) and blames_sender(code, failure.reply):
            raise DeliveryError(
                f"SMTP server {self.address} refused the message from {sender} for a reason "
                f"every recipient would get: {failure.reply}; check [smtp] username, "
                "MAILER_SMTP_PASSWORD and [publication] from_address"
            )
        raise failure

    def _transaction(
        self, connection: smtplib.SMTP, sender: str, recipient: str, data: bytes
    ) -> str:
        # MAIL and RCPT by hand: smtplib parses both addresses again for every message
        # (a fifth of its time), and ours are checked and normalised when stored
        code, message = _command(connection, "mail", f"FROM:<{sender}>")
        if 400 <= code < 500:
            self._reset(_failure(code, message))
            raise ConnectionFailure(
                f"SMTP server {self.address} put off the sender for now: {_reply(code, message)}"
            )
        if code >= 500:
            self._reset(None)
            raise DeliveryError(
                f"SMTP server {self.address} refused the sender {sender}: "
                f"{_reply(code, message)}; check [smtp] username, MAILER_SMTP_PASSWORD and "
                "[publication] from_address"
            )
        if code == 250:
            code, message = _command(connection, "rcpt", f"TO:<{recipient}>")
        if code in (250, 251):
            code, message = self._data(connection, data)
        if code == 250:
            return _reply(code, message)
        raise smtplib.SMTPResponseException(code, message)

    def _data(self, connection: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
        """DATA, with dot-stuffing by bytes.replace rather than smtplib's regex: the
        message is CRLF throughout and starts with a header, never with a dot."""
        code, message = _command(connection, "data")
        if code != 354:
            raise smtplib.SMTPDataError(code, message)
        ending = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
        if connection.sock is not None:
            connection.sock.settimeout(max(self.settings.timeout, SMTP_DATA_TIMEOUT))
        connection.send(data.replace(b"\r\n.", b"\r\n..") + ending)
        reply = connection.getreply()
        if connection.sock is not None:
            connection.sock.settimeout(self.settings.timeout)
        return reply

    def _reset(self, failure: Exception | None) -> None:
        """After a refusal, clear the transaction so the connection can be reused."""
        if isinstance(failure, TemporaryFailure) and failure.reply.startswith("421"):
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
