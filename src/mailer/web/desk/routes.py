"""The desk's routes so far: sign in, sign out, and the dashboard. Every POST carries the
session's CSRF token (a POST without it, or with another, changes nothing: 403); a page
for signed-in editors sends anyone else to the sign-in form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links
from mailer.desk import dashboard
from mailer.errors import EditorError
from mailer.models import AuditAction, utcnow
from mailer.web.desk.chart import week_chart
from mailer.web.desk.session import CSRF_FIELD, csrf_matches
from mailer.web.desk.state import Desk, desk_of, raw_fields
from mailer.web.site import site_of

router = APIRouter()

REFUSED = {
    "title": "Not accepted",
    "text": "This form has expired or did not come from the desk, so nothing was changed. "
    "Go back, reload the page and try again.",
}
TOO_MANY = {"error": "Too many attempts to sign in. Please wait a few minutes and try again."}
# One answer for a wrong password, an unknown address and a malformed one alike.
NO_MATCH = {"error": "That email and password do not match an account."}


def _refused(desk: Desk) -> HTMLResponse:
    return desk.pages("message.html", 403, **REFUSED)


def _login_page(desk: Desk, csrf: str, status: int = 200, **values: object) -> HTMLResponse:
    values = {"email": "", "error": "", "login_path": links.DESK_LOGIN_PATH, **values}
    return desk.page("login.html", status, csrf=csrf, csrf_field=CSRF_FIELD, **values)


def _account_key(email: str) -> str:
    try:
        return editors.editor_address(email)
    except EditorError:
        return email.strip().lower()


@router.get(links.DESK_LOGIN_PATH, response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    desk = desk_of(request)
    if await desk.signed_in(request):
        return desk.redirect(links.DESK_PATH)
    session = desk.session_of(request).signed_out()
    return desk.sessions.write(_login_page(desk, session.csrf), session)


@router.post(links.DESK_LOGIN_PATH, response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    session = desk.sessions.read(request)
    if session is None or not csrf_matches(session, fields.get(CSRF_FIELD)):
        return _refused(desk)
    email, password = fields.get("email", "").strip(), fields.get("password", "")
    client = site_of(request).client(request)
    # both limits are asked, so neither spares the other a count
    allowed = [desk.clients.allow(client), desk.accounts.allow(_account_key(email))]
    if not all(allowed):
        return _login_page(desk, session.csrf, 429, email=email, **TOO_MANY)
    editor = await run_in_threadpool(editors.authenticate, desk.engine, email, password)
    found = None
    if editor is not None:
        found = await run_in_threadpool(editors.session_stamp, desk.engine, editor.id)
    if editor is None or found is None:
        return _login_page(desk, session.csrf, 200, email=email, **NO_MATCH)
    await run_in_threadpool(
        editors.record, desk.engine, editor.id, AuditAction.SIGNED_IN, f"editor {editor.id}"
    )
    signed = session.signed_in_as(editor.id, found[1])
    return desk.sessions.write(desk.redirect(links.DESK_PATH), signed)


@router.post(links.DESK_LOGOUT_PATH, response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_in(request)
    if signed is None or not csrf_matches(signed.session, fields.get(CSRF_FIELD)):
        return _refused(desk)
    editor = signed.editor
    await run_in_threadpool(
        editors.record, desk.engine, editor.id, AuditAction.SIGNED_OUT, f"editor {editor.id}"
    )
    return desk.sessions.write(desk.redirect(links.DESK_LOGIN_PATH), signed.session.signed_out())


@router.get(links.DESK_PATH, response_class=HTMLResponse)
async def dashboard_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    board = await run_in_threadpool(dashboard, desk.engine, desk.settings, utcnow())
    weeks = await run_in_threadpool(desk.lookout.weeks)  # counted in the background
    return desk.signed_in_page(signed, "dashboard.html", board=board, chart=week_chart(weeks))
