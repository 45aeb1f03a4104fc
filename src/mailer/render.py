"""Issue rendering: articles -> subject, preheader, inlined HTML and plain text, once per
issue. The per-recipient parts are left as placeholders that `messages` fills in with a
plain string replacement, so nothing per recipient pays for templating or CSS inlining."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from pathlib import Path

import css_inline
import jinja2
from babel.dates import format_date
from babel.support import Translations
from markupsafe import Markup

from mailer.caches import template_bytecode_cache
from mailer.clicks import CountedLink, LinkCounter
from mailer.donation import DonationBlock, appeal_in, donation_block
from mailer.donor_copy import thanks_block
from mailer.errors import MailerError
from mailer.goal import Goal, goal_text
from mailer.i18n import (
    babel_locale,
    catalog_dirs,
    direction,
    is_rtl,
    local_amount,
    local_day,
    local_day_month,
    local_number,
    native_digits,
    translations,
)
from mailer.links import home_url, issue_url
from mailer.models import Article, utcnow
from mailer.references import article_reference, digest_reference
from mailer.settings import Settings, bundled_path
from mailer.textpart import html_to_text

# Word characters only: nothing escapes or encodes them inside attributes (premailer, the
# inliner before, made a "{{ url }}" in an href "{{%20url%20}}").
EMAIL = "__MAILER_EMAIL__"
UNSUBSCRIBE_URL = "__MAILER_UNSUBSCRIBE_URL__"
PREFERENCES_URL = "__MAILER_PREFERENCES_URL__"
PLACEHOLDERS = (EMAIL, UNSUBSCRIBE_URL)  # required; the preferences link is optional


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML shows as "cid:" + cid, sent inside the message (a QR code)."""

    name: str  # its file name without .png, for the read-online page's address
    cid: str
    png: bytes


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    preheader: str
    html: str
    text: str
    reference: str = ""  # what readers mark a gift with (references.py)
    images: tuple[InlineImage, ...] = ()
    links: tuple[CountedLink, ...] = ()
    # the donors' copy: the thank-you block in place of the appeal, without its images
    # (empty: donors get the same copy as the others)
    thanks_html: str = ""
    thanks_text: str = ""


@dataclass(frozen=True)
class ArticleView:
    title: str
    url: str | None
    author: str | None
    published_at: datetime | None
    summary: str
    body_html: Markup
    body_text: str
    language: str | None = None  # when it is not the publication's
    dir: str | None = None  # "rtl" or "ltr" when the article's differs from the layout's


def one_line(text: str) -> str:
    """A header-safe line: CR, LF and runs of white space become single spaces."""
    return " ".join(text.split())


def template_dirs(settings: Settings) -> list[Path]:
    """Where templates are looked up, first match wins: a newsroom's own templates/ next
    to its config file or next to the config/ folder holding it, then the shipped ones."""
    candidates = [bundled_path("templates")]
    if settings.config_path is not None:
        folder = settings.config_path.resolve().parent
        candidates[:0] = [folder / "templates", folder.parent / "templates"]
    unique = dict.fromkeys(path for path in candidates if (path / "email").is_dir())
    return list(unique)


def catalogs(settings: Settings) -> tuple[Path, ...]:
    """Where the readers' catalogs are looked up: a newsroom's locale/ first (i18n.py)."""
    return catalog_dirs(settings.config_path, bundled_path("locale"))


@cache
def _environment(
    dirs: tuple[Path, ...], timezone: str, language: str, catalog_dirs: tuple[Path, ...]
) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        # compiled once per machine rather than once per process (caches.py)
        bytecode_cache=template_bytecode_cache(f"{language} {timezone}"),
    )
    # {% trans %} blocks are one line of text however the template wraps them
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(catalog_dirs, language), newstyle=True)  # type: ignore[attr-defined]
    zone = zoneinfo.ZoneInfo(timezone)
    env.filters["date"] = partial(local_day, language=language, zone=zone)
    env.filters["amount"] = partial(local_amount, language=language)  # amount|amount("NOK")
    env.filters["number"] = partial(local_number, language=language)
    env.globals.update(lang=language, dir=direction(language))
    return env


def environment(settings: Settings, language: str | None = None) -> jinja2.Environment:
    """The email templates' environment for readers of `language` (None: the
    publication's): its catalog, and dates and amounts written its way."""
    dirs = tuple(template_dirs(settings))
    language = language or settings.publication.language
    return _environment(dirs, settings.publication.timezone, language, catalogs(settings))


def translator(settings: Settings, language: str | None = None) -> Translations:
    """The catalog for `language` (None: the publication's), for strings made in code:
    `translator(settings, "fa-AF").gettext("...")`."""
    return translations(catalogs(settings), language or settings.publication.language)


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes, as Gmail and Outlook need. The <style>
    tag stays whole, so its media queries (with their !important) still reach the clients
    that read them; a tag's own style attribute wins over the rules, and nothing is fetched.
    css-inline (Rust) does in a millisecond what premailer and cssutils did in a tenth of a
    second and half a second of imports; tests/test_render_inlining.py checks it against
    premailer on every kind of issue. Unlike premailer it writes no attributes from the
    styles: an article image's height attribute stays its own, not "auto"."""
    return _inliner().inline(html)


@cache
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def article_view(article: Article, publication_language: str = "en") -> ArticleView:
    """The article for the templates; `publication_language` is the email's (the
    reader's): the article is marked with its own language and direction where they differ."""
    # A placeholder smuggled into an article must not become somebody's personal link.
    defuse = _defuse_placeholders
    language = article.language
    if language and language.split("-")[0].lower() == publication_language.split("-")[0].lower():
        language = None  # the publication's own: nothing to mark
    direction = None
    if language:
        rtl = is_rtl(language)
        if rtl != is_rtl(publication_language):
            direction = "rtl" if rtl else "ltr"
    return ArticleView(
        title=defuse(one_line(article.title)),
        url=article.url and defuse(article.url),
        author=article.author and defuse(article.author),
        published_at=article.published_at,
        summary=defuse(article.summary),
        # sanitised with nh3 at ingest
        body_html=Markup(defuse(article.body_html)),
        body_text=defuse(html_to_text(article.body_html)),
        language=language,
        dir=direction,
    )


def _online(settings: Settings, key: str, language: str) -> str:
    """The issue's read-online address for readers of `language`."""
    own = language == settings.publication.language
    return issue_url(settings.publication.base_url, key, None if own else language)


def _defuse_placeholders(text: str) -> str:
    return text.replace("__MAILER_", "_\u200b_MAILER_")


def email_context(
    settings: Settings,
    subject: str,
    preheader: str,
    view_online_url: str | None = None,
    reference: str = "",
    goal: Goal | None = None,
    language: str | None = None,
) -> dict[str, object]:
    """What every email template is given (issues, the welcome series, the thanks).
    `language` is the reader's (None: the publication's): the whole email is in it, laid
    out in its direction, with the appeal's words for it and its labels from its catalog."""
    publication = settings.publication
    language = language or publication.language
    t = translator(settings, language)
    return {
        "publication": {
            "name": publication.name,
            "base_url": publication.base_url,
            "home_url": home_url(settings),  # the masthead's link: the site's archive
            "postal_address": publication.postal_address,
            "language": language,  # the email's, which is the reader's
            "dir": direction(language),
            "sender_name": publication.sender_name,
        },
        "issue": {
            "subject": subject,
            "preheader": preheader,
            "view_online_url": view_online_url,
            "reference": reference,
        },
        "donation": donation_block(
            appeal_in(settings.donation, language, publication.language),
            reference,
            publication.from_address.rpartition("@")[2],
            t.gettext,
        ),
        # the progress bar in the appeal (goal.py), when there is a goal
        "goal": goal_text(goal, t, language) if goal is not None else None,
        "thanks": None,  # the donors' copy's block (_render renders that copy)
        "recipient": {
            "email": EMAIL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "preferences_url": PREFERENCES_URL,
        },
    }


def render_article_issue(
    settings: Settings,
    article: Article,
    subject: str | None = None,
    preheader: str | None = None,
    goal: Goal | None = None,
    language: str | None = None,
    counted: Mapping[str, str] | None = None,
) -> RenderedIssue:
    """The single-article issue: the article, then the donation appeal once (with the
    goal's progress, when given), then the footer. `subject` and `preheader`, when given,
    are an editor's in place of the article's title and summary. `language`: the readers'
    the email is for (None: the publication's). `counted`: the issue's counted links so
    far by address, whose ids another edition of it keeps (clicks.LinkCounter)."""
    language = language or settings.publication.language
    view = article_view(article, language)
    subject = view.title if subject is None else subject
    preheader = one_line(view.summary)[:150] if preheader is None else preheader
    online = _online(settings, f"article:{article.id}", language)
    prefix = settings.donation.reference_prefix
    reference = article_reference(prefix, article.id or 0, article.ingested_at or utcnow())
    context = {
        **email_context(settings, subject, preheader, online, reference, goal, language),
        "article": view,
    }
    parts = (subject, preheader, reference, language)
    return _render(settings, "article", context, *parts, counted)


def render_digest_issue(
    settings: Settings,
    articles: list[Article],
    week: str,
    since: datetime,
    until: datetime,
    goal: Goal | None = None,
    language: str | None = None,
    counted: Mapping[str, str] | None = None,
) -> RenderedIssue:
    """The weekly digest: each article's title, date, summary and a link to read it (the
    whole text when it has no address to link to), newest first; then the appeal once.
    `language` and `counted` as for render_article_issue."""
    language = language or settings.publication.language
    views = [article_view(article, language) for article in articles]
    subject = _digest_subject(settings, views, language)
    preheader = " · ".join(view.title for view in views[1:4]) or one_line(views[0].summary)
    online = _online(settings, f"digest:{week}", language)
    zone = zoneinfo.ZoneInfo(settings.publication.timezone)
    first, last = since.astimezone(zone), until.astimezone(zone)
    start = local_day(first, language, zone)
    if first.year == last.year:
        start = _day_month(first, language, zone)
    period = f"{start} – {local_day(last, language, zone)}"
    digest = {"week": week, "period": period, "articles": views}
    reference = digest_reference(settings.donation.reference_prefix, week)
    context = {
        **email_context(settings, subject, preheader[:150], online, reference, goal, language),
        "digest": digest,
    }
    parts = (subject, preheader[:150], reference, language)
    return _render(settings, "digest", context, *parts, counted)


def _digest_subject(settings: Settings, views: list[ArticleView], language: str) -> str:
    """ "Dawat Media Center this week: <the newest title>, and 3 more", in `language`."""
    t = translator(settings, language)
    values = {"name": one_line(settings.publication.name), "title": views[0].title}
    others = len(views) - 1
    if not others:
        return t.gettext("%(name)s this week: %(title)s") % values
    values["count"] = local_number(others, language)
    return (
        t.ngettext(
            "%(name)s this week: %(title)s, and %(count)s more",
            "%(name)s this week: %(title)s, and %(count)s more",
            others,
        )
        % values
    )


def _day_month(value: datetime, language: str, zone: zoneinfo.ZoneInfo) -> str:
    """A period's first day without its year, in the order of the language's long date
    ("6 October", "6. oktober", "۶ اکتوبر"), so both ends of the period read alike: CLDR's
    own day-and-month pattern puts the month first in some (Dari, Pashto)."""
    pattern = babel_locale(language).date_formats["long"].pattern
    # the year, with a word of its own after it (Russian's) and the commas around it
    without_year = re.sub(r"[\s,،]*\by+\b(\s*'[^']*'\.?)?[\s,،]*", " ", pattern).strip()
    if "y" in without_year or "d" not in without_year:
        return local_day_month(value, language, zone)
    day = format_date(value.astimezone(zone).date(), without_year, locale=babel_locale(language))
    return native_digits(day, language)


def render_confirmation(
    settings: Settings,
    address: str,
    name: str | None,
    confirm_url: str,
    language: str | None = None,
) -> RenderedIssue:
    """The double opt-in email: the newsletter's look, one link, no appeal, no placeholders
    (it goes to one address, rendered for it), in the reader's `language`."""
    t = translator(settings, language)
    name = one_line(settings.publication.name)
    subject = t.gettext("Confirm your subscription to %(name)s") % {"name": name}
    preheader = t.gettext("One click and you are subscribed.")
    context = {
        **email_context(settings, subject, preheader, language=language),
        "donation": None,
        "recipient": {"email": address, "unsubscribe_url": None, "preferences_url": None},
        "name": name,
        "confirm_url": confirm_url,
    }
    html, text = render_pair(settings, "email/confirm", context, language)
    return RenderedIssue(subject=subject, preheader="", html=html, text=text)


def render_pair(
    settings: Settings, template: str, context: dict[str, object], language: str | None
) -> tuple[str, str]:
    """`template`.html (inlined) and `template`.txt rendered for readers of `language`."""
    env = environment(settings, language)
    html = inline_css(env.get_template(f"{template}.html").render(context))
    return html, env.get_template(f"{template}.txt").render(context)


def _render(
    settings: Settings,
    name: str,
    context: dict[str, object],
    subject: str,
    preheader: str,
    reference: str,
    language: str,
    counted: Mapping[str, str] | None = None,
) -> RenderedIssue:
    counter = LinkCounter.for_issue(
        settings.tracking.count_clicks, settings.publication.base_url, reference, counted
    )
    block = context["donation"]
    appeal = counter.appeal(block) if isinstance(block, DonationBlock) else None
    if appeal is not None:
        context = {**context, "donation": appeal}
    html, text = _render_parts(settings, name, context, language)
    html, text = counter.every_link(html, text)
    thanks_html = thanks_text = ""
    thanks = thanks_block(settings.donation.in_language(language), appeal)
    if thanks is not None:
        # the same links, counted as the appeal's: the counter already holds them
        with_thanks = {**context, "thanks": thanks}
        thanks_html, thanks_text = _render_parts(settings, name, with_thanks, language)
        thanks_html, thanks_text = counter.every_link(thanks_html, thanks_text)
    codes = appeal.codes if appeal is not None else ()
    images = tuple(InlineImage(code.name, code.cid, code.png) for code in codes)
    links = tuple(counter.links)
    return RenderedIssue(
        subject, preheader, html, text, reference, images, links, thanks_html, thanks_text
    )


def _render_parts(
    settings: Settings, name: str, context: dict[str, object], language: str
) -> tuple[str, str]:
    """One copy of the issue: its HTML, inlined, and its text part."""
    env = environment(settings, language)
    try:
        html = inline_css(env.get_template(f"email/{name}.html").render(context))
        text = env.get_template(f"email/{name}.txt").render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise MailerError(f"email template {exc.filename}, line {exc.lineno}: {exc}") from None
    except jinja2.TemplateError as exc:
        raise MailerError(f"email template error: {exc}") from None
    except UnicodeDecodeError:
        raise MailerError(f"an email template for {name!r} is not UTF-8 text") from None
    for part in (html, text):
        missing = [p for p in PLACEHOLDERS if p not in part]
        if missing:
            raise MailerError(
                f"the email templates must show {', '.join(missing)} (the reader's address "
                "and unsubscribe link) in both the HTML and the text part"
            )
    return html, text
