"""Bounces fetched from the [bounces] mailbox over IMAP, against a private Dovecot on
127.0.0.1 (mailer.testing.imap; `.ci/run` installs Debian's dovecot-imapd): the messages
read, moved to the processed folder once dealt with, and every way the mailbox can fail
said plainly."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer import bounce_fetching
from mailer.bounce_fetching import fetch_bounces
from mailer.bounce_processing import process_message
from mailer.bounces.imap import ImapError, open_mailbox
from mailer.cli import main
from mailer.models import BounceEvent, Delivery, Subscriber
from mailer.runs import send_article
from mailer.scheduler import BOUNCES_JOB, Service, bounces_job, install_jobs, make_scheduler
from mailer.sections_readers import Bounces
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import (
    TEST_SECRET_KEY,
    Mailbox,
    dovecot_available,
    imap_server,
    new_issue,
    run_mailer,
)

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
    dovecot.empty("INBOX", "Processed", RETURNED)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    return dovecot


RETURNED = "Returnert – ferdig"  # a folder name beyond ASCII (modified UTF-7 on the wire)


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
    with open_mailbox(bounces_of(mailbox, imap_processed_folder=RETURNED)) as opened:
        opened.capabilities = opened.capabilities - {"MOVE"}
        fetched = list(opened.messages())
        opened.move([item.uid for item in fetched if item.message == note(3)])
    assert mailbox.messages("INBOX") == [note(1)]
    assert mailbox.messages(RETURNED) == [note(3)]
    # STARTTLS on the plain port reads the same folder
    starttls = bounces_of(mailbox, imap_security="starttls", imap_port=mailbox.starttls_port)
    with open_mailbox(starttls) as opened:
        assert [item.message for item in opened.messages()] == [note(1)]


def error_of(bounces: Bounces, timeout: float = 5) -> str:
    with pytest.raises(ImapError) as failed, open_mailbox(bounces, timeout=timeout):
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

    same = error_of(bounces_of(mailbox, imap_processed_folder="INBOX"))
    assert same.startswith("[bounces] imap_processed_folder is imap_folder ('INBOX')")

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


# --- the fetch: read, applied, moved ------------------------------------------------

ANA, BEN = "ana@example.org", "ben@example.org"


def dsn(recipient: str, number: int = 1, to: str = "bounces@example.org") -> bytes:
    """A delivery report (RFC 3464) as Postfix writes one, sent to `to` (the envelope
    sender of the message that failed): `recipient` does not exist."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender {number}\r\n"
        "Date: Mon, 30 Nov 2026 08:00:00 +0000\r\n"
        f"Message-ID: <dsn{number}@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.example.net.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"<{recipient}>: host mx.example.net said: 550 5.1.1 User unknown\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: "
        "User unknown\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: News <news@example.org>\r\nSubject: The issue\r\n"
        "\r\n--B--\r\n"
    ).encode()


GARBAGE = b"\xff\xfe garbage \x81 with no header at all\r\n\xc3\x28\r\n"  # (IMAP has no NULs)


def status_of(engine: Engine, address: str) -> str:
    with Session(engine) as session:
        found = session.exec(select(Subscriber).where(Subscriber.email == address)).one()
        return found.status


def events_of(engine: Engine) -> list[BounceEvent]:
    with Session(engine) as session:
        return list(session.exec(select(BounceEvent)).all())


@pytest.fixture
def fetching(mailbox: Mailbox, settings: Settings, engine: Engine) -> Settings:
    """The settings with the mailbox as [bounces]; Ana and Ben on the list."""
    add_subscriber(engine, ANA, "Ana", confirmed=True)
    add_subscriber(engine, BEN, "Ben", confirmed=True)
    return settings.replace(bounces=mailbox.bounces_section())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_fetch_applies_each_bounce_and_moves_it_once(mailbox, fetching, engine):
    mailbox.append(dsn(ANA))
    mailbox.append(GARBAGE)
    mailbox.append(note(1))  # a mail that is no bounce: read, said so, moved too
    fetched = fetch_bounces(engine, fetching)
    assert (fetched.report.messages, fetched.moved, fetched.report.bounced) == (3, 3, 1)
    said = [(line.recipient, line.kind, line.reason) for line in fetched.report.lines]
    assert said[1:] == [
        ("", "ignored", "unreadable: no mail headers"),
        ("", "ignored", "not a bounce"),
    ]
    assert said[0][:2] == (ANA, "hard") and said[0][2].endswith("User unknown: bounced")
    uid = fetched.report.lines[0].source  # "UID 7": the message's place in the folder
    assert uid.startswith("UID ")
    assert (status_of(engine, ANA), status_of(engine, BEN)) == ("bounced", "active")
    [event] = events_of(engine)
    assert (event.kind, event.status, event.source) == ("hard", "5.1.1", f"imap:INBOX {uid}")
    assert mailbox.messages("INBOX") == []
    assert mailbox.messages("Processed") == [dsn(ANA), GARBAGE, note(1)]

    again = fetch_bounces(engine, fetching)  # nothing new: nothing read, nothing changed
    assert (again.report.messages, again.moved, again.report.lines) == (0, 0, [])

    # the same report left in the folder (moved by hand, or a crash after its commit)
    # is read again and counts nothing twice
    mailbox.append(dsn(ANA))
    third = fetch_bounces(engine, fetching)
    assert [line.reason.endswith("counted already") for line in third.report.lines] == [True]
    assert (third.moved, len(events_of(engine))) == (1, 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_fetch_that_stops_half_way_moves_only_what_was_applied(
    mailbox, fetching, engine, monkeypatch
):
    applied = []

    def stops_after_one(*args):  # the real work, then the power goes
        if applied:
            raise KeyboardInterrupt
        applied.append(process_message(*args))

    monkeypatch.setattr(bounce_fetching, "process_message", stops_after_one)
    mailbox.append(dsn(ANA, 1))
    mailbox.append(dsn(BEN, 2))
    with pytest.raises(KeyboardInterrupt):
        fetch_bounces(engine, fetching)
    assert (status_of(engine, ANA), status_of(engine, BEN)) == ("bounced", "active")
    assert mailbox.messages("Processed") == [dsn(ANA, 1)]
    assert mailbox.messages("INBOX") == [dsn(BEN, 2)]  # read again next time


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_message_the_database_refuses_is_left_and_said_and_the_rest_applied(
    mailbox, fetching, engine
):
    """A message that cannot be stored (here the database refuses its event, as a
    trigger makes it) stays in the mailbox, said so, and every message after it is
    applied and moved: it used to stop each fetch where it stood, oldest first."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refused BEFORE INSERT ON bounce_event "
            "WHEN NEW.subscriber_id = (SELECT id FROM subscriber WHERE email = 'ana@example.org') "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    mailbox.append(dsn(ANA, 1))
    mailbox.append(dsn(BEN, 2))
    for _ in range(2):  # and again: the refused one is read again, and refused again
        fetched = fetch_bounces(engine, fetching)
        kinds = [(line.recipient, line.kind) for line in fetched.report.lines]
        assert kinds[0] == ("", "not applied")
        assert "refused by the test" in fetched.report.lines[0].reason
        assert mailbox.messages("INBOX") == [dsn(ANA, 1)]
    assert (status_of(engine, ANA), status_of(engine, BEN)) == ("active", "bounced")
    assert mailbox.messages("Processed") == [dsn(BEN, 2)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_mailbox_that_refuses_the_login_changes_and_moves_nothing(mailbox, fetching, engine):
    mailbox.append(dsn(ANA))
    refused = fetching.replace(bounces={"imap_password": "wrong"})
    with pytest.raises(ImapError, match="refused the login of 'bounces'"):
        fetch_bounces(engine, refused)
    unset = fetching.replace(bounces={"imap_host": "", "imap_user": ""})
    with pytest.raises(ImapError, match=r"set \[bounces\] imap_host and imap_user"):
        fetch_bounces(engine, unset)
    assert status_of(engine, ANA) == "active" and events_of(engine) == []
    assert mailbox.messages("INBOX") == [dsn(ANA)] and mailbox.messages("Processed") == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mailer_bounces_fetch_prints_what_it_did_or_why_it_could_not(
    mailbox, fetching, engine, tmp_path, monkeypatch, capsys
):
    mailbox.append(dsn(BEN))
    env = {
        "MAILER_DATABASE_URL": fetching.database.url,
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_BOUNCES_IMAP_HOST": "127.0.0.1",
        "MAILER_BOUNCES_IMAP_PORT": str(mailbox.port),
        "MAILER_BOUNCES_IMAP_USER": mailbox.user,
        "SSL_CERT_FILE": str(mailbox.ca_file),
    }
    # in this process, as the `mailer` command: exit status 1 and the reason
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("MAILER_")]:
        monkeypatch.delenv(name)  # the command reads only what is given here
    for name, value in {**env, "MAILER_BOUNCES_IMAP_PASSWORD": "wrong"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["mailer", "bounces", "fetch"])
    with pytest.raises(SystemExit) as refused:
        main()
    assert refused.value.code == 1
    assert f"error: 127.0.0.1:{mailbox.port} refused the login of 'bounces'" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("MAILER_BOUNCES_IMAP_HOST", "")
    monkeypatch.setenv("MAILER_BOUNCES_IMAP_USER", "")
    with pytest.raises(SystemExit) as unset:
        main()
    assert unset.value.code == 1
    assert "error: no bounce mailbox is configured: set [bounces] imap_host" in (
        capsys.readouterr().err
    )
    assert mailbox.messages("INBOX") == [dsn(BEN)]

    password = mailbox.password
    done = run_mailer(tmp_path, "bounces", "fetch", **env, MAILER_BOUNCES_IMAP_PASSWORD=password)
    assert done.returncode == 0, done.stderr
    [line, summary, moved] = done.stdout.splitlines()
    assert line.startswith("UID ") and f"  {BEN}  hard  " in line and line.endswith(": bounced")
    assert summary == "1 message: 1 hard; 1 reader bounced, 0 unsubscribed."
    assert moved == "1 message moved from INBOX to Processed."
    assert status_of(engine, BEN) == "bounced" and mailbox.messages("INBOX") == []


# --- the scheduler's job ------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_scheduler_fetches_every_poll_minutes_and_a_failure_waits_for_the_next_round(
    mailbox, fetching, engine, caplog
):
    caplog.set_level(logging.INFO, logger="mailer.scheduler")
    polling = fetching.replace(bounces={"poll_minutes": 7})
    scheduler = make_scheduler(polling, engine)
    scheduler.start(paused=True)
    try:
        install_jobs(scheduler, polling, datetime.now(UTC))
        job = scheduler.get_job(BOUNCES_JOB)
        assert job.func is bounces_job and job.trigger.interval == timedelta(minutes=7)
        scheduler.remove_all_jobs()
        install_jobs(scheduler, fetching.replace(bounces={"imap_host": ""}), datetime.now(UTC))
        assert scheduler.get_job(BOUNCES_JOB) is None  # no mailbox, no job
    finally:
        scheduler.shutdown(wait=False)

    mailbox.append(dsn(BEN))
    Service(polling.replace(bounces={"imap_password": "wrong"}), engine).bounces()
    assert "bounces-fetch-failed" in caplog.text and 'retry="in 7 minutes"' in caplog.text
    assert status_of(engine, BEN) == "active"
    Service(polling, engine).bounces()  # the next round
    assert status_of(engine, BEN) == "bounced"
    assert "bounces-fetched messages=1 bounced=1 unsubscribed=0" in caplog.text
    assert mailbox.messages("INBOX") == [] and mailbox.messages("Processed") == [dsn(BEN)]


# --- end to end: sent, bounced, delivered to the mailbox, fetched ---------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bounce_of_a_sent_issue_comes_back_through_the_mailbox_and_bounces_its_reader(
    mailbox, fetching, engine, smtp, tmp_path
):
    """Sent through a real SMTP server with the VERP return path; the remote server knows
    Ana by an old address she forwards from, so only the address the bounce came to
    (the envelope sender the SMTP server received) says whose it is."""
    verp = fetching.replace(bounces={"address": "bounces@example.org"})
    issue = new_issue(engine, verp, tmp_path)
    send_article(engine, verp, issue)
    [to_ana] = [message for message in smtp.received if message.rcpt_tos == [ANA]]
    assert to_ana.mail_from.startswith("bounces+") and to_ana.mail_from.endswith("@example.org")
    mailbox.append(dsn("ana.old@forwarded.example", to=to_ana.mail_from))

    fetched = fetch_bounces(engine, verp)
    assert (fetched.report.bounced, fetched.moved) == (1, 1)
    assert (status_of(engine, ANA), status_of(engine, BEN)) == ("bounced", "active")
    [event] = events_of(engine)
    with Session(engine) as session:
        delivery = session.exec(select(Delivery).where(Delivery.id == event.delivery_id)).one()
        reader = session.get(Subscriber, delivery.subscriber_id)
    assert (event.issue_id, event.kind, reader.email) == (issue.id, "hard", ANA)
    assert mailbox.messages("INBOX") == []
