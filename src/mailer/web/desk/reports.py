"""The desk's read-only pages for any signed-in editor: one issue's report (the articles
are in articles.py), as a page (with its live progress while it
goes out, and its readers who left since) and as CSV. Someone not signed in
is sent to the sign-in form, as on every desk page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import links
from mailer.desk import issue_page, report_csv
from mailer.desk_sending import progress, readers_who_left
from mailer.models import utcnow
from mailer.report import IssueReport
from mailer.web.desk.session import SignedIn
from mailer.web.desk.state import Desk, desk_of

router = APIRouter()

NOT_FOUND = {
    "title": "No such issue",
    "text": "There is no issue with that number. The dashboard lists the last issues.",
}


async def _report(request: Request, issue_id: int) -> tuple[Desk, SignedIn, IssueReport] | Response:
    """The signed-in editor and the issue's report, or what to answer instead (the sign-in
    form, or 404 for no such issue)."""
    desk = desk_of(request)
    signed = await desk.signed_in(request)
    if signed is None:
        return desk.redirect(links.DESK_LOGIN_PATH)
    report = await run_in_threadpool(issue_page, desk.engine, issue_id)
    if report is None:
        return desk.sessions.write(desk.pages("message.html", 404, **NOT_FOUND), signed.session)
    return desk, signed, report


@router.get(links.DESK_ISSUE_PATH, response_class=HTMLResponse)
async def issue_report_page(request: Request, issue_id: int) -> Response:
    found = await _report(request, issue_id)
    if isinstance(found, Response):
        return found
    desk, signed, report = found
    going = await run_in_threadpool(progress, desk.engine, issue_id, utcnow())
    left = await run_in_threadpool(readers_who_left, desk.engine, issue_id)
    own = desk.settings.publication.language
    # the publication's edition (the issue's own, None) first, then the others by language
    editions = sorted(report.editions.items(), key=lambda e: (e[0] is not None, e[0] or ""))
    return desk.signed_in_page(
        signed,
        "issue.html",
        report=report,
        editions=[(language or own, counts) for language, counts in editions],
        going=going,
        left=left,
        csv_path=links.path(links.DESK_ISSUE_CSV_PATH, issue_id=str(issue_id)),
        progress_path=links.path(links.DESK_ISSUE_PROGRESS_PATH, issue_id=str(issue_id)),
        script_path=links.DESK_PROGRESS_SCRIPT_PATH,
        subscriber_path=lambda i: links.path(links.DESK_SUBSCRIBER_PATH, subscriber_id=str(i)),
        send_path=lambda i: links.path(links.DESK_ARTICLE_SEND_PATH, article_id=str(i)),
    )


@router.get(links.DESK_ISSUE_CSV_PATH)
async def issue_report_csv(request: Request, issue_id: int) -> Response:
    found = await _report(request, issue_id)
    if isinstance(found, Response):
        return found
    desk, signed, report = found
    answer = Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="issue-{issue_id}-report.csv"'},
    )
    return desk.sessions.write(answer, signed.session)
