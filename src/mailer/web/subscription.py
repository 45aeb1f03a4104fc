"""Sign-up with double opt-in: the form, and the confirmation link's page and button.
The steps are signup.py's; these routes read the request and pick the page, in the
reader's language once the link names them, else in the one the visitor asked for."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mailer import links, signup
from mailer.signup import Field, Outcome, SignUpRefused
from mailer.subscribers import NAME_MAX
from mailer.web.site import (
    CHECK_INBOX,
    CONFIRMED,
    FROM_OUR_PAGES,
    FROM_TOKEN_PAGES,
    N_,
    TOO_MANY,
    Site,
    SiteDep,
    form_lists,
)

router = APIRouter()

# A hidden field, left empty by people and filled in by form-filling bots.
HONEYPOT = "website"

# What the form says about a field it refused, in the page's language.
REFUSALS = {
    Field.EMAIL: N_("Please check the email address: we cannot send to it as it is written."),
    Field.NAME: N_("The name is too long: please give at most %(limit)s characters."),
    Field.LANGUAGES: N_("Please choose among the languages offered."),
    Field.FREQUENCY: N_("Please choose how often you want the newsletter."),
}


@router.get(links.SUBSCRIBE_PATH)
def subscribe_form(request: Request, site: SiteDep) -> HTMLResponse:
    language = site.pages.for_request(request)
    empty = {"email": "", "name": "", "frequency": "every"}
    chosen = {"own": language, "read": [language]}  # the page's language, to start with
    return site.pages(
        "subscribe.html", 200, language, error="", values=empty, chosen=chosen, switcher=True
    )


@router.post(links.SUBSCRIBE_PATH, dependencies=FROM_OUR_PAGES)
async def subscribe(request: Request, site: SiteDep) -> HTMLResponse:
    """The same answer, in the same time, whether the address was new, pending or
    subscribed already, relay up or down, so the form tells nobody who reads us: the
    confirmation link is only queued here."""
    form = await form_lists(request)
    language = site.pages.for_request(request)
    return await run_in_threadpool(_sign_up, site, form, site.client(request), language)


def _sign_up(site: Site, form: dict[str, list[str]], client: str, language: str) -> HTMLResponse:
    values = {key: (form.get(key) or [""])[0] for key in ("email", "name", "frequency")}
    if (form.get(HONEYPOT) or [""])[0]:  # a field people never see: a bot filled it in
        return site.pages.notice(CHECK_INBOX, 200, language)
    if not site.clients.allow(client):
        return site.pages.notice(TOO_MANY, 429, language)
    chosen = read_languages(form, site.pages.languages)
    try:
        checked = signup.check_request(
            values["email"],
            values["name"] or None,
            values["frequency"] or "every",
            chosen,
            site.pages.languages,
        )
    except SignUpRefused as exc:
        error = site.pages.translate(language, REFUSALS[exc.field]) % {"limit": NAME_MAX}
        shown = {"own": chosen[0] if chosen else language, "read": chosen}
        return site.pages(
            "subscribe.html", 400, language, error=error, values=values, chosen=shown, switcher=True
        )
    # Looked up later, by the sender: the same work for every address. Past the limit
    # for this mailbox the answer is the same, and no more mail goes to it.
    if signup.queue_request(site.engine, checked, site.mailboxes.allow_address):
        site.sender.wake()
    return site.pages.notice(CHECK_INBOX, 200, language)


def read_languages(form: dict[str, list[str]], offered: tuple[str, ...]) -> list[str]:
    """The languages a form says the reader reads, the one to write to them in first;
    none when the publication has one language (the form does not ask)."""
    if len(offered) < 2:
        return []
    own = [tag for tag in form.get("language", [])[:1] if tag]
    return list(dict.fromkeys(own + [tag for tag in form.get("languages", []) if tag]))


@router.get(links.CONFIRM_PATH)
def confirm_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A page with one button: link scanners that fetch every link in a message must
    not confirm a sign-up somebody else made, so a GET changes nothing."""
    found = signup.confirmation(site.engine, site.settings, token)
    reader = found.subscriber
    language = (
        site.pages.for_reader(reader.languages) if reader else site.pages.for_request(request)
    )
    if found.outcome == Outcome.EXPIRED:
        action = links.path(links.CONFIRM_PATH, token=token)
        return site.pages("expired.html", 410, language, token=token, action=action)
    if found.outcome == Outcome.CONFIRMED:
        return site.pages.notice(CONFIRMED, 200, language)
    if found.outcome == Outcome.PENDING:
        return site.pages("confirm.html", 200, language, subscriber=reader)
    return site.pages("invalid.html", 400, language)


@router.post(links.CONFIRM_PATH, dependencies=FROM_TOKEN_PAGES)
def confirm(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The button: a valid link activates; an expired link's button (expired.html)
    sends a fresh link to the same address, if still pending."""
    done = signup.confirm(site.engine, site.settings, token, site.client(request))
    if done.outcome == Outcome.CONFIRMED and done.subscriber is not None:
        site.sender.wake()  # the welcome mail, if one was queued
        language = site.pages.for_reader(done.subscriber.languages)
        return site.pages.notice(CONFIRMED, 200, language)
    language = site.pages.for_request(request)
    if done.outcome == Outcome.EXPIRED and done.subscriber_id is not None:
        if not site.clients.allow(site.client(request)):
            return site.pages.notice(TOO_MANY, 429, language)
        if signup.renew(site.engine, done.subscriber_id, site.mailboxes.allow_address):
            site.sender.wake()
        return site.pages.notice(CHECK_INBOX, 200, language)
    return site.pages("invalid.html", 400, language)
