"""The send loop: one run of the engine over a Store (the outbox) and a Transport (SMTP).
One coordinator (the calling thread) claims batches from the store and records outcomes;
`connections` sender threads each hold one connection, build messages and send them.
Threads suit this work: a sender mostly waits on the server, and the code that holds the
interpreter lock (placeholders, quoted-printable, RSA) is short; see bench/README.md.

Outcomes are written in groups: a sender waits until its outcome is committed before it
sends again, and one commit takes every outcome that arrived meanwhile. So the database
never lags the server by more than one message per connection: after a crash those few
are the only messages that can go out twice. delivery.py wires the loop to its parts."""

from __future__ import annotations

import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailer.backoff import Backoff
from mailer.errors import DeliveryError
from mailer.messages import EditionBuilders, MessageBuilder
from mailer.models import SubscriberStatus
from mailer.outbox import DEFERRED, FAILED, SENT, SKIPPED, Claimed, Outcome
from mailer.processes import stop_on_signals
from mailer.replies import Verdict, ran_out
from mailer.seams import Gated, SendReport, Store, Transport
from mailer.settings import Delivery as DeliverySettings
from mailer.smtp import ConnectionFailure, ContentRefused, PermanentFailure, TemporaryFailure
from mailer.throttle import Throttle

# A temporary refusal that means "slow down" rather than "this recipient, later".
_TOO_FAST = re.compile(r"too many|rate limit|too fast", re.IGNORECASE)
_GATHER_SECONDS = 0.002
# How long a worker waits before looking again at rows another sender holds.
_POLL_SECONDS = 2.0
# How often the readers of rows claimed and not yet sent are looked at again: one who
# leaves meanwhile (a throttled send's batch waits hours) is not sent the issue.
_RECHECK_SECONDS = 1.0
# So many recipients in a row refused at RCPT for a policy reason, or refused in the very
# same words but for their addresses (and none accepted in between): the relay is
# refusing us, not them, and the issue is held like a refusal of the message, those
# recipients queued again and counted against nobody.
REFUSALS_IN_A_ROW = 10


def send_issue(
    outbox: Store,
    builder: MessageBuilder | EditionBuilders,
    connect: Callable[[], Transport],
    *,
    connections: int = 1,
    longest_send: float = 690.0,
    throttle: Throttle | None = None,
    backoff: Backoff | None = None,
    retry_deferred_now: bool = True,
    wait_for_others: bool = False,
    progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Send every due delivery of the issue and record each outcome. One refused
    recipient never stops the others. Whatever stops the run (an unreachable server, a
    refused login, Ctrl-C), the messages being sent finish and are recorded, and the rows
    still held go back to the queue untouched.

    With wait_for_others (a worker among several), the run also waits for rows other
    senders hold, and takes over those of a sender that died, until none is left."""
    outbox.reclaim_from_the_dead()
    if retry_deferred_now:
        outbox.retry_deferred_now()
    backoff = backoff or Backoff.of(DeliverySettings())
    if isinstance(builder, MessageBuilder):  # one edition
        builder = EditionBuilders(builder)
    run = _Run(outbox, builder, throttle or Throttle(), backoff, longest_send, progress)
    if stop is not None:
        run.interrupted = stop
    senders = [
        threading.Thread(target=run.sender, args=(connect,), name=f"smtp-{n}", daemon=True)
        for n in range(connections)
    ]
    for sender in senders:
        sender.start()
    with stop_on_signals(run.interrupted, install=stop is None):
        try:
            run.coordinate(len(senders), wait_for_others)
            run.hold_if_nothing_got_through()
        except ContentRefused:
            pass  # the issue is held (deliver says so); in-flight messages are recorded
        finally:
            run.stop(senders)
            outbox.release()
    outbox.finish()
    return run.report


# What senders tell the coordinator: an outcome with an event set once it is recorded,
# or a sender's end (None, or the exception that ended it).
_Event = tuple[Outcome, threading.Event] | BaseException | None


class _Lost(Exception):
    """This sender no longer holds the row (its lease ran out): it must not send it."""


@dataclass
class _Run:
    outbox: Store
    builder: EditionBuilders
    throttle: Throttle
    backoff: Backoff
    longest_send: float
    progress: Callable[[str], None] | None
    report: SendReport = field(default_factory=SendReport)
    refused: list[Outcome] = field(default_factory=list)  # in a row, since the last sent
    alike: list[Outcome] = field(default_factory=list)  # readers refused in the same words
    since_sent: list[Outcome] = field(default_factory=list)  # every failure since a sent
    struck_out: set[int] = field(default_factory=set)  # subscribers bounced by strikes
    refusing: bool = False  # the relay refuses us: what it refuses now goes back too
    refusing_words: str | None = None  # ... and readers refused in these words
    work: queue.SimpleQueue[Claimed | None] = field(default_factory=queue.SimpleQueue)
    events: queue.SimpleQueue[_Event] = field(default_factory=queue.SimpleQueue)
    leases: dict[int, datetime] = field(default_factory=dict)  # rows held -> lease end
    withdrawn: dict[int, str] = field(default_factory=dict)  # rows -> reader's status now
    rechecked: float = field(default_factory=time.monotonic)
    renew_after: datetime | None = None  # when the oldest lease needs renewing
    renewed: threading.Condition = field(default_factory=threading.Condition)
    queued: int = 0  # rows put in `work` and not yet taken
    senders: int = 0  # still running
    stopping: threading.Event = field(default_factory=threading.Event)
    interrupted: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the coordinator: the only thread that touches the database ---------------------

    def coordinate(self, senders: int, wait_for_others: bool) -> None:
        self.senders = senders
        exhausted = False
        failure: ConnectionFailure | None = None
        while senders:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            if not exhausted and self.queued < 2 * senders:
                exhausted = not self._claim()
            self._renew_if_due()
            self._recheck_readers_if_due()
            if exhausted and not self.leases:
                if not wait_for_others or not self._others_still_hold():
                    return
                exhausted = False
                continue
            events = self._next_events(block=exhausted or self.queued >= 2 * senders)
            outcomes = [event for event in events if isinstance(event, tuple)]
            if outcomes:
                self._record(outcomes)
                self._refused_in_a_row([outcome for outcome, _ in outcomes])
            for event in events:
                if event is None or isinstance(event, ConnectionFailure):
                    # this connection cannot be made; the others go on
                    senders = self.senders = senders - 1
                    failure = event or failure
                elif isinstance(event, ContentRefused):
                    # first, so that no other sender claims more of it
                    self.outbox.hold(event.reply)
                    raise event
                elif isinstance(event, BaseException):
                    raise event
        if failure is not None:  # every connection failed
            raise DeliveryError(
                f"{failure.reply}; {self.report.sent} sent before that, the rest stay "
                "queued: run the same command again later"
            )

    def _claim(self) -> bool:
        batch = self.outbox.claim()
        self.builder.prepare({claimed.variant_id for claimed in batch})
        with self.lock:
            for claimed in batch:
                self.leases[claimed.delivery_id] = claimed.lease_until
                self.work.put(claimed)
            self.queued += len(batch)
        if batch:
            due = self._renewal_due(batch[0].lease_until)
            self.renew_after = min(self.renew_after or due, due)
        return bool(batch)

    def _renewal_due(self, lease: datetime) -> datetime:
        # while the lease still covers a whole send, with time to spare
        return lease - timedelta(seconds=self.longest_send + 4 * _POLL_SECONDS)

    def _others_still_hold(self) -> bool:
        """Wait a little while other senders hold rows of this issue; then take over
        those of any that died. False once nobody holds any."""
        held, _ = self.outbox.held_elsewhere()
        if held:
            time.sleep(_POLL_SECONDS)
            self.outbox.reclaim_from_the_dead()
        return held > 0 or self.outbox.claimable()

    def _next_events(self, block: bool) -> list[_Event]:
        """Whatever senders reported; waits a little for the first one when there is
        nothing else to do."""
        try:
            events = [self.events.get(timeout=0.5) if block else self.events.get_nowait()]
        except queue.Empty:
            return []
        # gather what the other connections finish meanwhile: one commit for several
        until = time.monotonic() + _GATHER_SECONDS
        while len(events) < self.senders and (wait := until - time.monotonic()) > 0:
            try:
                events.append(self.events.get(timeout=wait))
            except queue.Empty:
                break
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def _record(self, outcomes: list[tuple[Outcome, threading.Event]]) -> None:
        self.struck_out.update(self.outbox.record([outcome for outcome, _ in outcomes]))
        for outcome, recorded in outcomes:
            self.leases.pop(outcome.claimed.delivery_id, None)
            recorded.set()
            self.report.add(outcome.status)
            self.report.bounced += outcome.bounce
            if self.progress is not None:
                self.progress(outcome.status)

    def _refused_in_a_row(self, outcomes: list[Outcome]) -> None:
        """Hold the issue once REFUSALS_IN_A_ROW recipients in a row were refused for a
        policy reason, or as readers in the same words (a relay that answers every RCPT
        "550 Rejected"): put them back in the queue, uncounted, and stop."""
        for outcome in outcomes:
            if outcome.status == SENT:
                self.refused.clear()
                self.alike.clear()
                self.since_sent.clear()
            if outcome.status != FAILED:
                continue
            self.since_sent.append(outcome)
            if outcome.refused:
                self.refused.append(outcome)
            elif (words := outcome.reader_refusal) is not None:
                if self.alike and self.alike[0].reader_refusal != words:
                    self.alike.clear()  # another refusal: this reader's own, perhaps
                self.alike.append(outcome)
        for row in (self.refused, self.alike):
            if len(row) >= REFUSALS_IN_A_ROW:
                self._hold_refused(row, f"{row[-1].reply} ({len(row)} recipients in a row)")

    def hold_if_nothing_got_through(self) -> None:
        """At the end of a run: if nothing of the issue was ever accepted and every
        failure was a policy refusal, or a refusal of two or more readers in the same
        words (a small list, fewer than REFUSALS_IN_A_ROW), the relay refuses us, not
        them: hold the issue as for a refusal of the message, nobody counted."""
        failures = self.since_sent  # nothing was sent: every failure of the run
        words = {outcome.reader_refusal for outcome in failures if not outcome.refused}
        readers = sum(not outcome.refused for outcome in failures)
        if not failures or self.report.sent or None in words or len(words) > 1 or readers == 1:
            return
        outbox = self.outbox
        if outbox.sent_deliveries() or outbox.failed_deliveries() != len(failures):
            return  # accepted once, or failed for other reasons in an earlier run
        if outbox.held_elsewhere()[0]:
            return  # another sender is still at it: it may yet get through
        why = f"{failures[-1].reply} (all {len(failures)} recipients refused, none accepted)"
        self._hold_refused(failures, why)

    def _hold_refused(self, outcomes: list[Outcome], reply: str) -> None:
        """Hold the issue for the refusals in `outcomes`, and put back every failure
        since the last message sent that is one of theirs: a reader's own refusal in
        between broke the row, not what the relay does to everyone."""
        self.outbox.hold(reply)
        self.refusing = True
        words = (outcome.reader_refusal for outcome in outcomes)
        self.refusing_words = next((w for w in words if w is not None), None)
        self._requeue(self.since_sent)
        raise ContentRefused(reply)

    def _requeue(self, outcomes: list[Outcome]) -> None:
        """Put back the refusals that turned out to be about us, uncounted: policy
        refusals, and readers refused in the words the relay refuses everyone with (an
        address that a strike bounced meanwhile is active again)."""
        words = self.refusing_words
        ours = [o for o in outcomes if o.refused or (words and o.reader_refusal == words)]
        if ours:
            restore = {o.claimed.recipient.subscriber_id for o in ours} & self.struck_out
            self.outbox.requeue([outcome.claimed for outcome in ours], sorted(restore))
            self.report.counts[FAILED] -= len(ours)

    def _renew_if_due(self) -> None:
        """Keep the leases of rows still waiting long enough to cover a whole send."""
        if not self.leases or self.renew_after is None or self.outbox.clock() < self.renew_after:
            return
        held = list(self.leases)
        kept, until = self.outbox.renew(held)
        self.renew_after = self._renewal_due(until)
        with self.renewed:
            for delivery_id in held:
                self.leases[delivery_id] = until
            for lost in set(held) - set(kept):
                del self.leases[lost]
            self.renewed.notify_all()

    def _recheck_readers_if_due(self) -> None:
        """Rows whose reader left since the claim are skipped when their turn comes
        (_left)."""
        if not self.leases or time.monotonic() - self.rechecked < _RECHECK_SECONDS:
            return
        self.rechecked = time.monotonic()
        self.withdrawn.update(self.outbox.withdrawn(list(self.leases)))

    def stop(self, senders: list[threading.Thread]) -> None:
        """Let the messages being sent finish and record them; what is still queued
        here stays claimed until the outbox releases it."""
        self.stopping.set()
        self.throttle.stopped.set()
        for _ in senders:
            self.work.put(None)
        while any(sender.is_alive() for sender in senders):
            self._record_late(self._next_events(block=True))
        # and what the last of them handed over on their way out, while a commit ran
        self._record_late(self._next_events(block=False))

    def _record_late(self, events: list[_Event]) -> None:
        outcomes = [event for event in events if isinstance(event, tuple)]
        if outcomes:
            self._record(outcomes)
            if self.refusing:
                self._requeue([outcome for outcome, _ in outcomes])

    # -- a sender: one thread, one connection ---------------------------------------

    def sender(self, connect: Callable[[], Transport]) -> None:
        transport = connect()
        end: BaseException | None = None
        # The last outcome handed to the coordinator, until it is on record. A transport
        # that can wait for it before the next message's final dot writes that message
        # meanwhile; with any other, the next message waits for it here.
        previous: threading.Event | None = None
        claimed: Claimed | None = None  # the message on its way
        gated = False
        if isinstance(transport, Gated):
            transport.before_final_dot = lambda: self._before_final_dot(previous, claimed)
            gated = True
        try:  # connects on its first message: a small send opens only what it uses
            while (claimed := self._take()) is not None:
                try:
                    outcome = self._attempt(transport, claimed)
                except ConnectionFailure:
                    self._give_back(claimed)
                    raise
                except _Lost:
                    continue
                previous = threading.Event()
                self.events.put((outcome, previous))
                while not gated and not previous.wait(0.5) and not self.stopping.is_set():
                    pass  # the next message waits until this one is on record
        except BaseException as exc:  # handed to the coordinator
            end = exc
        finally:
            transport.close()
            self.events.put(end)

    def _before_final_dot(self, previous: threading.Event | None, claimed: Claimed | None) -> None:
        """A message is written but for its final dot: it goes once the message before it
        on this connection is on record, and not at all once the run is stopping (it
        stays queued). That record may have taken long (a stalled commit), and nothing
        renews leases meanwhile: the lease is looked at again, as before a message."""
        while previous is not None and not previous.wait(0.5) and not self.stopping.is_set():
            pass
        if self.stopping.is_set():
            raise _Lost
        if claimed is not None:
            self._hold(claimed)

    def _take(self) -> Claimed | None:
        claimed = self.work.get()
        with self.lock:
            self.queued -= claimed is not None
        if self.stopping.is_set():
            return None
        return claimed

    def _give_back(self, claimed: Claimed) -> None:
        with self.lock:
            self.queued += 1
        self.work.put(claimed)

    def _attempt(self, transport: Transport, claimed: Claimed) -> Outcome:
        if (skipped := self._left(claimed)) is not None:
            return skipped
        self.throttle.wait()
        if self.stopping.is_set():
            raise _Lost  # stopped while waiting for its turn: it stays queued
        if (skipped := self._left(claimed)) is not None:  # while it waited its turn
            return skipped
        self._hold(claimed)
        message = self.builder.build(claimed.recipient, claimed.delivery_id, claimed.variant_id)
        try:
            reply = transport.send(message.sender, message.recipient, message.data)
        except ConnectionFailure:
            raise
        except TemporaryFailure as exc:
            return self._defer(claimed, exc.reply)
        except PermanentFailure as exc:
            blames, refused = exc.verdict.blames_reader, exc.verdict == Verdict.REFUSED
            return Outcome(
                claimed, FAILED, exc.reply, bounce=exc.bounce, blames_reader=blames, refused=refused
            )
        at = self.outbox.clock()  # outcomes are recorded in groups: keep each one's time
        return Outcome(claimed, SENT, reply, message_id=message.message_id, at=at)

    def _left(self, claimed: Claimed) -> Outcome | None:
        """Skipped: the reader is not active, as claimed or since (_recheck_readers_if_due)."""
        status = self.withdrawn.get(claimed.delivery_id, claimed.subscriber_status)
        if status == SubscriberStatus.ACTIVE:
            return None
        return Outcome(claimed, SKIPPED, f"not sent: subscriber is {status}")

    def _hold(self, claimed: Claimed) -> None:
        """Go ahead only while the lease covers the longest a send can take, so no other
        sender can take the row over while it is on the wire; else wait for renewal."""
        margin = timedelta(seconds=self.longest_send)
        with self.renewed:
            while True:
                until = self.leases.get(claimed.delivery_id)
                if until is None:
                    raise _Lost
                if until - self.outbox.clock() > margin:
                    return
                if self.stopping.is_set():
                    raise _Lost
                self.renewed.wait(0.5)

    def _defer(self, claimed: Claimed, reply: str) -> Outcome:
        """A temporary failure: retry later, or fail once the retries are used up."""
        if reply.startswith("421") or _TOO_FAST.search(reply):
            self.throttle.slow_down()
        now, jitter = self.outbox.clock(), random.uniform(0.8, 1.2)
        retry_at = self.backoff.retry_at(claimed.attempts, claimed.first_attempt_at, now, jitter)
        if retry_at is None:  # put off for days: the table says whether by the mailbox
            return Outcome(claimed, FAILED, reply, blames_reader=ran_out(reply).blames_reader)
        return Outcome(claimed, DEFERRED, reply, next_attempt_at=retry_at)
