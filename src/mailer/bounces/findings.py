"""What one message that came back says: the contract between reading a bounce
(bounces.parse) and what it does to readers (the use case). Plain values only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Action(StrEnum):
    FAILED = "failed"  # a delivery report's "failed", or a bounce that says it is final
    DELAYED = "delayed"  # still trying, or a temporary failure
    COMPLAINT = "complaint"  # an ARF report (RFC 5965): a reader marked it as spam
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe mailto: address


@dataclass(frozen=True)
class Failure:
    """One recipient the message is about."""

    action: Action
    recipient: str  # the address it names, lower-cased; "" when it names none
    status: str = ""  # the RFC 3463 status ("5.1.1"), "" when none was given
    diagnostic: str = ""  # the remote server's words, on one line ("550 5.1.1 ... unknown")


@dataclass(frozen=True)
class Bounce:
    """One message read from a file, a mailbox or IMAP."""

    key: str  # sha256 (hex) of the message's bytes: the same message read again is the same
    failures: tuple[Failure, ...] = ()
    # (kind, number) from the VERP address it came to (mailer.tokens.read_verp), if any
    verp: tuple[str, int] | None = None
    # the Message-ID of our message it is about (a report quotes it), "" if not found
    original_message_id: str = ""
    date: datetime | None = None  # the message's own Date, if readable
    # why nothing in it counts ("auto-reply", "not a bounce", "unreadable: ..."); ""
    # when failures says what it is
    ignored: str = ""
