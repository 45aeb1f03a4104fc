"""The counted links of the emails (base_url/r/<issue reference>/<link id>, clicks.py):
a 302 to the address the issue holds for that link, and one more click on it. A HEAD, a
link scanner that says what it is, or a client past its share is sent on uncounted; a
link the issue does not hold is a 404, never a redirect elsewhere. No cookie, nothing
cached, no Referer onwards (headers.py), and nothing in the address names a reader."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer import links
from mailer.redirects import follow_link
from mailer.web.headers import HEAD_REQUEST
from mailer.web.site import SiteDep

router = APIRouter()

# What the User-Agent of a machine fetching every link of a message contains (lower
# case): mail security gateways (Microsoft's Safe Links and previews, Proofpoint,
# Mimecast, Barracuda, Google's checks), link previews, crawlers and plain HTTP
# libraries. A scanner posing as a browser is counted: the README says so.
SCANNERS = (
    "bot",
    "crawler",
    "spider",
    "slurp",
    "preview",
    "safelinks",
    "microsoft office",
    "ms-office",
    "proofpoint",
    "mimecast",
    "barracuda",
    "google-safety",
    "google-inspectiontool",
    "facebookexternalhit",
    "whatsapp",
    "headless",
    "python-",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "libwww",
    "okhttp",
)
# Phones whose model name contains one of those words.
NOT_SCANNERS = ("cubot",)
NO_SUCH_LINK = {
    "title": "No such link",
    "text": "This link is not one of our newsletter's. Check that it was copied whole.",
}
NOT_KEPT = {"cache-control": "no-store"}


def is_scanner(user_agent: str) -> bool:
    """A client that says it is a machine (or says nothing at all)."""
    agent = user_agent.strip().lower()
    for phone in NOT_SCANNERS:
        agent = agent.replace(phone, "phone")
    return not agent or any(name in agent for name in SCANNERS)


@router.get(links.CLICK_PATH)
async def follow(reference: str, link_id: str, request: Request, site: SiteDep) -> Response:
    count = not request.scope.get(HEAD_REQUEST) and not is_scanner(
        request.headers.get("user-agent", "")
    )
    count = count and site.counted_clicks.allow(site.client(request))
    target = await run_in_threadpool(follow_link, site.engine, reference, link_id, count)
    if target is None:
        page = site.pages("message.html", 404, **NO_SUCH_LINK)
        page.headers.update(NOT_KEPT)
        return page
    return RedirectResponse(target, status_code=302, headers=NOT_KEPT)
