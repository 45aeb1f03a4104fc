"""The site's home page, where every email's masthead links: the publication's archive,
served by uvicorn on 127.0.0.1 and read over real HTTP as anyone would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from markupsafe import escape
from sqlalchemy import Engine, update

from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue, schedule_issue
from mailer.models import ISSUES, Issue
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import served

# A subject as a stranger's feed could title an article: markup must show as text.
HOSTILE_SUBJECT = '</a><script>alert("x")</script> Zoë <attacker@evil.example> & co'
ISSUE_LINK = re.compile(r'<li><a href="([^"]+)">([^<]*)</a>')


def article_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.txt"
    path.write_text(f"{name}\n\nA paragraph of {name}, long enough to read as an article.\n")
    return path


def sent_at(engine: Engine, issue: Issue, when: datetime) -> None:
    """When the issue finished going out, fixed so the page's dates are known."""
    with engine.begin() as connection:
        connection.execute(update(ISSUES).where(ISSUES.c.id == issue.id).values(sent_at=when))


def test_the_home_page_lists_the_sent_issues_newest_first(
    engine: Engine, settings: Settings, smtp, tmp_path: Path
):
    """Two sent issues, newest first, each linked to its page, dated in the publication's
    time zone; the hostile subject shown as text; a scheduled issue and the readers not
    at all; and the way to subscribe."""
    oslo = settings.replace(publication={"timezone": "Europe/Oslo"})
    with served(oslo, engine) as (url, running):
        add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
        first = ingest_file(engine, running, SAMPLE_ARTICLE).article
        hostile = ingest_file(
            engine, running, article_file(tmp_path, "hostile"), title=HOSTILE_SUBJECT
        ).article
        later = ingest_file(engine, running, article_file(tmp_path, "Not yet out")).article
        first_issue = article_issue(engine, running, first)
        hostile_issue = article_issue(engine, running, hostile)
        for issue in (hostile_issue, first_issue):  # sent in the other order than listed
            assert deliver(engine, running, issue).sent == 1
        sent_at(engine, first_issue, datetime(2026, 11, 2, 10, 0, tzinfo=UTC))
        sent_at(engine, hostile_issue, datetime(2026, 11, 29, 23, 30, tzinfo=UTC))
        scheduled = article_issue(engine, running, later)
        schedule_issue(engine, scheduled, datetime.now(UTC) + timedelta(days=1))

        page = httpx.get(url)  # base_url itself, as the masthead links it
        assert page.status_code == 200
        assert httpx.get(url + "/").text == page.text

        listed = ISSUE_LINK.findall(page.text)
        assert listed == [
            (f"{url}/issues/article-{hostile.id}", escape(hostile_issue.subject)),
            (f"{url}/issues/article-{first.id}", escape(first_issue.subject)),
        ]
        for link, _subject in listed:
            assert httpx.get(link).status_code == 200
        assert "<script>" not in page.text and "&lt;script&gt;alert(" in page.text
        assert "30 November 2026" in page.text, "23:30 UTC is past midnight in Oslo"
        assert "2 November 2026" in page.text
        assert "Not yet out" not in page.text and f"article-{later.id}" not in page.text
        assert "ana@example.org" not in page.text and "Ana" not in page.text
        assert 'href="/subscribe"' in page.text
        assert httpx.get(url + "/subscribe").status_code == 200


def test_the_home_page_of_a_new_publication_says_nothing_was_sent(engine, settings):
    with served(settings, engine) as (url, _running):
        page = httpx.get(url)
    assert page.status_code == 200
    assert "Nothing has been sent yet." in page.text and 'href="/subscribe"' in page.text
