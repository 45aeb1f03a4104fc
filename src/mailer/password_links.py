"""The one-time link that sets an editor's desk password (a forgotten password, or a new
account's first one), and the mail that carries it.

The link's token is signed (the settings' keys, a purpose of its own) and carries the
editor's id, when it expires, and a fingerprint of the password hash it was made
against: once the password changes, through this link or any other way, the link is
dead, so it works once. Nothing is stored for it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from itsdangerous import BadSignature, URLSafeSerializer

from mailer import links
from mailer.messages import OutgoingMessage
from mailer.render import one_line
from mailer.settings import Settings
from mailer.signing import Signer
from mailer.tokens import Keys, TokenError

PURPOSE = "mailer.desk-password"
VALID_FOR = timedelta(hours=1)


@dataclass(frozen=True)
class ResetClaim:
    """What a genuine, unexpired link says: for whom, and against which password."""

    editor_id: int
    fingerprint: str


def fingerprint(password_hash: str) -> str:
    """A short digest of the password hash: enough to tell it changed, nothing to guess from."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def make_reset_token(keys: Keys, editor_id: int, password_hash: str, now: datetime) -> str:
    expires = int((now + VALID_FOR).timestamp())
    payload = {"e": editor_id, "f": fingerprint(password_hash), "x": expires}
    return _serializer(keys).dumps(payload)


def read_reset_token(keys: Keys, token: str, now: datetime) -> ResetClaim:
    """The claim of a genuine link, or TokenError (expired=True for one only too old)."""
    try:
        data = _serializer(keys).loads(token)
        claim = ResetClaim(int(data["e"]), str(data["f"]))
        expires = int(data["x"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise TokenError("this link is not valid") from None
    if now.timestamp() >= expires:
        raise TokenError("this link has expired", expired=True)
    return claim


def matches(claim: ResetClaim, password_hash: str) -> bool:
    """The link was made against this password (so it has not been used yet)."""
    return hmac.compare_digest(claim.fingerprint, fingerprint(password_hash))


def reset_url(settings: Settings, token: str) -> str:
    base = settings.publication.base_url.rstrip("/")
    return base + links.path(links.DESK_RESET_PATH, token=token)


def password_mail(settings: Settings, address: str, url: str) -> OutgoingMessage:
    """A plain-text mail from the newsroom to the editor with the link: no list headers
    (it is no newsletter), DKIM-signed as every mail when [dkim] is set."""
    publication = settings.publication
    sender = publication.from_address
    domain = sender.rpartition("@")[2]
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(one_line(publication.sender_name), addr_spec=sender)
    message["To"] = address
    message["Subject"] = f"Your password for the desk of {one_line(publication.name)}"
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = message_id = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_text(publication.name, address, url))
    data = message.as_bytes()
    if settings.dkim.enabled:
        data = Signer(settings.dkim).sign(data)
    return OutgoingMessage(message_id, sender, address, data)


def _text(name: str, address: str, url: str) -> str:
    return (
        f"Hello,\n\nsomebody asked for a new password for the account {address} at the "
        f"editors' desk of {name}, or an admin has just made that account for you.\n\n"
        f"To choose a password, follow this link within an hour:\n\n{url}\n\n"
        "The link works once. If you did not ask for it, ignore this mail: nothing "
        "changes until the link is used.\n"
    )


def _serializer(keys: Keys) -> URLSafeSerializer:
    return URLSafeSerializer(keys if isinstance(keys, str) else list(keys), salt=PURPOSE)
