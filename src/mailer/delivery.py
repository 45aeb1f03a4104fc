"""The sending engine's front: `deliver` queues an issue and sends it, wiring the send loop
(sendloop.py) to its two narrow seams, the outbox as its Store and SMTP as its
Transport, with the retry policy (backoff.py), and spreading a large send over helper
processes (processes.py).

A rerun or a restart picks up what is queued, deferred (once due) or left claimed by a
crashed sender; nothing recorded as sent is ever sent again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from mailer.backoff import Backoff
from mailer.db import open_database
from mailer.errors import DeliveryError
from mailer.issues import as_rendered, find_issue_by_id, find_variant, prepare_editions
from mailer.messages import EditionBuilders, MessageBuilder, Recipient
from mailer.models import Issue, IssueStatus, utcnow
from mailer.outbox import Outbox
from mailer.processes import (
    HelpersFailed,
    process_count,
    share,
    with_helpers,
)
from mailer.render import RenderedIssue
from mailer.seams import SendReport, Store, Transport
from mailer.sendloop import send_issue
from mailer.settings import Settings
from mailer.smtp import PermanentFailure, SMTPTransport, TemporaryFailure
from mailer.throttle import Throttle

__all__ = [
    "IssueHeld",
    "SendReport",
    "Store",
    "Transport",
    "deliver",
    "held_reason",
    "send_issue",
    "send_one",
    "send_test_copy",
]


class IssueHeld(DeliveryError):
    """The relay refused the message itself: the send stopped, the rest stay queued, and
    the issue is held until an editor resumes it. Counts against no reader."""

    def __init__(self, issue_id: int, reply: str, report: SendReport, sent: int):
        super().__init__(
            f"the relay refused the message itself, not a reader: {reply}. Issue {issue_id} "
            f"is held: {sent} have it; the rest stay queued, count against nobody and are "
            "not resumed by themselves. Find out why from the reply (or ask your "
            "provider), put that right, then resume with: "
            f"mailer send --issue {issue_id}"
        )
        self.issue_id, self.reply, self.report = issue_id, reply, report


def deliver(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    progress: Callable[[str], None] | None = None,
    *,
    enqueue: bool = True,
    retry_deferred_now: bool = True,
    wait_for_others: bool = False,
    clock: Callable[[], datetime] = utcnow,
    processes: int | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Queue the issue for every eligible subscriber and send it over SMTP, from this
    process alone or, for a large send, with helper processes (see processes.py).

    Without `stop`, Ctrl-C or SIGTERM stops the send (KeyboardInterrupt, once the
    messages on the wire are recorded); a service sets `stop` instead."""
    outbox = Outbox(engine, issue, settings.delivery, clock=clock)
    if enqueue:
        outbox.enqueue(editions=prepare_editions(engine, settings, issue))
    # the content as stored once queued: what every sender of the issue sends
    issue = find_issue_by_id(engine, outbox.issue_id)
    if retry_deferred_now:
        outbox.retry_deferred_now()

    def send_here(connections: int) -> tuple[dict[str, int], int]:
        report = _send_share(
            engine, outbox, settings, issue, connections, progress, wait_for_others, stop
        )
        return report.counts, report.bounced

    count = processes or process_count(settings, outbox.open_deliveries())
    assert issue.id is not None
    connections = settings.smtp.max_connections
    try:
        if count == 1 or wait_for_others:  # a worker is one process among several already
            counts, bounced = send_here(connections)
        else:
            shares = share(connections, count)
            counts, bounced = with_helpers(
                settings, issue.id, shares, progress, send_here, send_in_helper, engine.dispose
            )
    except HelpersFailed as failed:
        if held_reason(engine, issue.id) is None:
            raise
        counts, bounced = failed.counts, failed.bounced  # a helper found it refused
    except DeliveryError:
        if held_reason(engine, issue.id) is None:
            raise
        counts, bounced = {}, 0
    report = SendReport(counts, bounced)
    _raise_if_held(engine, issue.id, report, outbox)
    return report


def send_in_helper(
    settings: Settings, issue_id: int, connections: int, progress: Callable[[str], None]
) -> int:
    """What a helper process of `deliver` runs (processes.with_helpers): the issue, already
    queued, over its share of the connections; the addresses that bounced."""
    engine = open_database(settings.database.url)
    issue = find_issue_by_id(engine, issue_id)
    outbox = Outbox(engine, issue, settings.delivery)
    report = _send_share(engine, outbox, settings, issue, connections, progress)
    _raise_if_held(engine, issue_id, report, outbox)
    return report.bounced


def _send_share(
    engine: Engine,
    outbox: Outbox,
    settings: Settings,
    issue: Issue,
    connections: int,
    progress: Callable[[str], None] | None,
    wait_for_others: bool = False,
    stop: threading.Event | None = None,
) -> SendReport:
    """The issue as stored, sent from this process over `connections` connections."""
    builder = edition_builders(engine, settings, issue)
    smtp = settings.smtp
    return send_issue(
        outbox,
        builder,
        lambda: SMTPTransport(smtp, local_hostname=builder.domain),
        connections=connections,
        longest_send=smtp.longest_send,
        throttle=Throttle(smtp.max_rate_per_second, smtp.max_per_hour),
        backoff=Backoff.of(settings.delivery),
        retry_deferred_now=False,
        wait_for_others=wait_for_others,
        progress=progress,
        stop=stop,
    )


def edition_builders(engine: Engine, settings: Settings, issue: Issue) -> EditionBuilders:
    """The builders of the issue's editions as stored: its own now, a variant's when a
    delivery of it is first claimed."""

    def builder(rendered: RenderedIssue) -> MessageBuilder:
        return MessageBuilder(settings, rendered, issue_id=issue.id, issue_kind=issue.kind)

    def load(variant_id: int) -> MessageBuilder:
        return builder(as_rendered(find_variant(engine, variant_id), issue.reference))

    return EditionBuilders(builder(as_rendered(issue)), load)


def _raise_if_held(engine: Engine, issue_id: int, report: SendReport, outbox: Outbox) -> None:
    reason = held_reason(engine, issue_id)
    if reason is not None:  # here, by another connection, or by another sender
        raise IssueHeld(issue_id, reason, report, outbox.sent_deliveries())


def held_reason(engine: Engine, issue_id: int) -> str | None:
    """The relay's reply, if the issue is held."""
    issue = find_issue_by_id(engine, issue_id)
    return (issue.held_reason or "refused") if issue.status == IssueStatus.HELD else None


def send_test_copy(
    settings: Settings, rendered: RenderedIssue, address: str, donor: bool = False
) -> str:
    """One copy for an editor (with `donor`, the donors' copy), marked [Test] and
    recorded nowhere; the server's reply."""
    marked = "[Test, donors' copy] " if donor and rendered.thanks_html else "[Test] "
    recipient = Recipient(0, address, donor=donor)
    return send_one(settings, rendered, recipient, marked, "test copy")


def send_one(
    settings: Settings,
    rendered: RenderedIssue,
    recipient: Recipient,
    subject_prefix: str = "",
    what: str = "message",
) -> str:
    """One message outside any issue (a test copy, a confirmation link), sent now and
    recorded nowhere; the server's reply, or DeliveryError."""
    builder = MessageBuilder(settings, rendered, subject_prefix=subject_prefix)
    message = builder.build(recipient)
    with SMTPTransport(settings.smtp, local_hostname=builder.domain) as transport:
        try:
            return transport.send(message.sender, message.recipient, message.data)
        except (TemporaryFailure, PermanentFailure) as exc:
            raise DeliveryError(f"{what} to {recipient.email} not sent: {exc.reply}") from None
