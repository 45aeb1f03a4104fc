"""The editors' desk at /desk on `mailer serve` (when `[desk] enabled`): sign-in with the
accounts `mailer editors` makes, and the pages an editor works from. A front door onto
the use cases (mailer.desk, mailer.runs), as the CLI is."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from mailer import links
from mailer.settings import Settings
from mailer.web.desk import (
    account,
    articles,
    donations,
    editor_admin,
    overview,
    recovery,
    reports,
    sending,
    subscribers,
)
from mailer.web.desk.routes import router
from mailer.web.desk.signin import SignInState
from mailer.web.desk.state import Desk, SecondFactorNeeded

__all__ = ["add_desk"]


def add_desk(app: FastAPI, settings: Settings, engine: Engine) -> None:
    app.state.desk = Desk.start(settings, engine)
    app.state.desk_sign_in = SignInState(settings)
    app.include_router(router)
    app.include_router(subscribers.router)
    app.include_router(reports.router)
    app.include_router(account.router)
    app.include_router(recovery.router)
    app.include_router(editor_admin.router)
    app.include_router(articles.router)
    app.include_router(sending.router)
    app.include_router(overview.router)
    app.include_router(donations.router)  # issue 15: donations
    app.add_exception_handler(SecondFactorNeeded, _set_up_second_factor)


async def _set_up_second_factor(_request: Request, _exc: Exception) -> Response:
    """[desk] require_2fa: an admin without a second factor goes to turn it on first."""
    return RedirectResponse(links.DESK_ACCOUNT_PATH, status_code=303)
