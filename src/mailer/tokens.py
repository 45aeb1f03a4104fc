"""Signed, purpose-bound tokens for the links that act (unsubscribe, confirm, preferences).

A token names one subscriber and one purpose; it is signed with the secret key, so it
cannot be forged, guessed, or used for another purpose or another subscriber."""

from __future__ import annotations

import hmac
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
PREFERENCES = "preferences"


class TokenError(Exception):
    """A token that is tampered with, expired, or made for another purpose."""

    def __init__(self, message: str, expired: bool = False, subscriber_id: int | None = None):
        super().__init__(message)
        self.expired = expired
        self.subscriber_id = subscriber_id  # of an expired but genuine token


def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=f"mailer.{purpose}")


def make_token(secret_key: str, purpose: str, subscriber_id: int) -> str:
    return _serializer(secret_key, purpose).dumps(subscriber_id)


class TokenMaker:
    """make_token for every reader of an issue: the same tokens, with itsdangerous's key
    derivation and HMAC set-up done once rather than per token (a third of the cost of
    building a message). tests/test_send.py checks them against make_token."""

    def __init__(self, secret_key: str, purpose: str):
        serializer = _serializer(secret_key, purpose)
        signer = serializer.make_signer(serializer.salt)
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._sep = signer.sep

    def __call__(self, subscriber_id: int) -> str:
        # URLSafeTimedSerializer: base64(json) . base64(timestamp) . base64(hmac)
        payload = base64_encode(str(int(subscriber_id)).encode())
        value = payload + self._sep + base64_encode(int_to_bytes(int(time.time())))
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")


def read_token(
    secret_key: str, purpose: str, token: str, max_age_seconds: int | None = None
) -> int:
    """The subscriber id a token was made for, or TokenError."""
    serializer = _serializer(secret_key, purpose)
    try:
        value = serializer.loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:  # signed by us, only too old: say for whom
        try:
            late = serializer.load_payload(exc.payload) if exc.payload else None
        except BadSignature:
            late = None
        known = late if isinstance(late, int) and not isinstance(late, bool) else None
        raise TokenError("this link has expired", expired=True, subscriber_id=known) from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError("this link is not valid")
    return value
