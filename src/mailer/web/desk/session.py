"""The desk's session: one signed cookie (itsdangerous, the settings' signing keys, a
purpose of its own) holding the editor's id, a stamp of their password hash and the
session's CSRF token. It is signed afresh on every answer, so its signature's age is the
time since the editor last did anything: older than the idle timeout, it is void. The
editor is looked up on every request, so a removed account or a reset password ends the
session at once."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from mailer import links
from mailer.editors import EditorView
from mailer.settings import Settings

COOKIE = "mailer_desk"
PURPOSE = "mailer.desk-session"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class DeskSession:
    """What the cookie says: always a CSRF token; an editor once signed in."""

    csrf: str
    editor_id: int | None = None
    stamp: str = ""

    def signed_in_as(self, editor_id: int, stamp: str) -> DeskSession:
        """The session after signing in: a new CSRF token, so one planted before
        sign-in is worth nothing after it."""
        return DeskSession(secrets.token_urlsafe(24), editor_id, stamp)

    def signed_out(self) -> DeskSession:
        return replace(self, editor_id=None, stamp="")


@dataclass(frozen=True)
class SignedIn:
    """A request from a signed-in editor: who, and the session to sign afresh."""

    editor: EditorView
    session: DeskSession


class Sessions:
    """Reads and writes the desk's cookie."""

    def __init__(self, settings: Settings):
        self.serializer = URLSafeTimedSerializer(settings.signing_keys, salt=PURPOSE)
        self.idle_seconds = max(1, round(settings.desk.idle_minutes * 60))
        self.secure = settings.publication.base_url.startswith("https://")

    def read(self, request: Request) -> DeskSession | None:
        """The request's session, or None if it has none, a forged one or an idle one."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self.serializer.loads(value, max_age=self.idle_seconds)
            return DeskSession(str(data["c"]), data.get("e"), str(data.get("s", "")))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def new(self) -> DeskSession:
        return DeskSession(secrets.token_urlsafe(24))

    def write(self, response: Response, session: DeskSession) -> Response:
        data = {"c": session.csrf, "e": session.editor_id, "s": session.stamp}
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            path=links.DESK_PATH,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
        return response

    def clear(self, response: Response) -> Response:
        response.delete_cookie(
            COOKIE, path=links.DESK_PATH, httponly=True, samesite="lax", secure=self.secure
        )
        return response


def csrf_matches(session: DeskSession | None, sent: str | None) -> bool:
    """The form's token is the session's (compared in constant time)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())
