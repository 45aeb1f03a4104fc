"""Signed, purpose-bound tokens for the links that act (unsubscribe, confirm, preferences).

A token names one subscriber and one purpose; it is signed with the secret key, so it
cannot be forged, guessed, or used for another purpose or another subscriber."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
PREFERENCES = "preferences"


class TokenError(Exception):
    """A token that is tampered with, expired, or made for another purpose."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=f"mailer.{purpose}")


def make_token(secret_key: str, purpose: str, subscriber_id: int) -> str:
    return _serializer(secret_key, purpose).dumps(subscriber_id)


def read_token(
    secret_key: str, purpose: str, token: str, max_age_seconds: int | None = None
) -> int:
    """The subscriber id a token was made for, or TokenError."""
    try:
        value = _serializer(secret_key, purpose).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise TokenError("this link has expired", expired=True) from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError("this link is not valid")
    return value
