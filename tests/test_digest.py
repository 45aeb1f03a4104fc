"""The weekly digest: which articles it holds (dates from an injected clock, no sleeping),
how it looks, who gets it, and that each reader gets one per week however it is started:
twice in a row, or by two processes at once, against a real SMTP server."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from mailer.crontab import crontab_trigger
from mailer.db import session_scope
from mailer.delivery import deliver
from mailer.digest import plan_digest, week_of
from mailer.issues import digest_issue
from mailer.models import Article, Issue
from mailer.runs import send_digest
from mailer.subscribers import add_subscriber, request_subscription, unsubscribe
from mailer.testing import commands, smtp_server
from test_crash import SlowServer, _environment

# A Monday, 08:00 in Oslo.
MONDAY = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
APPEAL = "If there were ever a time to join us"


def add_article(
    engine: Any,
    title: str,
    published: datetime,
    ingested: datetime | None = None,
    url: str | None = None,
) -> int:
    body = f"<p>The whole of {title}, paragraph one.</p><p>Paragraph two of {title}.</p>"
    article = Article(
        guid=url or f"sha256:{title}",
        fingerprint=f"sha256:{title}",
        url=url,
        title=title,
        published_at=published,
        ingested_at=ingested or published,
        summary=f"What {title} is about.",
        body_html=body,
    )
    with session_scope(engine) as session:
        session.add(article)
        session.flush()
        assert article.id is not None
        return article.id


def titles(plan: Any) -> list[str]:
    return [article.title for article in plan.articles]


def test_the_first_digest_holds_the_last_seven_days_newest_first(engine, settings):
    zone = settings.publication.timezone
    add_article(engine, "Too old", MONDAY - timedelta(days=8))
    add_article(engine, "Six days ago", MONDAY - timedelta(days=6))
    add_article(engine, "Yesterday", MONDAY - timedelta(days=1))
    add_article(engine, "An hour ago", MONDAY - timedelta(hours=1))
    add_article(engine, "Dated after now", MONDAY + timedelta(hours=1))
    plan = plan_digest(engine, zone, MONDAY)
    assert plan.key == "digest:2026-W49" and plan.week == week_of(MONDAY, zone)
    assert plan.since == MONDAY - timedelta(days=7)
    assert titles(plan) == ["An hour ago", "Yesterday", "Six days ago"]


def test_the_next_digest_starts_where_the_last_ended_and_takes_late_arrivals(
    engine, settings, smtp
):
    add_subscriber(engine, "reader@example.org", confirmed=True)
    add_article(engine, "Week one", MONDAY - timedelta(days=2))
    first = send_digest(engine, settings, MONDAY)
    assert first.outcome == "sent" and first.report is not None and first.report.sent == 1

    later = MONDAY + timedelta(days=7)
    add_article(engine, "Week two", MONDAY + timedelta(days=3))
    # dated before the last digest went out, but brought in after it
    add_article(engine, "Came in late", MONDAY - timedelta(hours=2), ingested=MONDAY + timedelta(1))
    # brought in this week, dated long ago: an archive import, not news
    add_article(engine, "Archive", MONDAY - timedelta(days=60), ingested=MONDAY + timedelta(2))
    plan = plan_digest(engine, settings.publication.timezone, later)
    assert plan.since == MONDAY
    assert titles(plan) == ["Week two", "Came in late"]  # "Week one" is not shown twice


def test_since_overrides_where_the_digest_starts(engine, settings):
    add_article(engine, "Ten days ago", MONDAY - timedelta(days=10))
    add_article(engine, "Two days ago", MONDAY - timedelta(days=2))
    zone = settings.publication.timezone
    assert titles(plan_digest(engine, zone, MONDAY, MONDAY - timedelta(days=14))) == [
        "Two days ago",
        "Ten days ago",
    ]


def test_the_digest_shows_each_article_once_then_the_appeal_once(engine, settings, smtp):
    add_subscriber(engine, "reader@example.org", confirmed=True)
    add_article(engine, "Linked story", MONDAY - timedelta(days=1), url="https://news.example/a")
    add_article(engine, "Story without a page", MONDAY - timedelta(days=2))
    run = send_digest(engine, settings, MONDAY)
    assert run.outcome == "sent"
    message = smtp.to("reader@example.org")[0]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"] == "Dawat Media Center this week: Linked story, and 1 more"
    for part in (html, text):
        assert part.index("Linked story") < part.index("Story without a page")
        assert part.count(APPEAL) == 1
        assert part.index("Story without a page") < part.index(APPEAL)
        assert "What Linked story is about." in part  # the summary, with a link
        assert "Paragraph two of Linked story" not in part
        assert "Paragraph two of Story without a page" in part  # no page: shown whole
        assert "29 November 2026" in part and "28 November 2026" in part
    assert 'href="https://news.example/a"' in html and "Read more" in html
    assert "Read more: https://news.example/a" in text
    assert "/issues/digest-2026-W49" in html  # read online


def test_an_empty_week_sends_nothing_and_stores_no_issue(engine, settings, smtp):
    add_subscriber(engine, "reader@example.org", confirmed=True)
    add_article(engine, "Old news", MONDAY - timedelta(days=9))
    run = send_digest(engine, settings, MONDAY)
    assert run.outcome == "empty" and run.issue is None
    assert smtp.received == []
    with Session(engine) as session:
        assert session.exec(select(Issue)).all() == []


def test_the_digest_goes_to_every_active_reader_who_did_not_opt_out(engine, settings, smtp):
    add_subscriber(engine, "every@example.org", confirmed=True, frequency="every")
    add_subscriber(engine, "weekly@example.org", confirmed=True, frequency="weekly")
    add_subscriber(engine, "articles@example.org", confirmed=True, frequency="articles")
    request_subscription(engine, "pending@example.org", None, "weekly")
    gone = add_subscriber(engine, "gone@example.org", confirmed=True, frequency="weekly")
    assert gone.id is not None
    unsubscribe(engine, gone.id)
    add_article(engine, "News", MONDAY - timedelta(days=1))
    send_digest(engine, settings, MONDAY)
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == [
        "every@example.org",
        "weekly@example.org",
    ]


def test_one_digest_per_iso_week_whenever_in_the_week_it_runs(engine, settings, smtp):
    add_subscriber(engine, "reader@example.org", confirmed=True)
    add_article(engine, "News", MONDAY - timedelta(days=1))
    assert send_digest(engine, settings, MONDAY).outcome == "sent"
    add_article(engine, "Midweek news", MONDAY + timedelta(days=2))
    again = send_digest(engine, settings, MONDAY + timedelta(days=3))  # Thursday, same week
    assert again.outcome == "already sent"
    assert len(smtp.received) == 1
    next_week = send_digest(engine, settings, MONDAY + timedelta(days=7))
    assert next_week.outcome == "sent" and titles(next_week.plan) == ["Midweek news"]
    assert len(smtp.received) == 2


def test_digest_send_twice_and_two_processes_at_once_mail_each_reader_once(
    engine, settings, tmp_path
):
    readers = [f"r{i}@example.org" for i in range(400)]
    for address in readers:
        add_subscriber(engine, address, confirmed=True, frequency="weekly")
    now = datetime.now(UTC)
    add_article(engine, "This week's story", now - timedelta(hours=3))
    with smtp_server(SlowServer()) as (_controller, server):
        env = _environment(settings.database.url, server.port)
        command = [sys.executable, "-m", "mailer", "digest", "--send", "--yes"]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL}
        run: dict[str, Any] = {"cwd": tmp_path, "env": env, "text": True, **pipes}
        together = [subprocess.Popen(command, **run) for _ in range(2)]
        outputs = [process.communicate(timeout=120) for process in together]
        assert [p.returncode for p in together] == [0, 0], outputs
        again = commands.mailer(command[3:], tmp_path, env)
        assert again.returncode == 0, again.stderr
        assert "went out" in again.stdout
    copies = Counter(r for message in server.received for r in message.rcpt_tos)
    assert copies == Counter(readers)  # each reader exactly once
    with Session(engine) as session:
        digests = session.exec(select(Issue).where(Issue.kind == "digest")).all()
    week = week_of(now, settings.publication.timezone)
    assert [(d.status, d.key) for d in digests] == [("sent", f"digest:{week}")]


@pytest.mark.parametrize(
    ("crontab", "first_run"),
    [
        ("0 8 * * 1", "Mon 2026-11-30 08:00"),  # crontab's 1 is Monday (APScheduler's is Tuesday)
        ("0 8 * * 0", "Sun 2026-11-29 08:00"),
        ("0 8 * * 7", "Sun 2026-11-29 08:00"),
        ("0 8 * * mon", "Mon 2026-11-30 08:00"),
        ("30 6 * * 2-3", "Tue 2026-12-01 06:30"),
        ("0 8 * * 5-7", "Sun 2026-11-29 08:00"),
    ],
)
def test_the_digest_schedule_reads_weekdays_as_crontab_does(crontab, first_run):
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    trigger = crontab_trigger(crontab, "Europe/Oslo")
    assert trigger.get_next_fire_time(None, saturday).strftime("%a %F %R") == first_run


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime(2026, 10, 25, 0, 40, tzinfo=UTC), "2026-10-25T02:30:00+02:00"),  # the first
        (datetime(2026, 10, 25, 1, 40, tzinfo=UTC), "2026-10-25T02:30:00+01:00"),  # repeated
    ],
)
def test_a_schedule_due_in_the_hour_the_clocks_repeat_is_found_once_each_time(now, due):
    """The autumn night repeats 02:00-03:00 in Berlin: looking for a missed digest ten
    minutes after the second 02:30 went round for ever (a second past the second 02:30,
    counted in local time, is a second past the first)."""
    import threading

    from mailer.crontab import last_due

    found: list[datetime | None] = []
    looking = threading.Thread(
        target=lambda: found.append(
            last_due("30 2 * * sun", "Europe/Berlin", now, timedelta(minutes=30))
        ),
        daemon=True,  # left behind if it never ends
    )
    looking.start()
    looking.join(10)
    assert found, "still looking after 10 s"
    assert found[0] is not None and found[0].isoformat() == due


@pytest.mark.parametrize("crontab", ["0 8 * *", "0 25 * * mon", "0 8 * * 8", "0 8 * * someday"])
def test_a_bad_digest_schedule_is_refused_at_start(tmp_path, crontab):
    from mailer.errors import ConfigError
    from mailer.testing import make_settings

    with pytest.raises(ConfigError, match=r"schedule\.digest_cron"):
        make_settings(tmp_path, schedule={"digest_cron": crontab})


def test_a_digest_rebuilt_meanwhile_goes_out_as_stored_to_everyone(engine, settings, smtp):
    """Two runs build the week's digest a moment apart, with an article in between: the
    first sends what is stored when it queues it, so every reader gets the same email."""
    for n in range(3):
        add_subscriber(engine, f"r{n}@example.org", confirmed=True)
    add_article(engine, "First", MONDAY - timedelta(days=1))
    zone = settings.publication.timezone
    built_first = digest_issue(engine, settings, plan_digest(engine, zone, MONDAY))
    add_article(engine, "Second", MONDAY - timedelta(minutes=30), ingested=MONDAY)
    later = MONDAY + timedelta(minutes=1)
    built_second = digest_issue(engine, settings, plan_digest(engine, zone, later))
    deliver(engine, settings, built_first)
    assert {m.message["Subject"] for m in smtp.received} == {built_second.subject}
    assert built_second.subject.endswith("Second, and 1 more") and len(smtp.received) == 3
