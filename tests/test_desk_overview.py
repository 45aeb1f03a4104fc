"""The desk's overview through real HTTP (uvicorn on 127.0.0.1, httpx, real SMTP servers):
the banner of what needs a person on every page (a held send, a stopped scheduler, a
failing relay), each gone once put right; the dashboard's chart of readers by week; this
week's digest (its articles, its readers, "Send now" sent by the desk's sender, and the
scheduler not sending a second one); and the audit log, for admins only."""

from __future__ import annotations

import html
import re
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert, update

from deskclient import ANN, PASSWORD, Desk, audit_count, csrf_of, sign_in_browser
from mailer import editors
from mailer.articles import ingest_file
from mailer.beats import SCHEDULER, beat
from mailer.catcher import free_port
from mailer.desk_overview import attention
from mailer.digest import week_of
from mailer.issues import find_issue
from mailer.models import ISSUES, SUBSCRIBERS, AuditAction, EditorRole, IssueStatus, utcnow
from mailer.scheduler import Service
from mailer.settings import Settings
from mailer.testing import RecordingHandler, import_readers, new_issue, served, smtp_server
from mailer.web.desk import lookout

BOB = "bob@newsroom.example"  # an editor, not an admin


@pytest.fixture(autouse=True)
def quick_lookout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookout's rounds shortened, so a change shows within a second, not ten."""
    monkeypatch.setattr(lookout, "REFRESH_SECONDS", 0.3)
    monkeypatch.setattr(lookout, "RELAY_FAILING_SECONDS", 1.0)


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def banner(client: httpx.Client, path: str = "/desk/articles") -> str:
    """The banner's text on a desk page ("" when there is none)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'<section class="banner".*?</section>', page.text, re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found[0]))) if found else ""


@contextmanager
def desk_with(engine: Engine, settings: Settings) -> Iterator[Desk]:
    """The desk served with these settings, and Ann, an admin."""
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


def article(engine: Engine, settings: Settings, folder: Path, title: str, days_ago: float) -> int:
    source = folder / f"{title}.txt"
    source.write_text(f"OSLO – {title}, told in a few plain sentences.\nAnd one more.\n")
    published = utcnow() - timedelta(days=days_ago)
    found = ingest_file(engine, settings, source, title=title, published=published).article
    assert found.id is not None
    return found.id


# --- what needs a person ------------------------------------------------------------------


def test_a_held_send_shows_on_every_page_with_the_relays_reason_until_it_is_resolved(
    engine, settings, desk, tmp_path
):
    issue = new_issue(engine, settings, tmp_path)
    reason = "554 5.7.1 Message rejected: <looks like spam>"
    with engine.begin() as connection:
        held = {"status": IssueStatus.HELD, "held_reason": reason}
        connection.execute(update(ISSUES).where(ISSUES.c.id == issue.id).values(**held))
    with closing(desk.signed_in()) as client:
        assert wait_for(lambda: "Held send" in banner(client))
        text = banner(client, "/desk/digest")
        assert f"issue {issue.id}: {issue.subject}" in text and reason in text
        assert f'href="/desk/issues/{issue.id}"' in client.get("/desk/articles").text
        with engine.begin() as connection:
            sent = {"status": IssueStatus.SENT, "held_reason": None}
            connection.execute(update(ISSUES).where(ISSUES.c.id == issue.id).values(**sent))
        assert wait_for(lambda: "Held send" not in banner(client))


def test_a_stopped_scheduler_is_told_while_a_digest_is_scheduled_and_not_once_it_beats(
    engine, settings, desk
):
    assert settings.schedule.digest_cron  # the shipped schedule: a digest every Monday
    with closing(desk.signed_in()) as client:
        assert wait_for(lambda: "The scheduler is not running" in banner(client))
        assert "last heard from: never" in banner(client)
        assert "the weekly digest will not go out" in banner(client)
        beat(engine, SCHEDULER, utcnow())
        assert wait_for(lambda: "scheduler" not in banner(client))
        beat(engine, SCHEDULER, utcnow(), now=utcnow() - timedelta(minutes=5))
        assert wait_for(lambda: "The scheduler is not running" in banner(client))


def test_without_a_digest_schedule_the_desks_own_sender_covers_scheduled_issues(
    engine, settings, tmp_path
):
    issue = new_issue(engine, settings, tmp_path)
    with engine.begin() as connection:
        later = {"status": IssueStatus.SCHEDULED, "scheduled_at": utcnow() + timedelta(days=1)}
        connection.execute(update(ISSUES).where(ISSUES.c.id == issue.id).values(**later))
    quiet = settings.replace(schedule={"digest_cron": ""})
    with desk_with(engine, quiet) as desk, closing(desk.signed_in()) as client:
        time.sleep(4)  # the lookout's first rounds
        assert client.get("/desk").status_code == 200
        assert "scheduler" not in banner(client)


# one backend: the relay's, not the database's
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failing_relay_is_told_on_every_page_until_it_answers_again(engine, settings):
    port = free_port()  # nobody listens there
    closed = settings.replace(smtp={"port": port})
    with desk_with(engine, closed) as desk, closing(desk.signed_in()) as client:
        assert wait_for(lambda: "The relay is failing" in banner(client))
        assert f"127.0.0.1:{port}" in banner(client, "/desk")
        with smtp_server(RecordingHandler(), port=port):
            assert wait_for(lambda: "relay" not in banner(client))


# one backend: the relay's, not the database's
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_relay_turning_the_desk_away_is_told_until_it_lets_it_in(engine, settings):
    """A real server with room for one session, held by someone else: it answers 421."""
    handler = RecordingHandler(max_sessions=1)
    with smtp_server(handler) as (controller, _):
        other = smtplib.SMTP("127.0.0.1", controller.port, timeout=10)
        busy = settings.replace(smtp={"port": controller.port})
        with desk_with(engine, busy) as desk, closing(desk.signed_in()) as client:
            assert wait_for(lambda: "The relay is failing" in banner(client))
            assert "421" in banner(client) and handler.turned_away >= 1
            other.quit()
            assert wait_for(lambda: "relay" not in banner(client))


def test_scheduled_issues_need_the_scheduler_only_when_the_desks_sender_is_not_running(
    engine, settings, tmp_path
):
    quiet = settings.replace(schedule={"digest_cron": ""})
    issue = new_issue(engine, settings, tmp_path)
    now = utcnow()
    assert attention(engine, quiet, now, desk_sends=False).scheduler_needed_for == ""
    with engine.begin() as connection:
        later = {"status": IssueStatus.SCHEDULED, "scheduled_at": now + timedelta(days=1)}
        connection.execute(update(ISSUES).where(ISSUES.c.id == issue.id).values(**later))
    assert attention(engine, quiet, now, desk_sends=True).scheduler_needed_for == ""
    alone = attention(engine, quiet, now, desk_sends=False)
    assert alone.scheduler_needed_for == "1 scheduled issue" and alone.any
    beat(engine, SCHEDULER, now)
    assert not attention(engine, quiet, now, desk_sends=False).any


# --- the dashboard's chart ----------------------------------------------------------------


def test_the_chart_and_its_table_give_the_weeks_sign_ups_confirmations_and_departures(
    engine, settings
):
    """(The desk counts the weeks when it starts, and every few minutes after.)"""
    now = utcnow()
    monday = (now - timedelta(days=now.weekday())).replace(hour=12, minute=0)
    two_weeks_ago, last_week = monday - timedelta(weeks=2), monday - timedelta(weeks=1)
    rows = []
    for i in range(5):  # two weeks ago: 5 sign-ups, 3 confirmed that week, 1 the next
        confirmed = two_weeks_ago + timedelta(hours=1) if i < 3 else None
        confirmed = last_week + timedelta(hours=2) if i == 3 else confirmed
        rows.append((two_weeks_ago, confirmed, None))
    rows += [(last_week, last_week, None), (last_week, last_week, monday)]  # 2 more, 1 left
    rows.append((monday - timedelta(weeks=40), monday - timedelta(weeks=40), monday))  # left
    with engine.begin() as connection:
        connection.execute(
            insert(SUBSCRIBERS),
            [
                {"email": f"r{i}@example.org", "public_id": f"p{i}", "status": "active",
                 "frequency": "every", "created_at": c, "confirmed_at": k, "unsubscribed_at": u}
                for i, (c, k, u) in enumerate(rows)
            ],
        )  # fmt: skip
    with desk_with(engine, settings) as desk, closing(desk.signed_in()) as client:
        page = client.get("/desk").text
    table = re.search(r'<table id="readers-table">.*?</table>', page, re.S)
    assert table
    weeks = {
        day: tuple(int(n) for n in counts)
        for day, *counts in re.findall(
            r'<th scope="row">([^<]+)</th><td class="n">(\d+)</td>'
            r'<td class="n">(\d+)</td><td class="n">(\d+)</td>',
            table[0],
        )
    }
    assert len(weeks) == 26
    day = "{:%d %b %Y}".format
    assert weeks[day(two_weeks_ago)] == (5, 3, 0)
    assert weeks[day(last_week)] == (2, 3, 0)
    assert weeks[day(monday)] == (0, 0, 2)
    assert sum(sum(counts) for counts in weeks.values()) == 15  # the 40-week-old sign-up is out
    bars = dict(re.findall(r"<title>([^<]+), week of ([^<:]+): \d+</title>", page))
    assert bars  # each bar says what it is, and its count agrees with the table
    for name, column in (("Sign-ups", 0), ("Confirmations", 1), ("Departures", 2)):
        for week, counts in weeks.items():
            assert f"<title>{name}, week of {week}: {counts[column]}</title>" in page
    assert 'viewBox="0 0 640 280" width="100%"' in page and 'role="img"' in page


# --- the digest -------------------------------------------------------------------------------


def test_the_digest_page_shows_its_articles_its_readers_and_when_it_goes(
    engine, settings, desk, tmp_path
):
    import_readers(engine, tmp_path, 3)
    article(engine, settings, tmp_path, "Harbour reopens", 2)
    article(engine, settings, tmp_path, "Old news from last month", 30)
    with closing(desk.signed_in()) as client:
        page = client.get("/desk/digest")
    assert page.status_code == 200
    assert "Harbour reopens" in page.text and "Old news" not in page.text
    assert "3 readers get the digest" in page.text
    assert "Left to the schedule, it goes out" in page.text
    assert "<iframe" in page.text and "sandbox" in page.text and "srcdoc=" in page.text
    assert "<script" not in page.text


def test_send_now_asks_first_then_the_desks_sender_sends_it_and_the_scheduler_not_again(
    engine, settings, desk, smtp, tmp_path
):
    readers = import_readers(engine, tmp_path, 3)
    article(engine, settings, tmp_path, "Harbour reopens", 1)
    with closing(desk.signed_in()) as client:
        before = audit_count(engine)
        asked = client.get("/desk/digest?confirm=1")
        assert "Send this digest now to 3 readers?" in asked.text
        assert audit_count(engine) == before and not smtp.received  # asking sends nothing
        sent = client.post("/desk/digest/send", data={"csrf": csrf_of(asked)})
        assert sent.status_code == 303 and sent.headers["location"] == "/desk/digest?sent=SENT"
        key = f"digest:{week_of(utcnow(), settings.publication.timezone)}"

        def sent_out() -> bool:
            issue = find_issue(engine, key)
            return issue is not None and issue.status == IssueStatus.SENT

        assert wait_for(sent_out)
        shown = client.get(sent.headers["location"]).text
        assert "The digest is going out now" in shown and "it is <strong>sent</strong>" in shown
        again = client.post("/desk/digest/send", data={"csrf": csrf_of(asked)})
        assert again.headers["location"] == "/desk/digest?sent=ALREADY_SENT"
        assert "nothing more was sent" in client.get(again.headers["location"]).text
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(readers)
    issue = find_issue(engine, key)
    assert issue is not None
    assert (editors.audit_log(engine, 1)[0].action, editors.audit_log(engine, 1)[0].subject) == (
        AuditAction.DIGEST_SENT,
        f"issue {issue.id}",
    )
    # the scheduler's digest job, due a moment ago (this week), finds this week's sent
    Service(settings.replace(schedule={"digest_cron": "* * * * *"}), engine).digest()
    assert len(smtp.received) == len(readers)


def test_with_no_new_article_the_digest_page_says_so_and_send_now_sends_nothing(
    engine, settings, desk, smtp, tmp_path
):
    import_readers(engine, tmp_path, 2)
    with closing(desk.signed_in()) as client:
        page = client.get("/desk/digest")
        assert "No article is new since the last digest" in page.text
        before = audit_count(engine)
        sent = client.post("/desk/digest/send", data={"csrf": csrf_of(page)})
        assert sent.headers["location"] == "/desk/digest?sent=EMPTY"
        assert "nothing was sent" in client.get(sent.headers["location"]).text
    assert audit_count(engine) == before and not smtp.received


def test_send_now_without_the_sessions_token_changes_nothing(engine, settings, desk, tmp_path):
    import_readers(engine, tmp_path, 2)
    article(engine, settings, tmp_path, "Harbour reopens", 1)
    with closing(desk.signed_in()) as client:
        assert client.post("/desk/digest/send", data={"csrf": "forged"}).status_code == 403
    key = f"digest:{week_of(utcnow(), settings.publication.timezone)}"
    assert find_issue(engine, key) is None


def entries(page: str) -> list[tuple[str, str, str, str]]:
    """The audit page's entries: action, subject, detail (in brackets) and who."""
    found = re.findall(
        r'<strong class="action">([^<]*)</strong> <span class="subject">([^<]*)</span>'
        r'(?: <span class="detail">([^<]*)</span>)?<br>\s*<span class="hint"><span class="who">'
        r"([^<]*)</span>",
        page,
    )
    return [tuple(html.unescape(part) for part in entry) for entry in found]


# --- the audit log ---------------------------------------------------------------------------


def test_the_audit_log_is_newest_first_paged_filtered_and_names_who(engine, desk):
    bob = editors.add_editor(engine, BOB, PASSWORD)
    for n in range(60):
        editors.record(engine, bob.id, AuditAction.SIGNED_IN, f"editor {bob.id}", f"n{n}")
    for n in range(3):
        editors.record(engine, None, AuditAction.PASSWORD_RESET, f"editor {bob.id}", f"cli{n}")
    with closing(desk.signed_in()) as client:
        first = client.get("/desk/audit").text
        rows = entries(first)
        assert len(rows) == 50
        # newest first: Ann's sign-in, then the three from the command line, then Bob's
        assert rows[0][:2] == (AuditAction.SIGNED_IN, "editor 1") and rows[0][3] == ANN
        cli = [(r[0], r[3]) for r in rows[1:4]]
        assert cli == [(AuditAction.PASSWORD_RESET, "command line")] * 3
        assert rows[4] == (AuditAction.SIGNED_IN, f"editor {bob.id}", "(n59)", BOB)
        assert rows[-1][2] == "(n14)" and "page=2" in first and "Older" in first
        page_two = client.get("/desk/audit?page=2").text
        second = entries(page_two)
        assert [r[2] for r in second[:14]] == [f"(n{n})" for n in range(13, -1, -1)]
        assert {r[0] for r in second[14:]} == {AuditAction.EDITOR_ADDED}  # Bob's, Ann's
        assert "Newer" in page_two and "Older" not in page_two
        only = entries(client.get("/desk/audit?action=password-reset").text)
        assert [r[0] for r in only] == [AuditAction.PASSWORD_RESET] * 3
    with closing(desk.signed_in(BOB)) as client:
        assert client.get("/desk/audit").status_code == 403
        assert "Audit log" not in client.get("/desk").text


def test_the_nav_links_the_digest_for_everyone_and_the_audit_log_for_admins(engine, desk):
    editors.add_editor(engine, BOB, PASSWORD)
    with closing(desk.signed_in()) as client:
        page = client.get("/desk").text
        assert 'href="/desk/digest"' in page and 'href="/desk/audit"' in page
    with closing(desk.signed_in(BOB)) as client:
        page = client.get("/desk").text
        assert 'href="/desk/digest"' in page and 'href="/desk/audit"' not in page


# --- at a phone's width ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_at_a_phones_width_the_overview_pages_need_no_sideways_scrolling(
    engine, settings, desk, tmp_path
):
    """Debian's chromium at 375 px: the dashboard with its chart and a banner, the digest
    page with its preview and its confirmation, the audit log; and the send is a button
    a keyboard reaches."""
    from playwright.sync_api import sync_playwright

    import_readers(engine, tmp_path, 2)
    article(engine, settings, tmp_path, "A rather long headline about the harbour reopening", 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 812})
            sign_in_browser(page, desk.url, ANN)
            chart = page.locator("svg[role=img] title").first.text_content() or ""
            assert chart.startswith("Readers over time")
            for path in ("/desk", "/desk/digest", "/desk/digest?confirm=1", "/desk/audit"):
                page.goto(f"{desk.url}{path}")
                name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-")
                page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= 375, f"{path} scrolls sideways ({wide} px)"
            page.goto(f"{desk.url}/desk/digest?confirm=1")
            assert "to 2 readers" in page.get_by_role("button", name="Yes, send it").inner_text()
            preview = page.frame_locator("iframe[sandbox]").locator("body").inner_text()
            assert "harbour reopening" in preview and "THIS WEEK" in preview.upper()
        finally:
            browser.close()
