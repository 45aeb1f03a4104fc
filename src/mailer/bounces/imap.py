"""The [bounces] mailbox over IMAP: log in (IMAPS, or IMAP with STARTTLS), read the
messages of `imap_folder`, and move those that were dealt with to
`imap_processed_folder`, so the next fetch reads only what is new.

The standard library's imaplib is enough for the five commands this needs; the server's
certificate is checked against the system's CAs (or the bundle SSL_CERT_FILE names)."""

from __future__ import annotations

import base64
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from mailer.errors import MailerError
from mailer.sections_readers import Bounces

TIMEOUT_SECONDS = 30.0  # a connection, and each command, gives up after this long
FETCH_BATCH = 50  # messages fetched per command
MOVE_BATCH = 500  # messages moved per command (a UID list well under 8 KB)


class ImapError(MailerError):
    """The bounce mailbox cannot be read: unreachable, refused, or not as configured."""


@dataclass(frozen=True)
class Fetched:
    """One message of the folder: its UID (a number, as text) and its bytes."""

    uid: str
    message: bytes


class BounceMailbox:
    """A logged-in connection with `imap_folder` selected."""

    def __init__(self, connection: imaplib.IMAP4, bounces: Bounces) -> None:
        self.connection = connection
        self.bounces = bounces
        self.where = f"{bounces.imap_host}:{bounces.imap_port}"
        self.capabilities: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """How a bounce read from here names its source."""
        return f"imap:{self.bounces.imap_folder}"

    def uids(self) -> list[str]:
        """The messages in the folder now (not those marked deleted), oldest first."""
        with _server_errors(self.where):
            found = self._ok(self.connection.uid("SEARCH", "UNDELETED"), "list the messages")
        return [uid.decode() for uid in (found[0] if found else b"").split()]

    def messages(self) -> Iterator[Fetched]:
        """Every message in the folder, read without marking it seen."""
        uids = self.uids()
        for start in range(0, len(uids), FETCH_BATCH):
            batch = ",".join(uids[start : start + FETCH_BATCH])
            with _server_errors(self.where):
                data = self._ok(
                    self.connection.uid("FETCH", batch, "(UID BODY.PEEK[])"), "read messages"
                )
            for part in data:
                if isinstance(part, tuple):
                    uid = re.search(rb"UID (\d+)", part[0])
                    if uid is not None:
                        yield Fetched(uid.group(1).decode(), part[1])

    def move(self, uids: Sequence[str]) -> None:
        """Move the messages to the processed folder (created when missing): MOVE when
        the server has it (RFC 6851), else COPY, flag deleted and expunge them; a batch
        at a time, so no command line grows past what a server takes."""
        if not uids:
            return
        target = self.bounces.imap_processed_folder
        with _server_errors(self.where):
            self._create(target)
            for start in range(0, len(uids), MOVE_BATCH):
                self._move(",".join(uids[start : start + MOVE_BATCH]), target)

    def _move(self, numbers: str, target: str) -> None:
        name = quoted_folder(target)
        if "MOVE" in self.capabilities:
            self._ok(self.connection.uid("MOVE", numbers, name), f"move to {target}")
            return
        self._ok(self.connection.uid("COPY", numbers, name), f"copy to {target}")
        flagged = self.connection.uid("STORE", numbers, "+FLAGS.SILENT", r"(\Deleted)")
        self._ok(flagged, "flag the copied messages deleted")
        if "UIDPLUS" in self.capabilities:
            self._ok(self.connection.uid("EXPUNGE", numbers), "expunge the copied messages")
        else:  # removes whatever else is flagged deleted in the folder too
            self._ok(self.connection.expunge(), "expunge the copied messages")

    def _create(self, folder: str) -> None:
        listed = self._ok(self.connection.list('""', quoted_folder(folder)), f"look for {folder}")
        if any(listed):
            return
        status, reply = self.connection.create(quoted_folder(folder))
        if status != "OK":
            raise ImapError(
                f"{self.where}: could not create the folder {folder!r} "
                f"([bounces] imap_processed_folder): {_words(reply)}"
            )

    def _ok(self, response: tuple[str, list[Any]], doing: str) -> list[Any]:
        status, data = response
        if status != "OK":
            raise ImapError(f"{self.where}: the server would not {doing}: {_words(data)}")
        return [item for item in data if item is not None]


def check_mailbox(bounces: Bounces) -> None:
    """An ImapError unless a mailbox and its password are configured."""
    if not bounces.imap_host:
        raise ImapError(
            "no bounce mailbox is configured: set [bounces] imap_host and imap_user "
            "(and MAILER_BOUNCES_IMAP_PASSWORD)"
        )
    if not bounces.imap_password:
        raise ImapError(
            f"no password for {bounces.imap_user!r} at {bounces.imap_host}:{bounces.imap_port}: "
            "set MAILER_BOUNCES_IMAP_PASSWORD"
        )
    if bounces.imap_processed_folder == bounces.imap_folder:
        raise ImapError(
            f"[bounces] imap_processed_folder is imap_folder ({bounces.imap_folder!r}): "
            "what was read would be read again each time; name another folder"
        )


@contextmanager
def open_mailbox(bounces: Bounces, timeout: float = TIMEOUT_SECONDS) -> Iterator[BounceMailbox]:
    """Log in to the [bounces] mailbox and select `imap_folder`; log out afterwards.
    Every way this fails is an ImapError saying what to check."""
    where = f"{bounces.imap_host}:{bounces.imap_port}"
    check_mailbox(bounces)
    connection = _connect(bounces, timeout)
    try:
        mailbox = BounceMailbox(connection, bounces)
        with _server_errors(where):
            _login(mailbox)
            _select(mailbox)
        yield mailbox
    finally:
        _logout(connection)


@contextmanager
def _server_errors(where: str) -> Iterator[None]:
    """A dropped connection, a time-out or an unexpected answer, as an ImapError."""
    try:
        yield
    except imaplib.IMAP4.abort as exc:
        raise ImapError(f"{where}: the IMAP connection was lost: {exc}") from None
    except imaplib.IMAP4.error as exc:
        raise ImapError(f"{where}: the IMAP server answered in error: {exc}") from None
    except TimeoutError:
        raise ImapError(f"{where}: the IMAP server stopped answering") from None
    except OSError as exc:
        raise ImapError(f"{where}: the IMAP connection failed: {exc}") from None


def _login(mailbox: BounceMailbox) -> None:
    bounces, connection = mailbox.bounces, mailbox.connection
    try:
        connection.login(bounces.imap_user, bounces.imap_password)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise ImapError(
            f"{mailbox.where} refused the login of {bounces.imap_user!r} ({_said(exc)}); "
            "check [bounces] imap_user and MAILER_BOUNCES_IMAP_PASSWORD"
        ) from None
    # what a server offers after login (MOVE, UIDPLUS) is often more than before it
    _, reply = connection.capability()
    words = b" ".join(item for item in reply if isinstance(item, bytes)).decode("ascii", "replace")
    mailbox.capabilities = frozenset(words.upper().split()) | set(connection.capabilities)


def _connect(bounces: Bounces, timeout: float) -> imaplib.IMAP4:
    host, port = bounces.imap_host, bounces.imap_port
    where = f"{host}:{port}"
    context = ssl.create_default_context()
    try:
        if bounces.imap_security == "tls":
            return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        connection = imaplib.IMAP4(host, port, timeout=timeout)
        try:
            connection.starttls(context)
        except imaplib.IMAP4.error as exc:
            _logout(connection)
            raise ImapError(
                f"{where} does not offer STARTTLS ({exc}); if it is an IMAPS port (993), "
                'set [bounces] imap_security = "tls"'
            ) from None
        except BaseException:
            _logout(connection)
            raise
        return connection
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(
            f"TLS with {where} failed: its certificate is not trusted ({exc.verify_message}); "
            "check [bounces] imap_host is the name on the certificate, or trust its CA "
            "(SSL_CERT_FILE)"
        ) from None
    except ssl.SSLError as exc:
        other = "starttls" if bounces.imap_security == "tls" else "tls"
        raise ImapError(
            f"TLS with {where} failed ({exc.reason or exc}); is [bounces] imap_security "
            f'right ("tls" for IMAPS, usually port 993; "starttls" for 143)? try "{other}"'
        ) from None
    except TimeoutError:
        raise ImapError(
            f"{where} did not answer within {timeout:g} s; check [bounces] imap_host, "
            'imap_port and imap_security ("tls" for 993, "starttls" for 143)'
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImapError(
            f"cannot reach the IMAP server {where}: {reason}; check [bounces] imap_host "
            "and imap_port"
        ) from None


def _select(mailbox: BounceMailbox) -> None:
    folder = mailbox.bounces.imap_folder
    status, reply = mailbox.connection.select(quoted_folder(folder))
    if status == "OK":
        return
    _, listed = mailbox.connection.list()
    names = sorted(_folder_name(item) for item in listed if isinstance(item, bytes))
    raise ImapError(
        f"{mailbox.where}: there is no folder {folder!r} ({_words(reply)}); set "
        f"[bounces] imap_folder to one of: {', '.join(names) or 'none listed'}"
    )


def _folder_name(listed: bytes) -> str:
    """The name in a LIST reply line: (\\Flags) "/" "Name" (or Name, unquoted)."""
    text = listed.decode("utf-8", "replace")
    match = re.search(r'"((?:[^"\\]|\\.)*)"\s*$', text)
    name = match.group(1).replace('\\"', '"') if match else text.rsplit(" ", 1)[-1]
    return _decoded(name)


def _logout(connection: imaplib.IMAP4) -> None:
    with suppress(imaplib.IMAP4.error, OSError):
        connection.logout()


def quoted_folder(folder: str) -> str:
    """A folder's name as IMAP commands take it: modified UTF-7 (RFC 3501 5.1.3, so
    "Søppelpost" or "Returnert ✓" work), quoted."""

    def run(match: re.Match[str]) -> str:
        packed = base64.b64encode(match.group().encode("utf-16-be")).decode("ascii")
        return "&" + packed.rstrip("=").replace("/", ",") + "-"

    name = re.sub(r"[^\x20-\x7e]+", run, folder.replace("&", "&-"))
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decoded(name: str) -> str:
    """A folder's name from modified UTF-7, as a person reads it."""

    def run(match: re.Match[str]) -> str:
        packed = match.group(1).replace(",", "/")
        if not packed:
            return "&"
        return base64.b64decode(packed + "=" * (-len(packed) % 4)).decode("utf-16-be", "replace")

    return re.sub(r"&([^-]*)-", run, name)


def _said(error: imaplib.IMAP4.error) -> str:
    """The server's words in an imaplib error (which shows them as bytes: b'...')."""
    text = str(error)
    quoted = re.fullmatch(r"b(['\"])(.*)\1", text, re.DOTALL)
    return quoted.group(2) if quoted else text


def _words(data: Sequence[object]) -> str:
    """The server's own words from a reply, as text."""
    parts = [
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        for item in data
        if item is not None
    ]
    return " ".join(parts).strip() or "no reason given"
