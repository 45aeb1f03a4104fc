"""The subscriber site: sign-up with double opt-in, and the pages behind the links every
email carries: confirm, preferences, one-click unsubscribe (RFC 8058); and the health
check. Pages
from templates/web/, autoescaped, usable without JavaScript.

Every link that acts carries a signed, purpose-bound token (tokens.py): an unsubscribe
token cannot do anything else, nor act on another subscriber."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from mailer.errors import SubscriberError
from mailer.issues import find_issue
from mailer.messages import fill
from mailer.models import IssueStatus, SubscriberStatus
from mailer.render import issue_key, template_dirs
from mailer.settings import Settings
from mailer.subscribers import (
    FREQUENCIES,
    checked_request,
    confirm_subscription,
    find_subscriber,
    renew_request,
    resolve,
    unsubscribe,
    update_preferences,
)
from mailer.tokens import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    TokenError,
    read_token,
)
from mailer.transactional import BackgroundSender, queue_confirmation, queue_sign_up
from mailer.web.guards import (
    AddressLimit,
    ClientLimit,
    client_address,
    form_from_allowed_origin,
    proxy_networks,
)
from mailer.web.headers import GuardedApp
from mailer.web.limits import FORM_BYTES, BodyLimit

# RFC 8058: what a mail client POSTs for a one-click unsubscribe
ONE_CLICK = "List-Unsubscribe=One-Click"


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    # confirmation links go out from here, after the answer (transactional.py)
    sender = BackgroundSender(engine, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sender.start()
        try:
            yield
        finally:
            await run_in_threadpool(sender.stop)

    app = GuardedApp(
        title=settings.publication.name, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dirs(settings)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    publication = settings.publication
    app.state.trusted_proxies = proxy_networks(settings.web.trusted_proxies)

    def page(name: str, status: int = 200, /, **values: object) -> HTMLResponse:
        body = pages.get_template(f"web/{name}").render(publication=publication, **values)
        return HTMLResponse(body, status_code=status)

    def reader_of(purpose: str, token: str, max_age: int | None = None) -> int:
        """The subscriber a link is for; TokenError or SubscriberError if none."""
        return resolve(engine, read_token(settings.signing_keys, purpose, token, max_age))

    def subscriber_of(token: str) -> int:
        return reader_of(UNSUBSCRIBE, token)

    limiter = ClientLimit(SIGN_UPS_PER_IP, SIGN_UP_WINDOW)
    limits = AddressLimit()

    class CrossSite(Exception):
        """A state-changing form that did not come from an allowed page."""

    async def same_origin(request: Request) -> None:
        if not form_from_allowed_origin(request, settings.allowed_origins):
            raise CrossSite

    @app.exception_handler(CrossSite)
    def refuse_cross_site(request: Request, exc: CrossSite) -> HTMLResponse:
        return page("message.html", 403, **REFUSED)

    async def from_token_page(request: Request) -> None:
        if not form_from_allowed_origin(request, settings.allowed_origins, token_page=True):
            raise CrossSite

    from_our_pages = [Depends(same_origin)]
    from_token_pages = [Depends(from_token_page)]
    too_large = pages.get_template("web/message.html").render(publication=publication, **TOO_LARGE)
    app.add_middleware(BodyLimit, limit=FORM_BYTES, page=too_large.encode())

    def send_confirmation(subscriber_id: int) -> None:
        if queue_confirmation(engine, subscriber_id):
            sender.wake()

    @app.get("/subscribe")
    def subscribe_form() -> HTMLResponse:
        empty = {"email": "", "name": "", "frequency": "every"}
        return page("subscribe.html", error="", values=empty)

    @app.post("/subscribe", dependencies=from_our_pages)
    async def subscribe(request: Request) -> HTMLResponse:
        """The same answer, in the same time, whether the address was new, pending or
        subscribed already, relay up or down, so the form tells nobody who reads us: the
        confirmation link is only queued here."""
        form = await _form(request)
        return await run_in_threadpool(sign_up, form, _client(request))

    def sign_up(form: dict[str, str], client: str) -> HTMLResponse:
        values = {key: form.get(key, "") for key in ("email", "name", "frequency")}
        if form.get(HONEYPOT):  # a field people never see: a bot filled it in
            return page("message.html", **CHECK_INBOX)
        if not limiter.allow(client):
            return page("message.html", 429, **TOO_MANY)
        try:
            address, name, frequency = checked_request(
                values["email"], values["name"] or None, values["frequency"] or "every"
            )
        except SubscriberError as exc:
            return page("subscribe.html", 400, error=str(exc), values=values)
        # Looked up later, by the sender: the same work for every address. Past the
        # limit for this mailbox the answer is the same, and no more mail goes to it.
        if limits.allow_address(address):
            queue_sign_up(engine, address, name, frequency)
            sender.wake()
        return page("message.html", **CHECK_INBOX)

    @app.get("/confirm/{token}")
    def confirm_page(token: str) -> HTMLResponse:
        """A page with one button: link scanners that fetch every link in a message must
        not confirm a sign-up somebody else made, so a GET changes nothing."""
        try:
            subscriber_id = reader_of(CONFIRM, token, CONFIRM_SECONDS)
            subscriber = find_subscriber(engine, subscriber_id)
        except TokenError as exc:
            if exc.expired and exc.subscriber_id is not None:
                return page("expired.html", 410, token=token)
            return page("invalid.html", 400)
        except SubscriberError:
            return page("invalid.html", 400)
        if subscriber.status == SubscriberStatus.ACTIVE:
            return page("message.html", **CONFIRMED)
        if subscriber.status != SubscriberStatus.PENDING:
            return page("invalid.html", 400)
        return page("confirm.html", subscriber=subscriber)

    @app.post("/confirm/{token}", dependencies=from_token_pages)
    def confirm(token: str, request: Request) -> HTMLResponse:
        """The button: a valid link activates; an expired link's button (expired.html)
        sends a fresh link to the same address, if still pending."""
        try:
            subscriber_id = reader_of(CONFIRM, token, CONFIRM_SECONDS)
            subscriber = confirm_subscription(engine, subscriber_id, _client(request))
        except TokenError as exc:
            if not exc.expired or exc.subscriber_id is None:
                return page("invalid.html", 400)
            try:
                return renew(resolve(engine, exc.subscriber_id), request)
            except SubscriberError:
                return page("invalid.html", 400)
        except SubscriberError:
            return page("invalid.html", 400)
        if subscriber.status != SubscriberStatus.ACTIVE:
            return page("invalid.html", 400)
        return page("message.html", **CONFIRMED)

    def renew(subscriber_id: int, request: Request) -> HTMLResponse:
        if not limiter.allow(_client(request)):
            return page("message.html", 429, **TOO_MANY)
        subscriber = renew_request(engine, subscriber_id)
        if subscriber is not None and limits.allow_address(subscriber.email):
            send_confirmation(subscriber_id)
        return page("message.html", **CHECK_INBOX)

    @app.get("/preferences/{token}")
    def preferences(token: str) -> HTMLResponse:
        try:
            subscriber_id = reader_of(PREFERENCES, token)
            subscriber = find_subscriber(engine, subscriber_id)
        except (TokenError, SubscriberError):
            return page("invalid.html", 400)
        return page("preferences.html", subscriber=subscriber, saved=False)

    @app.post("/preferences/{token}", dependencies=from_token_pages)
    async def save_preferences(token: str, request: Request) -> HTMLResponse:
        form = await _form(request)
        return await run_in_threadpool(preferences_saved, token, form)

    def preferences_saved(token: str, form: dict[str, str]) -> HTMLResponse:
        try:
            subscriber_id = reader_of(PREFERENCES, token)
            if form.get("action") == "leave":
                subscriber = unsubscribe(engine, subscriber_id)
                return page("unsubscribe.html", subscriber=subscriber, done=True)
            subscriber = find_subscriber(engine, subscriber_id)
            if form.get("frequency") not in FREQUENCIES:  # only a hand-made form does that
                return page("preferences.html", 400, subscriber=subscriber, saved=False)
        except (TokenError, SubscriberError):
            return page("invalid.html", 400)
        try:
            subscriber = update_preferences(
                engine, subscriber_id, form.get("name") or None, form["frequency"]
            )
        except SubscriberError:  # a name too long: the page again, as it was
            return page("preferences.html", 400, subscriber=subscriber, saved=False)
        return page("preferences.html", subscriber=subscriber, saved=True)

    @app.get("/issues/{slug}")
    def read_online(slug: str) -> HTMLResponse:
        """An issue as it was sent, for everyone: the reader's address and links, filled
        per recipient in the emails, are left out here."""
        issue = find_issue(engine, issue_key(slug))
        if issue is None or issue.status not in IssueStatus.STARTED:
            return page("message.html", 404, **NOT_FOUND)
        return HTMLResponse(fill(issue.html, "your address", "#", "#"))

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
        checked = form_from_allowed_origin(request, settings.allowed_origins, token_page=True)
        return await run_in_threadpool(unsubscribed, token, form, checked)

    def unsubscribed(token: str, form: dict[str, list[str]], from_our_page: bool) -> Response:
        one_click = "One-Click" in form.get("List-Unsubscribe", [])
        if not one_click and not from_our_page:  # mail clients' one-click needs no Origin
            return page("message.html", 403, **REFUSED)
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


# A hidden field, left empty by people and filled in by form-filling bots.
HONEYPOT = "website"
SIGN_UPS_PER_IP = 5
SIGN_UP_WINDOW = 600.0  # seconds
CONFIRM_SECONDS = 7 * 24 * 3600

CHECK_INBOX = {
    "title": "Check your inbox",
    "text": "If the address can receive our newsletter, a message with a confirmation link "
    "is on its way. Follow the link to start your subscription.",
}
CONFIRMED = {
    "title": "You are subscribed",
    "text": "Thank you. The newsletter starts with the next issue.",
}
TOO_MANY = {
    "title": "Too many attempts",
    "text": "Please wait a few minutes before trying again.",
}
NOT_FOUND = {
    "title": "No such issue",
    "text": "This issue does not exist, or has not been sent yet.",
}
REFUSED = {
    "title": "Not accepted",
    "text": "This form was sent from a page that is not ours, so nothing was changed. "
    "Please use the form on our own website.",
}
TOO_LARGE = {
    "title": "Too much text",
    "text": "The form sent more than we accept. Please shorten what you typed and try again.",
}


def _client(request: Request) -> str:
    """The client's address, from X-Forwarded-For only behind a trusted proxy."""
    return client_address(request, request.app.state.trusted_proxies)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields, the first value of each."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: values[0].strip() for key, values in fields.items()}
