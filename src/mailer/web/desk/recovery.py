"""The way back in for a forgotten password, open to anyone: /desk/forgot takes an address
and always answers alike ("if an account has it, a link is on its way"), the link going
out through the transactional mail queue; /desk/reset/{token} is that link (an hour,
once) and takes the new password, which ends every session of the account. Both forms
carry the session's CSRF token as every desk form does."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links
from mailer.editors import MIN_PASSWORD
from mailer.errors import EditorError
from mailer.models import utcnow
from mailer.password_links import ResetClaim, read_reset_token
from mailer.tokens import TokenError
from mailer.web.desk.session import CSRF_FIELD, DeskSession, csrf_matches
from mailer.web.desk.signin import sign_in_of
from mailer.web.desk.state import Desk, desk_of, raw_fields
from mailer.web.site import site_of

router = APIRouter()

SENT = (
    "If an account has that address, a link to choose a new password is on its way to it. "
    "It works once, for an hour."
)
TOO_MANY = "Too many requests for a link. Please wait an hour and try again."
EXPIRED = {
    "title": "This link has expired",
    "text": "A link to choose a password works for an hour. Ask for a new one.",
}
INVALID = {
    "title": "This link does not work",
    "text": "It has been used already, or was cut short when copied. Ask for a new one.",
}
DIFFERENT = "The two passwords are not the same. Type the new password twice."


def _account_key(email: str) -> str:
    try:
        return editors.editor_address(email)
    except EditorError:
        return email.lower()


def _forgot_page(desk: Desk, session: DeskSession, status: int = 200, **values: str) -> Response:
    page = desk.page(
        "forgot.html",
        status,
        csrf=session.csrf,
        csrf_field=CSRF_FIELD,
        forgot_path=links.DESK_FORGOT_PATH,
        login_path=links.DESK_LOGIN_PATH,
        **{"email": "", "notice": "", "error": "", **values},
    )
    return desk.sessions.write(page, session)


@router.get(links.DESK_FORGOT_PATH, response_class=HTMLResponse)
async def forgot_form(request: Request) -> Response:
    desk = desk_of(request)
    notice = SENT if request.query_params.get("sent") == "1" else ""
    return _forgot_page(desk, desk.session_of(request), notice=notice)


@router.post(links.DESK_FORGOT_PATH, response_class=HTMLResponse)
async def forgot(request: Request) -> Response:
    desk, fields, state = desk_of(request), await raw_fields(request), sign_in_of(request)
    session = desk.sessions.read(request)
    if session is None or not csrf_matches(session, fields.get(CSRF_FIELD)):
        return desk.refused()
    email = fields.get("email", "").strip()[:320]
    site = site_of(request)
    # both limits are asked, so neither spares the other a count
    allowed = [
        state.forgot_clients.allow(site.client(request)),
        state.forgot_accounts.allow(_account_key(email)),
    ]
    if not all(allowed):
        return _forgot_page(desk, session, 429, email=email, error=TOO_MANY)
    await run_in_threadpool(editors.ask_for_password_link, desk.engine, email)
    site.sender.wake()
    return desk.sessions.write(desk.redirect(links.DESK_FORGOT_PATH + "?sent=1"), session)


def _message(desk: Desk, status: int, title: str, text: str) -> Response:
    return desk.page(
        "notice.html", status, title=title, text=text, link=links.DESK_FORGOT_PATH,
        link_text="Ask for a new link",
    )  # fmt: skip


async def _claim(desk: Desk, token: str) -> ResetClaim | Response:
    """What the link says, if it is genuine, unexpired and unused; else the page saying
    which it is not."""
    try:
        claim = read_reset_token(desk.settings.signing_keys, token, utcnow())
    except TokenError as exc:
        return _message(desk, 410, **EXPIRED) if exc.expired else _message(desk, 404, **INVALID)
    if await run_in_threadpool(editors.password_link_editor, desk.engine, claim) is None:
        return _message(desk, 410, **INVALID)
    return claim


def _reset_page(
    desk: Desk, session: DeskSession, token: str, status: int = 200, error: str = ""
) -> Response:
    page = desk.page(
        "reset.html",
        status,
        csrf=session.csrf,
        csrf_field=CSRF_FIELD,
        error=error,
        min_password=MIN_PASSWORD,
        reset_path=links.path(links.DESK_RESET_PATH, token=token),
    )
    return desk.sessions.write(page, session)


@router.get(links.DESK_RESET_PATH, response_class=HTMLResponse)
async def reset_form(request: Request, token: str) -> Response:
    desk = desk_of(request)
    claim = await _claim(desk, token)
    if isinstance(claim, Response):
        return claim
    return _reset_page(desk, desk.session_of(request), token)


@router.post(links.DESK_RESET_PATH, response_class=HTMLResponse)
async def reset(request: Request, token: str) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    session = desk.sessions.read(request)
    if session is None or not csrf_matches(session, fields.get(CSRF_FIELD)):
        return desk.refused()
    claim = await _claim(desk, token)
    if isinstance(claim, Response):
        return claim
    password, again = fields.get("password", ""), fields.get("again", "")
    if password != again:
        return _reset_page(desk, session, token, 200, DIFFERENT)
    try:
        await run_in_threadpool(editors.set_password_from_link, desk.engine, claim, password)
    except EditorError as exc:
        return _reset_page(desk, session, token, 200, f"That password will not do: {exc}.")
    done = desk.redirect(links.DESK_LOGIN_PATH + "?reset=done")
    return desk.sessions.write(done, session.signed_out())
