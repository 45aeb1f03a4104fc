"""Sign-up with double opt-in: the form, and the confirmation link's page and button.
The steps are signup.py's; these routes read the request and pick the page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mailer import links, signup
from mailer.errors import SubscriberError
from mailer.signup import Outcome
from mailer.web.site import (
    CHECK_INBOX,
    CONFIRMED,
    FROM_OUR_PAGES,
    FROM_TOKEN_PAGES,
    TOO_MANY,
    Site,
    SiteDep,
    form_fields,
)

router = APIRouter()

# A hidden field, left empty by people and filled in by form-filling bots.
HONEYPOT = "website"


@router.get(links.SUBSCRIBE_PATH)
def subscribe_form(site: SiteDep) -> HTMLResponse:
    empty = {"email": "", "name": "", "frequency": "every"}
    return site.pages("subscribe.html", error="", values=empty)


@router.post(links.SUBSCRIBE_PATH, dependencies=FROM_OUR_PAGES)
async def subscribe(request: Request, site: SiteDep) -> HTMLResponse:
    """The same answer, in the same time, whether the address was new, pending or
    subscribed already, relay up or down, so the form tells nobody who reads us: the
    confirmation link is only queued here."""
    form = await form_fields(request)
    return await run_in_threadpool(_sign_up, site, form, site.client(request))


def _sign_up(site: Site, form: dict[str, str], client: str) -> HTMLResponse:
    values = {key: form.get(key, "") for key in ("email", "name", "frequency")}
    if form.get(HONEYPOT):  # a field people never see: a bot filled it in
        return site.pages("message.html", **CHECK_INBOX)
    if not site.clients.allow(client):
        return site.pages("message.html", 429, **TOO_MANY)
    try:
        checked = signup.check_request(
            values["email"], values["name"] or None, values["frequency"] or "every"
        )
    except SubscriberError as exc:
        return site.pages("subscribe.html", 400, error=str(exc), values=values)
    # Looked up later, by the sender: the same work for every address. Past the limit
    # for this mailbox the answer is the same, and no more mail goes to it.
    if signup.queue_request(site.engine, checked, site.mailboxes.allow_address):
        site.sender.wake()
    return site.pages("message.html", **CHECK_INBOX)


@router.get(links.CONFIRM_PATH)
def confirm_page(token: str, site: SiteDep) -> HTMLResponse:
    """A page with one button: link scanners that fetch every link in a message must
    not confirm a sign-up somebody else made, so a GET changes nothing."""
    found = signup.confirmation(site.engine, site.settings, token)
    if found.outcome == Outcome.EXPIRED:
        action = links.path(links.CONFIRM_PATH, token=token)
        return site.pages("expired.html", 410, token=token, action=action)
    if found.outcome == Outcome.CONFIRMED:
        return site.pages("message.html", **CONFIRMED)
    if found.outcome == Outcome.PENDING:
        return site.pages("confirm.html", subscriber=found.subscriber)
    return site.pages("invalid.html", 400)


@router.post(links.CONFIRM_PATH, dependencies=FROM_TOKEN_PAGES)
def confirm(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The button: a valid link activates; an expired link's button (expired.html)
    sends a fresh link to the same address, if still pending."""
    done = signup.confirm(site.engine, site.settings, token, site.client(request))
    if done.outcome == Outcome.CONFIRMED:
        site.sender.wake()  # the welcome mail, if one was queued
        return site.pages("message.html", **CONFIRMED)
    if done.outcome == Outcome.EXPIRED and done.subscriber_id is not None:
        if not site.clients.allow(site.client(request)):
            return site.pages("message.html", 429, **TOO_MANY)
        if signup.renew(site.engine, done.subscriber_id, site.mailboxes.allow_address):
            site.sender.wake()
        return site.pages("message.html", **CHECK_INBOX)
    return site.pages("invalid.html", 400)
