"""`mailer bounces fetch` and the scheduler's bounce job: the [bounces] mailbox read over
IMAP, each message applied as `bounces process` applies a file (bounce_processing), and
the messages that were applied moved to the processed folder.

A message is moved only once its changes are committed: bounce_processing applies one
message at a time, each in a transaction of its own, so a message is done when the next
one is asked for (or the run returns). A crash between the commit and the move leaves it
in the folder to be read again next time, which changes nothing: its events are kept
once per message and reader (bounce_event's message_key), and it says "counted already"."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from mailer.bounce_processing import BounceReport, process
from mailer.bounces.imap import TIMEOUT_SECONDS, Fetched, ImapError, check_mailbox, open_mailbox
from mailer.models import utcnow
from mailer.settings import Settings


@dataclass(frozen=True)
class FetchReport:
    """What one fetch read and did, and where the messages went."""

    report: BounceReport  # what `bounces process` would print for the same messages
    moved: int  # messages moved to the processed folder
    folder: str
    processed_folder: str


def fetch_bounces(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> FetchReport:
    """Read the [bounces] mailbox, apply each message and move the applied ones; an
    ImapError (a MailerError) when the mailbox cannot be read or is not configured."""
    bounces = settings.bounces
    with open_mailbox(bounces, timeout) as mailbox:
        applied = _Applied(mailbox.messages())
        try:
            report = process(engine, settings, applied, mailbox.label, now or utcnow())
        except BaseException:
            with suppress(ImapError):  # what was applied need not be read again
                mailbox.move(applied.done)
            raise
        applied.settle()
        mailbox.move(applied.done)
    return FetchReport(
        report, len(applied.done), bounces.imap_folder, bounces.imap_processed_folder
    )


def mailbox_configured(settings: Settings) -> None:
    """An ImapError unless [bounces] names a mailbox and its password is set: checked
    before anything else is opened."""
    check_mailbox(settings.bounces)


class _Applied(Iterable[tuple[str, bytes]]):
    """The folder's messages as (name, bytes) for bounce_processing, keeping the UIDs of
    those it is done with: each one it had before it asked for the next."""

    def __init__(self, fetched: Iterator[Fetched]) -> None:
        self.fetched = fetched
        self.done: list[str] = []
        self.pending: str | None = None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for message in self.fetched:
            self.settle()
            self.pending = message.uid
            yield f"UID {message.uid}", message.message  # its source: imap:FOLDER UID n
        self.settle()

    def settle(self) -> None:
        if self.pending is not None:
            self.done.append(self.pending)
            self.pending = None
