"""Bounces that are not delivery status notifications: Exim's, qmail's, Sendmail's,
Exchange's and Yahoo's own plain-text shapes and the "still trying" warnings, found by
flufl.bounce (Mailman's detectors); the status and the server's words are then read
from the text near each address it names."""

from __future__ import annotations

import logging
import re
from email.message import Message

from flufl.bounce import all_failures

from mailer.bounces.findings import Action, Failure
from mailer.bounces.mime import decoded, one_line, parse, readable_text
from mailer.bounces.reports import first_status

# flufl.bounce logs a detector's exception with its traceback before raising it; the
# failure is reported once, as the message's reason, so no traceback on the terminal
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())

# flufl.bounce's generic patterns take seconds a megabyte; what a bounce says comes
# first, before the copy of the message, so a big message is read by its start
SCAN_LIMIT = 256 * 1024
# how much text after an address may still be about it (Exim's host line, the SMTP
# error line, the reply: a few lines)
_WINDOW = 600
_CONTINUATION_LINES = 4
# an SMTP reply code at the start of the server's words: "550 5.1.1 ...", "554: delivery
# error", "<<< 552-5.2.2", "(reason: 550 ...)", "Remote host said: 550 ..."
_REPLY = re.compile(r"(?<![\w.\-])([45]\d\d)(?![\w.])[ \-:][^\n]*")
_WORD = re.compile(r"[^\W\d_]{2,}")
# a quoted header ("Received: ..."), a heading ("Technical details:"), a ruler ("-----")
_NOT_A_REASON = re.compile(r"^[\w-]+:(\s|$)|:$|^\W")
_ORIGINAL_BEGINS = re.compile(
    r"original message|copy of|message follows|text follows|returned mail", re.IGNORECASE
)


def plain_failures(data: bytes) -> list[Failure]:
    """flufl.bounce's permanent failures as FAILED and temporary ones as DELAYED."""
    msg = _detectable(data[:SCAN_LIMIT])
    temporary, permanent = all_failures(msg)
    text = readable_text(msg)
    found: dict[str, Action] = {}
    for action, raw in ((Action.FAILED, permanent), (Action.DELAYED, temporary)):
        for address in sorted(raw):
            recipient = address.decode("ascii", "replace").strip().strip("<>").lower()
            if "@" in recipient:
                found.setdefault(recipient, action)
    return [
        Failure(action, recipient, *_status_near(text, recipient, set(found) - {recipient}))
        for recipient, action in found.items()
    ]


def _detectable(data: bytes) -> Message:
    """The message as flufl.bounce's detectors can take it: they call str methods on
    headers (a part's too), which 8-bit junk turns into Header objects, and one (Yale's)
    fails on a message without a From."""
    msg = parse(data)
    for part in msg.walk():
        for name in set(part.keys()):
            values = part.get_all(name) or []
            if not all(isinstance(value, str) and value.isascii() for value in values):
                del part[name]
                for value in values:
                    part[name] = decoded(value)
    if not msg.get("From", "").strip():
        del msg["From"]
        msg["From"] = "<>"
    return msg


def _status_near(text: str, address: str, others: set[str]) -> tuple[str, str]:
    """(status, diagnostic) from the lines after the first mention of `address` that has
    any: the reply line ("550 5.1.1 <a@b>: User unknown"), else the next line's words."""
    lowered = text.lower()
    fallback = ("", "")
    for mention in _mentions(lowered, address):
        start = mention + len(address)
        window = _window(text, lowered, start, others)
        reply = _REPLY.search(window)
        if reply:
            line = _reply_lines(text, start + reply.start()).rstrip(")")
            return first_status(line) or first_status(window), line
        if fallback == ("", ""):
            fallback = (first_status(window), _next_words(window))
    return fallback


def _reply_lines(text: str, at: int) -> str:
    """The reply that begins at `at`, whole, with the indented lines that carry it on,
    as Postfix wraps them."""
    line, *following = text[at:].split("\n", _CONTINUATION_LINES)
    for more in following[: _CONTINUATION_LINES - 1]:
        # Postfix indents by four; a transcript's " QUIT" is not the reply's
        if not more.startswith(("  ", "\t")) or not more.strip():
            break
        line += " " + more
    return one_line(line)


def _mentions(lowered: str, address: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(address), lowered)]


def _window(text: str, lowered: str, start: int, others: set[str]) -> str:
    """The text after a mention, up to the next other failed address or _WINDOW."""
    end = min(len(text), start + _WINDOW)
    for other in others:
        at = lowered.find(other, start, end)
        if at != -1:
            end = at
    return text[start:end]


def _next_words(window: str) -> str:
    """The first line of words after the address's own, e.g. qmail's "Sorry, no mailbox
    here by that name. (#5.1.1)": not a quoted header, a ruler or a heading; none once
    the quoted original begins."""
    for line in window.split("\n")[1:]:
        line = line.strip()
        if _ORIGINAL_BEGINS.search(line):
            return ""
        if len(_WORD.findall(line)) >= 2 and not _NOT_A_REASON.search(line):
            return one_line(line)
    return ""
