"""DKIM: signing each outgoing message (rsa-sha256, relaxed/relaxed), and making the key
pair and the DNS record a newsroom publishes for it.

The signer is our own, on OpenSSL's RSA through `cryptography`: dkimpy's RSA is pure
Python, 13 ms a message. dkimpy stays the reference: tests/test_dkim.py requires our
DKIM-Signature header to be byte-identical to `dkim.sign`'s and to pass `dkim.verify`."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from pathlib import Path

from mailer.errors import MailerError
from mailer.settings import Dkim

# What a receiver must be able to trust: who it is from and to, what it is, the
# one-click unsubscribe that Gmail and Yahoo act on, and the Feedback-ID Gmail's
# feedback loop reads only when signed.
SIGNED_HEADERS = [
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"List-Id",
    b"List-Unsubscribe", b"List-Unsubscribe-Post", b"Feedback-ID", b"MIME-Version",
    b"Content-Type",
]  # fmt: skip
_NAMES = [name.lower() for name in SIGNED_HEADERS]
# h= names them all, present or not, as dkimpy does: a name listed but absent signs its
# absence (RFC 6376 5.4), so no Reply-To, say, can be added on the way.
_H = b" : ".join(_NAMES)

_NEW_FIELD = re.compile(rb"\r\n(?![ \t])")  # a line break that is not a fold
# runs of space and tab that are not a single space already: matching every lone space
# too would make a 30 kB body three times as slow
_WSP_RUN = re.compile(rb" [ \t]+|\t[ \t]*")


class Signer:
    def __init__(self, settings: Dkim):
        # cryptography loads here, with a key to sign with: a send without DKIM never does
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.domain = settings.domain.encode("ascii")
        self.selector = settings.selector.encode("ascii")
        # sign() hashes its own header unfolded, which is what a verifier reads only while
        # _fold breaks at spaces: a d=, i= or s= tag as long as a line would be cut inside
        if max(len(self.domain), len(self.selector)) > 60:
            raise MailerError("dkim: a domain or selector over 60 characters is not supported")
        path = settings.private_key_path
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise MailerError(
                f"cannot sign with the DKIM key {path}: {exc} "
                "(`mailer dkim keygen --selector NAME` makes a new one)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise MailerError(f"cannot sign with the DKIM key {path}: it is not an RSA key")
        self.key = key

    def sign(
        self,
        message: bytes,
        relaxed_body: bytes | None = None,
        fields: dict[bytes, bytes] | None = None,
    ) -> bytes:
        """The message (CRLF line ends) with its DKIM-Signature header in front. A caller
        that has the body's relaxed form at hand (the message builder prepares most of
        it once per issue) passes it, sparing a pass over the whole body; and so with
        the header's fields (relaxed_fields of the whole header)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head, _, body = message.partition(b"\r\n\r\n")
        if fields is None:
            fields = relaxed_fields(head + b"\r\n")
        signed = b"".join(b"%s:%s\r\n" % (name, fields[name]) for name in _NAMES if name in fields)
        if relaxed_body is None:
            relaxed_body = _relaxed_body(body)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body).digest())
        # dkimpy's tags in dkimpy's order, i= and q= included, for byte-identical headers
        tags = b"; ".join(
            [b"v=1", b"a=rsa-sha256", b"c=relaxed/relaxed", b"d=" + self.domain,
             b"i=@" + self.domain, b"q=dns/txt", b"s=" + self.selector,
             b"t=%d" % int(time.time()), b"h=" + _H, b"bh=" + body_hash, b"b="]
        )  # fmt: skip
        # The signature covers its own header too: relaxed, b= empty, without the final
        # CRLF. `tags` is that form already (single spaces, nothing folded yet).
        signature = self.key.sign(
            signed + b"dkim-signature:" + tags, padding.PKCS1v15(), hashes.SHA256()
        )
        header = _fold(tags + base64.b64encode(signature))
        return b"DKIM-Signature: " + header + message


def relaxed_fields(lines: bytes) -> dict[bytes, bytes]:
    """Header lines (each ending in CRLF) in relaxed form (RFC 6376 3.4.2): the value by
    lowercase name, the last of a name where there are several, as it is signed."""
    fields = {}
    for field in _NEW_FIELD.split(lines.removesuffix(b"\r\n")):
        name, _, value = field.partition(b":")
        value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
        fields[name.rstrip(b" \t").lower()] = value
    return fields


def relaxed_lines(lines: bytes) -> bytes:
    """Whole CRLF lines in relaxed form (RFC 6376 3.4.4): WSP runs to one space, none at
    line ends. Line by line, so the form of a body is the forms of its pieces joined."""
    return _WSP_RUN.sub(b" ", lines).replace(b" \r\n", b"\r\n")


def _relaxed_body(body: bytes) -> bytes:
    """The relaxed body: its lines relaxed, no empty lines at the end. An empty body
    stays empty (only "simple" makes it a CRLF), as in dkimpy."""
    body = relaxed_lines(body).rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _fold(value: bytes) -> bytes:
    """Fold the header value as dkimpy does, for byte-identical headers: at the last space
    that fits, the first line 72 - len("DKIM-Signature") long, the others 71 after their
    space, the CRLF counted in the last; b='s base64 has no spaces and is cut anywhere."""
    lines = []
    width = 58
    while len(value) + 2 > width:
        cut = value.rfind(b" ", 0, width)
        if cut != -1:
            lines.append(value[:cut])
            value = value[cut + 1 :]
        elif len(value) > width:
            lines.append(value[:width])
            value = value[width:]
        else:  # where dkimpy cuts the CRLF off, or in two: a broken header (2104-bit keys)
            break
        width = 71
    lines.append(value)
    return b"\r\n ".join(lines) + b"\r\n"


def generate_key(path: Path, selector: str, domain: str, bits: int = 2048) -> str:
    """Write a new private key to `path` (readable by its owner only) and return the DNS
    TXT record that publishes its public half."""
    if path.exists():
        raise MailerError(f"{path} exists already; pick another selector or path")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

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
