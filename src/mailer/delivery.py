"""The sending engine: takes claimed batches from the outbox, builds each message, hands
it to the transport and records the outcome right after. It sees two narrow interfaces,
the Outbox (store) and a Transport (one message at a time).

A rerun or a restart picks up what is queued, deferred or left claimed by a crashed
sender; nothing recorded as sent is ever sent again."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine

from mailer.errors import DeliveryError
from mailer.issues import as_rendered
from mailer.messages import MessageBuilder, Recipient
from mailer.models import Issue, SubscriberStatus, utcnow
from mailer.outbox import DEFERRED, FAILED, SENT, SKIPPED, Claimed, Outbox
from mailer.render import RenderedIssue
from mailer.settings import Settings
from mailer.smtp import ConnectionFailure, PermanentFailure, SMTPTransport, TemporaryFailure
from mailer.throttle import Throttle

# A temporary refusal that means "slow down" rather than "this recipient, later".
_TOO_FAST = re.compile(r"too many|rate limit|too fast", re.IGNORECASE)


class Transport(Protocol):
    def send(self, sender: str, recipient: str, data: bytes) -> str: ...


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=dict)
    bounced: int = 0

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def sent(self) -> int:
        return self.counts.get(SENT, 0)


def deliver(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    progress: Callable[[str], None] | None = None,
) -> SendReport:
    """Queue the issue for every eligible subscriber and send it over SMTP."""
    outbox = Outbox(engine, issue, settings.delivery)
    outbox.enqueue()
    builder = MessageBuilder(settings, as_rendered(issue), issue_id=issue.id)
    throttle = Throttle(settings.smtp.max_rate_per_second, settings.smtp.max_per_hour)
    with SMTPTransport(settings.smtp, local_hostname=builder.domain) as transport:
        return send_issue(outbox, builder, transport, throttle=throttle, progress=progress)


def send_test_copy(settings: Settings, rendered: RenderedIssue, address: str) -> str:
    """One copy for an editor, marked [Test] and recorded nowhere; the server's reply."""
    builder = MessageBuilder(settings, rendered, subject_prefix="[Test] ")
    message = builder.build(Recipient(0, address))
    with SMTPTransport(settings.smtp, local_hostname=builder.domain) as transport:
        try:
            return transport.send(message.sender, message.recipient, message.data)
        except (TemporaryFailure, PermanentFailure) as exc:
            raise DeliveryError(f"test copy to {address} not sent: {exc.reply}") from None


def send_issue(
    outbox: Outbox,
    builder: MessageBuilder,
    transport: Transport,
    *,
    throttle: Throttle | None = None,
    retry_deferred_now: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SendReport:
    """Send every due delivery of the issue and record each outcome. One refused
    recipient never stops the others. Whatever stops the run (an unreachable server, a
    refused login, Ctrl-C), the rows it still holds go back to the queue untouched."""
    run = _Run(outbox, builder, transport, throttle or Throttle(), progress)
    outbox.reclaim_from_the_dead()
    if retry_deferred_now:
        outbox.retry_deferred_now()
    try:
        while batch := outbox.claim():
            for claimed in batch:
                run.deliver(claimed)
    except ConnectionFailure as exc:
        raise DeliveryError(
            f"{exc.reply}; {run.report.sent} sent before that, the rest stay queued: run "
            "the same command again later"
        ) from None
    finally:
        outbox.release()
    outbox.finish()
    return run.report


@dataclass
class _Run:
    outbox: Outbox
    builder: MessageBuilder
    transport: Transport
    throttle: Throttle
    progress: Callable[[str], None] | None
    report: SendReport = field(default_factory=SendReport)

    def deliver(self, claimed: Claimed) -> None:
        status = self._send(claimed)
        if status is None:
            return
        self.report.add(status)
        if self.progress is not None:
            self.progress(status)

    def _send(self, claimed: Claimed) -> str | None:
        """Send one claimed delivery and record what became of it: its new status, or
        None when another sender holds it now."""
        outbox = self.outbox
        if claimed.subscriber_status != SubscriberStatus.ACTIVE:
            reply = f"not sent: subscriber is {claimed.subscriber_status}"
            outbox.record(claimed.delivery_id, SKIPPED, smtp_response=reply)
            return SKIPPED
        if not outbox.renew(claimed.delivery_id):
            return None
        message = self.builder.build(claimed.recipient)
        self.throttle.wait()
        try:
            reply = self.transport.send(message.sender, message.recipient, message.data)
        except ConnectionFailure:
            raise
        except TemporaryFailure as exc:
            return self._defer(claimed, exc.reply)
        except PermanentFailure as exc:
            return self._fail(claimed, exc)
        outbox.record(
            claimed.delivery_id,
            SENT,
            attempts=claimed.attempts + 1,
            smtp_response=reply,
            message_id=message.message_id,
            sent_at=utcnow(),
        )
        return SENT

    def _defer(self, claimed: Claimed, reply: str) -> str:
        """A temporary failure: retry later, or fail once the retries are used up."""
        if reply.startswith("421") or _TOO_FAST.search(reply):
            self.throttle.slow_down()
        retry_at = self.outbox.retry_at(claimed, jitter=random.uniform(0.8, 1.2))
        status = DEFERRED if retry_at is not None else FAILED
        self.outbox.record(
            claimed.delivery_id,
            status,
            attempts=claimed.attempts + 1,
            smtp_response=reply,
            next_attempt_at=retry_at,
        )
        return status

    def _fail(self, claimed: Claimed, failure: PermanentFailure) -> str:
        self.outbox.record(
            claimed.delivery_id, FAILED, attempts=claimed.attempts + 1, smtp_response=failure.reply
        )
        if failure.bounce:
            self.outbox.bounce(claimed.recipient.subscriber_id)
            self.report.bounced += 1
        return FAILED
