"""The subscriber site: the pages behind the links every email carries. One-click
unsubscribe (RFC 8058) and the health check; pages from templates/web/, autoescaped.

Every link that acts carries a signed, purpose-bound token (tokens.py): an unsubscribe
token cannot do anything else, nor act on another subscriber."""

from __future__ import annotations

from urllib.parse import parse_qs

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from mailer.errors import SubscriberError
from mailer.render import template_dirs
from mailer.settings import Settings
from mailer.subscribers import find_subscriber, unsubscribe
from mailer.tokens import UNSUBSCRIBE, TokenError, read_token

# RFC 8058: what a mail client POSTs for a one-click unsubscribe
ONE_CLICK = "List-Unsubscribe=One-Click"


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    app = FastAPI(title=settings.publication.name, docs_url=None, redoc_url=None)
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dirs(settings)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    publication = settings.publication

    def page(name: str, status: int = 200, **values: object) -> HTMLResponse:
        body = pages.get_template(f"web/{name}").render(publication=publication, **values)
        return HTMLResponse(body, status_code=status)

    def subscriber_of(token: str) -> int:
        return read_token(settings.secret_key, UNSUBSCRIBE, token)

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError:
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/unsubscribe/{token}")
    def unsubscribe_page(token: str) -> HTMLResponse:
        """A page with one button: link scanners that fetch every link in a message must
        not unsubscribe anyone, so a GET changes nothing."""
        try:
            subscriber = find_subscriber(engine, subscriber_of(token))
        except (TokenError, SubscriberError):
            return page("invalid.html", 400)
        return page("unsubscribe.html", subscriber=subscriber, done=False)

    @app.post("/unsubscribe/{token}")
    async def unsubscribe_now(token: str, request: Request) -> Response:
        """The button, or a mail client's RFC 8058 one-click POST: no cookie, no login;
        the same answer however often it comes."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        one_click = "One-Click" in form.get("List-Unsubscribe", [])
        try:
            subscriber = unsubscribe(engine, subscriber_of(token))
        except (TokenError, SubscriberError):
            if one_click:
                return PlainTextResponse("This link is not valid.", status_code=400)
            return page("invalid.html", 400)
        if one_click:
            return PlainTextResponse("Unsubscribed.")
        return page("unsubscribe.html", subscriber=subscriber, done=True)

    return app
