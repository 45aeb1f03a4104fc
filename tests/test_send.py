"""Sending an issue end to end: the sample article to every subscriber over real SMTP,
read back as received and as recorded."""

from __future__ import annotations

import asyncio
import functools
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from mailer.articles import ingest_file
from mailer.delivery import SendReport, deliver, send_issue
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import DeliveryError
from mailer.issues import article_issue, as_rendered
from mailer.messages import MessageBuilder
from mailer.models import Article, Delivery, Issue, Subscriber, utcnow
from mailer.outbox import DEFERRED, SENT, Outbox, Outcome
from mailer.settings import Settings
from mailer.smtp import SMTPTransport
from mailer.subscriber_csv import import_csv
from mailer.subscribers import add_subscriber, remove_subscriber
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, import_readers, new_issue, smtp_server
from mailer.throttle import Throttle
from mailer.tokens import CONFIRM, UNSUBSCRIBE, TokenError, read_token

ACTIVE = ["ana@example.org", "bo@example.org", "cy@example.net"]
IBAN = "NO15 0530 2294 668"
APPEAL_START = "If there were ever a time to join us"


@pytest.fixture
def article(engine: Engine, settings: Settings) -> Article:
    for address in ACTIVE:
        add_subscriber(engine, address, address.split("@")[0].title(), confirmed=True)
    add_subscriber(engine, "pending@example.org")
    add_subscriber(engine, "gone@example.org", confirmed=True)
    remove_subscriber(engine, "gone@example.org")
    add_subscriber(engine, "weekly@example.org", confirmed=True, frequency="weekly")
    return ingest_file(engine, settings, SAMPLE_ARTICLE).article


def send(engine: Engine, settings: Settings, article: Article):
    return deliver(engine, settings, article_issue(engine, settings, article))


def deliveries(engine: Engine) -> dict[str, Delivery]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery, Subscriber).join(Subscriber)).all()
        return {subscriber.email: delivery for delivery, subscriber in rows}


def parts(message) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


def test_every_active_subscriber_gets_exactly_one_message(engine, settings, article, smtp):
    report = send(engine, settings, article)
    assert report.sent == 3
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(ACTIVE)
    for address in ("pending@example.org", "gone@example.org", "weekly@example.org"):
        assert smtp.to(address) == []
    assert smtp.connections <= len(ACTIVE), "a connection opens for a message, then is reused"
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
    assert issue.status == "sent" and issue.sent_at is not None


def test_message_has_both_parts_the_donation_once_and_no_boilerplate(
    engine, settings, article, smtp
):
    send(engine, settings, article)
    message = smtp.to("ana@example.org")[0]
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    for part in (text, html):
        assert part.count(IBAN) == 1
        assert part.count(APPEAL_START) == 1
        assert "557320" in part and "0530 2294668" in part
        assert "Comments are closed" not in part
        assert "DNB Bank AC #" not in part
        assert "Account for international payments" not in part
        assert "Vipps: #557320" not in part
        assert "MOSCOW – In a significant move" in part
        assert "ana@example.org" in part  # why the reader gets this email
    assert "Lavrov’s Dual-Message" in message["Subject"]


def test_headers_and_a_per_subscriber_unsubscribe_token(engine, settings, article, smtp):
    send(engine, settings, article)
    by_address = {s.email: s.public_id for s in _subscribers(engine)}
    for address in ACTIVE:
        message = smtp.to(address)[0]
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id"):
            assert message[header], header
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = re.fullmatch(
            r"<(https://dawatmedia\.example/unsubscribe/(\S+))>", str(message["List-Unsubscribe"])
        )
        assert link, message["List-Unsubscribe"]
        url, token = link.groups()
        assert read_token(TEST_SECRET_KEY, UNSUBSCRIBE, token) == by_address[address]
        with pytest.raises(TokenError):
            read_token(TEST_SECRET_KEY, CONFIRM, token)
        with pytest.raises(TokenError):
            read_token("another-secret-key-" + "y" * 30, UNSUBSCRIBE, token)
        text, html = parts(message)
        assert url in text and f'href="{url}"' in html
        raw = next(r.data for r in smtp.received if address in r.rcpt_tos)
        assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw, "one line, not encoded"
        assert deliveries(engine)[address].message_id == message["Message-ID"]


def test_rerun_sends_nothing_twice(engine, settings, article, smtp):
    send(engine, settings, article)
    second = send(engine, settings, article)
    assert second.sent == 0
    assert len(smtp.received) == 3


def test_a_refused_recipient_fails_alone_and_no_such_user_is_bounced(
    engine, settings, article, smtp
):
    smtp.refuse["bo@example.org"] = (
        "550 5.1.1 <bo@example.org>: Recipient address rejected: User unknown"
    )
    report = send(engine, settings, article)
    assert report.sent == 2 and report.bounced == 1
    rows = deliveries(engine)
    assert rows["bo@example.org"].status == "failed"
    assert "5.1.1" in (rows["bo@example.org"].smtp_response or "")
    assert rows["ana@example.org"].status == "sent" and rows["cy@example.net"].status == "sent"
    assert {s.email: s.status for s in _subscribers(engine)}["bo@example.org"] == "bounced"
    # a later issue does not go to the bounced address
    second = ingest_file(
        engine,
        settings,
        SAMPLE_ARTICLE,
        title="Another issue",
        url="https://dawatmedia.example/another",
    ).article
    smtp.refuse.clear()
    send(engine, settings, second)
    assert len(smtp.to("bo@example.org")) == 0


def test_a_policy_refusal_fails_without_bouncing(engine, settings, article, smtp):
    smtp.refuse["cy@example.net"] = "554 5.7.1 Message rejected as spam"
    send(engine, settings, article)
    assert deliveries(engine)["cy@example.net"].status == "failed"
    assert {s.email: s.status for s in _subscribers(engine)}["cy@example.net"] == "active"


def test_temporary_failures_are_deferred_and_a_second_send_delivers(
    engine, settings, article, smtp
):
    smtp.refuse_all = "451 4.3.0 Try again later"
    report = send(engine, settings, article)
    assert report.counts == {"deferred": 3}
    rows = deliveries(engine)
    assert all(rows[a].status == "deferred" and rows[a].next_attempt_at for a in ACTIVE)
    assert smtp.received == []
    smtp.refuse_all = None
    report = send(engine, settings, article)
    assert report.sent == 3
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(ACTIVE)
    assert all(row.attempts == 2 for row in deliveries(engine).values())


def test_a_dropped_connection_defers_one_and_the_rest_go_out(engine, settings, article, smtp):
    smtp.drop.add("bo@example.org")
    report = send(engine, settings, article)
    assert report.sent == 2
    rows = deliveries(engine)
    assert rows["bo@example.org"].status == "deferred"
    assert "lost" in (rows["bo@example.org"].smtp_response or "")
    smtp.drop.clear()
    send(engine, settings, article)
    assert len(smtp.to("bo@example.org")) == 1
    assert len(smtp.received) == 3


def test_unreachable_server_stops_and_keeps_everything_queued(engine, settings, article, smtp):
    from mailer.catcher import free_port

    closed = settings.replace(smtp={"port": free_port()})
    with pytest.raises(DeliveryError, match=r"cannot connect to 127\.0\.0\.1"):
        send(engine, closed, article)
    assert {row.status for row in deliveries(engine).values()} == {"queued"}
    send(engine, settings, article)
    assert len(smtp.received) == 3


def test_an_unsubscribe_after_queueing_is_honoured(engine, settings, article, smtp):
    smtp.refuse_all = "451 4.3.0 Try again later"
    send(engine, settings, article)
    remove_subscriber(engine, "ana@example.org")
    smtp.refuse_all = None
    send(engine, settings, article)
    assert smtp.to("ana@example.org") == []
    assert deliveries(engine)["ana@example.org"].status == "skipped"


def test_a_crashed_senders_claims_are_resumed_after_their_lease(engine, settings, article, smtp):
    issue = article_issue(engine, settings, article)
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.enqueue()
    claimed = outbox.claim()  # a sender claims the batch, then dies
    assert len(claimed) == 3
    assert deliver(engine, settings, issue).sent == 0, "a live lease is respected"
    with engine.begin() as connection:  # the lease runs out
        connection.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert deliver(engine, settings, issue).sent == 3
    assert len(smtp.received) == 3


def _subscribers(engine: Engine) -> list[Subscriber]:
    with Session(engine) as session:
        return list(session.exec(select(Subscriber)).all())


def test_two_senders_on_one_issue_never_send_to_the_same_subscriber(engine, settings, tmp_path):
    from test_crash import TogetherServer  # each sender's first message waits for the other's

    listing = tmp_path / "many.csv"
    listing.write_text("email\n" + "".join(f"reader{i}@example.org\n" for i in range(300)))
    assert import_csv(engine, listing).added == 300
    issue = article_issue(engine, settings, ingest_file(engine, settings, SAMPLE_ARTICLE).article)
    together = TogetherServer()
    together.delay = 0
    with smtp_server(together) as (_controller, smtp), ThreadPoolExecutor(2) as pool:
        sending = settings.replace(smtp={"port": smtp.port, "timeout": 60})
        reports = list(pool.map(lambda _: deliver(engine, sending, issue), range(2)))
    assert all(r.sent > 0 for r in reports), "both senders took part"
    assert sum(r.sent for r in reports) == 300
    recipients = [r for m in smtp.received for r in m.rcpt_tos]
    assert len(recipients) == len(set(recipients)) == 300


def test_a_sender_whose_lease_ran_out_does_not_send_what_another_took_over(
    engine, settings, article, smtp
):
    issue = article_issue(engine, settings, article)
    slow = Outbox(engine, issue, settings.delivery)
    slow.enqueue()
    batch = slow.claim()
    with engine.begin() as connection:  # the slow sender's lease runs out
        connection.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert deliver(engine, settings, issue).sent == 3  # another sender takes over
    assert slow.renew([claimed.delivery_id for claimed in batch])[0] == []
    slow.record([Outcome(batch[0], "failed", "late")])
    assert deliveries(engine)[batch[0].recipient.email].status == "sent", "not overwritten"
    assert len(smtp.received) == 3


def test_a_refused_sender_stops_the_run_and_fails_nobody(engine, settings, article, smtp):
    smtp.refuse_sender = "530 5.7.0 Authentication required"
    with pytest.raises(DeliveryError, match="refused the sender"):
        send(engine, settings, article)
    assert {row.status for row in deliveries(engine).values()} == {"queued"}
    smtp.refuse_sender = None
    assert send(engine, settings, article).sent == 3


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("rcpt", "554 5.7.1 <ana@example.org>: Relay access denied"),
        (
            "rcpt",
            "553 5.1.8 <newsletter@dawatmedia.example>: Sender address rejected: Domain not found",
        ),
        ("data", "552 5.3.4 Message size exceeds fixed limit"),
        ("mail", "451 4.7.1 Sender rate limited, try later"),
    ],
)
def test_a_refusal_every_recipient_would_get_stops_the_run(
    engine, settings, article, smtp, where, reply
):
    if where == "rcpt":
        smtp.refuse_all = reply
    elif where == "data":
        smtp.refuse_data = reply
    else:
        smtp.refuse_sender = reply
    with pytest.raises(DeliveryError, match=re.escape(reply.split(" ", 1)[1])):
        send(engine, settings, article)
    assert {row.status for row in deliveries(engine).values()} == {"queued"}
    assert {s.status for s in _subscribers(engine) if s.email in ACTIVE} == {"active"}


def test_a_failed_login_or_tls_hands_every_claimed_row_back(engine, settings, article, smtp):
    starttls = settings.replace(smtp={"security": "starttls"})  # the test server has no TLS
    with pytest.raises(DeliveryError, match=r"check \[smtp\] security"):
        send(engine, starttls, article)
    assert {row.status for row in deliveries(engine).values()} == {"queued"}


def test_reruns_retry_deferred_mail_without_using_up_its_retries(engine, settings, article, smtp):
    smtp.refuse_all = "451 4.7.1 Greylisted"
    for _ in range(settings.delivery.max_attempts + 2):
        send(engine, settings, article)
    rows = deliveries(engine)
    assert {rows[a].status for a in ACTIVE} == {"deferred"}, "the retry window is still open"
    assert {rows[a].attempts for a in ACTIVE} == {settings.delivery.max_attempts + 2}, (
        "one attempt per run: what a run defers waits for the next"
    )
    with engine.begin() as connection:  # a day later
        connection.execute(update(Delivery).values(first_attempt_at=utcnow() - timedelta(hours=25)))
    send(engine, settings, article)
    assert {deliveries(engine)[a].status for a in ACTIVE} == {"failed"}


def test_stopping_mid_send_hands_the_rest_back(engine, settings, article, smtp):
    """Ctrl-C (or any error) after the first message: the others go back to the queue."""

    class InterruptedAfterOne(SMTPTransport):
        def send(self, sender: str, recipient: str, data: bytes) -> str:
            if smtp.received:
                raise KeyboardInterrupt
            return super().send(sender, recipient, data)

    issue = article_issue(engine, settings, article)
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue))
    with pytest.raises(KeyboardInterrupt):
        send_issue(outbox, builder, lambda: InterruptedAfterOne(settings.smtp), connections=1)
    assert sorted(row.status for row in deliveries(engine).values()) == [
        "queued", "queued", "sent"
    ]  # fmt: skip
    assert send(engine, settings, article).sent == 2
    assert len(smtp.received) == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_message_ends_only_once_the_one_before_it_is_on_record(engine, settings, article, smtp):
    """The next message is on its way while the outcome of the one before it is being
    committed, but its final dot waits for that commit: the database lags the server by
    one message per connection at most, as before, without the connection standing idle."""
    recording, go_on, dots = threading.Event(), threading.Event(), queue.SimpleQueue[int]()

    class SlowRecords(Outbox):
        def record(self, outcomes: list[Outcome]) -> list[int]:
            recording.set()
            assert go_on.wait(10)
            return super().record(outcomes)

    class Watched(SMTPTransport):
        def _data(self, wire: Any, data: bytes) -> tuple[int, bytes]:
            dots.put(len(smtp.received))  # written but for the final dot: how many arrived
            return super()._data(wire, data)

    issue = article_issue(engine, settings, article)
    outbox = SlowRecords(engine, issue, settings.delivery)
    outbox.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue))
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(send_issue, outbox, builder, lambda: Watched(settings.smtp))
        assert dots.get(timeout=10) == 0
        assert recording.wait(10), "the first outcome is being recorded"
        assert dots.get(timeout=10) == 1, "the second message is being written meanwhile"
        assert len(smtp.received) == 1, "... and waits at its final dot"
        go_on.set()
        assert run.result(timeout=30).sent == 3
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == ACTIVE


class FirstRecordHeld(Outbox):
    """An outbox whose first record waits for `go_on`, with `recording` set meanwhile:
    a commit that stalls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recording, self.go_on = threading.Event(), threading.Event()

    def record(self, outcomes: list[Outcome]) -> list[int]:
        if not self.recording.is_set():
            self.recording.set()
            assert self.go_on.wait(10)
        return super().record(outcomes)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_message_held_at_its_final_dot_past_its_lease_is_not_ended(
    engine, settings, article, smtp
):
    """A commit that stalls (a lock wait, a slow disk) holds the next message at its final
    dot for longer than that row's lease: another sender may have taken the row over and
    sent it meanwhile. Then the held message is dropped, not ended. Only the message whose
    outcome was being committed goes twice, the one a crash there could repeat too."""
    now = [utcnow()]
    dots = queue.SimpleQueue[int]()

    class Watched(SMTPTransport):
        def _data(self, wire: Any, data: bytes) -> tuple[int, bytes]:
            dots.put(len(smtp.received))
            return super()._data(wire, data)

    issue = article_issue(engine, settings, article)
    stalled = FirstRecordHeld(engine, issue, settings.delivery, clock=lambda: now[0])
    recording, go_on = stalled.recording, stalled.go_on
    stalled.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue))
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(send_issue, stalled, builder, lambda: Watched(settings.smtp))
        assert recording.wait(10) and dots.get(timeout=10) == 0
        assert dots.get(timeout=10) == 1, "the second message waits at its final dot"
        # the commit stalls past the leases; another sender takes the rows over
        now[0] += timedelta(seconds=settings.delivery.lease_seconds + 1)
        other = Outbox(engine, issue, settings.delivery, clock=lambda: now[0])
        assert send_issue(other, builder, lambda: SMTPTransport(settings.smtp)).sent == 3
        go_on.set()
        run.result(timeout=30)
    first = smtp.received[0].rcpt_tos[0]
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == sorted([*ACTIVE, first])


class HeldAtTheDot(RecordingHandler):
    """Takes each message in, then answers its final dot only once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[str] = []
        self.answer: dict[str, threading.Event] = {a: threading.Event() for a in ACTIVE}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        self.waiting.append(recipient)
        while not self.answer[recipient].is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stop_records_every_message_the_server_took_before_the_senders_ended(
    engine, settings, article
):
    """Stopped while two messages wait for their 250: the first is accepted and being
    committed when the second is accepted and its sender ends. The run used to stop
    recording once no sender was left, and the second went back to the queue, to be sent
    again by the next run."""

    def senders_alive() -> bool:
        return any(t.name.startswith("smtp-") for t in threading.enumerate())

    def until(condition: Any) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, "waited 10 s"
            time.sleep(0.01)

    issue = article_issue(engine, settings, article)
    outbox = FirstRecordHeld(engine, issue, settings.delivery)
    recording, go_on = outbox.recording, outbox.go_on
    outbox.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue))
    stop = threading.Event()
    with smtp_server(HeldAtTheDot()) as (_controller, server), ThreadPoolExecutor(1) as pool:
        relay = settings.replace(smtp={"port": server.port}).smtp
        throttle = Throttle()  # stopped with the run: tells when it is stopping
        run = pool.submit(
            send_issue, outbox, builder, lambda: SMTPTransport(relay),
            connections=2, stop=stop, throttle=throttle,
        )  # fmt: skip
        until(lambda: len(server.waiting) == 2)
        stop.set()
        until(throttle.stopped.is_set)
        first, second = server.waiting
        server.answer[first].set()
        assert recording.wait(10), "the first is accepted and being committed"
        server.answer[second].set()
        until(lambda: not senders_alive())  # the second accepted too, and its sender gone
        go_on.set()
        with pytest.raises(KeyboardInterrupt):
            run.result(timeout=30)
    received = sorted(m.rcpt_tos[0] for m in server.received)
    recorded = {email: row.status for email, row in deliveries(engine).items()}
    assert received == sorted([first, second])
    assert [recorded[address] for address in received] == ["sent", "sent"]


def test_a_worker_takes_the_retries_another_sender_gave_back(engine, settings, tmp_path, smtp):
    """A worker waits for the rows other senders hold. One of them is stopped and gives
    its retries back, due already: the worker, whose first claim had found no retry due,
    used to see rows it could claim, claim none of them, and go round for ever."""
    import_readers(engine, tmp_path, 4)
    issue = new_issue(engine, settings, tmp_path)
    Outbox(engine, issue, settings.delivery).enqueue()
    earlier = Outbox(engine, issue, settings.delivery)
    first = earlier.claim()
    due = utcnow() - timedelta(minutes=5)
    earlier.record(
        [Outcome(row, SENT, "250 ok") for row in first[:2]]
        + [Outcome(row, DEFERRED, "451 later", next_attempt_at=due) for row in first[2:]]
    )
    other = Outbox(engine, issue, settings.delivery)
    assert len(other.claim()) == 2  # the retries, held by another sender
    worker = Outbox(engine, issue, settings.delivery)
    builder = MessageBuilder(settings, as_rendered(issue))
    reports: list[SendReport] = []

    def work() -> None:
        connect = functools.partial(SMTPTransport, settings.smtp)
        report = send_issue(
            worker, builder, connect, wait_for_others=True, retry_deferred_now=False
        )
        reports.append(report)

    run = threading.Thread(target=work, daemon=True)  # daemon: left behind if it never ends
    run.start()
    time.sleep(0.5)  # the worker has claimed, found nothing, and waits for the others
    other.release()  # that sender is stopped: its retries go back, due
    run.join(20)
    assert reports, "the worker still runs after 20 s"
    assert reports[0].sent == 2
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(
        row.recipient.email for row in first[2:]
    )


def test_a_reader_who_leaves_while_a_throttled_send_waits_is_not_sent_it(
    engine, settings, tmp_path, smtp
):
    """A throttled send claims its batch, then sends a message a second (an hourly limit:
    one every few minutes). A reader who unsubscribes after the claim, before their turn,
    is skipped: claimed while still active, they used to be sent the issue regardless."""
    addresses = import_readers(engine, tmp_path, 4)
    issue = new_issue(engine, settings, tmp_path)
    slow = settings.replace(smtp={"max_connections": 1, "max_rate_per_second": 1})

    def leave() -> None:
        smtp.wait_for(addresses[0])  # the batch is claimed and on its way
        remove_subscriber(engine, addresses[-1])

    leaving = threading.Thread(target=leave)
    leaving.start()
    report = deliver(engine, slow, issue)
    leaving.join()
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == addresses[:-1]
    assert report.counts == {"sent": 3, "skipped": 1}


def test_the_schema_the_migrations_build_is_the_models(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from mailer.db import TRIGRAM_INDEXES

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    # the search's trigram indexes are PostgreSQL's alone, when the server allows them
    optional = [d for d in differences if d[0] == "remove_index" and d[1].name in TRIGRAM_INDEXES]
    assert [d for d in differences if d not in optional] == []


def test_a_refused_login_stops_the_run_and_says_so(engine, settings, article):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from mailer.catcher import free_port
    from mailer.testing import RecordingHandler

    handler = RecordingHandler()
    server = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        auth_require_tls=False,
        authenticator=lambda *args: AuthResult(success=False, handled=False),
    )
    server.start()
    try:
        login = settings.replace(
            smtp={"port": server.port, "username": "newsletter", "password": "wrong"}
        )
        with pytest.raises(DeliveryError, match="refused the login of 'newsletter'"):
            send(engine, login, article)
    finally:
        server.stop()
    assert {row.status for row in deliveries(engine).values()} == {"queued"}
    assert handler.received == []


def test_too_many_messages_defers_without_failing_anyone(engine, settings, article, smtp):
    smtp.refuse["bo@example.org"] = "421 4.7.0 Too many messages, slow down"
    report = send(engine, settings, article)
    assert report.counts == {"sent": 2, "deferred": 1}
    assert deliveries(engine)["bo@example.org"].status == "deferred"
    smtp.refuse.clear()
    assert send(engine, settings, article).sent == 1


@pytest.mark.parametrize("ending", [b"\r\n", b""])
def test_lines_starting_with_a_dot_arrive_as_sent(settings, smtp, ending):
    data = b"Subject: dots\r\n\r\n.one dot\r\n..two dots\r\n.\r\nlast line" + ending
    with SMTPTransport(settings.smtp) as transport:
        transport.send("a@example.org", "b@example.org", data)
    assert smtp.received[0].data == data.removesuffix(b"\r\n") + b"\r\n"


def test_a_send_spread_over_processes_mails_everyone_once(engine, settings, tmp_path):
    from test_crash import TogetherServer  # the helper's first message waits for the helper

    listing = tmp_path / "many.csv"
    listing.write_text("email\n" + "".join(f"reader{i}@example.org\n" for i in range(300)))
    import_csv(engine, listing)
    issue = article_issue(engine, settings, ingest_file(engine, settings, SAMPLE_ARTICLE).article)
    seen: list[str] = []
    with smtp_server(TogetherServer()) as (_controller, smtp):
        slow = settings.replace(smtp={"port": smtp.port, "max_connections": 2, "timeout": 60})
        report = deliver(engine, slow, issue, seen.append, processes=2)
    assert report.counts == {"sent": 300} and seen.count("sent") == 300
    recipients = [r for m in smtp.received for r in m.rcpt_tos]
    assert len(recipients) == len(set(recipients)) == 300
    assert len({m.data.split(b"boundary=", 1)[1][:40] for m in smtp.received}) == 2, (
        "two processes, each with its own builder"
    )
    with Session(engine) as session:
        assert session.get(Issue, issue.id).status == "sent"
