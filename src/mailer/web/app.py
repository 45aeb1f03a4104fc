"""The subscriber site's app: sign-up with double opt-in, and the pages behind the links
every email carries (confirm, preferences, one-click unsubscribe, read online, the
counted links), the health check, and the editors' desk (web/desk/, when `[desk]
enabled`); pages from templates/web/, usable without JavaScript. One router per area
(subscription.py, reader.py, archive.py, redirect.py), their routes declared from
links.py's paths; what they share is the `Site` at app.state.site (site.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from mailer import links
from mailer.settings import Settings
from mailer.web.archive import router as archive
from mailer.web.desk import add_desk
from mailer.web.headers import GuardedApp
from mailer.web.limits import DESK_FORM_BYTES, FORM_BYTES, BodyLimit
from mailer.web.reader import router as reader
from mailer.web.redirect import router as redirect
from mailer.web.site import REFUSED, TOO_LARGE, CrossSite, Site, site_of
from mailer.web.subscription import router as subscription


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    senders = [app.state.site.sender]
    if hasattr(app.state, "desk"):
        senders += [app.state.desk.sender, app.state.desk.lookout]
    for sender in senders:
        sender.start()
    try:
        yield
    finally:
        for sender in senders:
            await run_in_threadpool(sender.stop)


def _refuse_cross_site(request: Request, _exc: Exception) -> HTMLResponse:
    pages = site_of(request).pages
    return pages.notice(REFUSED, 403, pages.for_request(request))


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    app = GuardedApp(
        title=settings.publication.name, docs_url=None, redoc_url=None, lifespan=_lifespan
    )
    site = Site.start(settings, engine)
    app.state.site = site
    app.add_exception_handler(CrossSite, _refuse_cross_site)
    # before the request is read: in the publication's language
    too_large = site.pages.notice(TOO_LARGE).body
    wider = ((links.DESK_PATH + "/", DESK_FORM_BYTES),) if settings.desk.enabled else ()
    app.add_middleware(BodyLimit, limit=FORM_BYTES, page=bytes(too_large), wider=wider)
    for router in (subscription, reader, archive, redirect):
        app.include_router(router)
    if settings.desk.enabled:
        add_desk(app, settings, engine)
    return app
