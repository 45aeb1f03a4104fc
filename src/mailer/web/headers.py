"""HTTP around every page of the subscriber site: security headers on every response
(no sniffing, no referrer, no framing, a content policy that fits the page), no caching
of pages behind a token, of the editors' desk or of a form's answer, and HEAD answered
wherever GET is."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer import links

# The site's own pages: one inline <style> block, no scripts, forms posting to the site.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# read online (/issues/...): an email as it was sent, with inline styles and the articles' remote
# images; it still runs nothing, posts nowhere and is framed by nobody.
ISSUE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "font-src https: data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
# The editors' desk: the site's own pages, plus its one script (served from the desk,
# never inline), which reads the desk's JSON; the send page shows an email in sandboxed
# srcdoc frames (which browsers check as the desk's own address, 'self'), and they
# inherit this policy, so the email's remote images are allowed too.
DESK_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: http: data:; "
    "script-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
EVERY_RESPONSE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
# No page's address leaves in a Referer. The sign-up form's page alone says
# "same-origin": its address is no secret, and under "no-referrer" browsers post a form
# with `Origin: null`, which the sign-up's origin check must refuse. (Token pages post
# with `Origin: null`; their token is what proves the form came from the reader's mail.)
REFERRER_POLICY = "no-referrer"
FORM_PAGE_REFERRER_POLICY = "same-origin"
FORM_PAGE = links.SUBSCRIBE_PATH
ISSUE_PAGES = links.prefix(links.ISSUE_PATH)
# Pages whose address is a secret (a token): no browser or proxy cache keeps them.
TOKEN_PATHS = tuple(links.prefix(route) for route in links.TOKEN_PURPOSES)
SAFE_METHODS = ("GET", "HEAD")


def is_desk(path: str) -> bool:
    """A page of the editors' desk: signed-in pages, which no cache keeps."""
    return path == links.DESK_PATH or path.startswith(links.DESK_PATH + "/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        policy = ISSUE_POLICY if path.startswith(ISSUE_PAGES) else PAGE_POLICY
        if is_desk(path):
            policy = DESK_POLICY
        private = method not in SAFE_METHODS or path.startswith(TOKEN_PATHS) or is_desk(path)
        referrer = FORM_PAGE_REFERRER_POLICY if path == FORM_PAGE else REFERRER_POLICY

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in EVERY_RESPONSE.items():
                    headers[name] = value
                headers["referrer-policy"] = referrer
                headers.setdefault("content-security-policy", policy)
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


# In a HEAD request's scope, which HeadAsGet turns into a GET: the one GET that changes
# something (a counted link's click) reads it to leave a HEAD uncounted.
HEAD_REQUEST = "mailer.head"


class HeadAsGet:
    """A HEAD request is answered as the GET would be, without the body (FastAPI's
    routes answer only the methods they name). Every GET of the site changes nothing
    but a counted link's click count, which a HEAD leaves (HEAD_REQUEST), so running it
    for a HEAD is safe."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_REQUEST: True}, receive, without_body)


class GuardedApp(FastAPI):
    """A FastAPI app whose every response, a server error's included, goes through
    SecurityHeaders and HeadAsGet (middleware added the usual way sits inside the
    handler that answers 500)."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(HeadAsGet(super().build_middleware_stack()))
