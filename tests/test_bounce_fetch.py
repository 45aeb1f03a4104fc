"""Bounces fetched from the [bounces] mailbox over IMAP, against a private Dovecot on
127.0.0.1 (mailer.testing.imap; `.ci/run` installs Debian's dovecot-imapd): the messages
read, moved to the processed folder once dealt with, and every way the mailbox can fail
said plainly."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.bounces.imap import MailboxError, open_mailbox
from mailer.sections_readers import Bounces
from mailer.testing import Mailbox, dovecot_available, imap_server

pytestmark = pytest.mark.skipif(
    not dovecot_available(), reason="Debian's dovecot-imapd is not installed (.ci/run does)"
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Mailbox]:
    with imap_server() as mailbox:
        yield mailbox


@pytest.fixture
def mailbox(dovecot: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """The module's Dovecot with its folders emptied, its certificate trusted as a CA."""
    dovecot.empty("INBOX", "Processed", "Bounces")
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    return dovecot


def note(number: int) -> bytes:
    return (
        f"From: someone@example.org\r\nTo: bounces@example.org\r\nSubject: note {number}\r\n"
        f"Message-ID: <note{number}@example.org>\r\n\r\nbody {number}\r\n"
    ).encode()


def bounces_of(mailbox: Mailbox, **more: object) -> Bounces:
    return Bounces(**mailbox.bounces_section(**more))


def test_the_mailbox_yields_each_message_and_moves_those_dealt_with(mailbox):
    for number in range(3):
        mailbox.append(note(number))
    with open_mailbox(bounces_of(mailbox)) as opened:
        fetched = list(opened.messages())
        assert [item.message for item in fetched] == [note(0), note(1), note(2)]
        assert "MOVE" in opened.capabilities
        opened.move([fetched[0].uid, fetched[2].uid])  # Processed is created for them
    assert mailbox.messages("INBOX") == [note(1)]
    assert mailbox.messages("Processed") == [note(0), note(2)]
    # a server without MOVE: copied, flagged deleted and expunged, nothing else touched
    mailbox.append(note(3))
    with open_mailbox(bounces_of(mailbox, imap_processed_folder="Bounces")) as opened:
        opened.capabilities = opened.capabilities - {"MOVE"}
        fetched = list(opened.messages())
        opened.move([item.uid for item in fetched if item.message == note(3)])
    assert mailbox.messages("INBOX") == [note(1)]
    assert mailbox.messages("Bounces") == [note(3)]
    # STARTTLS on the plain port reads the same folder
    starttls = bounces_of(mailbox, imap_security="starttls", imap_port=mailbox.starttls_port)
    with open_mailbox(starttls) as opened:
        assert [item.message for item in opened.messages()] == [note(1)]


def error_of(bounces: Bounces, timeout: float = 5) -> str:
    with pytest.raises(MailboxError) as failed, open_mailbox(bounces, timeout=timeout):
        pass
    return str(failed.value)


def test_each_way_the_mailbox_fails_says_what_to_check(mailbox, monkeypatch, tmp_path: Path):
    mailbox.append(note(1))
    wrong = error_of(bounces_of(mailbox, imap_password="not-the-password"))
    assert f"127.0.0.1:{mailbox.port} refused the login of 'bounces'" in wrong
    assert "check [bounces] imap_user and MAILER_BOUNCES_IMAP_PASSWORD" in wrong
    assert error_of(bounces_of(mailbox, imap_password="")) == (
        f"no password for 'bounces' at 127.0.0.1:{mailbox.port}: set MAILER_BOUNCES_IMAP_PASSWORD"
    )

    missing = error_of(bounces_of(mailbox, imap_folder="Bounced"))
    assert "there is no folder 'Bounced'" in missing
    assert "INBOX" in missing.partition("set [bounces] imap_folder to one of: ")[2].split(", ")

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
    port = closed.getsockname()[1]
    unreachable = error_of(bounces_of(mailbox, imap_port=port))
    closed.close()
    assert unreachable.startswith(f"cannot reach the IMAP server 127.0.0.1:{port}: ")
    assert "check [bounces] imap_host and imap_port" in unreachable

    wrong_mode = error_of(bounces_of(mailbox, imap_port=mailbox.starttls_port))
    assert f"TLS with 127.0.0.1:{mailbox.starttls_port} failed" in wrong_mode
    assert 'try "starttls"' in wrong_mode

    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    untrusted = error_of(bounces_of(mailbox))
    assert "its certificate is not trusted" in untrusted and "SSL_CERT_FILE" in untrusted

    with socket.socket() as silent:  # takes the connection, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = error_of(bounces_of(mailbox, imap_port=silent.getsockname()[1]), timeout=0.3)
    assert "did not answer within 0.3 s" in quiet

    assert mailbox.messages("INBOX") == [note(1)]  # none of it touched the mailbox
    assert mailbox.messages("Processed") == []
