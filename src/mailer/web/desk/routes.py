"""The desk's routes so far: sign in (with its second step, a code from the editor's
authenticator app, for an account that has one), sign out, and the dashboard. Every POST
carries the session's CSRF token (a POST without it, or with another, changes nothing:
403); a page for signed-in editors sends anyone else to the sign-in form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links, second_factor
from mailer.desk import dashboard
from mailer.editors import EditorView
from mailer.errors import EditorError
from mailer.models import AuditAction, utcnow
from mailer.web.desk.chart import week_chart
from mailer.web.desk.session import CSRF_FIELD, DeskSession, csrf_matches
from mailer.web.desk.signin import sign_in_of
from mailer.web.desk.state import Desk, desk_of, raw_fields
from mailer.web.site import site_of

router = APIRouter()

TOO_MANY = {"error": "Too many attempts to sign in. Please wait a few minutes and try again."}
# One answer for a wrong password, an unknown address and a malformed one alike.
NO_MATCH = {"error": "That email and password do not match an account."}
WRONG_CODE = "That code is not right, or was used already. Type the code your app shows now."
PASSWORD_SET = "Your new password is set. Sign in with it."


def _login_page(desk: Desk, csrf: str, status: int = 200, **values: object) -> HTMLResponse:
    values = {
        "email": "",
        "error": "",
        "notice": "",
        "login_path": links.DESK_LOGIN_PATH,
        "forgot_path": links.DESK_FORGOT_PATH,
        **values,
    }
    return desk.page("login.html", status, csrf=csrf, csrf_field=CSRF_FIELD, **values)


def _code_page(desk: Desk, csrf: str, status: int = 200, error: str = "") -> HTMLResponse:
    return desk.page(
        "login_code.html",
        status,
        csrf=csrf,
        csrf_field=CSRF_FIELD,
        error=error,
        code_path=links.DESK_LOGIN_CODE_PATH,
        login_path=links.DESK_LOGIN_PATH,
    )


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
    notice = PASSWORD_SET if request.query_params.get("reset") == "done" else ""
    return desk.sessions.write(_login_page(desk, session.csrf, notice=notice), session)


@router.post(links.DESK_LOGIN_PATH, response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    session = desk.sessions.read(request)
    if session is None or not csrf_matches(session, fields.get(CSRF_FIELD)):
        return desk.refused()
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
    if editor.totp_enabled:  # not signed in until the code is right
        answer = desk.redirect(links.DESK_LOGIN_CODE_PATH)
        sign_in_of(request).hold(answer, session, editor.id, found[1])
        return desk.sessions.write(answer, session)
    return await _signed_in(desk, request, session, editor, found[1])


async def _signed_in(
    desk: Desk, request: Request, session: DeskSession, editor: EditorView, stamp: str
) -> Response:
    """Signed in: recorded, a new session, and the dashboard (or, for an admin who must
    have a second factor and has none, the page that turns it on)."""
    await run_in_threadpool(
        editors.record, desk.engine, editor.id, AuditAction.SIGNED_IN, f"editor {editor.id}"
    )
    must_set_up = desk.must_set_up_2fa(editor)
    answer = desk.redirect(links.DESK_ACCOUNT_PATH if must_set_up else links.DESK_PATH)
    sign_in_of(request).release(request, answer)
    return desk.sessions.write(answer, session.signed_in_as(editor.id, stamp))


@router.get(links.DESK_LOGIN_CODE_PATH, response_class=HTMLResponse)
async def code_form(request: Request) -> Response:
    desk = desk_of(request)
    session = desk.sessions.read(request)
    if session is None or sign_in_of(request).pending(request, session) is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return desk.sessions.write(_code_page(desk, session.csrf), session)


@router.post(links.DESK_LOGIN_CODE_PATH, response_class=HTMLResponse)
async def sign_in_with_code(request: Request) -> Response:
    """The second step: the code from the editor's app, counted against the same limits
    as the password (so the two together are no more guesses than one)."""
    desk, fields, state = desk_of(request), await raw_fields(request), sign_in_of(request)
    session = desk.sessions.read(request)
    if session is None or not csrf_matches(session, fields.get(CSRF_FIELD)):
        return desk.refused()
    pending = state.pending(request, session)
    found = None
    if pending is not None:
        found = await run_in_threadpool(editors.session_stamp, desk.engine, pending.editor_id)
    if pending is None or found is None or found[1] != pending.stamp:
        return desk.redirect(links.DESK_LOGIN_PATH)  # too late, or the password changed
    editor = found[0]
    client = site_of(request).client(request)
    allowed = [desk.clients.allow(client), desk.accounts.allow(editor.email)]
    if not all(allowed):
        return _code_page(desk, session.csrf, 429, TOO_MANY["error"])
    code = fields.get("code", "")[:20]
    right = await run_in_threadpool(
        second_factor.check, desk.engine, editor.id, code, state.used_steps, utcnow()
    )
    if not right:
        return _code_page(desk, session.csrf, 200, WRONG_CODE)
    return await _signed_in(desk, request, session, editor, pending.stamp)


@router.post(links.DESK_LOGOUT_PATH, response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_post(request, fields.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
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
