"""Issues as they were sent, for everyone to read online: the archive at the site's
home (every email's masthead links there), each issue's page and the images it shows
(the appeal's QR codes); and the health check."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailer import links
from mailer.issues import sent_issues
from mailer.read_online import online_image, online_page
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
def read_online(slug: str, site: SiteDep, lang: str | None = None) -> HTMLResponse:
    """An issue as it was sent, for everyone (with ?lang=fa-AF, as readers of that
    language got it): the reader's address and links, filled per recipient in the
    emails, are left out here."""
    page = online_page(site.engine, site.settings, slug, lang)
    if page is None:
        return site.pages("message.html", 404, **NOT_FOUND)
    return HTMLResponse(page)


# An issue's images never change once it has gone out: caches may keep them for good.
IMAGE_CACHE = "public, max-age=86400"  # a day: a held issue may be rendered again


@router.get(links.ISSUE_IMAGE_PATH)
def issue_image(slug: str, name: str, site: SiteDep) -> Response:
    """A QR code of an issue's appeal, for its read-online page; an issue's images are
    public when the issue is (the same rule as its page)."""
    png = online_image(site.engine, slug, name)
    if png is None:
        return site.pages("message.html", 404, **NOT_FOUND)
    return Response(png, media_type="image/png", headers={"cache-control": IMAGE_CACHE})


@router.get(links.HEALTH_PATH)
def healthz(site: SiteDep) -> Response:
    try:
        with site.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError:
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
