"""The desk's send pages: an article's preview, subject and preheader, test copies,
"send now" (one confirmation step) and a schedule or its cancel; an issue's progress
as JSON, and the few lines of script that poll it. Every route calls a use case in
mailer.desk_sending; "send now" schedules the issue for this moment and wakes the
desk's sender, so the send runs in `mailer serve`, not in the request."""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import desk_sending, editors, links
from mailer.errors import MailerError
from mailer.models import AuditAction, utcnow
from mailer.web.desk.session import CSRF_FIELD, SignedIn
from mailer.web.desk.state import Desk, desk_of, raw_fields

router = APIRouter()

NO_ARTICLE = {
    "title": "No such article",
    "text": "There is no article with that number. The articles page lists them.",
}
PROGRESS_SCRIPT = resources.files("mailer.web.desk").joinpath("progress.js")


def _paths(article_id: int) -> dict[str, str]:
    value = str(article_id)
    return {
        name: links.path(route, article_id=value)
        for name, route in {
            "send_path": links.DESK_ARTICLE_SEND_PATH,
            "subject_path": links.DESK_ARTICLE_SUBJECT_PATH,
            "test_path": links.DESK_ARTICLE_TEST_PATH,
            "confirm_path": links.DESK_ARTICLE_CONFIRM_PATH,
            "send_now_path": links.DESK_ARTICLE_SEND_NOW_PATH,
            "schedule_path": links.DESK_ARTICLE_SCHEDULE_PATH,
            "cancel_path": links.DESK_ARTICLE_CANCEL_PATH,
        }.items()
    }


async def _page(
    desk: Desk,
    signed: SignedIn,
    article_id: int,
    template: str = "send.html",
    status: int = 200,
    **values: object,
) -> Response:
    """The article's send page (or its confirmation step), with a notice or an error."""
    language = str(values.pop("language", "") or "")
    page = await run_in_threadpool(
        desk_sending.send_page, desk.engine, desk.settings, article_id, language
    )
    if page is None:
        return desk.sessions.write(desk.pages("message.html", 404, **NO_ARTICLE), signed.session)
    values = {"test_to": signed.editor.email, "when": "", "notice": "", "error": "", **values}
    answer = desk.signed_in_page(
        signed,
        template,
        page=page,
        zone=desk.settings.publication.timezone,
        **_paths(article_id),
        **values,
    )
    answer.status_code = status
    return answer


async def _posted(request: Request) -> tuple[Desk, SignedIn, dict[str, str]] | Response:
    """The signed-in editor and the form's fields, or 403 for a form without the
    session's CSRF token (nothing changes)."""
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_post(request, fields.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
    return desk, signed, fields


async def _record(
    desk: Desk, signed: SignedIn, action: AuditAction, subject: str, detail: str = ""
) -> None:
    await run_in_threadpool(editors.record, desk.engine, signed.editor.id, action, subject, detail)


@router.get(links.DESK_ARTICLE_SEND_PATH, response_class=HTMLResponse)
async def send_page(
    request: Request, article_id: int, tested: str = "", lang: str = ""
) -> Response:
    """The send page; with ?lang=fa-AF, the edition of readers of that language."""
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    if tested.isdigit() and len(tested) <= 2:  # after a test copy went out
        notice = f"Sent a test to {_count(int(tested))}."
        return await _page(desk, signed, article_id, notice=notice, language=lang)
    return await _page(desk, signed, article_id, language=lang)


@router.get(links.DESK_ARTICLE_CONFIRM_PATH, response_class=HTMLResponse)
async def confirm_page(request: Request, article_id: int) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return await _page(desk, signed, article_id, "send_confirm.html")


@router.post(links.DESK_ARTICLE_SUBJECT_PATH, response_class=HTMLResponse)
async def edit_subject(request: Request, article_id: int) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, fields = posted
    try:
        issue = await run_in_threadpool(
            desk_sending.edit_subject,
            desk.engine,
            desk.settings,
            article_id,
            fields.get("subject", ""),
            fields.get("preheader", ""),
        )
    except MailerError as exc:
        return await _page(desk, signed, article_id, status=400, error=str(exc))
    await _record(desk, signed, AuditAction.ISSUE_EDITED, f"issue {issue.id}")
    send_path = links.path(links.DESK_ARTICLE_SEND_PATH, article_id=str(article_id))
    return desk.sessions.write(desk.redirect(send_path), signed.session)


@router.post(links.DESK_ARTICLE_TEST_PATH, response_class=HTMLResponse)
async def send_test(request: Request, article_id: int) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, fields = posted
    typed = fields.get("addresses", "")
    donors = fields.get("copy") == "donors"
    language = fields.get("language", "")
    try:
        sent = await run_in_threadpool(
            desk_sending.send_test_copies,
            desk.engine,
            desk.settings,
            article_id,
            typed,
            donors,
            language,
        )
    except MailerError as exc:
        error = str(exc)
        return await _page(desk, signed, article_id, status=400, error=error, test_to=typed)
    copy = " (the donors' copy)" if donors else ""
    detail = _count(len(sent)) + copy + (f" in {language}" if language else "")
    await _record(desk, signed, AuditAction.TEST_SENT, f"article {article_id}", detail)
    # post/redirect/get: reloading the page the editor lands on sends nothing again
    send_path = links.path(links.DESK_ARTICLE_SEND_PATH, article_id=str(article_id))
    query = urlencode({"tested": len(sent), **({"lang": language} if language else {})})
    return desk.sessions.write(desk.redirect(f"{send_path}?{query}"), signed.session)


def _count(addresses: int) -> str:
    return f"{addresses} address{'' if addresses == 1 else 'es'}"


@router.post(links.DESK_ARTICLE_SEND_NOW_PATH, response_class=HTMLResponse)
async def send_now(request: Request, article_id: int) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, _fields = posted
    try:
        issue = await run_in_threadpool(
            desk_sending.send_now, desk.engine, desk.settings, article_id, utcnow()
        )
    except MailerError as exc:
        return await _page(desk, signed, article_id, status=400, error=str(exc))
    desk.sender.wake()
    await _record(desk, signed, AuditAction.ISSUE_SENT, f"issue {issue.id}")
    issue_path = links.path(links.DESK_ISSUE_PATH, issue_id=str(issue.id))
    return desk.sessions.write(desk.redirect(issue_path), signed.session)


@router.post(links.DESK_ARTICLE_SCHEDULE_PATH, response_class=HTMLResponse)
async def schedule(request: Request, article_id: int) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, fields = posted
    typed = fields.get("when", "")
    try:
        issue = await run_in_threadpool(
            desk_sending.schedule, desk.engine, desk.settings, article_id, typed, utcnow()
        )
    except MailerError as exc:
        return await _page(desk, signed, article_id, status=400, error=str(exc), when=typed)
    when = issue.scheduled_at.isoformat() if issue.scheduled_at else ""
    await _record(desk, signed, AuditAction.ISSUE_SCHEDULED, f"issue {issue.id}", when)
    send_path = links.path(links.DESK_ARTICLE_SEND_PATH, article_id=str(article_id))
    return desk.sessions.write(desk.redirect(send_path), signed.session)


@router.post(links.DESK_ARTICLE_CANCEL_PATH, response_class=HTMLResponse)
async def cancel(request: Request, article_id: int) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, _fields = posted
    try:
        issue = await run_in_threadpool(desk_sending.cancel, desk.engine, article_id)
    except MailerError as exc:
        return await _page(desk, signed, article_id, status=400, error=str(exc))
    await _record(desk, signed, AuditAction.ISSUE_CANCELLED, f"issue {issue.id}")
    send_path = links.path(links.DESK_ARTICLE_SEND_PATH, article_id=str(article_id))
    return desk.sessions.write(desk.redirect(send_path), signed.session)


@router.get(links.DESK_ISSUE_PROGRESS_PATH)
async def issue_progress(request: Request, issue_id: int) -> Response:
    """The issue's progress for the page's script. Polling it does not keep the session
    alive: an editor who walked away is still signed out when idle."""
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    found = await run_in_threadpool(desk_sending.progress, desk.engine, issue_id, utcnow())
    if found is None:
        return JSONResponse({"error": "no such issue"}, status_code=404)
    return JSONResponse(found.as_json())


@router.get(links.DESK_PROGRESS_SCRIPT_PATH)
async def progress_script() -> Response:
    """The issue page's script (served from the package, so the desk's policy allows
    scripts from the desk itself only, never inline)."""
    return Response(PROGRESS_SCRIPT.read_text("utf-8"), media_type="text/javascript")
