"""Sign-up as a stranger and an unlucky operator meet it, through real HTTP (uvicorn on
127.0.0.1) and a real SMTP server: no request can freeze the site (body limits, names
and addresses within bounds, no SMTP in a request), and every address gets the same
answer, relay up or down, the confirmation link following from a queue that survives a
restart and is drained by the site, the scheduler and `mailer send --resume`."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from mailer import signup
from mailer.catcher import free_port
from mailer.db import open_database
from mailer.errors import SubscriberError
from mailer.models import Subscriber
from mailer.settings import Settings
from mailer.signup import Outcome
from mailer.subscriber_csv import import_csv
from mailer.subscribers import (
    NAME_MAX,
    add_subscriber,
    clean_name,
    list_subscribers,
    remove_subscriber,
    request_subscription,
)
from mailer.testing import (
    HOSTILE_NAMES,
    TEST_SECRET_KEY,
    RecordingHandler,
    commands,
    make_settings,
    served,
    smtp_server,
)
from mailer.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token
from mailer.transactional import queue_confirmation, queue_sign_up, send_queued
from mailer.web.limits import FORM_BYTES

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def site(engine: Engine, settings: Settings) -> Iterator[tuple[str, Settings]]:
    with served(settings, engine) as running:
        yield running


def sign_up(url: str, email: str, name: str = "", timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/subscribe", data={"email": email, "name": name}, timeout=timeout)


def mails(engine: Engine) -> list[tuple[str, int]]:
    """The confirmation queue: each row's state and attempts, in order."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT status, attempts FROM transactional_mail ORDER BY id"
        ).all()
    return [(status, attempts) for status, attempts in rows]


def settled(engine: Engine, timeout: float = 30) -> list[tuple[str, int]]:
    """The queue once nothing in it is waiting or being sent."""
    deadline = time.monotonic() + timeout
    while True:
        rows = mails(engine)
        if not any(status in ("queued", "sending") for status, _ in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def one(engine: Engine, email: str) -> Subscriber:
    return next(s for s in list_subscribers(engine) if s.email == email)


# -- defect 2: one request must not freeze the site --------------------------------------


def post_raw(url: str, path: str, declared: bool) -> bytes:
    """Start a POST of 200 MB over a raw socket, declared in Content-Length (nothing of
    it sent) or sent chunked (its first 8 KB sent), and wait for the answer without
    sending more: a server that waits for the whole body never answers. (A client that
    went on sending could find its connection reset before it reads the answer: the
    server closes with bytes unread, as it should.)"""
    host, port = url.removeprefix("http://").split(":")
    framing = "Content-Length: 200000000" if declared else "Transfer-Encoding: chunked"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {FORM}\r\n{framing}\r\n\r\n"
    piece = b"name=" + b"x" * 8187
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode())
        if not declared:
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        readable, _, _ = select.select([connection], [], [], 30)
        assert readable, "no answer before the whole body"
        answer = b""
        while data := connection.recv(65536):
            answer += data
    return answer


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/subscribe", "/unsubscribe/x", "/preferences/x"])
def test_a_200_mb_body_is_refused_with_413_before_it_is_sent(site, path, declared):
    url, _ = site
    answer = post_raw(url, path, declared)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Too much text" in answer
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_1_mb_name_is_refused_at_once_and_stored_nowhere(engine, site):
    url, _ = site
    started = time.monotonic()
    answer = sign_up(url, "big@example.org", "n" * 1_000_000)
    assert answer.status_code == 413 and "Too much text" in answer.text
    assert time.monotonic() - started < 10, "46 s before the fix"
    assert list(list_subscribers(engine)) == [] and mails(engine) == []


def test_a_form_just_under_the_limit_is_read(engine, site):
    url, _ = site
    name = "ن" * NAME_MAX  # the longest name, percent-encoded UTF-8
    answer = sign_up(url, "fits@example.org", name)
    assert len(f"email=fits%40example.org&name={name}".encode()) * 3 < FORM_BYTES
    assert answer.status_code == 200
    assert settled(engine) == [("sent", 1)] and one(engine, "fits@example.org").name == name


def test_a_name_too_long_or_an_address_beyond_rfc_limits_is_told(engine, site):
    url, _ = site
    too_long = sign_up(url, "long@example.org", "n" * (NAME_MAX + 1))
    assert too_long.status_code == 400 and f"at most {NAME_MAX}" in too_long.text
    for address in ("l" * 65 + "@example.org", "a@" + ("d" * 62 + ".") * 4 + "org"):
        refused = sign_up(url, address)
        assert refused.status_code == 400 and "Please check the email address" in refused.text
    assert list(list_subscribers(engine)) == [] and mails(engine) == []


def test_health_answers_while_the_relay_stalls_after_the_dot(engine, settings, smtp, site):
    """Before, the sign-up held the event loop through the SMTP conversation: /healthz
    (and every other page) waited for the relay."""
    url, _ = site
    smtp.stall_data = 8.0
    first = threading.Thread(target=sign_up, args=(url, "slow@example.org"), daemon=True)
    first.start()
    assert smtp.in_data.wait(30), "the confirmation never reached the end of DATA"
    assert httpx.get(f"{url}/healthz", timeout=3).status_code == 200
    second = sign_up(url, "other@example.org", timeout=3)  # the relay is still stalled
    assert second.status_code == 200 and "Check your inbox" in second.text
    first.join(30)


# -- names: one rule wherever a name comes in --------------------------------------------


def test_a_name_loses_control_characters_and_keeps_what_persian_needs():
    assert clean_name("Zoë\x00\x1b[31m \u202eevil\u2066 x\r\nBcc: y") == "Zoë[31m evil x Bcc: y"
    assert clean_name("مریم\u200cجان\u200d") == "مریم\u200cجان\u200d"  # ZWNJ, ZWJ kept
    assert clean_name(" \t\x00 ") is None
    assert clean_name("n" * NAME_MAX) == "n" * NAME_MAX


def test_the_name_rule_holds_for_add_import_and_preferences(engine, site, tmp_path):
    from mailer.errors import SubscriberError
    from mailer.tokens import PREFERENCES, make_token

    url, served_settings = site
    with pytest.raises(SubscriberError, match=f"at most {NAME_MAX}"):
        add_subscriber(engine, "add@example.org", "n" * (NAME_MAX + 1))
    ana = add_subscriber(engine, "ana@example.org", "Ana\x1b[2J\u202e", confirmed=True)
    assert ana.name == "Ana[2J"
    rows = tmp_path / "list.csv"
    rows.write_text(f"email,name\nok@example.org,Ok\x07 Name\nno@example.org,{'n' * 101}\n")
    report = import_csv(engine, rows)
    assert report.added == 1 and one(engine, "ok@example.org").name == "Ok Name"
    assert [line for line, _ in report.rejected] == [3]
    assert ana.id is not None
    link = f"{url}/preferences/{make_token(served_settings.secret_key, PREFERENCES, ana.id)}"
    refused = httpx.post(link, data={"action": "save", "name": "n" * 101, "frequency": "weekly"})
    assert refused.status_code == 400 and one(engine, "ana@example.org").frequency == "every"
    saved = httpx.post(link, data={"action": "save", "name": "A\x00na", "frequency": "weekly"})
    assert saved.status_code == 200 and one(engine, "ana@example.org").name == "Ana"


# -- defect 3: the same answer for everyone, relay up or down -----------------------------


def test_every_address_gets_the_same_answer_relay_up_or_down(tmp_path, database_url):
    """New, pending and active alike, while the relay is up and while nothing listens on
    its port; once the relay is back, the site's sender delivers the waiting link."""
    handler = RecordingHandler()
    with smtp_server(handler) as (_controller, _):
        port = handler.port
        settings = make_settings(tmp_path, port, database_url, delivery={"retry_base_seconds": 1})
        engine = open_database(settings.database.url)
        add_subscriber(engine, "active@example.org", confirmed=True)
        with served(settings, engine) as (url, _served):
            up = [sign_up(url, a) for a in ("new@example.org", "new@example.org",
                                            "active@example.org")]  # fmt: skip
            handler.wait_for("new@example.org")
    # the relay is down: its port is closed
    with served(settings, engine) as (url, _served):
        down = [sign_up(url, a) for a in ("down@example.org", "down@example.org",
                                          "active@example.org", "new@example.org")]  # fmt: skip
        answers = {(a.status_code, a.text) for a in up + down}
        assert len(answers) == 1 and next(iter(answers))[0] == 200
        assert "Check your inbox" in down[0].text
        deadline = time.monotonic() + 30
        while not any(attempts for status, attempts in mails(engine)[1:]):
            assert time.monotonic() < deadline, "the sender never tried"
            time.sleep(0.05)
        with smtp_server(handler, port=port):  # the relay is back
            (link,) = handler.wait_for("down@example.org")
            assert "/confirm/" in link.get_body(("plain",)).get_content()
            assert settled(engine) == [("sent", 1), ("sent", mails(engine)[1][1])]
    assert handler.to("active@example.org") == []
    engine.dispose()


def test_a_queued_confirmation_survives_a_restart(tmp_path, database_url):
    """Queued while the relay is down, the site stopped; the next start sends it."""
    handler = RecordingHandler()
    port = free_port()  # nothing listens there yet
    settings = make_settings(tmp_path, port, database_url, delivery={"retry_base_seconds": 1})
    engine = open_database(settings.database.url)
    with served(settings, engine) as (url, _served):
        assert sign_up(url, "kept@example.org").status_code == 200
        deadline = time.monotonic() + 30
        while not mails(engine) or mails(engine)[0][1] == 0:
            assert time.monotonic() < deadline, "the sender never tried"
            time.sleep(0.05)
    assert mails(engine)[0][0] == "queued"
    with smtp_server(handler, port=port), served(settings, engine):
        handler.wait_for("kept@example.org")
        assert settled(engine)[0][0] == "sent"
    assert len(handler.to("kept@example.org")) == 1
    engine.dispose()


def queue_for(engine: Engine, email: str) -> Subscriber:
    subscriber = request_subscription(engine, email, None, "every")
    assert subscriber is not None and subscriber.id is not None
    assert queue_confirmation(engine, subscriber.id)
    return subscriber


def test_send_resume_drains_the_queue(tmp_path, smtp, database_url):
    settings = make_settings(tmp_path, smtp.port, database_url)
    engine = open_database(settings.database.url)
    queue_for(engine, "cron@example.org")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
        MAILER_SMTP_PORT=str(smtp.port),
        MAILER_DATABASE_URL=database_url,
    )
    result = commands.mailer(["send", "--resume"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Confirmation links: 1 sent." in result.stdout
    assert len(smtp.to("cron@example.org")) == 1 and mails(engine) == [("sent", 1)]
    engine.dispose()


def test_the_schedulers_outbox_job_drains_the_queue(engine, settings, smtp):
    from mailer.scheduler import Service

    queue_for(engine, "sched@example.org")
    Service(settings, engine).outbox()
    assert len(smtp.to("sched@example.org")) == 1 and mails(engine) == [("sent", 1)]


def test_one_confirmation_waits_per_subscriber_and_a_refused_one_is_not_retried(
    engine, settings, smtp
):
    subscriber = queue_for(engine, "gone@example.org")
    assert subscriber.id is not None
    assert not queue_confirmation(engine, subscriber.id), "one is waiting already"
    smtp.refuse["gone@example.org"] = "550 5.1.1 User unknown"
    assert send_queued(engine, settings) == {"failed": 1}
    assert send_queued(engine, settings) == {}
    assert mails(engine) == [("failed", 1)] and smtp.received == []


def test_a_temporary_refusal_is_retried_with_backoff(engine, settings, smtp):
    from datetime import timedelta

    from mailer.models import utcnow

    queue_for(engine, "later@example.org")
    smtp.refuse["later@example.org"] = "451 4.3.0 Try again later"
    assert send_queued(engine, settings) == {"queued": 1}
    assert send_queued(engine, settings) == {}, "not due again yet"
    del smtp.refuse["later@example.org"]
    an_hour_on = utcnow() + timedelta(hours=1)
    assert send_queued(engine, settings, clock=lambda: an_hour_on) == {"sent": 1}
    assert mails(engine) == [("sent", 2)] and len(smtp.to("later@example.org")) == 1


def test_a_link_for_someone_who_confirmed_or_left_meanwhile_is_not_sent(engine, settings, smtp):
    from mailer.subscribers import confirm_subscription

    subscriber = queue_for(engine, "quick@example.org")
    assert subscriber.id is not None
    confirm_subscription(engine, subscriber.id, "127.0.0.1")
    assert send_queued(engine, settings) == {"skipped": 1} and smtp.received == []


def test_a_purge_stops_the_queued_mail_and_keeps_nothing_of_it(engine, settings, smtp):
    """Both the link waiting for them and a sign-up with their address not made yet are
    skipped, with nothing of the person left in them. The rows stay: a mail's number,
    which a late bounce names, is never given to another's (SQLite reuses a deleted
    row's number)."""
    queue_for(engine, "erase@example.org")
    queue_sign_up(engine, "Erase@Example.org", "Er", "every")
    queue_sign_up(engine, "other@example.org", None, "every")
    remove_subscriber(engine, "erase@example.org", purge=True, purge_key=settings.purge_key)
    assert [status for status, _ in mails(engine)] == ["skipped", "skipped", "queued"]
    with engine.connect() as connection:
        kept = connection.exec_driver_sql(
            "SELECT email, name, frequency, languages, last_reply FROM transactional_mail "
            "WHERE status = 'skipped'"
        ).all()
    assert {tuple(row) for row in kept} == {(None,) * 5}
    assert send_queued(engine, settings) == {"sent": 1}
    assert [m["To"] for m in (r.message for r in smtp.received)] == ["other@example.org"]


def test_the_site_does_the_same_work_for_every_address(engine, site):
    """The same SQL statements for a new, a pending and a subscribed address: the answer
    cannot take longer for one than for another (before, a new address cost a render
    and an SMTP conversation; a subscribed one, a look-up)."""
    from sqlalchemy import event

    url, _ = site
    add_subscriber(engine, "active@example.org", confirmed=True)
    statements: list[str] = []

    def note(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        background = ("transactional-mail", "desk-sender", "desk-lookout", "desk-relay-check")
        if threading.current_thread().name not in background:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    work = []
    try:
        for address in ("new@example.org", "new@example.org", "active@example.org"):
            statements.clear()
            assert sign_up(url, address).status_code == 200
            work.append(list(statements))
            settled(engine)  # the sender made the request meanwhile: "new" is pending now
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert work[0] == work[1] == work[2]
    assert not any("subscriber" in statement.lower() for statement in work[0])


# -- defect 4: a name is one display name, wherever it was stored -------------------------


def test_stored_hostile_names_reach_one_recipient_in_every_mail(engine, settings, smtp):
    """Names put in the database before input was checked: the confirmation link and
    an issue each go to the subscriber alone, with no raw control character in a header."""
    from mailer.articles import ingest_file
    from mailer.delivery import deliver
    from mailer.demo import SAMPLE_ARTICLE
    from mailer.issues import article_issue

    with engine.begin() as connection:
        for n, name in enumerate(HOSTILE_NAMES):
            if connection.dialect.name == "postgresql":  # its text cannot hold a NUL
                name = name.replace("\x00", "\x01")
            connection.execute(
                text(
                    "INSERT INTO subscriber (email, name, status, frequency, created_at, "
                    "public_id) VALUES (:email, :name, 'pending', 'every', CURRENT_TIMESTAMP, "
                    ":public_id)"
                ),
                {"email": f"r{n}@example.org", "name": name, "public_id": f"reader-{n}"},
            )
    for subscriber in list_subscribers(engine):
        assert subscriber.id is not None and queue_confirmation(engine, subscriber.id)
    assert send_queued(engine, settings) == {"sent": len(HOSTILE_NAMES)}
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE subscriber SET status = 'active'")
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    assert deliver(engine, settings, article_issue(engine, settings, article)).sent == len(
        HOSTILE_NAMES
    )
    assert len(smtp.received) == 2 * len(HOSTILE_NAMES)
    for received in smtp.received:
        (address,) = received.rcpt_tos
        (to,) = received.message["To"].addresses
        assert to.addr_spec == address and received.message["Cc"] is None
        head = received.data.split(b"\r\n\r\n")[0]
        assert all(32 <= byte < 127 or byte in b"\r\n\t" for byte in head), head


def test_the_confirmation_carries_nothing_a_stranger_typed_but_the_address(engine, site, smtp):
    """Anyone can sign somebody else up: the DKIM-signed mail from the newsroom that
    reaches them says nothing the form was given, the name least of all; the name is
    kept for when the reader confirms."""
    url, _ = site
    bait = "your account is locked, call +1 555 0100"
    assert sign_up(url, "victim@example.org", bait).status_code == 200
    (confirmation,) = smtp.wait_for("victim@example.org")
    assert confirmation["To"].addresses[0].display_name == ""
    assert "locked" not in confirmation.as_string().lower()
    for part in ("plain", "html"):
        assert "locked" not in confirmation.get_body((part,)).get_content().lower()
    (subscriber,) = list_subscribers(engine)
    assert subscriber.name == bait, "their name, for when they confirm"


# -- the opt-in sequence as steps (signup.py), as every front door calls them -----------


def test_a_sign_up_past_its_mailbox_limit_queues_nothing(engine):
    request = signup.check_request("ana@example.org", "Ana", "weekly")
    assert (request.email, request.name, request.frequency) == ("ana@example.org", "Ana", "weekly")
    with pytest.raises(SubscriberError):
        signup.check_request("ana@example.org", None, "daily")
    assert signup.queue_request(engine, request, may_mail=lambda _address: False) is False
    assert mails(engine) == []
    assert signup.queue_request(engine, request) is True
    assert mails(engine) == [("queued", 0)]


def test_a_confirmation_link_shows_then_confirms_once(engine, settings):
    pending = add_subscriber(engine, "p@example.org")
    token = make_token(settings.secret_key, CONFIRM, pending.public_id)
    assert signup.confirmation(engine, settings, token).outcome == Outcome.PENDING
    done = signup.confirm(engine, settings, token, "192.0.2.1")
    assert done.outcome == Outcome.CONFIRMED and done.subscriber is not None
    assert (done.subscriber.status, done.subscriber.consent_ip) == ("active", "192.0.2.1")
    assert signup.confirmation(engine, settings, token).outcome == Outcome.CONFIRMED
    other = make_token(settings.secret_key, UNSUBSCRIBE, pending.public_id)
    assert signup.confirmation(engine, settings, other).outcome == Outcome.INVALID
    assert signup.confirm(engine, settings, other, "192.0.2.1").outcome == Outcome.INVALID


def test_an_expired_link_is_renewed_for_a_pending_subscriber_at_most_once(
    engine, settings, monkeypatch
):
    pending = add_subscriber(engine, "late@example.org")
    with monkeypatch.context() as past:  # a link made eight days ago
        now = time.time()
        past.setattr(time, "time", lambda: now - 8 * 24 * 3600)
        old = make_token(settings.secret_key, CONFIRM, pending.public_id)
    assert signup.confirmation(engine, settings, old).outcome == Outcome.EXPIRED
    expired = signup.confirm(engine, settings, old, "192.0.2.1")
    assert (expired.outcome, expired.subscriber_id) == (Outcome.EXPIRED, pending.id)
    assert pending.id is not None
    assert signup.renew(engine, pending.id) is True
    assert signup.renew(engine, pending.id) is False, "one was sent just now"
    assert mails(engine) == [("queued", 0)]


def test_preferences_are_saved_refused_or_left_by_their_link(engine, settings):
    reader = add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
    token = make_token(settings.secret_key, PREFERENCES, reader.public_id)
    assert signup.reader_link(engine, settings, PREFERENCES, token).outcome == Outcome.VALID
    assert signup.reader_link(engine, settings, UNSUBSCRIBE, token).outcome == Outcome.INVALID
    saved = signup.save_preferences(engine, settings, token, "Ana B", "weekly")
    assert saved.outcome == Outcome.SAVED and saved.subscriber is not None
    assert (saved.subscriber.name, saved.subscriber.frequency) == ("Ana B", "weekly")
    for name, frequency in [("Ana", "daily"), ("Ana", None), ("n" * (NAME_MAX + 1), "every")]:
        refused = signup.save_preferences(engine, settings, token, name, frequency)
        assert refused.outcome == Outcome.REFUSED and refused.subscriber is not None
        assert refused.subscriber.name == "Ana B", "the form again, as stored"
    for _ in range(2):
        assert signup.leave(engine, settings, PREFERENCES, token).outcome == Outcome.LEFT
    left = signup.save_preferences(engine, settings, token, "Ana", "every")
    assert left.outcome == Outcome.REFUSED, "nothing of theirs is stored again"
    assert signup.leave(engine, settings, UNSUBSCRIBE, token).outcome == Outcome.INVALID
