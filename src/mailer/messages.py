"""Per-recipient messages: a RenderedIssue and one subscriber -> the bytes on the wire.

The compliance headers (List-Id, List-Unsubscribe, List-Unsubscribe-Post, Message-ID,
Feedback-ID) are set here, by code, never by templates, and so is the envelope sender:
with [bounces] address, a VERP address naming the delivery or mail (tokens.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from mailer.links import preferences_links, unsubscribe_links
from mailer.models import utcnow
from mailer.render import (
    EMAIL,
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    InlineImage,
    RenderedIssue,
    one_line,
)
from mailer.settings import Settings
from mailer.signing import Signer, relaxed_fields, relaxed_lines
from mailer.subscribers import without_controls
from mailer.tokens import VERP_DELIVERY, VERP_MAIL, VERP_UNSUBSCRIBE, VerpMaker, verp_address


class _WirePolicy(EmailPolicy):
    """SMTP line endings and folding, except for headers holding one long URL: folding
    those turns them into RFC 2047 encoded words, which mail clients do not read as links."""

    unfolded = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:
        if name.lower() in self.unfolded:
            return (name, " ".join(value.split()))  # kept as given: ASCII, one line
        return super().header_store_parse(name, value)


# 76: the longest line quoted-printable allows (RFC 2045); headers fold there too.
WIRE = _WirePolicy(linesep="\r\n", refold_source="none", max_line_length=76)


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None = None
    public_id: str = ""  # what the links' tokens carry (empty: a sample or a test copy)
    donor: bool = False  # gets the donors' copy (the thanks in place of the appeal)


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str
    sender: str
    recipient: str
    data: bytes


class MessageBuilder:
    """Builds the messages of one issue. Everything shared (the headers that do not vary,
    the parts' MIME headers) is prepared once here; per recipient only the placeholders
    are filled, the parts quoted-printable encoded (binascii, in C) and the bytes joined.
    tests/test_messages.py checks the result against the standard library's EmailMessage."""

    def __init__(
        self,
        settings: Settings,
        rendered: RenderedIssue,
        subject_prefix: str = "",
        issue_id: int | None = None,
        issue_kind: str = "article",
    ):
        self.issue_id = issue_id
        publication = settings.publication
        self.sender = publication.from_address
        self.domain = self.sender.rpartition("@")[2]
        self.secret_key = settings.secret_key
        # a reader's links (links.py): unsubscribe_url(public_id), preferences_url(public_id)
        self.unsubscribe_url = unsubscribe_links(settings)
        self.preferences_url = preferences_links(settings)
        self._id_mac = id_mac(self.secret_key)
        self.rendered = rendered
        self.signer = Signer(settings.dkim) if settings.dkim.enabled else None
        # with [bounces] address, a delivery's envelope sender and the List-Unsubscribe
        # mailto: name it; the keyed hashes are prepared here, per message only the id
        bounces = settings.bounces.address
        self.return_path = VerpMaker(self.secret_key, bounces, VERP_DELIVERY) if bounces else None
        self.unsubscribe_mailto = VerpMaker(self.secret_key, bounces, VERP_UNSUBSCRIBE)
        list_id = _list_id(publication.base_url)
        self.boundary = f"mailer.{secrets.token_hex(12)}"
        shared = [
            ("Reply-To", publication.reply_to),
            ("Subject", one_line(subject_prefix + rendered.subject)),
            ("List-Id", f"{one_line(publication.name)} <{list_id}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Feedback-ID", _feedback_id(issue_id, issue_kind, list_id)),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{self.boundary}"'),
        ]
        self.closing = f"--{self.boundary}--\r\n".encode()
        self.appeal = _copy(self.boundary, rendered.text, rendered.html, rendered.images)
        # the donors' copy, prepared once too; the images are the appeal's (its QR codes)
        self.thanks = self.appeal
        if rendered.thanks_html and rendered.thanks_text:
            self.thanks = _copy(self.boundary, rendered.thanks_text, rendered.thanks_html, ())
        self.shared_headers = address_header("From", publication.sender_name, self.sender) + (
            b"".join(_header(name, value) for name, value in shared if value)
        )
        self.shared_fields = relaxed_fields(self.shared_headers)  # as DKIM signs them

    def message_id(self, subscriber_id: int) -> str:
        """The same for every attempt at one delivery, so a copy sent again after a crash
        is recognisably the same message; keyed, so it does not reveal the reader's id."""
        if self.issue_id is None:  # a test copy
            return make_msgid(domain=self.domain)
        tag = message_id_tag(self._id_mac, self.issue_id, subscriber_id)
        return f"<{self.issue_id}.{tag}@{self.domain}>"

    def build(self, recipient: Recipient, delivery_id: int | None = None) -> OutgoingMessage:
        """The message for one reader; `delivery_id` (an issue's delivery, not a test
        copy) names it in the envelope sender and a mailto: unsubscribe, with [bounces]
        address set."""
        unsubscribe_url = self.unsubscribe_url(recipient.public_id)
        links = (unsubscribe_url, self.preferences_url(recipient.public_id))
        message_id = self.message_id(recipient.subscriber_id)
        sender, mailto = self.sender, ""
        if self.return_path is not None and delivery_id is not None:
            sender = self.return_path(delivery_id)
            mailto = f", <mailto:{self.unsubscribe_mailto(delivery_id)}?subject=unsubscribe>"
        own = [
            address_header("To", recipient.name, recipient.email),
            _header("Date", format_datetime(utcnow())),
            _header("Message-ID", message_id),
            # one line, never encoded: mail clients must read it as a link
            f"List-Unsubscribe: <{unsubscribe_url}>{mailto}\r\n".encode("ascii"),
        ]
        copy = self.thanks if recipient.donor else self.appeal
        relaxed: list[bytes] | None = [] if self.signer is not None else None
        text = copy.text.fill(recipient.email, links, relaxed)
        if relaxed is not None:
            relaxed.append(copy.related_head[1])
        html_part = copy.html.fill(html.escape(recipient.email), links, relaxed)
        if relaxed is not None:
            relaxed.append(copy.related_tail[1])
        data = b"".join(
            [
                self.shared_headers,
                *own,
                b"\r\n",
                text,
                copy.related_head[0],
                html_part,
                copy.related_tail[0],
                self.closing,
            ]
        )
        if self.signer is not None and relaxed is not None:
            # the body ends with the closing boundary: no empty lines to drop at its end
            # the shared header's fields relaxed once per builder, the reader's now
            fields = {**self.shared_fields, **relaxed_fields(b"".join(own))}
            data = self.signer.sign(data, b"".join([*relaxed, self.closing]), fields)
        return OutgoingMessage(message_id, sender, recipient.email, data)


class EditionBuilders:
    """The builders of one issue's editions: its own, and each variant's (`load`, by id),
    made once each when a claimed batch first holds one, by the send loop's coordinator
    (the one thread that reads the database): a message costs the same in any edition."""

    def __init__(
        self, own: MessageBuilder, load: Callable[[int], MessageBuilder] | None = None
    ) -> None:
        self.own, self.load, self.domain = own, load, own.domain
        self.variants: dict[int, MessageBuilder] = {}

    def prepare(self, variant_ids: Iterable[int | None]) -> None:
        for variant_id in variant_ids:
            if variant_id is not None and variant_id not in self.variants:
                self.variants[variant_id] = self.load(variant_id) if self.load else self.own

    def build(
        self, recipient: Recipient, delivery_id: int | None = None, variant_id: int | None = None
    ) -> OutgoingMessage:
        """The reader's message from their edition (prepared before)."""
        builder = self.own if variant_id is None else self.variants[variant_id]
        return builder.build(recipient, delivery_id)


def with_return_path(settings: Settings, message: OutgoingMessage, mail_id: int) -> OutgoingMessage:
    """A transactional mail with the envelope sender that names it (transactional_mail
    `mail_id`) when [bounces] address is set; as it is without."""
    address = settings.bounces.address
    if not address:
        return message
    return replace(message, sender=verp_address(settings.secret_key, address, VERP_MAIL, mail_id))


@dataclass(frozen=True)
class _Copy:
    """One variant of the issue's body (the appeal, or the donors' thanks), prepared."""

    text: _Part
    html: _Part
    related_head: tuple[bytes, bytes]
    related_tail: tuple[bytes, bytes]


def _copy(boundary: str, text: str, html: str, images: tuple[InlineImage, ...]) -> _Copy:
    # with images, the HTML and they are one multipart/related part (RFC 2387); its
    # boundary is not an extension of the outer one, which some parsers would misread
    related = f"mailer.{secrets.token_hex(12)}" if images else ""
    head, tail = _related(boundary, related, images)
    text_part, html_part = _Part(boundary, "plain", text), _Part(related or boundary, "html", html)
    return _Copy(text_part, html_part, head, tail)


class _Part:
    """One text part, quoted-printable, with its MIME head. Quoted-printable encodes each
    line on its own, so the lines without a placeholder are encoded once here and only
    the few with one (the reader's address, their links) per message: encoding the whole
    part each time was two thirds of the cost of a message. The same goes for the relaxed
    form DKIM hashes: prepared here for the fixed lines."""

    def __init__(self, boundary: str, subtype: str, body: str):
        # a part ends with a line break, and the line break before a boundary belongs to
        # the boundary (RFC 2046), as the standard library writes it
        head = (
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self.chunks: list[tuple[bytes, bytes] | str] = [_fixed(head.encode())]
        static: list[str] = []
        for line in body.removesuffix("\n").split("\n"):
            if EMAIL in line or UNSUBSCRIBE_URL in line or PREFERENCES_URL in line:
                self.chunks += [_fixed(_qp("".join(static))), line + "\n"]
                static = []
            else:
                static.append(line + "\n")
        self.chunks += [_fixed(_qp("".join(static))), _fixed(b"\r\n")]

    def fill(self, email: str, links: tuple[str, str], relaxed: list[bytes] | None) -> bytes:
        """The part for one reader (links: unsubscribe, preferences); with `relaxed`, its
        relaxed form is added there."""
        encoded = []
        for chunk in self.chunks:
            if isinstance(chunk, str):
                data = _qp(fill(chunk, email, *links))
                form = relaxed_lines(data) if relaxed is not None else b""
            else:
                data, form = chunk
            encoded.append(data)
            if relaxed is not None:
                relaxed.append(form)
        return b"".join(encoded)


def _related(
    boundary: str, related: str, images: tuple[InlineImage, ...]
) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """What goes before and after the HTML part when it has images: the head of the
    multipart/related part that holds both, and the image parts with its closing line.
    The images are the same bytes in every message, base64 encoded once here; so are
    their relaxed forms. Without images, nothing (the HTML is the alternative itself)."""
    if not images:
        return _fixed(b""), _fixed(b"")
    head = (
        f"--{boundary}\r\n"
        f'Content-Type: multipart/related; type="text/html";\r\n boundary="{related}"\r\n\r\n'
    )
    parts = [
        f"--{related}\r\nContent-Type: image/png\r\n"
        f'Content-Disposition: inline; filename="{image.name}.png"\r\n'
        f"Content-ID: <{image.cid}>\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        # 76 columns (RFC 2045), and the line break before the next boundary
        + base64.encodebytes(image.png).replace(b"\n", b"\r\n")
        + b"\r\n"
        for image in images
    ]
    # the related part ends with its closing line; the CRLF before the alternative's
    # next boundary belongs to that boundary
    tail = b"".join([*parts, f"--{related}--\r\n\r\n".encode()])
    return _fixed(head.encode()), _fixed(tail)


def _fixed(data: bytes) -> tuple[bytes, bytes]:
    return data, relaxed_lines(data)


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8")).replace(b"\n", b"\r\n")


def _header(name: str, value: str) -> bytes:
    """One header, folded at 76 columns and RFC 2047-encoded where it is not ASCII.

    Text that is not ASCII is encoded here, each space inside an encoded word: Python's
    folder puts the space where it splits a long one between two encoded words, where
    readers drop it (RFC 2047 6.2), and a Persian subject lost a space in every fold."""
    if not value.isascii():  # the first word shares its line with the name
        first = (76 - len(name) - 2 - len("=?utf-8?b??=")) // 4 * 3
        return _folded(name, _encoded_words(value, first))
    if len(name) + len(value) < 74:
        return f"{name}: {value}\r\n".encode("ascii")
    folded: str = WIRE.header_factory(name, value).fold(policy=WIRE)
    return folded.encode("ascii")


def _folded(name: str, words: list[str]) -> bytes:
    """`name: ` and the words, a line folded before a word that would pass 76 columns."""
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > 76 and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += " " + word
    return "\r\n".join([*lines, line]).encode("ascii") + b"\r\n"


def address_header(name: str, display_name: str | None, address: str) -> bytes:
    """A header holding one address and its display name, the name as one unit whatever
    it holds: commas, angle brackets, quotes, "=?", line breaks or control characters in
    a name never add a recipient or a header. The name is an atom or a quoted string
    when it is plain ASCII and short, else RFC 2047 encoded words; folded at 76 columns.

    Built here rather than by the standard library: Python before 3.12.5 refolds a
    non-ASCII name holding specials into a partly encoded one, and the comma and the
    angle brackets come out bare (a second address)."""
    shown = " ".join(without_controls(display_name or "").split())
    return _folded(name, [*_phrase(shown), f"<{address}>"] if shown else [address])


# RFC 5322 specials (and white space): a name holding one is quoted
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_LONGEST_WORD = 60


def _phrase(name: str) -> list[str]:
    """The display name as words that may be folded between."""
    if name.isascii() and "=?" not in name:  # "=?" would read as an encoded word
        if not _SPECIALS.search(name):
            words = name.split(" ")
            if max(len(word) for word in words) <= _LONGEST_WORD:
                return words
        else:
            quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if len(quoted) <= _LONGEST_WORD:
                return [quoted]
    return _encoded_words(name)


def _encoded_words(name: str, first: int = 45) -> list[str]:
    """RFC 2047 base64 encoded words of whole characters, each short enough for a line.
    A reader joins adjacent ones without the white space between them, so each word but
    the first starts, where it can, with a space of the text. The first holds at most
    `first` bytes of it."""
    chunks: list[bytes] = []
    chunk = b""
    for piece in re.split(r"(?= )", name):
        for char in piece if len(piece.encode("utf-8")) > _CHUNK else [piece]:
            data = char.encode("utf-8")
            if chunk and len(chunk) + len(data) > (_CHUNK if chunks else first):
                chunks.append(chunk)
                chunk = b""
            chunk += data
    chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=" for chunk in chunks]


_CHUNK = 45  # bytes: 60 characters of base64, 72 with the encoded word's frame


def preview(
    settings: Settings, rendered: RenderedIssue, text: bool = False, donor: bool = False
) -> str:
    """One part of the issue as a sample reader sees it (with `donor`, as a donor sees
    it), for editors to look at. A draft has no public address, so its images are shown
    from data: URIs."""
    builder = MessageBuilder(settings, rendered)
    links = builder.unsubscribe_url(""), builder.preferences_url("")
    donors = donor and bool(rendered.thanks_html)
    if text:
        return fill(rendered.thanks_text if donors else rendered.text, "reader@example.org", *links)
    shown = with_image_sources(
        rendered.thanks_html if donors else rendered.html, rendered.images, data_uri
    )
    return fill(shown, "reader@example.org", *links)


def with_image_sources(
    part: str, images: tuple[InlineImage, ...], source: Callable[[InlineImage], str]
) -> str:
    """The HTML with each image's "cid:" address replaced by `source(image)`, for a page
    in a browser, where cid: means nothing."""
    for image in images:
        part = part.replace(f"cid:{image.cid}", html.escape(source(image)))
    return part


def data_uri(image: InlineImage) -> str:
    return "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")


def fill(part: str, email: str, unsubscribe_url: str, preferences_url: str) -> str:
    return (
        part.replace(EMAIL, email)
        .replace(UNSUBSCRIBE_URL, unsubscribe_url)
        .replace(PREFERENCES_URL, preferences_url)
    )


def _feedback_id(issue_id: int | None, issue_kind: str, list_id: str) -> str:
    """Gmail's feedback loop groups complaints by this (up to four colon-separated fields,
    the sender's own id last): the issue, its kind and the list's domain. Only an issue's
    messages have one; DKIM signs it, as Gmail requires."""
    if issue_id is None:
        return ""
    return f"{issue_id}:{issue_kind}:{list_id.removeprefix('newsletter.')}:mailer"


def _list_id(base_url: str) -> str:
    """RFC 2919 list identifier: stable across issues, in a domain the newsroom owns."""
    return f"newsletter.{(urlsplit(base_url).hostname or 'localhost').lower()}"


def message_id_tag(keyed: hmac.HMAC, issue_id: int, subscriber_id: int) -> str:
    """The keyed part of MessageBuilder.message_id (`keyed`: an HMAC-SHA256 of the secret
    key, made once, copied per message): a bounce that quotes it is about that reader's
    copy of that issue, and nobody without the key can make it up."""
    mac = keyed.copy()
    mac.update(f"{issue_id}.{subscriber_id}".encode())
    return mac.hexdigest()[:20]


def id_mac(key: str) -> hmac.HMAC:
    """The keyed HMAC message_id_tag copies."""
    return hmac.new(key.encode(), digestmod=hashlib.sha256)
