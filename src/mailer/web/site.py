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
from mailer.i18n import (
    babel_locale,
    direction,
    local_day,
    negotiate,
    own_language,
    primary,
    supported,
    translations,
)
from mailer.render import catalogs, template_dirs
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


def N_(message: str) -> str:
    """Marks a message for the catalog (pybabel finds N_ calls); translated when shown."""
    return message


# A page of one heading and one paragraph (message.html): its "title" and "text", in
# English, the catalog's keys, translated for the page's language when shown.
Notice = dict[str, str]


class Pages:
    """The site's pages, from templates/web/, autoescaped, in each of the publication's
    languages: one environment per language, made when first asked for."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.publication = settings.publication
        self.languages = settings.publication.languages
        self.dirs = template_dirs(settings)
        self.catalogs = catalogs(settings)
        self.zone = zoneinfo.ZoneInfo(settings.publication.timezone)
        self.environments: dict[str, jinja2.Environment] = {}

    def environment(self, language: str) -> jinja2.Environment:
        if language not in self.environments:  # a race makes two; both are the same
            self.environments[language] = self._make(language)
        return self.environments[language]

    def _make(self, language: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.dirs),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        env.policies["ext.i18n.trimmed"] = True
        env.install_gettext_translations(  # type: ignore[attr-defined]
            translations(self.catalogs, language), newstyle=True
        )
        env.globals.update(
            subscribe_path=links.SUBSCRIBE_PATH,
            archive_path=links.ARCHIVE_PATH,
            lang=language,
            dir=direction(language),
            languages=self.languages,
            language_names={tag: language_name(tag) for tag in self.languages},
            direction=direction,
        )
        env.filters["date"] = partial(local_day, language=language, zone=self.zone)
        return env

    def translate(self, language: str | None, message: str) -> str:
        return translations(self.catalogs, language or self.publication.language).gettext(message)

    @property
    def templates(self) -> jinja2.Environment:
        """The publication's language's environment (the desk's pages, in English)."""
        return self.environment(self.publication.language)

    def render(self, name: str, language: str | None = None, /, **values: object) -> str:
        if name == "message.html":  # a Notice: its English is the catalog's key
            values = {k: self.translate(language, str(v)) if v else v for k, v in values.items()}
        env = self.environment(language or self.publication.language)
        template = env.get_template(f"web/{name}")
        return template.render(publication=self.publication, **values)

    def __call__(
        self, name: str, status: int = 200, language: str | None = None, /, **values: object
    ) -> HTMLResponse:
        response = HTMLResponse(self.render(name, language, **values), status_code=status)
        if len(self.languages) > 1:  # the browser's Accept-Language may choose the page
            response.headers["vary"] = "Accept-Language"
        return response

    def notice(
        self, notice: Notice, status: int = 200, language: str | None = None
    ) -> HTMLResponse:
        """message.html with `notice` in `language`."""
        return self("message.html", status, language, **notice)

    def for_request(self, request: Request) -> str:
        """The language of a page no reader's link names: ?lang= if the publication
        publishes in it, else the browser's Accept-Language, else the publication's."""
        return request_language(request, self.languages)

    def for_reader(self, languages: str | None) -> str:
        """The language of a page a reader's own link reached: the reader's, if the
        publication still publishes in it."""
        own = own_language(languages, self.publication.language)
        return supported(own, self.languages) or self.publication.language


def request_language(request: Request, offered: tuple[str, ...]) -> str:
    asked = request.query_params.get("lang", "")
    chosen = supported(asked, offered) if asked else None
    header = request.headers.get("accept-language", "")
    return chosen or (negotiate(header, offered) if header else None) or offered[0]


def language_name(tag: str) -> str:
    """A language's name in itself ("Norsk bokmål", "دری"), for the switcher and the form."""
    name = _OWN_NAMES.get(tag) or _OWN_NAMES.get(primary(tag)) or babel_locale(tag).display_name
    return name or tag


# CLDR names fa-AF "دری" and ps "پښتو"; nb "norsk bokmål" starts lower case as a noun
# in a sentence would, and stands alone on the form.
_OWN_NAMES = {"nb": "Norsk bokmål", "en": "English", "fa-AF": "دری", "ps": "پښتو"}


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
    return {key: values[0] for key, values in (await form_lists(request)).items()}


async def form_lists(request: Request) -> dict[str, list[str]]:
    """A urlencoded form's fields, every value of each (a group of check boxes)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: [value.strip() for value in values] for key, values in fields.items()}


CHECK_INBOX: Notice = {
    "title": N_("Check your inbox"),
    "text": N_(
        "If the address can receive our newsletter, a message with a confirmation link "
        "is on its way. Follow the link to start your subscription."
    ),
}
CONFIRMED: Notice = {
    "title": N_("You are subscribed"),
    "text": N_("Thank you. The newsletter starts with the next issue."),
}
TOO_MANY: Notice = {
    "title": N_("Too many attempts"),
    "text": N_("Please wait a few minutes before trying again."),
}
NOT_FOUND: Notice = {
    "title": N_("No such issue"),
    "text": N_("This issue does not exist, or has not been sent yet."),
}
REFUSED: Notice = {
    "title": N_("Not accepted"),
    "text": N_(
        "This form was sent from a page that is not ours, so nothing was changed. "
        "Please use the form on our own website."
    ),
}
TOO_LARGE: Notice = {
    "title": N_("Too much text"),
    "text": N_("The form sent more than we accept. Please shorten what you typed and try again."),
}
