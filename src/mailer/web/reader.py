"""The pages behind the links in every email's footer: preferences, and unsubscribe with
one button or a mail client's one-click POST (RFC 8058). Every link carries a signed,
purpose-bound token (tokens.py): an unsubscribe token cannot do anything else, nor act
on another subscriber. The steps are signup.py's; these routes pick the page, in the
reader's own language."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import links, signup, supporting
from mailer.i18n import own_language, reader_languages
from mailer.models import Subscriber
from mailer.signup import Outcome
from mailer.tokens import PREFERENCES, UNSUBSCRIBE
from mailer.web.guards import form_from_allowed_origin
from mailer.web.site import FROM_TOKEN_PAGES, REFUSED, Site, SiteDep, form_lists
from mailer.web.subscription import read_languages

router = APIRouter()


@router.get(links.PREFERENCES_PATH)
def preferences(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    found = signup.reader_link(site.engine, site.settings, PREFERENCES, token)
    if found.outcome != Outcome.VALID:
        return site.pages("invalid.html", 400, site.pages.for_request(request))
    subscriber = found.subscriber
    assert subscriber is not None
    return _preferences_page(site, subscriber, 200, saved=False)


def _preferences_page(site: Site, subscriber: Subscriber, status: int, saved: bool) -> HTMLResponse:
    """The form as the reader's choices stand, in their own language."""
    offered = site.pages.publication.language
    chosen = {
        "own": own_language(subscriber.languages, offered),
        "read": list(reader_languages(subscriber.languages, offered)),
    }
    return site.pages(
        "preferences.html",
        status,
        site.pages.for_reader(subscriber.languages),
        subscriber=subscriber,
        donor=supporting.donor_view(site.settings, subscriber),
        saved=saved,
        chosen=chosen,
    )


@router.post(links.PREFERENCES_PATH, dependencies=FROM_TOKEN_PAGES)
async def save_preferences(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    form = await form_lists(request)
    language = site.pages.for_request(request)
    return await run_in_threadpool(_preferences_saved, site, token, form, language)


def _preferences_saved(
    site: Site, token: str, lists: dict[str, list[str]], language: str
) -> HTMLResponse:
    form = {key: values[0] for key, values in lists.items()}
    if form.get("action") == "leave":
        left = signup.leave(site.engine, site.settings, PREFERENCES, token)
        if left.outcome != Outcome.LEFT or left.subscriber is None:
            return site.pages("invalid.html", 400, language)
        own = site.pages.for_reader(left.subscriber.languages)
        return site.pages("unsubscribe.html", 200, own, subscriber=left.subscriber, done=True)
    name, frequency = form.get("name") or None, form.get("frequency")
    # the box is sent only when ticked: "donor-asked" says the form showed it
    donor = form.get("donor") == "yes" if form.get("donor-asked") else None
    # the languages, when the form asks (a publication in several)
    chosen = read_languages(lists, site.pages.languages) or None
    saved = signup.save_preferences(
        site.engine, site.settings, token, name, frequency, donor, chosen
    )
    if saved.outcome == Outcome.INVALID or saved.subscriber is None:
        return site.pages("invalid.html", 400, language)
    status = 200 if saved.outcome == Outcome.SAVED else 400
    return _preferences_page(site, saved.subscriber, status, saved.outcome == Outcome.SAVED)


@router.get(links.UNSUBSCRIBE_PATH)
def unsubscribe_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A page with one button: link scanners that fetch every link in a message must
    not unsubscribe anyone, so a GET changes nothing."""
    found = signup.reader_link(site.engine, site.settings, UNSUBSCRIBE, token)
    if found.outcome != Outcome.VALID or found.subscriber is None:
        return site.pages("invalid.html", 400, site.pages.for_request(request))
    language = site.pages.for_reader(found.subscriber.languages)
    return site.pages("unsubscribe.html", 200, language, subscriber=found.subscriber, done=False)


@router.post(links.UNSUBSCRIBE_PATH)
async def unsubscribe_now(token: str, request: Request, site: SiteDep) -> Response:
    """The button, or a mail client's RFC 8058 one-click POST: no cookie, no login;
    the same answer however often it comes."""
    form = await _fields(request)
    checked = form_from_allowed_origin(request, site.settings.allowed_origins, token_page=True)
    return await run_in_threadpool(_unsubscribed, site, token, form, checked)


async def _fields(request: Request) -> dict[str, list[str]]:
    """A form's fields, url-encoded or multipart/form-data (RFC 8058 prefers the latter
    for a one-click unsubscribe)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return parse_qs((await request.body()).decode("utf-8", "replace"))
    async with request.form() as parsed:
        return {name: [str(value) for value in parsed.getlist(name)] for name in parsed}


def _unsubscribed(
    site: Site, token: str, form: dict[str, list[str]], from_our_page: bool
) -> Response:
    one_click = "One-Click" in form.get("List-Unsubscribe", [])
    if not one_click and not from_our_page:  # mail clients' one-click needs no Origin
        return site.pages.notice(REFUSED, 403)
    left = signup.leave(site.engine, site.settings, UNSUBSCRIBE, token)
    if left.outcome != Outcome.LEFT or left.subscriber is None:
        if one_click:  # a mail client's request: nobody reads the answer
            return PlainTextResponse("This link is not valid.", status_code=400)
        return site.pages("invalid.html", 400)
    if one_click:
        return PlainTextResponse("Unsubscribed.")
    language = site.pages.for_reader(left.subscriber.languages)
    return site.pages("unsubscribe.html", 200, language, subscriber=left.subscriber, done=True)
