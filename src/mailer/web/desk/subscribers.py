"""The desk's subscriber pages, admins only (their personal data): the list, searched
and filtered a page at a time, and one reader's consent and the issues they got.
Read-only."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import links
from mailer.desk import reader_record, subscriber_list
from mailer.models import SubscriberStatus
from mailer.roster import Search
from mailer.subscribers import FREQUENCIES
from mailer.web.desk.state import desk_of

router = APIRouter()

NOT_FOUND = {"title": "No such subscriber", "text": "There is no subscriber with that number."}


def _search(request: Request) -> Search:
    """The search the query string asks for; a status, frequency or page that is not one
    is taken as "any" (or the first page)."""
    asked = request.query_params
    status = asked.get("status", "")
    frequency = asked.get("frequency", "")
    page = asked.get("page", "1")
    return Search(
        text=asked.get("q", "")[:200],
        status=status if status in SubscriberStatus.ALL else "",
        frequency=frequency if frequency in FREQUENCIES else "",
        page=int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1,
    )


def _page_link(search: Search, page: int) -> str:
    fields = {"q": search.text, "status": search.status, "frequency": search.frequency}
    kept = {key: value for key, value in fields.items() if value}
    return links.DESK_SUBSCRIBERS_PATH + "?" + urlencode({**kept, "page": page})


@router.get(links.DESK_SUBSCRIBERS_PATH, response_class=HTMLResponse)
async def subscribers_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    search = _search(request)
    roster = await run_in_threadpool(subscriber_list, desk.engine, search)
    found = roster.found
    return desk.signed_in_page(
        signed,
        "subscribers.html",
        search=search,
        roster=roster,
        statuses=list(SubscriberStatus.ALL),
        frequencies=FREQUENCIES,
        previous=_page_link(search, found.page - 1) if found.page > 1 else "",
        next=_page_link(search, found.page + 1) if found.page < found.pages else "",
        reader_path=links.prefix(links.DESK_SUBSCRIBER_PATH),
    )


@router.get(links.DESK_SUBSCRIBER_PATH, response_class=HTMLResponse)
async def subscriber_page(request: Request, subscriber_id: int) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    record = await run_in_threadpool(reader_record, desk.engine, subscriber_id)
    if record is None:
        return desk.sessions.write(desk.pages("message.html", 404, **NOT_FOUND), signed.session)
    return desk.signed_in_page(
        signed, "subscriber.html", record=record, language=desk.settings.publication.language
    )
