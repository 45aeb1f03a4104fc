"""DKIM: signing each outgoing message (dkimpy, rsa-sha256), and making the key pair and
the DNS record a newsroom publishes for it."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.errors import MailerError
from mailer.settings import Dkim

# What a receiver must be able to trust: who it is from and to, what it is, and the
# one-click unsubscribe that Gmail and Yahoo act on.
SIGNED_HEADERS = [
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"List-Id",
    b"List-Unsubscribe", b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type",
]  # fmt: skip


class Signer:
    def __init__(self, settings: Dkim):
        self.domain = settings.domain.encode("ascii")
        self.selector = settings.selector.encode("ascii")
        self.key = Path(settings.private_key_path).read_bytes()

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=SIGNED_HEADERS,
            )
        except dkim.DKIMException as exc:
            raise MailerError(f"cannot sign with the DKIM key: {exc}") from None
        return signature + message


def generate_key(path: Path, selector: str, domain: str, bits: int = 2048) -> str:
    """Write a new private key to `path` (readable by its owner only) and return the DNS
    TXT record that publishes its public half."""
    if path.exists():
        raise MailerError(f"{path} exists already; pick another selector or path")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return f'{selector}._domainkey.{domain}. IN TXT "{value}"'


def txt_value(record: str) -> bytes:
    """The quoted value of a TXT record line, as a DNS look-up returns it."""
    return record.split('"', 1)[1].rsplit('"', 1)[0].encode()
