"""The wire under the SMTP transport (smtp.py): once smtplib has greeted the server
(EHLO, STARTTLS, AUTH, once per connection), the message loop writes commands straight
to the socket and reads replies from a buffer of its own. smtplib's command and reply
handling cost a third of a send's CPU; here a message is two writes and a few reads,
and where the server advertises PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one.

Replies are read as smtplib reads them, except that a line longer than it allows is cut
short rather than refused with a made-up "500 Line too long": the relay's code counts."""

from __future__ import annotations

import select
import smtplib
import socket

# smtplib refuses a reply line longer than this; a relay may still have accepted the
# message (a 250 with a long queue id or diagnostics): read it, and keep the start.
MAXLINE = 8192
KEPT = 1000  # characters of a reply kept for the record
_CHUNK = 65536


class Closed(OSError):
    """The server closed the connection."""

    def __init__(self) -> None:
        super().__init__("Connection unexpectedly closed")


class Wire:
    """One greeted SMTP connection: write commands, read replies. It takes over the
    socket of the smtplib connection that greeted the server, and closes it."""

    def __init__(self, greeted: smtplib.SMTP):
        assert greeted.sock is not None
        self._greeted = greeted
        self._sock: socket.socket = greeted.sock
        # Each write is a whole step (commands, a body, a final dot) to be answered: with
        # Nagle's algorithm a final dot written after its body would wait for the ACK of
        # the body, which the server delays (40 ms on Linux)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""  # read and not yet taken: the start of the next reply
        self.pipelining = "pipelining" in greeted.esmtp_features
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)

    def hung_up(self) -> bool:
        """Has the server spoken or closed while nothing was asked of it? A relay closes
        a connection idle too long (Postfix after 300 s, with a 421 first): the next
        command would read that 421, or a closed socket, as its own reply."""
        pending = getattr(self._sock, "pending", None)  # TLS: decrypted, not yet read
        return bool(self._buffer or (pending and pending()) or self._poll.poll(0))

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def settimeout(self, seconds: float) -> None:
        self._sock.settimeout(seconds)

    def reply(self) -> tuple[int, bytes]:
        """The next reply: its code (-1 if the server sent no code) and its lines' text,
        joined by newlines, as much as KEPT allows."""
        lines: list[bytes] = []
        kept = 0
        while True:
            line = self._line()
            if kept < KEPT:
                text = line[4:].strip(b" \t\r\n")
                lines.append(text)
                kept += len(text)
            try:
                code = int(line[:3])
            except ValueError:
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return code, b"\n".join(lines)

    def _line(self) -> bytes:
        """One line of a reply: the first MAXLINE bytes of it, the rest read and dropped."""
        head: bytes | None = None
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAXLINE:
                head = head if head is not None else self._buffer[: MAXLINE + 1]
                self._buffer = b""
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                self.close()
                raise Closed
            self._buffer += chunk
        line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return head if head is not None else line

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.write(line)
        return self.reply()

    def quit(self) -> None:
        """QUIT, then close; a server already gone is closed all the same."""
        try:
            self.command(b"QUIT\r\n")
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._greeted.close()  # its reader of the greeting, then the socket
