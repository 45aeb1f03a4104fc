"""Reading an issue online, the use case behind the site's issue pages: the issue as it
was sent, for everyone, once it has started going out, and the images it carries (the
appeal's QR codes) from the site, since a page in a browser cannot show cid: addresses."""

from __future__ import annotations

from sqlalchemy import Engine

from mailer import links
from mailer.i18n import supported
from mailer.issues import as_rendered, find_issue, variants_of
from mailer.messages import fill, with_image_sources
from mailer.models import Issue, IssueStatus, IssueVariant
from mailer.render import InlineImage
from mailer.settings import Settings


def _public_issue(engine: Engine, slug: str) -> Issue | None:
    """The issue at this address, if anyone may read it: one that started going out."""
    issue = find_issue(engine, links.issue_key(slug))
    if issue is None or issue.status not in IssueStatus.STARTED:
        return None
    return issue


def online_page(
    engine: Engine, settings: Settings, slug: str, language: str | None = None
) -> str | None:
    """The issue's HTML for its page, or None: the reader's address and links, filled per
    recipient in the emails, are left out, and its images come from the site. With
    `language`, that language's edition, if the issue has one (else the publication's)."""
    issue = _public_issue(engine, slug)
    if issue is None:
        return None
    base_url, key = settings.publication.base_url, issue.key
    shown: Issue | IssueVariant = _edition(engine, settings, issue, language) or issue

    def served_at(image: InlineImage) -> str:
        return links.issue_image_url(base_url, key, image.name)

    page = with_image_sources(shown.html, as_rendered(issue).images, served_at)
    return fill(page, "your address", "#", "#")


def _edition(
    engine: Engine, settings: Settings, issue: Issue, language: str | None
) -> IssueVariant | None:
    """The issue's edition in `language` (one of the publication's), the whole of it
    rather than a digest's part for readers of some of its articles' languages."""
    tag = supported(language, settings.publication.languages) if language else None
    if tag is None or tag == settings.publication.language:
        return None
    found = [v for v in variants_of(engine, issue.id or 0).values() if v.language == tag]
    return next((v for v in found if v.key == tag), found[0] if found else None)


def online_image(engine: Engine, slug: str, name: str) -> bytes | None:
    """The PNG of the issue's image `name`, or None (no such image, or no public issue)."""
    issue = _public_issue(engine, slug)
    if issue is None:
        return None
    return next((image.png for image in as_rendered(issue).images if image.name == name), None)
