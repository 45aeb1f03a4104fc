"""The desk's overview pages: this week's digest (what it holds, for whom, a preview,
and "Send now" after a confirmation, sent by the desk's sender in the service), and the
audit log (admins only). The dashboard itself is in routes.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import editors, links
from mailer.desk_overview import audit_page, digest_preview
from mailer.models import AuditAction, utcnow
from mailer.runs import DigestOutcome, start_digest_now
from mailer.web.desk.session import CSRF_FIELD
from mailer.web.desk.state import desk_of, raw_fields

router = APIRouter()

# what the page says after "Send now", by outcome (?sent=...)
SENT_NOTES = {
    DigestOutcome.SENT.name: "The digest is going out now: the desk's sender sends it.",
    DigestOutcome.EMPTY.name: "No article is new since the last digest, so nothing was sent.",
    DigestOutcome.ALREADY_SENT.name: "This week's digest went out already: nothing more was sent.",
    DigestOutcome.HELD.name: "This week's digest is held: the relay refused it. See its issue.",
}


# The digest page's policy: the site's, with the remote images an email carries, for the
# preview's sandboxed srcdoc frame inherits it (and runs nothing: no script source).
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: http: data:; "
    "font-src https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 1


@router.get(links.DESK_DIGEST_PATH, response_class=HTMLResponse)
async def digest_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    language = request.query_params.get("lang", "")
    preview = await run_in_threadpool(
        digest_preview, desk.engine, desk.settings, utcnow(), language
    )
    sent = request.query_params.get("sent", "")
    page = desk.signed_in_page(
        signed,
        "digest.html",
        preview=preview,
        confirming=request.query_params.get("confirm") == "1",
        note=SENT_NOTES.get(sent, ""),
        send_path=links.DESK_DIGEST_SEND_PATH,
        editions_by_language=desk.settings.publication.editions == "by-language",
    )
    page.headers["content-security-policy"] = PREVIEW_POLICY
    return page


@router.post(links.DESK_DIGEST_SEND_PATH, response_class=HTMLResponse)
async def digest_send(request: Request) -> Response:
    desk, fields = desk_of(request), await raw_fields(request)
    signed = await desk.signed_post(request, fields.get(CSRF_FIELD))
    if isinstance(signed, Response):
        return signed
    run = await run_in_threadpool(start_digest_now, desk.engine, desk.settings, utcnow())
    if run.outcome == DigestOutcome.SENT and run.issue is not None:
        desk.sender.wake()
        await run_in_threadpool(
            editors.record,
            desk.engine,
            signed.editor.id,
            AuditAction.DIGEST_SENT,
            f"issue {run.issue.id}",
            run.plan.week,
        )
    sent = desk.redirect(f"{links.DESK_DIGEST_PATH}?sent={run.outcome.name}")
    return desk.sessions.write(sent, signed.session)


@router.get(links.DESK_AUDIT_PATH, response_class=HTMLResponse)
async def audit_log_page(request: Request) -> Response:
    desk = desk_of(request)
    signed = await desk.signed_in_admin(request)
    if isinstance(signed, Response):
        return signed
    action = request.query_params.get("action", "")
    if action not in set(AuditAction):
        action = ""
    page = _number(request.query_params.get("page"))
    found = await run_in_threadpool(audit_page, desk.engine, action, page)
    return desk.signed_in_page(signed, "audit.html", log=found)
