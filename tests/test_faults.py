"""Fault injection: real SMTP servers on 127.0.0.1 that put off, drop, stall, refuse and
turn away, against several connections at once. Every reader ends with exactly one copy
(or a recorded failure, in the server's words), retries keep to their schedule, and the
database agrees with what the server received.

Random faults are seeded: the seed is printed and named in the assertion messages;
FAULTS_SEED=<seed> replays a run.

The servers advertise PIPELINING (RFC 2920), so every test goes over the client's
pipelined path; those marked BOTH_WAYS (a drop in DATA, a stall, refusals, the limits on
messages and connections) run over the one-command-at-a-time path as well."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer.catcher import free_port
from mailer.delivery import deliver
from mailer.errors import DeliveryError
from mailer.models import Delivery, Issue, Subscriber
from mailer.outbox import HARD_FAILURES
from mailer.settings import Settings
from mailer.testing import (
    FlakyHandler,
    RecordingHandler,
    import_readers,
    new_issue,
    relay,
    smtp_server,
)

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """The time the engine sees: it moves only when the test moves it."""

    time: datetime = START

    def now(self) -> datetime:
        return self.time


@pytest.fixture(autouse=True, params=[True], ids=["pipelined"])
def pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the test servers advertise PIPELINING (read at each EHLO)."""
    monkeypatch.setattr(relay, "ADVERTISE_PIPELINING", request.param)
    return bool(request.param)


BOTH_WAYS = pytest.mark.parametrize(
    "pipelining", [True, False], ids=["pipelined", "one at a time"], indirect=True
)


@pytest.fixture
def seed() -> int:
    seed = int(os.environ.get("FAULTS_SEED") or random.randrange(2**32))
    print(f"FAULTS_SEED={seed}")
    return seed


def deliveries(engine: Engine, issue: Issue) -> dict[str, Delivery]:
    with Session(engine) as session:
        query = (
            select(Delivery, Subscriber.email).join(Subscriber).where(Delivery.issue_id == issue.id)
        )
        return {address: delivery for delivery, address in session.exec(query).all()}


def issue_status(engine: Engine, issue: Issue) -> str | None:
    with Session(engine) as session:
        stored = session.get(Issue, issue.id)
        return stored.status if stored else None


def subscriber_status(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {s.email: s.status for s in session.exec(select(Subscriber)).all()}


def copies(server: RecordingHandler) -> Counter[str]:
    return Counter(r for message in server.received for r in message.rcpt_tos)


def on_smtp(settings: Settings, server: RecordingHandler, **smtp: object) -> Settings:
    return settings.replace(smtp={"port": server.port, **smtp})


# -- 1. temporary refusals at random, retried on schedule -------------------------------

# What a busy relay puts off recipients with: half 421s, half 45xs. A 421 also makes the
# engine halve its sending rate (Throttle.slow_down, at most once a second, back up after
# ten quiet seconds); with no rate configured it halves from what the last second
# carried, which at a test's few messages a second soon means one message every few
# seconds: hence the high rate configured here.
PUT_OFF = (
    "421 4.7.0 Try again later, closing connection",
    "421 4.3.2 System not accepting network messages",
    "421 4.4.5 Server busy, try again later",
    "451 4.3.0 Temporary lookup failure",
    "451 4.7.1 Greylisted, try again later",
    "450 4.2.1 Mailbox busy",
)


def test_random_temporary_refusals_are_retried_on_schedule_until_each_has_one_copy(
    engine, settings, tmp_path, seed
):
    handler = FlakyHandler(seed=seed, rate=0.3, replies=PUT_OFF)
    with smtp_server(handler) as (_, server):
        flaky = on_smtp(settings, server, max_connections=4, max_rate_per_second=1000).replace(
            delivery={"max_attempts": 5, "retry_base_seconds": 300, "retry_hours": 0.9}
        )
        _retry_on_schedule(engine, flaky, tmp_path, handler, seed)


def _retry_on_schedule(
    engine: Engine, settings: Settings, directory: Path, server: FlakyHandler, seed: int
) -> None:
    addresses = import_readers(engine, directory, 80)
    always = addresses[:2]  # put off every time: these use up their attempts
    for address in always:
        server.refuse[address] = "451 4.7.1 Greylisted, try again later"
    issue = new_issue(engine, settings, directory)
    limits = settings.delivery
    base, window = limits.retry_base_seconds, timedelta(hours=limits.retry_hours)
    why = f"seed {seed}"
    clock = FakeClock()
    runs = 0

    def run(at: datetime) -> None:
        nonlocal runs
        runs += 1
        clock.time = at
        before = deliveries(engine, issue)
        asked = {a: len(server.replies_to.get(a, [])) for a in addresses}
        deliver(
            engine, settings, issue, enqueue=runs == 1, retry_deferred_now=False, clock=clock.now
        )
        after = deliveries(engine, issue)
        for address in addresses:
            old, new = before.get(address), after[address]
            due = (
                old is None
                or old.status == "queued"
                or (
                    old.status == "deferred"
                    and old.next_attempt_at is not None
                    and old.next_attempt_at <= at
                )
            )
            replies = server.replies_to.get(address, [])
            where = f"{address}, run {runs} at {at:%H:%M:%S}, {why}"
            if not due:
                assert old is not None
                assert len(replies) == asked[address], f"tried before it was due: {where}"
                assert (new.status, new.attempts, new.next_attempt_at) == (
                    old.status, old.attempts, old.next_attempt_at
                ), f"touched before it was due: {where}"  # fmt: skip
                continue
            assert len(replies) == asked[address] + 1, f"due but not tried once: {where}"
            assert new.attempts == (old.attempts if old else 0) + 1, where
            assert new.attempts <= limits.max_attempts, where
            assert new.smtp_response is not None, where
            reply = replies[-1]
            first = new.first_attempt_at
            assert first == (old.first_attempt_at if old and old.attempts else at), where
            if reply.startswith("250"):
                assert new.status == "sent" and new.sent_at == at, where
                assert new.smtp_response.startswith("250"), where
                continue
            assert new.smtp_response == reply, f"not the server's reply: {where}"
            assert new.message_id is None and new.sent_at is None, where
            assert first is not None
            deadline = max(first + window, at)
            if new.attempts >= limits.max_attempts and at >= first + window:
                assert new.status == "failed", f"retries used up but not failed: {where}"
                continue
            assert new.status == "deferred" and new.next_attempt_at is not None, where
            delay = base * 2 ** (new.attempts - 1)
            earliest = min(at + timedelta(seconds=0.8 * delay), deadline)
            latest = min(at + timedelta(seconds=1.2 * delay), deadline)
            tolerance = timedelta(milliseconds=1)
            assert earliest - tolerance <= new.next_attempt_at <= latest + tolerance, (
                f"next attempt {new.next_attempt_at:%H:%M:%S.%f} outside "
                f"[{earliest:%H:%M:%S}, {latest:%H:%M:%S}] after attempt {new.attempts}: {where}"
            )

    run(START)
    assert server.peak_sessions > 1, "several connections at once"
    while True:
        pending = sorted(
            row.next_attempt_at
            for row in deliveries(engine, issue).values()
            if row.status == "deferred" and row.next_attempt_at is not None
        )
        if not pending:
            break
        run(pending[0] - timedelta(seconds=1))  # just too early: nothing goes
        run(pending[len(pending) // 2])  # the earlier half is due, the later half is not
        assert runs < 100, why

    rows = deliveries(engine, issue)
    received = copies(server)
    for address in addresses:
        row, where = rows[address], f"{address}, {why}"
        replies = server.replies_to[address]
        if row.status == "sent":
            assert received[address] == 1, f"{received[address]} copies: {where}"
            assert replies[-1].startswith("250") and not any(
                r.startswith("250") for r in replies[:-1]
            ), where
        else:
            assert row.status == "failed", where
            assert received[address] == 0, where
            assert row.attempts == limits.max_attempts == len(replies), where
            assert all(r[0] == "4" for r in replies) and row.smtp_response == replies[-1], where
    assert {rows[a].status for a in always} == {"failed"}, why
    assert sum(received.values()) == len(server.received), "one recipient per message"
    assert issue_status(engine, issue) == "sent", why
    print(f"{runs} runs; {sum(len(r) for r in server.replies_to.values())} RCPTs")


# -- 2. connections dropped during DATA --------------------------------------------------


@BOTH_WAYS
def test_a_connection_dropped_during_data_is_retried_and_each_reader_gets_one_copy(
    engine, settings, tmp_path, smtp, seed
):
    addresses = import_readers(engine, tmp_path, 60)
    issue = new_issue(engine, settings, tmp_path)
    several = settings.replace(smtp={"max_connections": 4})
    rng = random.Random(seed)
    clock = FakeClock()
    why = f"seed {seed}"
    for run in range(4):  # the last with no drops
        before = deliveries(engine, issue)
        pending = sorted(a for a in addresses if a not in before or before[a].status != "sent")
        smtp.drop = set(rng.sample(pending, len(pending) // 4)) if run < 3 else set()
        deliver(engine, several, issue, enqueue=run == 0, retry_deferred_now=False, clock=clock.now)
        rows = deliveries(engine, issue)
        for address in smtp.drop:
            row, where = rows[address], f"{address}, run {run}, {why}"
            assert row.status == "deferred", where
            assert row.attempts == (before[address].attempts if run else 0) + 1, where
            assert "lost" in (row.smtp_response or ""), f"{row.smtp_response}: {where}"
            assert row.message_id is None and row.sent_at is None, f"recorded as sent: {where}"
        for address in set(pending) - smtp.drop:
            assert rows[address].status == "sent", f"{address}, run {run}, {why}"
        assert set(copies(smtp)) == {a for a in addresses if rows[a].status == "sent"}, why
        clock.time += timedelta(hours=1)  # past every retry
    received = copies(smtp)
    assert received == Counter(addresses), f"not exactly one copy each: {why}"
    by_id = {m.message["Message-ID"]: m.rcpt_tos[0] for m in smtp.received}
    rows = deliveries(engine, issue)
    assert {rows[a].message_id: a for a in addresses} == by_id, "the database agrees"


# -- 3. a server that stalls past the time-out -------------------------------------------


@BOTH_WAYS
def test_a_server_stalling_past_the_timeout_defers_only_the_stalled(
    engine, settings, tmp_path, smtp, seed
):
    addresses = import_readers(engine, tmp_path, 16)
    issue = new_issue(engine, settings, tmp_path)
    # a time-out with room for a loaded machine; stalls well past it
    quick = settings.replace(smtp={"max_connections": 4, "timeout": 2})
    stalled = set(random.Random(seed).sample(addresses, 4))
    smtp.stall = dict.fromkeys(stalled, 6)
    report = deliver(engine, quick, issue)
    assert report.counts == {"sent": 12, "deferred": 4}, f"seed {seed}"
    rows = deliveries(engine, issue)
    for address in stalled:
        assert rows[address].status == "deferred", address
        assert "timed out" in (rows[address].smtp_response or ""), rows[address].smtp_response
    assert copies(smtp) == Counter(set(addresses) - stalled), "nothing twice, no stalled one"
    smtp.stall.clear()
    assert deliver(engine, quick, issue).sent == 4
    assert copies(smtp) == Counter(addresses)


# -- 4. permanent refusals: bounces, policy refusals, repeated hard failures --------------

UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
SPAM = "554 5.7.1 Message rejected as spam"
DISABLED = "550 5.2.1 Mailbox disabled, not accepting messages"


@BOTH_WAYS
def test_unknown_users_bounce_and_policy_refusals_do_not(engine, settings, tmp_path, smtp):
    addresses = import_readers(engine, tmp_path, 40)
    unknown, refused = addresses[3:40:8], addresses[5:40:16]
    for address in unknown:
        smtp.refuse[address] = UNKNOWN.format(address)
    for address in refused:
        smtp.refuse[address] = SPAM
    several = settings.replace(smtp={"max_connections": 4})
    first = new_issue(engine, settings, tmp_path)
    report = deliver(engine, several, first)
    assert report.bounced == len(unknown)
    assert report.counts == {
        "sent": 40 - len(unknown) - len(refused),
        "failed": len(unknown) + len(refused),
    }
    rows, status = deliveries(engine, first), subscriber_status(engine)
    for address in unknown:
        assert rows[address].status == "failed"
        assert rows[address].smtp_response == UNKNOWN.format(address)
        assert status[address] == "bounced"
    for address in refused:
        assert rows[address].status == "failed"
        assert rows[address].smtp_response == SPAM
        assert status[address] == "active"
    assert set(copies(smtp)) == set(addresses) - set(unknown) - set(refused)

    smtp.refuse.clear()
    second = new_issue(engine, settings, tmp_path, 1)
    assert deliver(engine, several, second).sent == 40 - len(unknown)
    assert set(deliveries(engine, second)) == set(addresses) - set(unknown), "bounced left out"
    assert all(copies(smtp)[a] == 0 for a in unknown)
    assert all(copies(smtp)[a] == 1 for a in refused)


def test_repeated_hard_failures_bounce_an_address_without_a_5_1_1(engine, settings, tmp_path, smtp):
    addresses = import_readers(engine, tmp_path, 12)
    dead, flaky = addresses[0], addresses[1]  # flaky: fails, except for one issue
    several = settings.replace(smtp={"max_connections": 4})
    for number in range(HARD_FAILURES + 1):
        smtp.refuse = {dead: DISABLED}
        if number != 1:
            smtp.refuse[flaky] = "552 5.2.2 Mailbox full"
        issue = new_issue(engine, settings, tmp_path, number)
        report = deliver(engine, several, issue)
        rows, status = deliveries(engine, issue), subscriber_status(engine)
        if number < HARD_FAILURES:
            assert rows[dead].status == "failed", number
            assert status[dead] == ("bounced" if number == HARD_FAILURES - 1 else "active")
            assert report.bounced == 0, "no server said the address does not exist"
        else:
            assert dead not in rows, "a bounced address gets no more issues"
        assert rows[flaky].status == ("sent" if number == 1 else "failed"), number
        assert status[flaky] == "active", "its failures were not consecutive"
    assert copies(smtp)[dead] == 0
    assert all(copies(smtp)[a] == HARD_FAILURES + 1 for a in addresses[2:])


# -- 5. a limit on messages per connection -----------------------------------------------


@BOTH_WAYS
def test_max_messages_per_connection_opens_fresh_connections(engine, settings, tmp_path, smtp):
    addresses = import_readers(engine, tmp_path, 5)
    issue = new_issue(engine, settings, tmp_path)
    limited = settings.replace(smtp={"max_connections": 1, "max_messages_per_connection": 2})
    assert deliver(engine, limited, issue).sent == 5
    assert smtp.connections == 3
    assert copies(smtp) == Counter(addresses)


# -- 6. a server that allows fewer connections than asked for ----------------------------


@BOTH_WAYS
@pytest.mark.parametrize("turn_away_at", ["greeting", "ehlo"])
def test_connections_beyond_the_servers_limit_are_given_up_and_the_rest_send_it_all(
    engine, settings, tmp_path, turn_away_at
):
    addresses = import_readers(engine, tmp_path, 60)
    issue = new_issue(engine, settings, tmp_path)
    handler = RecordingHandler(max_sessions=2, turn_away_at=turn_away_at)
    with smtp_server(handler) as (_, server):
        report = deliver(engine, on_smtp(settings, server, max_connections=4), issue)
    assert server.turned_away >= 2, "the engine asked for 4 connections, the server took 2"
    assert server.connections <= 2, "no session beyond the limit was served"
    rows = deliveries(engine, issue)
    not_sent = {
        a: (row.status, row.smtp_response) for a, row in rows.items() if row.status != "sent"
    }
    assert report.counts == {"sent": 60}, not_sent
    assert copies(server) == Counter(addresses)
    assert not not_sent


# -- 7. an unreachable server ------------------------------------------------------------


def test_an_unreachable_server_stops_the_send_and_keeps_everything_queued(
    engine, settings, tmp_path
):
    import_readers(engine, tmp_path, 60)
    issue = new_issue(engine, settings, tmp_path)
    nowhere = settings.replace(smtp={"port": free_port(), "max_connections": 4})
    with pytest.raises(DeliveryError, match=r"cannot connect to 127\.0\.0\.1"):
        deliver(engine, nowhere, issue)
    rows = deliveries(engine, issue).values()
    assert len(rows) == 60
    assert {(row.status, row.attempts, row.smtp_response) for row in rows} == {("queued", 0, None)}
    assert set(subscriber_status(engine).values()) == {"active"}
    assert issue_status(engine, issue) == "sending", "not finished: run the send again"


# -- 8. a rate limit kept across several connections -------------------------------------


@dataclass
class Clocked(RecordingHandler):
    """Notes when each message arrives (at the end of its DATA)."""

    arrivals: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrivals.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


def test_max_rate_per_second_holds_across_several_connections(engine, settings, tmp_path):
    import_readers(engine, tmp_path, 6)
    issue = new_issue(engine, settings, tmp_path)
    handler = Clocked()
    with smtp_server(handler):
        deliver(engine, on_smtp(settings, handler, max_connections=4, max_rate_per_second=2), issue)
    arrivals = [round(t - handler.arrivals[0], 3) for t in handler.arrivals]
    busiest = max(sum(t <= u < t + 1 for u in arrivals) for t in arrivals)
    # 2 a second, evenly spaced: one more allowed for this machine's timing
    assert busiest <= 3, f"{busiest} messages within one second, at {arrivals} s"
