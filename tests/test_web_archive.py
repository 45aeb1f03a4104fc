"""The site's home page, where every email's masthead links: the publication's archive,
served by uvicorn on 127.0.0.1 and read over real HTTP as anyone would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import Engine, update

from mailer import links
from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue, schedule_issue
from mailer.models import ARTICLES, ISSUES, Issue
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


# -- issue 17: archive. /issues per language, and its Atom feed --------------------------

ATOM = "{http://www.w3.org/2005/Atom}"
EDITIONS = ("en", "nb", "fa-AF")


def sent_issue(
    engine: Engine, settings: Settings, tmp_path: Path, title: str, language: str | None, day: int
) -> Issue:
    """An article issue in `language` (None: no language stored), sent on November `day`."""
    article = ingest_file(engine, settings, article_file(tmp_path, title)).article
    with engine.begin() as connection:
        connection.execute(
            update(ARTICLES).where(ARTICLES.c.id == article.id).values(language=language)
        )
    issue = article_issue(engine, settings, article)
    when = datetime(2026, 11, day, 9, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            update(ISSUES).where(ISSUES.c.id == issue.id).values(status="sent", sent_at=when)
        )
    return issue


def digest_sent(engine: Engine, day: int) -> str:
    with engine.begin() as connection:
        connection.execute(
            ISSUES.insert().values(
                kind="digest", key="digest:2026-W47", subject="The week", html="", text="",
                status="sent", created_at=datetime(2026, 11, day, tzinfo=UTC),
                sent_at=datetime(2026, 11, day, 18, 0, tzinfo=UTC),
            )
        )  # fmt: skip
    return "digest:2026-W47"


def feed_of(url: str, **params: str) -> ElementTree.Element:
    answer = httpx.get(f"{url}/issues.atom", params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    return ElementTree.fromstring(answer.content)


def entries(feed: ElementTree.Element) -> list[tuple[str, str, str]]:
    return [
        (entry.findtext(f"{ATOM}id", ""), entry.findtext(f"{ATOM}title", ""),
         entry.findtext(f"{ATOM}updated", ""))
        for entry in feed.findall(f"{ATOM}entry")
    ]  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_archive_by_language_lists_each_languages_articles_and_every_digest(
    engine, settings, tmp_path
):
    """editions = "by-language": a language's list holds its articles (fa matches fa-AF;
    no stored language is the publication's) and every digest, newest first, each
    linked to the issue in that language; its Atom feed says the same."""
    several = settings.replace(publication={"languages": EDITIONS, "editions": "by-language"})
    with served(several, engine) as (url, running):
        english = sent_issue(engine, running, tmp_path, "Council budget", None, 2)
        dari = sent_issue(engine, running, tmp_path, "Kabul schools", "fa", 5)
        norwegian = sent_issue(engine, running, tmp_path, "Oslo budsjett", "nb", 7)
        digest = digest_sent(engine, 8)
        slug = {i.key: f"article-{i.key.split(':')[1]}" for i in (english, dari, norwegian)}

        listed = ISSUE_LINK.findall(httpx.get(f"{url}/issues", params={"lang": "fa-AF"}).text)
        assert listed == [
            (f"{url}/issues/digest-2026-W47?lang=fa-AF", "The week"),
            (f"{url}/issues/{slug[dari.key]}?lang=fa-AF", dari.subject),
        ]
        english_page = httpx.get(f"{url}/issues", headers={"accept-language": "en-GB"})
        assert ISSUE_LINK.findall(english_page.text) == [
            (f"{url}/issues/digest-2026-W47", "The week"),
            (f"{url}/issues/{slug[english.key]}", escape(english.subject)),
        ]
        assert httpx.get(url).text == english_page.text, "the home page is the same list"
        assert '<link rel="alternate" type="application/atom+xml" href="/issues.atom"' in (
            english_page.text
        )
        dari_page = httpx.get(f"{url}/issues", headers={"accept-language": "fa"})
        assert 'lang="fa-AF" dir="rtl"' in dari_page.text and "شماره‌ها" in dari_page.text
        assert 'href="/issues.atom?lang=fa-AF"' in dari_page.text

        feed = feed_of(url, lang="fa-AF")
        assert feed.findtext(f"{ATOM}id") == f"{url}/issues?lang=fa-AF"
        assert feed.findtext(f"{ATOM}title") == "Dawat Media Center: خبرنامه‌ها"
        assert feed.findtext(f"{ATOM}updated") == "2026-11-08T18:00:00+00:00"
        links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
        assert links == {
            "self": f"{url}/issues.atom?lang=fa-AF",
            "alternate": f"{url}/issues?lang=fa-AF",
        }
        assert entries(feed) == [
            (f"{url}/issues/digest-2026-W47?lang=fa-AF", "The week", "2026-11-08T18:00:00+00:00"),
            (
                f"{url}/issues/{slug[dari.key]}?lang=fa-AF",
                dari.subject,
                "2026-11-05T09:00:00+00:00",
            ),
        ]
        for entry in feed.findall(f"{ATOM}entry"):
            (alternate,) = entry.findall(f"{ATOM}link[@rel='alternate']")
            assert alternate.get("href") == entry.findtext(f"{ATOM}id")
        norwegian_feed = entries(feed_of(url, lang="nb"))
        assert [title for _, title, _ in norwegian_feed] == ["The week", norwegian.subject]
        assert digest == "digest:2026-W47"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_every_edition_for_all_every_issue_is_in_every_languages_archive(
    engine, settings, tmp_path
):
    several = settings.replace(publication={"languages": EDITIONS})  # editions = "all"
    with served(several, engine) as (url, running):
        first = sent_issue(engine, running, tmp_path, "Council budget", None, 2)
        second = sent_issue(engine, running, tmp_path, "Kabul schools", "fa-AF", 5)
        for language in EDITIONS:
            feed = feed_of(url, lang=language)
            assert [title for _, title, _ in entries(feed)] == [second.subject, first.subject]
        default = feed_of(url)
        assert default.findtext(f"{ATOM}id") == f"{url}/issues"
        ids = [entry_id for entry_id, _, _ in entries(default)]
        assert ids == [f"{url}/issues/{links.issue_slug(i.key)}" for i in (second, first)]
