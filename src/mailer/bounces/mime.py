"""Small readings of a parsed bounce (stdlib `email`, compat32 as flufl.bounce expects):
a header as text whatever its charset, the addresses in headers, the text of the
parts a person would read, a report's header blocks. Never raises on odd input."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable, Iterator
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

_SPACES = re.compile(r"\s+")
# how a report encloses the message it is about: whole, or its headers (RFC 6522)
_WHOLE = ("message/rfc822", "message/global")
_HEADERS_ONLY = ("text/rfc822-headers", "message/global-headers")


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def one_line(text: str) -> str:
    """Folded header or multi-line reply text on one line, single-spaced."""
    return _SPACES.sub(" ", text).strip()


def decoded(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, 8-bit junk replaced, not raised."""
    raw = str(value)
    try:
        text = str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        text = raw
    # compat32 keeps undecodable bytes as surrogates: they cannot be printed or stored
    return text.encode("utf-8", "replace").decode("utf-8")


def header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else one_line(decoded(value))


def headers(msg: Message, name: str) -> list[str]:
    return [one_line(decoded(v)) for v in msg.get_all(name) or []]


def addresses(values: Iterable[str]) -> list[str]:
    """The bare addresses in header values, lower-cased, in order, without duplicates."""
    found: list[str] = []
    for _name, address in getaddresses(list(values)):
        address = address.strip().strip("<>").lower()
        if "@" in address and address not in found:
            found.append(address)
    return found


def payload_text(part: Message) -> str:
    """A leaf part's body as text: transfer encoding undone, its charset (or UTF-8) read
    with replacement, so a wrong charset costs a few characters, not the message."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        inner = part.get_payload()
        return inner if isinstance(inner, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def own_parts(msg: Message) -> Iterator[Message]:
    """The parts of `msg` itself, depth first: not those of a message it encloses (a
    bounce quoting a bounce is about the quoted one only through its own words)."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        if part.get_content_maintype() != "multipart":  # a message/* part is a leaf here
            continue
        inner = part.get_payload()
        if isinstance(inner, list):
            stack.extend(reversed([p for p in inner if isinstance(p, Message)]))


def readable_text(msg: Message) -> str:
    """The text/plain parts outside enclosed messages: what the bouncing server wrote."""
    text = "\n".join(
        payload_text(part)
        for part in own_parts(msg)
        if part.get_content_type() == "text/plain" and not part.is_multipart()
    )
    return text.replace("\r\n", "\n")


def header_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status (or feedback-report) part. The
    stdlib parses delivery-status into one sub-message a block; any other message/*
    type into one message whose body holds the rest, and a text part not at all."""
    inner = part.get_payload()
    if isinstance(inner, list):
        if part.get_content_type() == "message/delivery-status":
            return [block for block in inner if isinstance(block, Message)]
        text = "\n".join(m.as_string() for m in inner if isinstance(m, Message))
    else:
        text = payload_text(part)
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [
        email.message_from_string(block.strip() + "\n", policy=email.policy.compat32)
        for block in blocks
        if block.strip()
    ]


def enclosed_headers(msg: Message) -> Message | None:
    """The original message (or its headers) a report or bounce encloses, if any."""
    for part in msg.walk():
        if part is msg or part.get_content_type() not in (*_WHOLE, *_HEADERS_ONLY):
            continue
        # the stdlib parses message/* types as an enclosed message, a text part not
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0]
        return parse(payload_text(part).lstrip().encode("utf-8", "replace"))
    return None
