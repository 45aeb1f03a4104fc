"""Issues as they were sent, for everyone to read online: the archive at the site's
home (every email's masthead links there) and at /issues, per language, with its Atom
feed; each issue's page and the images it shows (the appeal's QR codes); and the
health check."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailer import links
from mailer.public_archive import ATOM_TYPE, archive, atom_feed
from mailer.read_online import online_image, online_page
from mailer.web.site import N_, NOT_FOUND, Site, SiteDep

router = APIRouter()


# The archive lists the latest issues; older ones stay at their addresses.
ARCHIVE_SIZE = 50


@router.get(links.HOME_PATH)
def home(request: Request, site: SiteDep) -> HTMLResponse:
    """The publication's archive: how to subscribe, and the issues it has sent, newest
    first, each linked to its page. Nothing about any reader."""
    return _archive_page(request, site)


@router.get(links.ARCHIVE_PATH)
def issues(request: Request, site: SiteDep) -> HTMLResponse:
    """The archive again, at its own address: per language (?lang=), newest first."""
    return _archive_page(request, site)


def _archive_page(request: Request, site: Site) -> HTMLResponse:
    language = site.pages.for_request(request)
    listed = archive(site.engine, site.settings, language, ARCHIVE_SIZE)
    feed = links.archive_url("", _shown(site, language), feed=True)
    return site.pages("archive.html", 200, language, issues=listed, feed=feed, switcher=True)


def _shown(site: Site, language: str) -> str | None:
    """The language a link names: none for the publication's own."""
    return None if language == site.settings.publication.language else language


FEED_TITLE = N_("%(publication)s: the newsletters")


@router.get(links.ARCHIVE_FEED_PATH)
def issues_feed(request: Request, site: SiteDep) -> Response:
    """The archive as an Atom feed, for feed readers and for sites that show it."""
    language = site.pages.for_request(request)
    publication = site.settings.publication
    shown = _shown(site, language)
    title = site.pages.translate(language, FEED_TITLE) % {"publication": publication.name}
    feed = atom_feed(
        archive(site.engine, site.settings, language, ARCHIVE_SIZE),
        title=title,
        author=publication.name,
        feed_url=links.archive_url(publication.base_url, shown, feed=True),
        page_url=links.archive_url(publication.base_url, shown),
        language=language,
    )
    return Response(feed, media_type=ATOM_TYPE, headers={"vary": "Accept-Language"})


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
