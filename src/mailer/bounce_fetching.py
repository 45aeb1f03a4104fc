"""`mailer bounces fetch` and the scheduler's bounce job: the [bounces] mailbox read over
IMAP, each message applied as `bounces process` applies a file (bounce_processing), and
the messages that were applied moved to the processed folder.

A message is moved only once its changes are committed (bounce_processing applies each
message in a transaction of its own). A fetch stopped between the commit and the move
leaves it in the folder to be read again next time, which changes nothing: its events
are kept once per message and reader (bounce_event's message_key): "counted already"."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from mailer.bounce_processing import BounceReport, process_message
from mailer.bounces.imap import TIMEOUT_SECONDS, ImapError, check_mailbox, open_mailbox
from mailer.models import utcnow
from mailer.settings import Settings


@dataclass(frozen=True)
class FetchReport:
    """What one fetch read and did, and where the messages went."""

    report: BounceReport  # what `bounces process` would print for the same messages
    moved: int  # messages moved to the processed folder
    folder: str
    processed_folder: str


def mailbox_configured(settings: Settings) -> None:
    """An ImapError unless [bounces] names a mailbox and its password is set: checked
    before anything else is opened."""
    check_mailbox(settings.bounces)


def fetch_bounces(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> FetchReport:
    """Read the [bounces] mailbox, apply each message and move the applied ones; an
    ImapError (a MailerError) when the mailbox cannot be read or is not configured."""
    bounces = settings.bounces
    report, applied = BounceReport(), []
    with open_mailbox(bounces, timeout) as mailbox:
        try:
            for message in mailbox.messages():
                # named by its place in the folder; its events' source: imap:FOLDER UID n
                named = (f"UID {message.uid}", message.message)
                process_message(engine, settings, named, mailbox.label, now or utcnow(), report)
                if named[0] not in report.not_applied:
                    applied.append(message.uid)
        except BaseException:
            with suppress(ImapError):  # what was applied need not be read again
                mailbox.move(applied)
            raise
        mailbox.move(applied)
    return FetchReport(report, len(applied), bounces.imap_folder, bounces.imap_processed_folder)
