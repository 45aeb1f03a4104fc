"""One message that came back to the bounce address, read into a Bounce: the failed
recipients of a delivery report (RFC 3464) or of a plain-text bounce (flufl.bounce), a
reader's complaint (ARF, RFC 5965), a request to the List-Unsubscribe mailto: address,
or why it counts for nothing (an auto-reply, not a bounce, unreadable). Pure: bytes in,
a Bounce out, and never an exception, whatever arrives."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from mailer.bounces.findings import Action, Bounce, Failure
from mailer.bounces.mime import addresses, enclosed_headers, header, headers, parse, readable_text
from mailer.bounces.plain import plain_failures
from mailer.bounces.reports import (
    complaint,
    delivery_failures,
    has_delivery_status,
    is_feedback_report,
    is_read_receipt,
    reported_message_id,
)
from mailer.tokens import VERP_UNSUBSCRIBE, Keys, read_verp

# where the address a message was delivered to shows, most telling first
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# RFC 3834 says Auto-Submitted; the rest are what vacation programs and Exchange add
_AUTO_REPLY_FLAGS = ("X-Autoreply", "X-Autorespond", "X-Autoresponse")
_AUTO_REPLY_SUBJECT = re.compile(
    r"\b(out of (the )?office|automatic reply|auto[- ]?reply|autoresponse|auto:|vacation|"
    r"on leave|away from (my|the) (desk|office)|abwesenheit|automatische antwort|"
    r"r[ée]ponse automatique|absence|automatisk svar|autosvar|fravær|ferie)",
    re.IGNORECASE,
)
_MESSAGE_ID_LINE = re.compile(r"^message-id:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(r"<[^>\s]+>")
_BROKEN_MIME = (
    "StartBoundaryNotFoundDefect",
    "CloseBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "NoBoundaryInMultipartDefect",
)
_REASON_LIMIT = 200


def message_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bounce(data: bytes, return_path: str, keys: Keys) -> Bounce:
    """What `data` (one whole message) says. `return_path` is `[bounces] address`
    ("" when unset: no VERP then); `keys` the signing keys its tokens were made with."""
    key = message_key(data)
    try:
        return _read(key, data, return_path, keys)
    except Exception as error:  # any input is answered, never raised on
        why = " ".join(f"{type(error).__name__}: {error}".split())
        return Bounce(key, ignored=f"unreadable: {why}"[:_REASON_LIMIT])


def _read(key: str, data: bytes, return_path: str, keys: Keys) -> Bounce:
    if not data.strip():
        return Bounce(key, ignored="unreadable: empty")
    msg = parse(data)
    if not msg.keys():
        return Bounce(key, ignored="unreadable: no mail headers")
    original = enclosed_headers(msg)
    verp = _verp(msg, original, return_path, keys)
    found = Bounce(key, verp=verp, original_message_id=_original_id(msg, original), date=_date(msg))
    if is_feedback_report(msg):
        failure, why = complaint(msg, original)
        return _with(found, [failure] if failure else [], why)
    report = has_delivery_status(msg)
    # a report's own fields first; one without a failed group may still say in words
    # what failed (old or broken reporters), which flufl.bounce reads
    failures = delivery_failures(msg) if report else []
    if failures:
        return _with(found, failures, "")
    if verp is not None and verp[0] == VERP_UNSUBSCRIBE:
        sender = (addresses(headers(msg, "From")) or [""])[0]
        return _with(found, [Failure(Action.UNSUBSCRIBE, sender)], "")
    if is_read_receipt(msg):
        return _with(found, [], "read receipt")
    failures = plain_failures(data)
    if failures or report:
        return _with(found, failures, "" if failures else "delivery report without a failure")
    # a message cut short says nothing sure, even with a Postfix bounce's Auto-Submitted
    broken = _broken_mime(msg)
    if broken:
        return _with(found, [], f"unreadable: {broken}")
    return _with(found, [], "auto-reply" if is_auto_reply(msg) else "not a bounce")


def _with(found: Bounce, failures: list[Failure], ignored: str) -> Bounce:
    return replace(found, failures=tuple(failures), ignored=ignored)


def is_auto_reply(msg: Message) -> bool:
    """An automatic answer to a person (RFC 3834), a vacation notice or an out-of-office
    reply: says nothing about whether the address works."""
    auto = header(msg, "Auto-Submitted").lower().split(";")[0].split("(")[0].strip()
    if auto and auto != "no":
        return True
    if any(msg.get(name) is not None for name in _AUTO_REPLY_FLAGS):
        return True
    if header(msg, "Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_REPLY_SUBJECT.search(header(msg, "Subject")))


def _verp(
    msg: Message, original: Message | None, return_path: str, keys: Keys
) -> tuple[str, int] | None:
    """The signed token of the VERP address the message came to, or that the message it
    is about was sent from."""
    if not return_path:
        return None
    candidates = [value for name in _DELIVERED_TO for value in headers(msg, name)]
    if original is not None:
        candidates += headers(original, "Return-Path")
    for address in addresses(candidates):
        token = read_verp(keys, return_path, address)
        if token is not None:
            return token
    return None


def _original_id(msg: Message, original: Message | None) -> str:
    """The Message-ID of the message a report encloses, names, or a plain-text bounce
    quotes among the original's headers; else the one the bounce replies to."""
    if original is not None and header(original, "Message-ID"):
        return header(original, "Message-ID")
    quoted = _MESSAGE_ID_LINE.search(readable_text(msg))
    replied_to = _MESSAGE_ID.search(header(msg, "In-Reply-To"))
    for found in (
        reported_message_id(msg),
        quoted.group(1) if quoted else "",
        replied_to.group(0) if replied_to else "",
    ):
        if found:
            return found
    return ""


def _date(msg: Message) -> datetime | None:
    value = header(msg, "Date")
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" (RFC 5322: the zone is unknown) parses naive: read it as UTC
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _broken_mime(msg: Message) -> str:
    for part in msg.walk():
        for defect in part.defects:
            if type(defect).__name__ in _BROKEN_MIME:
                return f"truncated or broken MIME ({type(defect).__name__})"
    return ""
