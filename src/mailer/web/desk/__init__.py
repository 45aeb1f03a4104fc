"""The editors' desk at /desk on `mailer serve` (when `[desk] enabled`): sign-in with the
accounts `mailer editors` makes, and the pages an editor works from. A front door onto
the use cases (mailer.desk, mailer.runs), as the CLI is."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from mailer.settings import Settings
from mailer.web.desk import overview, reports, subscribers
from mailer.web.desk.routes import router
from mailer.web.desk.state import Desk

__all__ = ["add_desk"]


def add_desk(app: FastAPI, settings: Settings, engine: Engine) -> None:
    app.state.desk = Desk.start(settings, engine)
    app.include_router(router)
    app.include_router(subscribers.router)
    app.include_router(reports.router)
    app.include_router(overview.router)
