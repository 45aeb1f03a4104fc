"""What the desk's routes share, at app.state.desk: its pages, its sessions and its
sign-in limits; and the helpers that know who is signed in."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from mailer import editors, links
from mailer.settings import Settings
from mailer.web.desk.lookout import Lookout
from mailer.web.desk.sender import IssueSender
from mailer.web.desk.session import CSRF_FIELD, DeskSession, Sessions, SignedIn, csrf_matches
from mailer.web.guards import ClientLimit, RateLimit
from mailer.web.site import Pages

# Sign-in attempts, counted whatever their outcome: enough for someone who mistypes,
# far too few to guess a 12-character password.
SIGN_INS_PER_ACCOUNT = 10
SIGN_INS_PER_CLIENT = 30
SIGN_IN_WINDOW = 900.0  # seconds

REFUSED = {
    "title": "Not accepted",
    "text": "This form has expired or did not come from the desk, so nothing was changed. "
    "Go back, reload the page and try again.",
}
NOT_ADMIN = {
    "title": "Not allowed",
    "text": "Only an admin may see the subscribers' personal data. Ask an admin if you need it.",
}


class SecondFactorNeeded(Exception):
    """An admin without a second factor where [desk] require_2fa asks for one: sent to
    their account page to turn it on, whatever they asked for."""


# What such an admin may still reach: the account page (and its forms), and sign-out.
_SETUP_PATHS = (links.DESK_ACCOUNT_PATH, links.DESK_LOGOUT_PATH)


def _when(value: datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%a %d %b %Y %H:%M") if value else ""


@dataclass
class Desk:
    settings: Settings
    engine: Engine
    pages: Pages
    sessions: Sessions
    sender: IssueSender  # sends what the desk starts, in the service, not in a request
    lookout: Lookout  # what needs a person, kept in memory for every page's banner
    clients: ClientLimit = field(
        default_factory=lambda: ClientLimit(SIGN_INS_PER_CLIENT, SIGN_IN_WINDOW)
    )
    accounts: RateLimit = field(
        default_factory=lambda: RateLimit(SIGN_INS_PER_ACCOUNT, SIGN_IN_WINDOW)
    )

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Desk:
        pages = Pages(settings)
        zone = zoneinfo.ZoneInfo(settings.publication.timezone)
        pages.templates.filters["when"] = lambda value: _when(value, zone)
        sender = IssueSender(engine, settings)
        lookout = Lookout(engine, settings, sender.is_alive)
        return cls(settings, engine, pages, Sessions(settings), sender, lookout)

    def page(self, name: str, status: int = 200, /, **values: object) -> HTMLResponse:
        return self.pages(f"desk/{name}", status, **values)

    def redirect(self, to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303)

    async def signed_in(self, request: Request) -> SignedIn | None:
        """The editor this request comes from, if its session is live and the account
        still exists with the password it signed in with."""
        session = self.sessions.read(request)
        if session is None or session.editor_id is None:
            return None
        found = await run_in_threadpool(editors.session_stamp, self.engine, session.editor_id)
        if found is None or found[1] != session.stamp:
            return None
        editor = found[0]
        if self.must_set_up_2fa(editor) and not request.url.path.startswith(_SETUP_PATHS):
            raise SecondFactorNeeded
        return SignedIn(editor, session)

    def must_set_up_2fa(self, editor: editors.EditorView) -> bool:
        """An admin without a second factor, where [desk] require_2fa asks for one."""
        return self.settings.desk.require_2fa and editor.is_admin and not editor.totp_enabled

    async def signed_in_admin(self, request: Request) -> SignedIn | Response:
        """The admin this request comes from; else what to answer: the sign-in form for
        no session (as every desk page), 403 for an editor who is not an admin."""
        signed = await self.signed_in(request)
        if signed is None:
            return self.redirect(links.DESK_LOGIN_PATH)
        if not signed.editor.is_admin:
            return self.sessions.write(self.pages("message.html", 403, **NOT_ADMIN), signed.session)
        return signed

    def signed_in_page(self, signed: SignedIn, name: str, **values: object) -> Response:
        """A page for a signed-in editor, with what every desk page shows (who is signed
        in, the sign-out form, the links their role may follow), its session signed
        afresh (the idle timeout starts again)."""
        page = self.page(
            name,
            editor=signed.editor,
            csrf=signed.session.csrf,
            csrf_field=CSRF_FIELD,
            logout_path=links.DESK_LOGOUT_PATH,
            desk_path=links.DESK_PATH,
            subscribers_path=links.DESK_SUBSCRIBERS_PATH,
            articles_path=links.DESK_ARTICLES_PATH,
            account_path=links.DESK_ACCOUNT_PATH,
            editors_path=links.DESK_EDITORS_PATH,
            issue_path=lambda issue_id: links.path(links.DESK_ISSUE_PATH, issue_id=str(issue_id)),
            digest_path=links.DESK_DIGEST_PATH,
            audit_path=links.DESK_AUDIT_PATH,
            donations_path=links.DESK_DONATIONS_PATH,  # issue 15: donations
            attention=self.lookout.current,
            **values,
        )
        return self.sessions.write(page, signed.session)

    def refused(self) -> HTMLResponse:
        """The answer to a form without a session or its CSRF token: nothing changed."""
        return self.pages("message.html", 403, **REFUSED)

    async def signed_post(self, request: Request, sent: str | None) -> SignedIn | Response:
        """The editor a form comes from, its CSRF token (`sent`) checked; else the 403 to
        answer, nothing changed."""
        signed = await self.signed_in(request)
        if signed is None or not csrf_matches(signed.session, sent):
            return self.refused()
        return signed

    def session_of(self, request: Request) -> DeskSession:
        return self.sessions.read(request) or self.sessions.new()


def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


async def raw_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields, the first value of each, as typed (a password's
    spaces are part of it)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}
