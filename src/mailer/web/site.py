"""What every route of the subscriber site shares, reached through the app's state (a
dependency, `SiteDep`) rather than closures: the settings, the database, the pages, the
limits, and the sender of confirmation links; and the helpers routes use to read a form,
know the client and refuse a form from another site."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated
from urllib.parse import parse_qs

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from mailer import links
from mailer.i18n import local_day
from mailer.render import template_dirs
from mailer.settings import Settings
from mailer.transactional import BackgroundSender
from mailer.web.guards import (
    AddressLimit,
    ClientLimit,
    IPNetwork,
    client_address,
    form_from_allowed_origin,
    proxy_networks,
)

SIGN_UPS_PER_IP = 5
SIGN_UP_WINDOW = 600.0  # seconds
# Clicks on counted links one client adds to the counts (more are redirected, uncounted):
# plenty for a reader, or a few behind one address; a script gains little by looping.
CLICKS_PER_CLIENT = 20
CLICK_WINDOW = 600.0  # seconds


class Pages:
    """The site's pages, from templates/web/, autoescaped."""

    def __init__(self, settings: Settings):
        self.publication = settings.publication
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_dirs(settings)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals["subscribe_path"] = links.SUBSCRIBE_PATH
        zone = zoneinfo.ZoneInfo(settings.publication.timezone)
        self.templates.filters["date"] = partial(
            local_day, language=settings.publication.language, zone=zone
        )

    def render(self, name: str, /, **values: object) -> str:
        template = self.templates.get_template(f"web/{name}")
        return template.render(publication=self.publication, **values)

    def __call__(self, name: str, status: int = 200, /, **values: object) -> HTMLResponse:
        return HTMLResponse(self.render(name, **values), status_code=status)


@dataclass
class Site:
    """One running site's state, at `app.state.site`."""

    settings: Settings
    engine: Engine
    pages: Pages
    # confirmation links go out from here, after the answer (transactional.py)
    sender: BackgroundSender
    proxies: tuple[IPNetwork, ...]
    clients: ClientLimit = field(
        default_factory=lambda: ClientLimit(SIGN_UPS_PER_IP, SIGN_UP_WINDOW)
    )
    mailboxes: AddressLimit = field(default_factory=AddressLimit)
    counted_clicks: ClientLimit = field(
        default_factory=lambda: ClientLimit(CLICKS_PER_CLIENT, CLICK_WINDOW)
    )

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Site:
        return cls(
            settings,
            engine,
            Pages(settings),
            BackgroundSender(engine, settings),
            proxy_networks(settings.web.trusted_proxies),
        )

    def client(self, request: Request) -> str:
        """The client's address, from X-Forwarded-For only behind a trusted proxy."""
        return client_address(request, self.proxies)


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


SiteDep = Annotated[Site, Depends(site_of)]


class CrossSite(Exception):
    """A state-changing form that did not come from an allowed page."""


async def same_origin(request: Request, site: SiteDep) -> None:
    if not form_from_allowed_origin(request, site.settings.allowed_origins):
        raise CrossSite


async def from_token_page(request: Request, site: SiteDep) -> None:
    if not form_from_allowed_origin(request, site.settings.allowed_origins, token_page=True):
        raise CrossSite


FROM_OUR_PAGES = [Depends(same_origin)]
FROM_TOKEN_PAGES = [Depends(from_token_page)]


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields, the first value of each."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: values[0].strip() for key, values in fields.items()}


CHECK_INBOX = {
    "title": "Check your inbox",
    "text": "If the address can receive our newsletter, a message with a confirmation link "
    "is on its way. Follow the link to start your subscription.",
}
CONFIRMED = {
    "title": "You are subscribed",
    "text": "Thank you. The newsletter starts with the next issue.",
}
TOO_MANY = {
    "title": "Too many attempts",
    "text": "Please wait a few minutes before trying again.",
}
NOT_FOUND = {
    "title": "No such issue",
    "text": "This issue does not exist, or has not been sent yet.",
}
REFUSED = {
    "title": "Not accepted",
    "text": "This form was sent from a page that is not ours, so nothing was changed. "
    "Please use the form on our own website.",
}
TOO_LARGE = {
    "title": "Too much text",
    "text": "The form sent more than we accept. Please shorten what you typed and try again.",
}
