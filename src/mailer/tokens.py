"""Signed, purpose-bound tokens for the links that act (unsubscribe, confirm, preferences).

A token names one subscriber and one purpose; it is signed with the secret key, so it
cannot be forged, guessed, or used for another purpose or another subscriber. It names
them by their random public id (links made before there was one carry the sequential
id, and still work). Tokens are made with the newest key and read with any of the keys
given (the previous ones, oldest first, then the current one), so links already sent
survive a change of key."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Sequence

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
PREFERENCES = "preferences"


class TokenError(Exception):
    """A token that is tampered with, expired, or made for another purpose."""

    def __init__(self, message: str, expired: bool = False, subscriber_id: int | str | None = None):
        super().__init__(message)
        self.expired = expired
        self.subscriber_id = subscriber_id  # of an expired but genuine token


# One key, or several: the previous ones (oldest first) and the current one last.
Keys = str | Sequence[str]


def _serializer(secret_key: Keys, purpose: str) -> URLSafeTimedSerializer:
    keys = secret_key if isinstance(secret_key, str) else list(secret_key)
    return URLSafeTimedSerializer(keys, salt=f"mailer.{purpose}")


def make_token(secret_key: Keys, purpose: str, subscriber: int | str) -> str:
    """A token for a subscriber's public id (or, as links made before had, their id)."""
    return _serializer(secret_key, purpose).dumps(subscriber)


class TokenMaker:
    """make_token for every reader of an issue: the same tokens, with itsdangerous's key
    derivation and HMAC set-up done once rather than per token (a third of the cost of
    building a message). tests/test_send.py checks them against make_token."""

    def __init__(self, secret_key: Keys, purpose: str):
        serializer = _serializer(secret_key, purpose)
        signer = serializer.make_signer(serializer.salt)
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._sep = signer.sep

    def __call__(self, subscriber: str | int) -> str:
        # URLSafeTimedSerializer: base64(json) . base64(timestamp) . base64(hmac); a short
        # public id does not shrink when compressed, so itsdangerous leaves it plain too
        payload = base64_encode(json.dumps(subscriber).encode())
        value = payload + self._sep + base64_encode(int_to_bytes(int(time.time())))
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")


def read_token(
    secret_key: Keys, purpose: str, token: str, max_age_seconds: int | None = None
) -> int | str:
    """The subscriber a token was made for (their public id, or the id in a link made
    before there were public ids), or TokenError."""
    serializer = _serializer(secret_key, purpose)
    try:
        value = serializer.loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:  # signed by us, only too old: say for whom
        try:
            late = serializer.load_payload(exc.payload) if exc.payload else None
        except BadSignature:
            late = None
        known = late if _is_reference(late) else None
        raise TokenError("this link has expired", expired=True, subscriber_id=known) from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if not _is_reference(value):
        raise TokenError("this link is not valid")
    return value  # type: ignore[no-any-return]


def _is_reference(value: object) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool)


# VERP (the envelope sender bounces+<token>@domain): the token names what a bounce is
# about. Lower-case base32 without padding, since some servers lower-case local parts,
# and short: 64 octets is a local part's limit. A letter says what the number is.
VERP_DELIVERY = "d"  # a delivery of an issue
VERP_MAIL = "t"  # a transactional mail (confirmation, welcome, thanks)
# the mailto: of List-Unsubscribe, for the delivery it came with: a mail to it leaves
VERP_UNSUBSCRIBE = "u"
_VERP_KINDS = (VERP_DELIVERY, VERP_MAIL, VERP_UNSUBSCRIBE)
_VERP_MAC_BYTES = 10


def _verp_mac(secret_key: str, kind: str, number: bytes) -> bytes:
    message = b"mailer.verp." + kind.encode() + number
    return hmac.new(secret_key.encode(), message, "sha256").digest()[:_VERP_MAC_BYTES]


def verp_address(secret_key: str, address: str, kind: str, number: int) -> str:
    """`address` ("bounces@example.org") with a signed token for the delivery or mail
    `number` of `kind`: "bounces+d<base32>@example.org", at most 40 characters of token."""
    return VerpMaker(secret_key, address, kind)(number)


class VerpMaker:
    """verp_address for one key, address and kind, the keyed hash prepared once: a
    message builder makes two a message, and per message only the number is hashed."""

    def __init__(self, secret_key: str, address: str, kind: str):
        self.local, _, self.domain = address.rpartition("@")
        self.kind = kind
        self._mac = hmac.new(secret_key.encode(), b"mailer.verp." + kind.encode(), "sha256")

    def __call__(self, number: int) -> str:
        packed = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
        mac = self._mac.copy()
        mac.update(packed)
        token = base64.b32encode(packed + mac.digest()[:_VERP_MAC_BYTES]).decode()
        return f"{self.local}+{self.kind}{token.rstrip('=').lower()}@{self.domain}"


def read_verp(secret_key: Keys, address: str, recipient: str) -> tuple[str, int] | None:
    """What a VERP `recipient` ("bounces+d...@example.org", any case) made from
    `address` names: (kind, number), or None if it is not one or its token is forged."""
    local, _, domain = address.lower().rpartition("@")
    their_local, _, their_domain = recipient.strip().strip("<>").lower().rpartition("@")
    prefix = f"{local}+"
    if their_domain != domain or not their_local.startswith(prefix):
        return None
    token = their_local.removeprefix(prefix)
    kind, encoded = token[:1], token[1:].upper()
    if kind not in _VERP_KINDS or not 0 < len(encoded) <= 39:
        return None
    try:
        raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except (binascii.Error, ValueError):
        return None
    packed, mac = raw[:-_VERP_MAC_BYTES], raw[-_VERP_MAC_BYTES:]
    keys = [secret_key] if isinstance(secret_key, str) else list(secret_key)
    if packed and any(hmac.compare_digest(mac, _verp_mac(k, kind, packed)) for k in keys):
        return kind, int.from_bytes(packed, "big")
    return None
