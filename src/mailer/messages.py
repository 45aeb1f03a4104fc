"""Per-recipient messages: a RenderedIssue and one subscriber -> the bytes on the wire.

The compliance headers (List-Id, List-Unsubscribe, List-Unsubscribe-Post, Message-ID)
are set here, by code, never by templates."""

from __future__ import annotations

import hashlib
import hmac
import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid
from urllib.parse import urlsplit

from mailer.models import utcnow
from mailer.render import EMAIL, UNSUBSCRIBE_URL, RenderedIssue, one_line
from mailer.settings import Settings
from mailer.signing import Signer
from mailer.tokens import UNSUBSCRIBE, make_token


class _WirePolicy(EmailPolicy):
    """SMTP line endings and folding, except for headers holding one long URL: folding
    those turns them into RFC 2047 encoded words, which mail clients do not read as links."""

    unfolded = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:
        if name.lower() in self.unfolded:
            return (name, " ".join(value.split()))  # kept as given: ASCII, one line
        return super().header_store_parse(name, value)  # type: ignore[no-any-return]


# 76: the longest line quoted-printable allows (RFC 2045); headers fold there too.
WIRE = _WirePolicy(linesep="\r\n", refold_source="none", max_line_length=76)


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str
    sender: str
    recipient: str
    data: bytes


class MessageBuilder:
    """Builds the messages of one issue; everything shared is worked out once here."""

    def __init__(
        self,
        settings: Settings,
        rendered: RenderedIssue,
        subject_prefix: str = "",
        issue_id: int | None = None,
    ):
        self.issue_id = issue_id
        publication = settings.publication
        self.sender = publication.from_address
        self.domain = self.sender.rpartition("@")[2]
        self.unsubscribe_base = f"{publication.base_url}/unsubscribe/"
        self.secret_key = settings.secret_key
        self.rendered = rendered
        self.signer = Signer(settings.dkim) if settings.dkim.enabled else None
        self.subject = one_line(subject_prefix + rendered.subject)
        self.headers = {
            "From": formataddr((one_line(publication.sender_name), self.sender)),
            "Reply-To": publication.reply_to,
            "List-Id": f"{one_line(publication.name)} <{_list_id(publication.base_url)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def message_id(self, subscriber_id: int) -> str:
        """The same for every attempt at one delivery, so a copy sent again after a crash
        is recognisably the same message; keyed, so it does not reveal the reader's id."""
        if self.issue_id is None:  # a test copy
            return make_msgid(domain=self.domain)
        delivery = f"{self.issue_id}.{subscriber_id}".encode()
        tag = hmac.new(self.secret_key.encode(), delivery, hashlib.sha256).hexdigest()[:20]
        return f"<{self.issue_id}.{tag}@{self.domain}>"

    def unsubscribe_url(self, subscriber_id: int) -> str:
        return self.unsubscribe_base + make_token(self.secret_key, UNSUBSCRIBE, subscriber_id)

    def build(self, recipient: Recipient) -> OutgoingMessage:
        unsubscribe_url = self.unsubscribe_url(recipient.subscriber_id)
        message_id = self.message_id(recipient.subscriber_id)
        message = EmailMessage(policy=WIRE)
        message["From"] = self.headers["From"]
        message["To"] = formataddr((one_line(recipient.name or ""), recipient.email))
        if self.headers["Reply-To"]:
            message["Reply-To"] = self.headers["Reply-To"]
        message["Subject"] = self.subject
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = message_id
        message["List-Id"] = self.headers["List-Id"]
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = self.headers["List-Unsubscribe-Post"]
        text = fill(self.rendered.text, recipient.email, unsubscribe_url)
        html_part = fill(self.rendered.html, html.escape(recipient.email), unsubscribe_url)
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html_part, subtype="html", cte="quoted-printable")
        data = message.as_bytes()
        if self.signer is not None:
            data = self.signer.sign(data)
        return OutgoingMessage(message_id, self.sender, recipient.email, data)


def preview(settings: Settings, rendered: RenderedIssue, text: bool = False) -> str:
    """One part of the issue as a sample reader sees it, for editors to look at."""
    link = MessageBuilder(settings, rendered).unsubscribe_url(0)
    return fill(rendered.text if text else rendered.html, "reader@example.org", link)


def fill(part: str, email: str, unsubscribe_url: str) -> str:
    return part.replace(EMAIL, email).replace(UNSUBSCRIBE_URL, unsubscribe_url)


def _list_id(base_url: str) -> str:
    """RFC 2919 list identifier: stable across issues, in a domain the newsroom owns."""
    return f"newsletter.{(urlsplit(base_url).hostname or 'localhost').lower()}"
