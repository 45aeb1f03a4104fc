"""The desk's subscriber pages, admins only (their personal data): the list, searched
and filtered a page at a time and exported as CSV; one reader's consent and the issues
they got; and the changes an admin makes: add a reader, import a CSV upload (with the
per-row report), unsubscribe or purge one reader (purging after a confirmation page),
and reactivate a bounced one; the reader's page shows what came back about them by mail.
Each change goes through mailer.desk_subscribers; every POST needs the session's CSRF
token and an admin (403 and nothing changed otherwise)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mailer import links
from mailer.desk import reader_record, subscriber_list
from mailer.desk_subscribers import (
    add_reader,
    export_search,
    import_upload,
    is_erased,
    purge_reader,
    reactivate_reader,
    unsubscribe_reader,
)
from mailer.errors import SubscriberError
from mailer.i18n import reader_languages
from mailer.models import SubscriberStatus
from mailer.roster import Search
from mailer.subscribers import FREQUENCIES
from mailer.web.desk.session import CSRF_FIELD, SignedIn
from mailer.web.desk.state import NOT_ADMIN, Desk, desk_of, raw_fields

router = APIRouter()

NOT_FOUND = {"title": "No such subscriber", "text": "There is no subscriber with that number."}
# What a reader's page says after a change, by the `done` its redirect names.
DONE = {
    "added": "Added.",
    "confirming": "Added as pending: a confirmation link is on its way to them.",
    "unsubscribed": "Unsubscribed: they get no more issues.",
    "purged": "Purged: their address, name and consent address are erased.",
    "reactivated": "Reactivated: they get the next issue, and their bounce score starts again.",
}
NO_FILE = "Choose a CSV file to import."
SKIPPED_SHOWN = 50  # as `mailer subscribers import`: a file imported again skips every row


def _filters(request: Request) -> Search:
    """The search the query string asks for, its page aside; a status or frequency that
    is not one is taken as "any"."""
    asked = request.query_params
    status = asked.get("status", "")
    frequency = asked.get("frequency", "")
    return Search(
        text=asked.get("q", "")[:200],
        status=status if status in SubscriberStatus.ALL else "",
        frequency=frequency if frequency in FREQUENCIES else "",
    )


def _search(request: Request) -> Search:
    """The search and page the query string asks for (a page that is not one: the first)."""
    page = request.query_params.get("page", "1")
    number = int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1
    found = _filters(request)
    return Search(found.text, found.status, found.frequency, number)


def _query(search: Search, **more: object) -> str:
    fields = {"q": search.text, "status": search.status, "frequency": search.frequency}
    kept = {key: value for key, value in fields.items() if value}
    return urlencode({**kept, **more})


def _page_link(search: Search, page: int) -> str:
    return links.DESK_SUBSCRIBERS_PATH + "?" + _query(search, page=page)


def _reader_path(subscriber_id: int | None, done: str = "") -> str:
    path = links.path(links.DESK_SUBSCRIBER_PATH, subscriber_id=str(subscriber_id))
    return path + (f"?done={done}" if done else "")


async def _admin_post(desk: Desk, request: Request, sent: dict[str, str]) -> SignedIn | Response:
    """The admin a POST comes from, its CSRF token checked; else the 403 to answer."""
    signed = await desk.signed_post(request, sent.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
    if not signed.editor.is_admin:
        return desk.sessions.write(desk.pages("message.html", 403, **NOT_ADMIN), signed.session)
    return signed


def _not_found(desk: Desk, signed: SignedIn) -> Response:
    return desk.sessions.write(desk.pages("message.html", 404, **NOT_FOUND), signed.session)


@router.get(links.DESK_SUBSCRIBERS_PATH, response_class=HTMLResponse)
async def subscribers_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    search = _search(request)
    roster = await run_in_threadpool(subscriber_list, desk.engine, search)
    found = roster.found
    query = _query(search)
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
        add_path=links.DESK_SUBSCRIBER_ADD_PATH,
        import_path=links.DESK_SUBSCRIBERS_IMPORT_PATH,
        export_path=links.DESK_SUBSCRIBERS_EXPORT_PATH + (f"?{query}" if query else ""),
    )


@router.get(links.DESK_SUBSCRIBERS_EXPORT_PATH)
async def export_page(request: Request) -> Response:
    """The readers the list's filters find, every page of them, as CSV."""
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    text = await run_in_threadpool(export_search, desk.engine, signed.editor.id, _filters(request))
    answer = Response(text, media_type="text/csv; charset=utf-8")
    answer.headers["content-disposition"] = 'attachment; filename="subscribers.csv"'
    return desk.sessions.write(answer, signed.session)


def _add_form(desk: Desk, signed: SignedIn, status: int = 200, **values: object) -> Response:
    fields = {"email": "", "reader_name": "", "frequency": "every", "consent": "", "error": "",
              "reader_languages": "", **values}  # fmt: skip
    page = desk.signed_in_page(
        signed, "subscriber_add.html", frequencies=FREQUENCIES,
        add_path=links.DESK_SUBSCRIBER_ADD_PATH, **fields,
    )  # fmt: skip
    page.status_code = status
    return page


@router.get(links.DESK_SUBSCRIBER_ADD_PATH, response_class=HTMLResponse)
async def add_form(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    return _add_form(desk, signed)


@router.post(links.DESK_SUBSCRIBER_ADD_PATH, response_class=HTMLResponse)
async def add(request: Request) -> Response:
    desk, sent = desk_of(request), await raw_fields(request)
    signed = await _admin_post(desk, request, sent)
    if isinstance(signed, Response):
        return signed
    email, name = sent.get("email", "").strip(), sent.get("name", "").strip()
    frequency, consent = sent.get("frequency", "every"), sent.get("consent", "")
    read = sent.get("languages", "").strip()
    if consent not in ("given", "ask"):
        error = "Say whether they have already agreed, or should be sent a confirmation link."
        return _add_form(desk, signed, 422, email=email, reader_name=name, frequency=frequency,
                         reader_languages=read, error=error)  # fmt: skip
    try:
        added = await run_in_threadpool(
            lambda: add_reader(
                desk.engine, desk.settings, signed.editor.id, email, name or None, frequency,
                confirmed=consent == "given", languages=read,
            )
        )  # fmt: skip
    except SubscriberError as exc:
        return _add_form(desk, signed, 422, email=email, reader_name=name, frequency=frequency,
                         consent=consent, reader_languages=read,
                         error=f"Not added: {exc}.")  # fmt: skip
    done = "confirming" if consent == "ask" else "added"
    return desk.sessions.write(
        desk.redirect(_reader_path(added.subscriber.id, done)), signed.session
    )


def _import_page(desk: Desk, signed: SignedIn, status: int = 200, **values: object) -> Response:
    page = desk.signed_in_page(
        signed, "subscribers_import.html", import_path=links.DESK_SUBSCRIBERS_IMPORT_PATH,
        skipped_shown=SKIPPED_SHOWN, **{"report": None, "error": "", "filename": "", **values},
    )  # fmt: skip
    page.status_code = status
    return page


@router.get(links.DESK_SUBSCRIBERS_IMPORT_PATH, response_class=HTMLResponse)
async def import_form(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    return _import_page(desk, signed)


@router.post(links.DESK_SUBSCRIBERS_IMPORT_PATH, response_class=HTMLResponse)
async def import_file(request: Request) -> Response:
    """The upload imported, answered with its report (importing the same file again
    only skips what is there, so a reload does no harm)."""
    desk = desk_of(request)
    if await desk.signed_in(request) is None:  # refused before the body is read
        return desk.refused()
    async with request.form() as form:
        sent = {key: value for key, value in form.items() if isinstance(value, str)}
        signed = await _admin_post(desk, request, sent)
        if isinstance(signed, Response):
            return signed
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _import_page(desk, signed, 422, error=NO_FILE)
        data, filename = await upload.read(), upload.filename
    try:
        report = await run_in_threadpool(
            import_upload, desk.engine, desk.settings, signed.editor.id, filename, data
        )
    except SubscriberError as exc:
        return _import_page(desk, signed, 422, error=str(exc), filename=filename)
    return _import_page(desk, signed, report=report, filename=filename)


@router.get(links.DESK_SUBSCRIBER_PATH, response_class=HTMLResponse)
async def subscriber_page(request: Request, subscriber_id: int) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    record = await run_in_threadpool(reader_record, desk.engine, subscriber_id)
    if record is None:
        return _not_found(desk, signed)
    return desk.signed_in_page(
        signed,
        "subscriber.html",
        record=record,
        erased=is_erased(record.subscriber),
        done=DONE.get(request.query_params.get("done", ""), ""),
        language=", ".join(
            reader_languages(record.subscriber.languages, desk.settings.publication.language)
        ),
        soft_limit=desk.settings.bounces.soft_limit,
        unsubscribe_path=links.path(
            links.DESK_SUBSCRIBER_UNSUBSCRIBE_PATH, subscriber_id=str(subscriber_id)
        ),
        purge_path=links.path(links.DESK_SUBSCRIBER_PURGE_PATH, subscriber_id=str(subscriber_id)),
        reactivate_path=links.path(
            links.DESK_SUBSCRIBER_REACTIVATE_PATH, subscriber_id=str(subscriber_id)
        ),
    )


@router.post(links.DESK_SUBSCRIBER_REACTIVATE_PATH, response_class=HTMLResponse)
async def reactivate(request: Request, subscriber_id: int) -> Response:
    """A bounced reader made active again (the desk's undo of a bounce)."""
    desk, sent = desk_of(request), await raw_fields(request)
    signed = await _admin_post(desk, request, sent)
    if isinstance(signed, Response):
        return signed
    try:
        active = await run_in_threadpool(
            reactivate_reader, desk.engine, signed.editor.id, subscriber_id
        )
    except SubscriberError as exc:  # not bounced (any more): a second click, a stale page
        page = desk.pages("message.html", 409, title="Not reactivated", text=f"{exc}.")
        return desk.sessions.write(page, signed.session)
    if active is None:
        return _not_found(desk, signed)
    path = _reader_path(subscriber_id, "reactivated")
    return desk.sessions.write(desk.redirect(path), signed.session)


@router.post(links.DESK_SUBSCRIBER_UNSUBSCRIBE_PATH, response_class=HTMLResponse)
async def unsubscribe(request: Request, subscriber_id: int) -> Response:
    desk, sent = desk_of(request), await raw_fields(request)
    signed = await _admin_post(desk, request, sent)
    if isinstance(signed, Response):
        return signed
    left = await run_in_threadpool(unsubscribe_reader, desk.engine, signed.editor.id, subscriber_id)
    if left is None:
        return _not_found(desk, signed)
    return desk.sessions.write(
        desk.redirect(_reader_path(subscriber_id, "unsubscribed")), signed.session
    )


@router.get(links.DESK_SUBSCRIBER_PURGE_PATH, response_class=HTMLResponse)
async def purge_form(request: Request, subscriber_id: int) -> Response:
    """What a purge does, said before it is done, with the button that does it."""
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    record = await run_in_threadpool(reader_record, desk.engine, subscriber_id)
    if record is None:
        return _not_found(desk, signed)
    if is_erased(record.subscriber):
        return desk.sessions.write(desk.redirect(_reader_path(subscriber_id)), signed.session)
    return desk.signed_in_page(
        signed, "subscriber_purge.html", reader=record.subscriber,
        purge_path=links.path(links.DESK_SUBSCRIBER_PURGE_PATH, subscriber_id=str(subscriber_id)),
        reader_path=_reader_path(subscriber_id), error="",
    )  # fmt: skip


@router.post(links.DESK_SUBSCRIBER_PURGE_PATH, response_class=HTMLResponse)
async def purge(request: Request, subscriber_id: int) -> Response:
    desk, sent = desk_of(request), await raw_fields(request)
    signed = await _admin_post(desk, request, sent)
    if isinstance(signed, Response):
        return signed
    try:
        erased = await run_in_threadpool(
            purge_reader, desk.engine, desk.settings, signed.editor.id, subscriber_id
        )
    except SubscriberError as exc:  # no purge key: the settings must be fixed first
        text = f"Nothing was erased: {exc}."
        page = desk.pages("message.html", 409, title="Not purged", text=text)
        return desk.sessions.write(page, signed.session)
    if erased is None:
        return _not_found(desk, signed)
    return desk.sessions.write(desk.redirect(_reader_path(subscriber_id, "purged")), signed.session)
