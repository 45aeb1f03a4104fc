"""What signing in needs beyond the session, at app.state.desk_sign_in: the second step's
cookie (the password was right for editor N, a few minutes ago, in this browser), the
TOTP steps already taken, and the limits on asking for a password link."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from mailer import links
from mailer.second_factor import UsedSteps
from mailer.settings import Settings
from mailer.web.desk.session import DeskSession
from mailer.web.guards import ClientLimit, RateLimit

PENDING_COOKIE = "mailer_desk_code"
PENDING_PURPOSE = "mailer.desk-second-step"
# Long enough to open the app and type a code; the password is asked again after it.
PENDING_SECONDS = 300

# Each request mails the account a link: a few an hour are plenty for a person, and a
# stranger cannot fill an editor's inbox.
FORGOT_PER_ACCOUNT = 3
FORGOT_PER_CLIENT = 10
FORGOT_WINDOW = 3600.0  # seconds


@dataclass(frozen=True)
class Pending:
    """A sign-in waiting for its code: whose, and the password stamp it passed with."""

    editor_id: int
    stamp: str


@dataclass
class SignInState:
    settings: Settings
    used_steps: UsedSteps = field(default_factory=UsedSteps)
    forgot_clients: ClientLimit = field(
        default_factory=lambda: ClientLimit(FORGOT_PER_CLIENT, FORGOT_WINDOW)
    )
    forgot_accounts: RateLimit = field(
        default_factory=lambda: RateLimit(FORGOT_PER_ACCOUNT, FORGOT_WINDOW)
    )

    def __post_init__(self) -> None:
        self.serializer = URLSafeTimedSerializer(self.settings.signing_keys, salt=PENDING_PURPOSE)
        self.secure = self.settings.publication.base_url.startswith("https://")

    def hold(self, response: Response, session: DeskSession, editor_id: int, stamp: str) -> None:
        """Remember on the browser that the password was right, for PENDING_SECONDS; tied
        to the session's CSRF token, so it is worth nothing in another browser."""
        value = self.serializer.dumps({"e": editor_id, "s": stamp, "c": session.csrf})
        response.set_cookie(
            PENDING_COOKIE,
            value,
            max_age=PENDING_SECONDS,
            path=links.DESK_LOGIN_PATH,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def pending(self, request: Request, session: DeskSession | None) -> Pending | None:
        value = request.cookies.get(PENDING_COOKIE)
        if not value or session is None:
            return None
        try:
            data = self.serializer.loads(value, max_age=PENDING_SECONDS)
            if data["c"] != session.csrf:
                return None
            return Pending(int(data["e"]), str(data["s"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def release(self, request: Request, response: Response) -> None:
        if PENDING_COOKIE not in request.cookies:
            return  # no second step was held: no cookie to clear
        response.delete_cookie(
            PENDING_COOKIE,
            path=links.DESK_LOGIN_PATH,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )


def sign_in_of(request: Request) -> SignInState:
    state: SignInState = request.app.state.desk_sign_in
    return state
