"""The subscriber site: sign-up with double opt-in, and the pages behind the links every
email carries: confirm, preferences, one-click unsubscribe (RFC 8058); and the health
check. Pages
from templates/web/, autoescaped, usable without JavaScript.

Every link that acts carries a signed, purpose-bound token (tokens.py): an unsubscribe
token cannot do anything else, nor act on another subscriber."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from urllib.parse import parse_qs

import jinja2
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from mailer.delivery import send_one
from mailer.errors import MailerError, SubscriberError
from mailer.issues import find_issue
from mailer.messages import Recipient, fill
from mailer.models import IssueStatus, Subscriber, SubscriberStatus
from mailer.render import issue_key, render_confirmation, template_dirs
from mailer.settings import Settings
from mailer.subscribers import (
    FREQUENCIES,
    confirm_subscription,
    find_subscriber,
    forget_confirmation,
    renew_request,
    request_subscription,
    resolve,
    unsubscribe,
    update_preferences,
)
from mailer.tokens import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    TokenError,
    make_token,
    read_token,
)

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

    def page(name: str, status: int = 200, /, **values: object) -> HTMLResponse:
        body = pages.get_template(f"web/{name}").render(publication=publication, **values)
        return HTMLResponse(body, status_code=status)

    def reader_of(purpose: str, token: str, max_age: int | None = None) -> int:
        """The subscriber a link is for; TokenError or SubscriberError if none."""
        return resolve(engine, read_token(settings.signing_keys, purpose, token, max_age))

    def subscriber_of(token: str) -> int:
        return reader_of(UNSUBSCRIBE, token)

    limiter = RateLimit(SIGN_UPS_PER_IP, SIGN_UP_WINDOW)

    @app.get("/subscribe")
    def subscribe_form() -> HTMLResponse:
        empty = {"email": "", "name": "", "frequency": "every"}
        return page("subscribe.html", error="", values=empty)

    @app.post("/subscribe")
    async def subscribe(request: Request) -> HTMLResponse:
        """The same answer whether the address was new, pending or subscribed already,
        so the form tells nobody who reads us."""
        form = await _form(request)
        values = {key: form.get(key, "") for key in ("email", "name", "frequency")}
        if form.get(HONEYPOT):  # a field people never see: a bot filled it in
            return page("message.html", **CHECK_INBOX)
        if not limiter.allow(_client(request)):
            return page("message.html", 429, **TOO_MANY)
        try:
            subscriber = request_subscription(
                engine,
                values["email"],
                values["name"] or None,
                values["frequency"] or "every",
                purge_key=settings.purge_key,
            )
        except SubscriberError as exc:
            return page("subscribe.html", 400, error=str(exc), values=values)
        if subscriber is not None:
            try:
                _send_confirmation(settings, subscriber)
            except MailerError:
                forget_confirmation(engine, subscriber.id or 0)
                return page("message.html", 503, **NOT_SENT)
        return page("message.html", **CHECK_INBOX)

    @app.get("/confirm/{token}")
    def confirm(token: str, request: Request) -> HTMLResponse:
        try:
            subscriber_id = reader_of(CONFIRM, token, CONFIRM_SECONDS)
            subscriber = confirm_subscription(engine, subscriber_id, _client(request))
        except TokenError as exc:
            if exc.expired and exc.subscriber_id is not None:
                return page("expired.html", 410, token=token)
            return page("invalid.html", 400)
        except SubscriberError:
            return page("invalid.html", 400)
        if subscriber.status != SubscriberStatus.ACTIVE:
            return page("invalid.html", 400)
        return page("message.html", **CONFIRMED)

    @app.post("/confirm/{token}")
    def renew_confirmation(token: str, request: Request) -> HTMLResponse:
        """An expired link's button: a fresh link to the same address, if still pending."""
        try:
            read_token(settings.signing_keys, CONFIRM, token, CONFIRM_SECONDS)
            return page("invalid.html", 400)  # not expired: nothing to renew
        except TokenError as exc:
            if exc.subscriber_id is None:
                return page("invalid.html", 400)
            try:
                subscriber_id = resolve(engine, exc.subscriber_id)
            except SubscriberError:
                return page("invalid.html", 400)
        if not limiter.allow(_client(request)):
            return page("message.html", 429, **TOO_MANY)
        subscriber = renew_request(engine, subscriber_id)
        if subscriber is not None:
            try:
                _send_confirmation(settings, subscriber)
            except MailerError:
                forget_confirmation(engine, subscriber_id)
                return page("message.html", 503, **NOT_SENT)
        return page("message.html", **CHECK_INBOX)

    @app.get("/preferences/{token}")
    def preferences(token: str) -> HTMLResponse:
        try:
            subscriber_id = reader_of(PREFERENCES, token)
            subscriber = find_subscriber(engine, subscriber_id)
        except (TokenError, SubscriberError):
            return page("invalid.html", 400)
        return page("preferences.html", subscriber=subscriber, saved=False)

    @app.post("/preferences/{token}")
    async def save_preferences(token: str, request: Request) -> HTMLResponse:
        form = await _form(request)
        try:
            subscriber_id = reader_of(PREFERENCES, token)
            if form.get("action") == "leave":
                # off the event loop: it may wait out a busy database
                subscriber = await run_in_threadpool(unsubscribe, engine, subscriber_id)
                return page("unsubscribe.html", subscriber=subscriber, done=True)
            if form.get("frequency") not in FREQUENCIES:  # only a hand-made form does that
                subscriber = find_subscriber(engine, subscriber_id)
                return page("preferences.html", 400, subscriber=subscriber, saved=False)
            subscriber = update_preferences(
                engine, subscriber_id, form.get("name") or None, form["frequency"]
            )
        except (TokenError, SubscriberError):
            return page("invalid.html", 400)
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
        one_click = "One-Click" in form.get("List-Unsubscribe", [])
        try:
            # off the event loop: it may wait out a busy database
            subscriber = await run_in_threadpool(unsubscribe, engine, subscriber_of(token))
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
NOT_SENT = {
    "title": "We could not send the email",
    "text": "Our mail server did not take it just now. Please try again in a little while.",
}


class RateLimit:
    """At most `limit` requests from one address in any `seconds`-long window."""

    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        self.seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        times = self.seen[client]
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields, the first value of each."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: values[0].strip() for key, values in fields.items()}


def _send_confirmation(settings: Settings, subscriber: Subscriber) -> None:
    assert subscriber.id is not None
    token = make_token(settings.secret_key, CONFIRM, subscriber.public_id)
    url = f"{settings.publication.base_url}/confirm/{token}"
    rendered = render_confirmation(settings, subscriber.email, subscriber.name, url)
    recipient = Recipient(subscriber.id, subscriber.email, subscriber.name, subscriber.public_id)
    send_one(settings, rendered, recipient, what="confirmation link")
