"""Reading an issue online, the use case behind the site's issue pages: the issue as it
was sent, for everyone, once it has started going out, and the images it carries (the
appeal's QR codes) from the site, since a page in a browser cannot show cid: addresses."""

from __future__ import annotations

from sqlalchemy import Engine

from mailer import links
from mailer.issues import as_rendered, find_issue
from mailer.messages import fill, with_image_sources
from mailer.models import Issue, IssueStatus
from mailer.render import InlineImage
from mailer.settings import Settings


def _public_issue(engine: Engine, slug: str) -> Issue | None:
    """The issue at this address, if anyone may read it: one that started going out."""
    issue = find_issue(engine, links.issue_key(slug))
    if issue is None or issue.status not in IssueStatus.STARTED:
        return None
    return issue


def online_page(engine: Engine, settings: Settings, slug: str) -> str | None:
    """The issue's HTML for its page, or None: the reader's address and links, filled per
    recipient in the emails, are left out, and its images come from the site."""
    issue = _public_issue(engine, slug)
    if issue is None:
        return None
    base_url, key = settings.publication.base_url, issue.key

    def served_at(image: InlineImage) -> str:
        return links.issue_image_url(base_url, key, image.name)

    shown = with_image_sources(issue.html, as_rendered(issue).images, served_at)
    return fill(shown, "your address", "#", "#")


def online_image(engine: Engine, slug: str, name: str) -> bytes | None:
    """The PNG of the issue's image `name`, or None (no such image, or no public issue)."""
    issue = _public_issue(engine, slug)
    if issue is None:
        return None
    return next((image.png for image in as_rendered(issue).images if image.name == name), None)
