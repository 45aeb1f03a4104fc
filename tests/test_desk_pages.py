"""The desk's read-only pages through real HTTP (uvicorn on 127.0.0.1, httpx): the
articles, newest first and searched, and one issue's report as a page and as CSV, from
an issue really sent (a real SMTP server refusing one reader)."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from deskclient import ANN, PASSWORD, Desk, sign_in
from mailer import editors
from mailer.articles import ingest_file
from mailer.desk import ARTICLES_PER_PAGE, REPORT_COLUMNS, report_csv
from mailer.issues import article_issue
from mailer.models import (
    DELIVERIES,
    Article,
    DeliveryStatus,
    EditorRole,
    Issue,
    IssueStatus,
    utcnow,
)
from mailer.report import IssueReport, Problem
from mailer.runs import send_article
from mailer.settings import Settings
from mailer.testing import HOSTILE_NAMES, RecordingHandler, import_readers, served

REFUSAL = "550 5.1.1 User unknown"
HOSTILE = "<script>alert('desk')</script> " + HOSTILE_NAMES[0]


@pytest.fixture
def desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.EDITOR)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


def write_article(directory: Path, name: str) -> Path:
    source = directory / f"{name}.txt"
    source.write_text(f"OSLO – {name}, told in a few plain sentences.\nThe end.\n", "utf-8")
    return source


def add_articles(engine: Engine, count: int) -> None:
    """`count` articles, article 0 the oldest, straight into the table."""
    start = utcnow() - timedelta(days=count + 1)
    with Session(engine) as session:
        for n in range(count):
            session.add(
                Article(
                    guid=f"test:{n}",
                    title=f"Filler {n:03}",
                    body_html="<p>x</p>",
                    published_at=start + timedelta(hours=n),
                )
            )
        session.commit()


def titles(page: str) -> list[str]:
    # each title links to the article's page
    found = re.findall(r"<tr><td>(?:<a [^>]*>)?(.*?)(?:</a>)?</td>", page)
    return [html.unescape(t) for t in found]


def state_counts(engine: Engine, issue_id: int) -> dict[str, int]:
    query = (
        select(DELIVERIES.c.status, func.count())
        .where(DELIVERIES.c.issue_id == issue_id)
        .group_by(DELIVERIES.c.status)
    )
    with engine.connect() as connection:
        found = {status: count for status, count in connection.execute(query)}
    return {state: found.get(state, 0) for state in DeliveryStatus.ALL}


def test_the_articles_are_listed_newest_first_a_page_at_a_time_and_searched(
    engine, settings, desk, tmp_path
):
    add_articles(engine, ARTICLES_PER_PAGE + 5)
    newest = ARTICLES_PER_PAGE + 4
    with desk.client() as client:
        sign_in(client)
        first = client.get("/desk/articles")
        second = client.get("/desk/articles", params={"page": "2"})
        searched = client.get("/desk/articles", params={"q": "filler 00"})
        none = client.get("/desk/articles", params={"q": "100%"})
    assert first.status_code == 200 and ">Articles</a>" in first.text
    expected = [f"Filler {n:03}" for n in range(newest, -1, -1)]
    assert titles(first.text) == expected[:ARTICLES_PER_PAGE]
    assert "Next page" in first.text and "Previous page" not in first.text
    assert titles(second.text) == expected[ARTICLES_PER_PAGE:]
    assert "Previous page" in second.text and "Next page" not in second.text
    assert titles(searched.text) == [f"Filler {n:03}" for n in range(9, -1, -1)]
    assert titles(none.text) == [] and "No article" in none.text


def test_the_article_list_shows_author_date_source_and_whether_it_was_sent(
    engine, settings, desk, tmp_path
):
    import_readers(engine, tmp_path, 1)
    published = utcnow() - timedelta(days=1)
    sent = ingest_file(
        engine,
        settings,
        write_article(tmp_path, "sent"),
        title="Budget agreed",
        url="https://news.example/budget",
        published=published,
    ).article
    ingest_file(engine, settings, write_article(tmp_path, "unsent"), title="Ferry late")
    send_article(engine, settings, article_issue(engine, settings, sent))
    with desk.client() as client:
        sign_in(client)
        page = client.get("/desk/articles").text
    rows = re.findall(r"<tr><td>.*?</tr>", page, re.S)
    assert len(rows) == 2
    budget, ferry = sorted(rows, key=lambda row: "Ferry" in row)
    assert "Ferry late" in ferry and "<td>no</td>" in ferry
    assert "Budget agreed" in budget and "<td>yes</td>" in budget
    assert 'href="https://news.example/budget"' in budget
    zone = ZoneInfo(settings.publication.timezone)
    assert published.astimezone(zone).strftime("%a %d %b %Y %H:%M") in budget


def sent_issue(engine: Engine, settings: Settings, smtp: RecordingHandler, tmp_path: Path) -> Issue:
    """An issue really sent to three readers, the relay refusing one of them."""
    readers = import_readers(engine, tmp_path, 3)
    smtp.refuse[readers[1]] = REFUSAL
    article = ingest_file(engine, settings, write_article(tmp_path, "news"), title=HOSTILE).article
    issue = article_issue(engine, settings, article)
    send_article(engine, settings, issue)
    return issue


def test_the_issue_page_and_its_csv_show_the_databases_counts_and_the_failures_reply(
    engine, settings, smtp, desk, tmp_path
):
    issue = sent_issue(engine, settings, smtp, tmp_path)
    counts = state_counts(engine, issue.id)
    assert counts[DeliveryStatus.SENT] == 2 and counts[DeliveryStatus.FAILED] == 1
    with desk.client() as client:
        sign_in(client)
        board = client.get("/desk").text
        assert f'href="/desk/issues/{issue.id}"' in board
        page = client.get(f"/desk/issues/{issue.id}")
        report = client.get(f"/desk/issues/{issue.id}/report.csv")
    assert page.status_code == 200
    shown = dict(re.findall(r'<tr><td>(\w+)</td><td class="n">(\d+)</td></tr>', page.text))
    assert {state: int(n) for state, n in shown.items()} == counts
    problem = re.search(r'<tr class="problem">.*?</tr>', page.text, re.S)
    assert problem and "failed" in problem.group(0) and REFUSAL in problem.group(0)
    assert f"Status: {IssueStatus.SENT}" in page.text

    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert report.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows[0] == REPORT_COLUMNS
    assert {row[0]: int(row[1]) for row in rows[1:] if not row[2]} == counts
    failures = [row for row in rows[1:] if row[2]]
    assert failures == [["failed", "1", REFUSAL, "reader001@example.org", ""]]
    assert "reader001@example.org" in problem.group(0)


def test_a_hostile_title_is_shown_as_text(engine, settings, smtp, desk, tmp_path):
    issue = sent_issue(engine, settings, smtp, tmp_path)
    with desk.client() as client:
        sign_in(client)
        pages = [
            client.get("/desk/articles").text,
            client.get(f"/desk/issues/{issue.id}").text,
            client.get("/desk").text,
        ]
    for page in pages:
        assert "<script>" not in page and "<attacker@" not in page
        assert "&lt;script&gt;" in page and "&lt;attacker@evil.example&gt;" in page


def test_the_csv_neutralises_cells_a_spreadsheet_would_run():
    issue = Issue(id=7, key="article:7", subject="x")
    problem = Problem(DeliveryStatus.FAILED, "=HYPERLINK(1)", 1, "@evil", None)
    text = report_csv(IssueReport(issue, dict.fromkeys(DeliveryStatus.ALL, 0), [problem]))
    last = list(csv.reader(io.StringIO(text)))[-1]
    assert last == ["failed", "1", "'=HYPERLINK(1)", "'@evil", ""]


def test_an_unknown_issue_is_404_and_the_pages_refuse_anyone_not_signed_in(engine, desk):
    with desk.client() as client:
        for path in ("/desk/articles", "/desk/issues/1", "/desk/issues/1/report.csv"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/desk/login"
            assert answer.headers["cache-control"] == "no-store"
        sign_in(client)
        for path in ("/desk/issues/999999", "/desk/issues/999999/report.csv"):
            missing = client.get(path)
            assert missing.status_code == 404 and "No such issue" in missing.text
