"""Reports in the standard shapes, read from their machine-readable parts: RFC 3464
delivery status notifications (one group of fields per recipient) and RFC 5965 (ARF)
feedback reports, the complaints of Yahoo's, AOL's and Microsoft's feedback loops."""

from __future__ import annotations

import re
from email.message import Message

from mailer.bounces.findings import Action, Failure
from mailer.bounces.mime import addresses, header, header_blocks, one_line, own_parts

DELIVERY_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
FEEDBACK_REPORT_TYPE = "message/feedback-report"

# An RFC 3463 status: class 2, 4 or 5, subject, detail ("5.1.1", "4.7.0", "5.1.10")
STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_ADDRESS_TYPE = re.compile(r"^\s*[\w.-]+\s*;\s*")  # "rfc822;", "smtp;", "X-Postfix;"
# a multi-line SMTP reply's first line: "550-5.1.1 " or "552 "
_REPLY_START = re.compile(r"^(\d{3})[ -]((?:\d\.\d{1,3}\.\d{1,3} )?)")
# what ARF's Feedback-Type says (RFC 5965 and its registry) that is a reader's complaint;
# "not-spam" and "auth-failure" (RFC 6591, a DMARC report) are not
_COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other", "opt-out", "complaint")
_DIAGNOSTIC_LIMIT = 1000


def is_feedback_report(msg: Message) -> bool:
    return any(part.get_content_type() == FEEDBACK_REPORT_TYPE for part in own_parts(msg))


def has_delivery_status(msg: Message) -> bool:
    return any(part.get_content_type() in DELIVERY_STATUS_TYPES for part in own_parts(msg))


def delivery_failures(msg: Message) -> list[Failure]:
    """One Failure per recipient group of every delivery-status part whose Action is a
    failure or a delay; "delivered", "relayed" and "expanded" groups give none."""
    failures: list[Failure] = []
    for part in own_parts(msg):
        if part.get_content_type() not in DELIVERY_STATUS_TYPES:
            continue
        for block in header_blocks(part):
            failure = _group_failure(block)
            if failure is not None and failure not in failures:
                failures.append(failure)
    return failures


def reported_message_id(msg: Message) -> str:
    """The Message-ID a delivery report names in its own fields (Gmail's
    X-Original-Message-ID), for a report that does not enclose the message."""
    for part in own_parts(msg):
        if part.get_content_type() in DELIVERY_STATUS_TYPES:
            for block in header_blocks(part):
                found = header(block, "X-Original-Message-ID")
                if found:
                    return found
    return ""


def is_read_receipt(msg: Message) -> bool:
    """A message disposition notification (RFC 8098): "read", "deleted"; not a bounce."""
    return any(
        part.get_content_type() == "message/disposition-notification" for part in own_parts(msg)
    )


def _group_failure(block: Message) -> Failure | None:
    recipient = _recipient(block)
    if not recipient:  # the per-message block (Reporting-MTA, Arrival-Date) or junk
        return None
    diagnostic = diagnostic_text(header(block, "Diagnostic-Code"))
    status = first_status(header(block, "Status")) or first_status(diagnostic)
    action = _action(header(block, "Action").lower(), status)
    return None if action is None else Failure(action, recipient, status, diagnostic)


def _recipient(block: Message) -> str:
    """The address we sent to: Original-Recipient (the ORCPT, before any forwarding)
    when the report gives it, else Final-Recipient."""
    for name in ("Original-Recipient", "Final-Recipient"):
        value = _ADDRESS_TYPE.sub("", header(block, name)).strip().strip("<>").lower()
        if "@" in value and not any(c.isspace() for c in value):
            return value
    return ""


def _action(action: str, status: str) -> Action | None:
    # some MTAs comment the action ("failed (bad mailbox)"); OpenSMTPD says "error"
    if action.startswith(("fail", "error")):
        return Action.FAILED
    if action.startswith("delay"):
        return Action.DELAYED
    if action:  # delivered, relayed, expanded: nothing failed
        return None
    # no Action at all (broken reporters): the status class decides
    return {"5": Action.FAILED, "4": Action.DELAYED}.get(status[:1])


def first_status(text: str) -> str:
    found = STATUS.search(text)
    return found.group(1) if found else ""


def diagnostic_text(value: str) -> str:
    """A Diagnostic-Code on one line without its type ("smtp;"), and a multi-line reply's
    repeated "550-5.1.1" prefixes said once: "550 5.1.1 The email account ... exist."."""
    text = one_line(_ADDRESS_TYPE.sub("", value, count=1))
    start = _REPLY_START.match(text)
    if start:
        code, status = start.groups()
        repeated = re.compile(rf"\s{code}[ -]{re.escape(status)}")
        text = f"{code} {status}" + repeated.sub(" ", text[start.end() :])
    return one_line(text)[:_DIAGNOSTIC_LIMIT]


def complaint(msg: Message, original: Message | None) -> tuple[Failure | None, str]:
    """An ARF report's complaint, or (None, why it is not one). Its recipient is the
    enclosed original's To, else the report's Original-Rcpt-To; "" when the feedback
    loop redacted both (AOL's does): only the VERP token then says whose it is."""
    fields = _feedback_fields(msg)
    if fields is None:
        return None, "unreadable: a feedback report without its fields"
    feedback_type = header(fields, "Feedback-Type").lower()
    if not feedback_type.startswith(_COMPLAINT_TYPES):
        return None, f"feedback report: {feedback_type or 'no type'}"
    to = addresses([header(original, "To")]) if original is not None else []
    rcpt = addresses([header(fields, "Original-Rcpt-To")])
    recipient = next((a for a in [*to, *rcpt] if not _redacted(a)), "")
    agent = header(fields, "User-Agent")
    diagnostic = f"{feedback_type} ({agent})" if agent else feedback_type
    return Failure(Action.COMPLAINT, recipient, "", diagnostic), ""


def _redacted(address: str) -> bool:
    """An address a feedback loop hid (RFC 6590): AOL's "redacted@...", "xxxxxxxx@..."."""
    local = address.partition("@")[0]
    return local.startswith("redacted") or (len(local) > 3 and set(local) <= {"x", "*"})


def _feedback_fields(msg: Message) -> Message | None:
    for part in own_parts(msg):
        if part.get_content_type() == FEEDBACK_REPORT_TYPE:
            blocks = header_blocks(part)
            return blocks[0] if blocks else None
    return None
