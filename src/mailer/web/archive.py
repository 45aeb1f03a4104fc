"""Issues as they were sent, for everyone to read online: the archive at the site's
home (every email's masthead links there) and each issue's page; and the health check."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailer import links
from mailer.issues import find_issue, sent_issues
from mailer.messages import fill
from mailer.models import IssueStatus
from mailer.web.site import NOT_FOUND, SiteDep

router = APIRouter()


# The archive lists the latest issues; older ones stay at their addresses.
ARCHIVE_SIZE = 50


@router.get(links.HOME_PATH)
def home(site: SiteDep) -> HTMLResponse:
    """The publication's archive: how to subscribe, and the issues it has sent, newest
    first, each linked to its page. Nothing about any reader."""
    issues = sent_issues(site.engine, ARCHIVE_SIZE)
    base_url = site.settings.publication.base_url
    urls = {issue.key: links.issue_url(base_url, issue.key) for issue in issues}
    return site.pages("archive.html", issues=issues, urls=urls)


@router.get(links.ISSUE_PATH)
def read_online(slug: str, site: SiteDep) -> HTMLResponse:
    """An issue as it was sent, for everyone: the reader's address and links, filled
    per recipient in the emails, are left out here."""
    issue = find_issue(site.engine, links.issue_key(slug))
    if issue is None or issue.status not in IssueStatus.STARTED:
        return site.pages("message.html", 404, **NOT_FOUND)
    return HTMLResponse(fill(issue.html, "your address", "#", "#"))


@router.get(links.HEALTH_PATH)
def healthz(site: SiteDep) -> Response:
    try:
        with site.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError:
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
