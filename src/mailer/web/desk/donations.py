"""The desk's Donations page (issue 15): what each issue raised (its gifts, their sum per
currency and the appeal links' clicks) with a chart of gifts per issue, per month, and
what no issue can be credited with; for any editor (amounts per issue, no reader's data).
Its import of a bank statement, a Vipps report or a plain CSV is for admins only (it
stores gifts and may make readers donors): a POST with the session's CSRF token, answered
with a redirect back to the page naming what was imported (post/redirect/get), or the
page again with the file's fault, nothing imported."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mailer import links
from mailer.desk_donations import GiftSource, donations_page, import_upload
from mailer.errors import MailerError
from mailer.web.desk.gift_chart import gift_chart
from mailer.web.desk.session import CSRF_FIELD, SignedIn
from mailer.web.desk.state import NOT_ADMIN, Desk, desk_of

router = APIRouter()

NO_FILE = "Choose a file to import: a camt.053/054 statement (XML), a Vipps report or a CSV."
NO_FORMAT = "Choose the file's format from the list, or let its content tell."
# The counts an import's redirect carries (?new=3&known=0...), in the notice's order.
COUNTS = ("new", "known", "skipped", "attributed", "matched", "thanked")
FORMATS = (("", "Told by its content"), (GiftSource.CAMT, "Bank statement (camt.053/054 XML)"),
           (GiftSource.VIPPS, "Vipps settlement report (CSV)"),
           (GiftSource.CSV, "Plain CSV (date,amount,currency,reference,email,name)"))  # fmt: skip


def _notice(query: dict[str, str]) -> str:
    """What the last import did, from its redirect's query (only known words and numbers
    are shown, so a crafted link cannot put text on the page)."""
    kind = query.get("imported", "")
    if kind not in set(GiftSource) or not all(query.get(k, "").isdigit() for k in COUNTS):
        return ""
    n = {k: int(query[k]) for k in COUNTS}
    text = (
        f"Imported ({kind}): {n['new']} new gift{'' if n['new'] == 1 else 's'}, "
        f"{n['known']} already known, {n['skipped']} entries skipped (debits, returned "
        f"payments, payouts, not booked yet); {n['attributed']} attributed to issues, "
        f"{n['matched']} matched to subscribers."
    )
    return text + (f" {n['thanked']} thanked by mail." if n["thanked"] else "")


async def _page(
    desk: Desk, signed: SignedIn, status: int = 200, notice: str = "", error: str = ""
) -> Response:
    shown = await run_in_threadpool(donations_page, desk.engine)
    page = desk.signed_in_page(
        signed,
        "donations.html",
        shown=shown,
        chart=gift_chart(shown.issues),
        import_path=links.DESK_DONATIONS_IMPORT_PATH,
        formats=FORMATS,
        notice=notice,
        error=error,
    )
    page.status_code = status
    return page


@router.get(links.DESK_DONATIONS_PATH, response_class=HTMLResponse)
async def donations(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return await _page(desk, signed, notice=_notice(dict(request.query_params)))


async def _admin_post(desk: Desk, request: Request, sent: str | None) -> SignedIn | Response:
    """The admin a POST comes from, its CSRF token checked; else the 403 to answer."""
    signed = await desk.signed_post(request, sent)
    if isinstance(signed, Response):
        return signed
    if not signed.editor.is_admin:
        return desk.sessions.write(desk.pages("message.html", 403, **NOT_ADMIN), signed.session)
    return signed


@router.post(links.DESK_DONATIONS_IMPORT_PATH, response_class=HTMLResponse)
async def import_gifts(request: Request) -> Response:
    desk = desk_of(request)
    if await desk.signed_in(request) is None:  # refused before the body is read
        return desk.refused()
    async with request.form() as form:
        sent = form.get(CSRF_FIELD)
        signed = await _admin_post(desk, request, sent if isinstance(sent, str) else None)
        if isinstance(signed, Response):
            return signed
        chosen, upload = form.get("format") or "", form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await _page(desk, signed, 422, error=NO_FILE)
        if chosen not in {str(value) for value, _ in FORMATS}:
            return await _page(desk, signed, 422, error=NO_FORMAT)
        data, filename = await upload.read(), upload.filename
    kind = GiftSource(chosen) if chosen else None
    try:
        done = await run_in_threadpool(
            import_upload, desk.engine, desk.settings, signed.editor.id, filename, data, kind
        )
    except MailerError as error:
        return await _page(desk, signed, 422, error=f"Nothing was imported: {error}")
    skipped = done.debits + done.returns + done.payouts + done.pending
    counts = (done.new, done.known, skipped, done.attributed, done.matched, done.thanked)
    shown = dict(zip(COUNTS, map(str, counts), strict=True))
    query = urlencode({"imported": str(done.kind), **shown})
    target = f"{links.DESK_DONATIONS_PATH}?{query}"
    return desk.sessions.write(desk.redirect(target), signed.session)
