"""SMTP transport: one connection, reused across messages, in the configured security
mode. It sends one message and says what happened: a dropped connection or a time-out
is temporary; what a reply means is decided by the table in replies.py. smtplib opens
and greets the connection; the messages go over smtpwire.Wire, pipelined (RFC 2920)
where the server advertises PIPELINING."""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
from collections.abc import Callable
from types import TracebackType

from mailer.errors import DeliveryError
from mailer.replies import Stage, Verdict, classify
from mailer.settings import SMTP_DATA_TIMEOUT, Smtp
from mailer.smtpwire import KEPT, Wire

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

    def __init__(self, stage: Stage, code: int, message: bytes | str, closing: bool = False):
        super().__init__(stage, code)
        self.stage, self.code, self.reply = stage, code, _reply(code, message)
        # 421: the server is closing the connection; or it went while we read on
        self.closing = closing or code == 421


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    reply = f"{code} {' '.join(text.split())}"
    return reply if len(reply) <= KEPT else reply[: KEPT - 1] + "…"


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


class SMTPTransport:
    """Sends messages over one SMTP connection, opened on first use, reopened after a
    drop and renewed after max_messages_per_connection messages; use it as a context
    manager so the connection is closed with QUIT."""

    def __init__(self, settings: Smtp, local_hostname: str = "localhost"):
        self.settings = settings
        self.local_hostname = local_hostname
        self._wire: Wire | None = None
        self._messages = 0  # on the current connection
        # Called with the whole message written but its final dot not yet: the send loop
        # waits there for the previous message's outcome to be on record, so the
        # database lags the server by one message at most while the body is on its way.
        # Whatever it raises abandons the message: the connection is dropped mid-DATA,
        # which a server takes as no message.
        self.before_final_dot: Callable[[], None] | None = None

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
        """Connect now rather than on the first message (raises ConnectionFailure); a
        connection the server has closed meanwhile is replaced."""
        if self._wire is not None and self._wire.hung_up():
            self._drop()
        if self._wire is None:
            self._wire = Wire(self._connect())
            self._messages = 0

    def close(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.quit()

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
        assert self._wire is not None
        self._messages += 1
        try:
            reply = self._transaction(self._wire, sender, recipient, data)
        except _Refused as refused:
            failure = self._failure(refused, sender)
            self._reset(closing=refused.closing)
            raise failure from None
        except OSError as exc:
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

    def _transaction(self, wire: Wire, sender: str, recipient: str, data: bytes) -> str:
        # MAIL and RCPT as they are: smtplib would parse both addresses again for every
        # message, and ours are checked and normalised when stored
        commands = _commands(sender, recipient)
        if wire.pipelining:
            wire.write(b"".join(commands))
            _pipelined_replies(wire)
        else:
            for command, (stage, accepted) in zip(commands, _EXPECTED, strict=True):
                code, message = wire.command(command)
                if code not in accepted:
                    raise _Refused(stage, code, message)
        code, message = self._data(wire, data)
        if 200 <= code < 300:  # delivered, whatever else the reply says
            return _reply(code, message)
        raise _Refused(Stage.DATA, code, message)

    def _data(self, wire: Wire, data: bytes) -> tuple[int, bytes]:
        """The message after DATA's 354, with dot-stuffing by bytes.replace: the message
        is CRLF throughout and starts with a header, never with a dot. The reply after
        the final dot may take the server long (SMTP_DATA_TIMEOUT)."""
        ending = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
        wire.settimeout(max(self.settings.timeout, SMTP_DATA_TIMEOUT))
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        if self.before_final_dot is None:
            wire.write(stuffed + ending)
        else:
            wire.write(stuffed)
            try:
                self.before_final_dot()
            except BaseException:
                self._drop()
                raise
            wire.write(ending)
        reply = wire.reply()
        wire.settimeout(self.settings.timeout)
        return reply

    def _reset(self, closing: bool) -> None:
        """After a refusal, clear the transaction so the connection can be reused."""
        if closing:
            self._drop()  # 421: the server is closing the connection
            return
        try:
            assert self._wire is not None
            code, _ = self._wire.command(b"RSET\r\n")
        except OSError:
            code = 0
        if code != 250:  # not in step with the server: a new connection for the next
            self._drop()

    def _drop(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()


# each command of a transaction up to the message, and the replies that let it go on
_EXPECTED = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))
_STAGES = [stage for stage, _ in _EXPECTED]


def _commands(sender: str, recipient: str) -> tuple[bytes, bytes, bytes]:
    if "\r" in sender or "\n" in sender or "\r" in recipient or "\n" in recipient:
        raise ValueError("command and arguments contain prohibited newline characters")
    return (
        f"MAIL FROM:<{sender}>\r\n".encode("ascii"),
        f"RCPT TO:<{recipient}>\r\n".encode("ascii"),
        b"DATA\r\n",
    )


def _pipelined_replies(wire: Wire) -> None:
    """The replies to MAIL, RCPT and DATA written together (RFC 2920). The first refusal
    is what counts; the replies after it are read all the same so the next command's
    reply is its own, and a DATA a server took without a recipient ends with a lone
    dot. A 421, or the line going, after a refusal: the connection is done."""
    refused: _Refused | None = None
    for stage, accepted in _EXPECTED:
        code, message = wire.reply()
        if code not in accepted:
            refused = _Refused(stage, code, message)
            break
    if refused is None:
        return
    if not refused.closing:
        try:
            _rest_of_refused(wire, refused)
        except OSError:
            refused.closing = True
    raise refused


def _rest_of_refused(wire: Wire, refused: _Refused) -> None:
    for stage, _ in _EXPECTED[_STAGES.index(refused.stage) + 1 :]:
        code, _message = wire.reply()
        if code == 421:
            refused.closing = True
            return
        if stage == Stage.DATA and code == 354:  # RFC 2920 3.1: taken with nobody to send to
            wire.command(b".\r\n")
