"""Every public URL: the links the emails carry (home, unsubscribe, preferences, confirm,
read online) and the routes of the subscriber site that answer them, from the same constants.
web/ declares its routes with these paths and the emails' links are built from them, so
a route renamed here moves both. Links in mail already sent carry today's paths: a
rename breaks them unless the old path is still served (tests/test_links.py pins them).

Also the mapping between an issue's key ("article:12", "digest:2026-W48") and the slug
its public address shows."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from mailer.settings import Settings
from mailer.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, Keys, TokenMaker, make_token

# The site's routes, as FastAPI declares them. A route with a token acts for the one
# subscriber its signed token names (tokens.py).
HOME_PATH = "/"
SUBSCRIBE_PATH = "/subscribe"
CONFIRM_PATH = "/confirm/{token}"
PREFERENCES_PATH = "/preferences/{token}"
UNSUBSCRIBE_PATH = "/unsubscribe/{token}"
ISSUE_PATH = "/issues/{slug}"
# the appeal's QR codes (issue 14, the codes' part): an issue's stored images, for its
# read-online page, where the email's cid: addresses mean nothing
ISSUE_IMAGE_PATH = "/issues/{slug}/images/{name}.png"
HEALTH_PATH = "/healthz"
# The editors' desk (web/desk/): signed-in pages, never linked from an email.
DESK_PATH = "/desk"
DESK_LOGIN_PATH = "/desk/login"
DESK_LOGOUT_PATH = "/desk/logout"
# admins only: the readers' personal data
DESK_SUBSCRIBERS_PATH = "/desk/subscribers"
DESK_SUBSCRIBER_PATH = "/desk/subscribers/{subscriber_id}"
DESK_ARTICLES_PATH = "/desk/articles"
DESK_ISSUE_PATH = "/desk/issues/{issue_id}"
DESK_ISSUE_CSV_PATH = "/desk/issues/{issue_id}/report.csv"
# who signs in (issue 13, part A): the second factor, a forgotten password, the accounts.
# The code step, the forgotten-password form and the reset link work without a session.
DESK_LOGIN_CODE_PATH = "/desk/login/code"
DESK_FORGOT_PATH = "/desk/forgot"
DESK_RESET_PATH = "/desk/reset/{token}"
DESK_ACCOUNT_PATH = "/desk/account"
DESK_TOTP_ON_PATH = "/desk/account/totp"
DESK_TOTP_OFF_PATH = "/desk/account/totp/off"
DESK_EDITORS_PATH = "/desk/editors"
DESK_EDITOR_REMOVE_PATH = "/desk/editors/{editor_id}/remove"
# Articles at the desk: bring one in, its page, the editor's changes
DESK_ARTICLES_URL_PATH = "/desk/articles/from-url"
DESK_ARTICLES_UPLOAD_PATH = "/desk/articles/upload"
DESK_ARTICLES_PASTE_PATH = "/desk/articles/paste"
DESK_ARTICLE_PATH = "/desk/articles/{article_id}"
DESK_ARTICLE_EDIT_PATH = "/desk/articles/{article_id}/edit"
DESK_ARTICLE_PUT_BACK_PATH = "/desk/articles/{article_id}/put-back"
DESK_ARTICLE_TAKE_OUT_PATH = "/desk/articles/{article_id}/take-out"
# the subscriber list's changes (admins only), before DESK_SUBSCRIBER_PATH in the routes
DESK_SUBSCRIBER_ADD_PATH = "/desk/subscribers/add"
DESK_SUBSCRIBERS_IMPORT_PATH = "/desk/subscribers/import"
DESK_SUBSCRIBERS_EXPORT_PATH = "/desk/subscribers/export.csv"
DESK_SUBSCRIBER_UNSUBSCRIBE_PATH = "/desk/subscribers/{subscriber_id}/unsubscribe"
DESK_SUBSCRIBER_PURGE_PATH = "/desk/subscribers/{subscriber_id}/purge"
# bounces and complaints (issue 16, what a bounce does): a bounced reader made active again
DESK_SUBSCRIBER_REACTIVATE_PATH = "/desk/subscribers/{subscriber_id}/reactivate"
# sending from the desk (issue 13, part C): an article's send page and its forms, an
# issue's live progress, and the desk's one script
DESK_ARTICLE_SEND_PATH = "/desk/articles/{article_id}/send"
DESK_ARTICLE_SUBJECT_PATH = "/desk/articles/{article_id}/send/subject"
DESK_ARTICLE_TEST_PATH = "/desk/articles/{article_id}/send/test"
DESK_ARTICLE_CONFIRM_PATH = "/desk/articles/{article_id}/send/confirm"
DESK_ARTICLE_SEND_NOW_PATH = "/desk/articles/{article_id}/send/now"
DESK_ARTICLE_SCHEDULE_PATH = "/desk/articles/{article_id}/send/schedule"
DESK_ARTICLE_CANCEL_PATH = "/desk/articles/{article_id}/send/cancel"
DESK_ISSUE_PROGRESS_PATH = "/desk/issues/{issue_id}/progress.json"
DESK_PROGRESS_SCRIPT_PATH = "/desk/static/progress.js"
# the overview (helper E): the week's digest, and the audit log (admins only)
DESK_DIGEST_PATH = "/desk/digest"
DESK_DIGEST_SEND_PATH = "/desk/digest/send"
DESK_AUDIT_PATH = "/desk/audit"
# issue 15: donations (the desk's page of what each issue raised, and its import, admins only)
DESK_DONATIONS_PATH = "/desk/donations"
DESK_DONATIONS_IMPORT_PATH = "/desk/donations/import"
# issue 17: archive. The sent issues, per language (?lang=X), and their Atom feed
ARCHIVE_PATH = "/issues"
ARCHIVE_FEED_PATH = "/issues.atom"
# counting what works (issue 14, the counted links): a link an issue counts, which
# `mailer serve` redirects to its target; it names the issue and the link, never a reader
CLICK_PATH = "/r/{reference}/{link_id}"

# The purpose of the token each route takes.
TOKEN_PURPOSES = {
    CONFIRM_PATH: CONFIRM,
    PREFERENCES_PATH: PREFERENCES,
    UNSUBSCRIBE_PATH: UNSUBSCRIBE,
}


def prefix(route: str) -> str:
    """What every address of a route starts with: "/unsubscribe/{token}" -> "/unsubscribe/"."""
    return route.partition("{")[0]


def path(route: str, **values: str) -> str:
    """A route's path with its parameters (tokens and slugs are URL-safe as they are)."""
    return route.format(**values)


def issue_slug(key: str) -> str:
    """An issue's key ("article:12", "digest:2026-W48") as it appears in its public URL."""
    return key.replace(":", "-", 1)


def issue_key(slug: str) -> str:
    return slug.replace("-", ":", 1)


def issue_url(base_url: str, key: str, language: str | None = None) -> str:
    """Where anyone reads the issue with this key online; with `language`, as readers
    of that language got it (?lang=fa-AF; None: the publication's own)."""
    url = base_url + path(ISSUE_PATH, slug=issue_slug(key))
    return f"{url}?{urlencode({'lang': language})}" if language else url


def archive_url(base_url: str, language: str | None = None, feed: bool = False) -> str:
    """The archive of sent issues (issue 17), or its Atom feed, for readers of `language`
    (None: the publication's own)."""
    url = base_url + (ARCHIVE_FEED_PATH if feed else ARCHIVE_PATH)
    return f"{url}?{urlencode({'lang': language})}" if language else url


def issue_image_url(base_url: str, key: str, name: str) -> str:
    """Where the read-online page of the issue with this key shows its image `name`."""
    return base_url + path(ISSUE_IMAGE_PATH, slug=issue_slug(key), name=name)


def home_url(settings: Settings) -> str:
    """The site's home page (the archive of sent issues), every email's masthead link:
    base_url itself for the root, without a trailing slash, as the masthead has always
    linked it (a browser asks for it as "/")."""
    return settings.publication.base_url + HOME_PATH.rstrip("/")


def click_url(base_url: str, reference: str, link_id: str) -> str:
    """The counted link with this id of the issue with this reference (clicks.py)."""
    return base_url + path(CLICK_PATH, reference=quote(reference, safe=""), link_id=link_id)


def confirm_url(settings: Settings, public_id: str) -> str:
    """The double opt-in link for a subscriber, its token made now."""
    token = make_token(settings.secret_key, CONFIRM, public_id)
    return settings.publication.base_url + path(CONFIRM_PATH, token=token)


class TokenLinks:
    """The links of one route for many readers: the address around the token is put
    together once, and the token made with TokenMaker, so a link per reader costs one
    HMAC and two concatenations (messages.py builds two per message)."""

    def __init__(self, keys: Keys, base_url: str, route: str):
        head, _, tail = route.partition("{token}")
        self.head, self.tail = base_url + head, tail
        self.token = TokenMaker(keys, TOKEN_PURPOSES[route])

    def __call__(self, public_id: str) -> str:
        return self.head + self.token(public_id) + self.tail


def unsubscribe_links(settings: Settings) -> TokenLinks:
    return TokenLinks(settings.secret_key, settings.publication.base_url, UNSUBSCRIBE_PATH)


def preferences_links(settings: Settings) -> TokenLinks:
    return TokenLinks(settings.secret_key, settings.publication.base_url, PREFERENCES_PATH)
