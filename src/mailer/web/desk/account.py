"""The signed-in editor's own account page (/desk/account): who they are, and their second
factor: turned on by typing a code their authenticator app shows for the secret the page
gives (as text, as an otpauth:// address and as a QR code), turned off with a current
code. Where [desk] require_2fa holds, an admin without it is kept here until it is on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links, second_factor
from mailer.models import AuditAction, utcnow
from mailer.web.desk.routes import WRONG_CODE
from mailer.web.desk.session import CSRF_FIELD, SignedIn
from mailer.web.desk.signin import sign_in_of
from mailer.web.desk.state import Desk, desk_of, raw_fields

router = APIRouter()

KEEP_IT = "Admins here must sign in with a second factor ([desk] require_2fa), so it stays on."


async def _account_page(
    desk: Desk, signed: SignedIn, status: int = 200, error: str = ""
) -> Response:
    editor = signed.editor
    setup = None
    if not editor.totp_enabled:
        issuer = desk.settings.publication.name
        setup = await run_in_threadpool(second_factor.setup, desk.engine, editor.id, issuer)
    required = desk.settings.desk.require_2fa and editor.is_admin
    page = desk.signed_in_page(
        signed,
        "account.html",
        setup=setup,
        required=required,
        error=error,
        totp_on_path=links.DESK_TOTP_ON_PATH,
        totp_off_path=links.DESK_TOTP_OFF_PATH,
        forgot_path=links.DESK_FORGOT_PATH,
    )
    page.status_code = status
    return page


@router.get(links.DESK_ACCOUNT_PATH, response_class=HTMLResponse)
async def account_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    return await _account_page(desk, signed)


async def _posted(request: Request) -> tuple[Desk, SignedIn, str] | Response:
    """The signed-in editor and the code they typed, or the refusal (403) of a form
    without a session or its CSRF token."""
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_post(request, fields.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
    return desk, signed, fields.get("code", "")[:20]


@router.post(links.DESK_TOTP_ON_PATH, response_class=HTMLResponse)
async def turn_on(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, code = posted
    used, editor = sign_in_of(request).used_steps, signed.editor
    done = await run_in_threadpool(
        second_factor.turn_on, desk.engine, editor.id, code, used, utcnow()
    )
    if not done:
        return await _account_page(desk, signed, 200, WRONG_CODE)
    await run_in_threadpool(
        editors.record, desk.engine, editor.id, AuditAction.TOTP_ENABLED, f"editor {editor.id}"
    )
    return desk.sessions.write(desk.redirect(links.DESK_ACCOUNT_PATH), signed.session)


@router.post(links.DESK_TOTP_OFF_PATH, response_class=HTMLResponse)
async def turn_off(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, code = posted
    used, editor = sign_in_of(request).used_steps, signed.editor
    if desk.settings.desk.require_2fa and editor.is_admin:
        return await _account_page(desk, signed, 200, KEEP_IT)
    done = await run_in_threadpool(
        second_factor.turn_off, desk.engine, editor.id, code, used, utcnow()
    )
    if not done:
        return await _account_page(desk, signed, 200, WRONG_CODE)
    await run_in_threadpool(
        editors.record, desk.engine, editor.id, AuditAction.TOTP_DISABLED, f"editor {editor.id}"
    )
    return desk.sessions.write(desk.redirect(links.DESK_ACCOUNT_PATH), signed.session)
