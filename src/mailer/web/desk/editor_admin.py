"""The desk's accounts, admins only (/desk/editors): who may sign in, with their role,
whether they have a second factor, and since when; add one (by address and role: the new
editor chooses their own password with a link mailed to them, valid an hour), remove one
(never yourself). Each change is in the audit log under the admin who made it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links
from mailer.errors import EditorError
from mailer.models import EditorRole
from mailer.web.desk.session import CSRF_FIELD, SignedIn
from mailer.web.desk.state import Desk, desk_of, raw_fields
from mailer.web.site import site_of

router = APIRouter()

NOT_ADMIN = {
    "title": "Not allowed",
    "text": "Only an admin may add or remove accounts. Ask an admin if you need one changed.",
}
ADDED = "Added {email}. A link to choose their password is on its way to them (valid an hour)."


async def _editors_page(desk: Desk, signed: SignedIn, status: int = 200, **values: str) -> Response:
    accounts = await run_in_threadpool(editors.list_editors, desk.engine)
    added = values.pop("added", "")
    # the address named by the account's number, not by whatever a link's query says
    notice = next((ADDED.format(email=a.email) for a in accounts if str(a.id) == added), "")
    page = desk.signed_in_page(
        signed,
        "editors.html",
        accounts=accounts,
        roles=list(EditorRole),
        remove_path=lambda editor_id: links.path(
            links.DESK_EDITOR_REMOVE_PATH, editor_id=str(editor_id)
        ),
        **{"error": "", "notice": notice, "email": "", "role": EditorRole.EDITOR, **values},
    )
    page.status_code = status
    return page


def _not_admin(desk: Desk, signed: SignedIn) -> Response:
    return desk.sessions.write(desk.pages("message.html", 403, **NOT_ADMIN), signed.session)


@router.get(links.DESK_EDITORS_PATH, response_class=HTMLResponse)
async def editors_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    if not signed.editor.is_admin:
        return _not_admin(desk, signed)
    return await _editors_page(desk, signed, added=request.query_params.get("added", ""))


async def _admin_form(request: Request) -> tuple[Desk, SignedIn, dict[str, str]] | Response:
    """The admin who posted, and the form's fields; or the answer instead: 403 for a form
    without a session or its CSRF token, or from an editor who is not an admin."""
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_post(request, fields.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
    if not signed.editor.is_admin:
        return _not_admin(desk, signed)
    return desk, signed, fields


@router.post(links.DESK_EDITORS_PATH, response_class=HTMLResponse)
async def add_editor(request: Request) -> Response:
    posted = await _admin_form(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, fields = posted
    email, role = fields.get("email", "").strip()[:320], fields.get("role", "")
    if role not in set(EditorRole):
        return await _editors_page(desk, signed, 200, email=email, error="Choose a role.")
    try:
        added = await run_in_threadpool(
            editors.add_editor, desk.engine, email, None, EditorRole(role), signed.editor.id
        )
    except EditorError as exc:
        return await _editors_page(desk, signed, 200, email=email, role=role, error=f"{exc}.")
    await run_in_threadpool(editors.invite, desk.engine, added.id)
    site_of(request).sender.wake()
    done = desk.redirect(f"{links.DESK_EDITORS_PATH}?added={added.id}")
    return desk.sessions.write(done, signed.session)


@router.post(links.DESK_EDITOR_REMOVE_PATH, response_class=HTMLResponse)
async def remove_editor(request: Request, editor_id: int) -> Response:
    posted = await _admin_form(request)
    if isinstance(posted, Response):
        return posted
    desk, signed, _fields = posted
    try:
        await run_in_threadpool(editors.remove_editor_by, desk.engine, editor_id, signed.editor.id)
    except EditorError as exc:
        return await _editors_page(desk, signed, 200, error=f"{exc}.")
    return desk.sessions.write(desk.redirect(links.DESK_EDITORS_PATH), signed.session)
