"""What the desk's routes share, at app.state.desk: its pages, its sessions and its
sign-in limits; and the helpers that know who is signed in."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from mailer import editors
from mailer.settings import Settings
from mailer.web.desk.session import DeskSession, Sessions, SignedIn
from mailer.web.guards import ClientLimit, RateLimit
from mailer.web.site import Pages

# Sign-in attempts, counted whatever their outcome: enough for someone who mistypes,
# far too few to guess a 12-character password.
SIGN_INS_PER_ACCOUNT = 10
SIGN_INS_PER_CLIENT = 30
SIGN_IN_WINDOW = 900.0  # seconds


def _when(value: datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%a %d %b %Y %H:%M") if value else ""


@dataclass
class Desk:
    settings: Settings
    engine: Engine
    pages: Pages
    sessions: Sessions
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
        return cls(settings, engine, pages, Sessions(settings))

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
        return SignedIn(found[0], session)

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
