"""Sending from the desk, through real HTTP (uvicorn on 127.0.0.1) and a real SMTP server:
an article's preview in two sandboxed frames and its text part, a subject an editor
types reaching the messages, test copies, "send now" sent by the desk's sender with no
request waiting, the issue's progress moving to done, a schedule in the publication's
zone, its cancel, and the audit log of each."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, select

from deskclient import ANN, PASSWORD, Desk, csrf_of
from mailer import editors
from mailer.issues import find_issue, find_issue_by_id
from mailer.models import (
    AUDIT_EVENTS,
    SUBSCRIBERS,
    EditorRole,
    IssueStatus,
    utcnow,
)
from mailer.settings import Settings
from mailer.testing import import_readers, new_issue, served


@pytest.fixture
def desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    """The site served with the desk on and Ann, an admin (sessions last, as a send does)."""
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def article_of(engine: Engine, settings: Settings, tmp_path, number: int = 0) -> int:
    article_id: int = new_issue(engine, settings, tmp_path, number).article_id_list[0]
    return article_id


def audit(engine: Engine) -> list[tuple[str, str, str]]:
    query = select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.subject, AUDIT_EVENTS.c.detail)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(AUDIT_EVENTS.c.id)).all()
    sending = {"issue-edited", "test-sent", "issue-sent", "issue-scheduled", "issue-cancelled"}
    return [tuple(row) for row in rows if row[0] in sending]


def post(client: httpx.Client, path: str, page: str, **fields: str) -> httpx.Response:
    return client.post(path, data={"csrf": csrf_of(client.get(page)), **fields})


def test_the_send_page_shows_the_email_at_two_widths_in_sandboxed_frames_and_its_text(
    engine, settings, desk, tmp_path
):
    article_id = article_of(engine, settings, tmp_path)
    import_readers(engine, tmp_path, 3)
    with closing(desk.signed_in()) as client:
        page = client.get(f"/desk/articles/{article_id}/send")
    assert page.status_code == 200
    frames = re.findall(r'<iframe title="The email[^>]*>', page.text)  # not the donors' copy
    assert len(frames) == 2
    assert all(" sandbox " in frame and "allow-" not in frame for frame in frames)
    assert [re.search(r'width="(\d+)"', f).group(1) for f in frames] == ["375", "600"]
    assert 'srcdoc="&lt;!' in page.text or 'srcdoc="&lt;html' in page.text.lower()
    text = re.search(r'<pre class="text">(.*?)</pre>', page.text, re.S).group(1)
    assert "reader@example.org" in text, "a sample reader, never a real one"
    assert "reader000@example.org" not in page.text
    assert "3 readers get every article" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]


def test_a_subject_and_preheader_typed_reach_the_test_copy_and_the_readers(
    engine, settings, desk, smtp, tmp_path
):
    article_id = article_of(engine, settings, tmp_path)
    readers = import_readers(engine, tmp_path, 3)
    send_page = f"/desk/articles/{article_id}/send"
    with closing(desk.signed_in()) as client:
        fields = {"subject": "Our pick: the talks", "preheader": "What was agreed, in short"}
        edited = post(client, f"{send_page}/subject", send_page, **fields)
        assert edited.status_code == 303 and edited.headers["location"] == send_page
        page = client.get(send_page)
        assert 'value="Our pick: the talks"' in page.text
        tested = post(client, f"{send_page}/test", send_page, addresses=ANN)
        assert tested.status_code == 303  # a reload of the page landed on sends nothing
        assert "Sent a test to 1 address." in client.get(tested.headers["location"]).text
        (copy,) = smtp.wait_for(ANN)
        assert copy["Subject"] == "[Test] Our pick: the talks"
        sent = post(client, f"{send_page}/now", f"{send_page}/confirm")
    issue = find_issue(engine, f"article:{article_id}")
    assert sent.status_code == 303 and sent.headers["location"] == f"/desk/issues/{issue.id}"
    assert wait_for(lambda: find_issue_by_id(engine, issue.id).status == IssueStatus.SENT)
    for reader in readers:
        (message,) = smtp.to(reader)
        assert message["Subject"] == "Our pick: the talks"
        html = message.get_body(("html",)).get_content()
        assert "What was agreed, in short" in html
    assert audit(engine) == [
        ("issue-edited", f"issue {issue.id}", ""),
        ("test-sent", f"article {article_id}", "1 address"),
        ("issue-sent", f"issue {issue.id}", ""),
    ]


def test_a_test_copy_goes_to_each_address_typed_and_a_bad_one_stops_them_all(
    engine, settings, desk, smtp, tmp_path
):
    article_id = article_of(engine, settings, tmp_path)
    send_page = f"/desk/articles/{article_id}/send"
    with closing(desk.signed_in()) as client:
        refused = post(client, f"{send_page}/test", send_page,
                       addresses="pat@newsroom.example, not-an-address\nkim@")  # fmt: skip
        assert refused.status_code == 400
        assert "Nothing was sent." in refused.text
        assert "&#39;not-an-address&#39; is not a valid email address" in refused.text
        assert "&#39;kim@&#39; is not a valid email address" in refused.text
        assert not smtp.received and audit(engine) == []
        too_many = ",".join(f"e{i}@newsroom.example" for i in range(11))
        refused = post(client, f"{send_page}/test", send_page, addresses=too_many)
        assert "a test goes to at most 10" in refused.text
        tested = post(client, f"{send_page}/test", send_page,
                      addresses="pat@newsroom.example,\nkim@newsroom.example")  # fmt: skip
        landed = client.get(tested.headers["location"])
    assert "Sent a test to 2 addresses." in landed.text
    assert smtp.wait_for("pat@newsroom.example") and smtp.wait_for("kim@newsroom.example")
    assert len(smtp.received) == 2
    assert audit(engine) == [("test-sent", f"article {article_id}", "2 addresses")]


def test_send_now_goes_on_in_the_service_and_its_progress_reaches_done(
    engine, settings, desk, smtp, tmp_path
):
    article_id = article_of(engine, settings, tmp_path)
    readers = import_readers(engine, tmp_path, 20)
    send_page = f"/desk/articles/{article_id}/send"
    with closing(desk.signed_in()) as client:
        confirm = client.get(f"{send_page}/confirm")
        assert "Send to 20 readers</button>" in confirm.text
        sent = client.post(f"{send_page}/now", data={"csrf": csrf_of(confirm)})
        assert sent.status_code == 303
    # the client is gone: the desk's sender goes on by itself
    issue = find_issue(engine, f"article:{article_id}")
    assert wait_for(lambda: find_issue_by_id(engine, issue.id).status == IssueStatus.SENT)
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(readers)
    with closing(desk.signed_in()) as client:
        done = client.get(f"/desk/issues/{issue.id}/progress.json").json()
        page = client.get(f"/desk/issues/{issue.id}")
        again = client.get(send_page)
    assert (done["sent"], done["total"], done["waiting"], done["done"]) == (20, 20, 0, True)
    assert done["status"] == "sent"
    assert "Done: every message is settled." in page.text
    assert '<script src="/desk/static/progress.js" defer></script>' in page.text
    assert "This article was sent" in again.text and f"/desk/issues/{issue.id}" in again.text
    assert "Send now" not in again.text and "Schedule</button>" not in again.text


def test_progress_counts_what_is_still_to_go(engine, settings, desk, tmp_path):
    article_id = article_of(engine, settings, tmp_path)
    import_readers(engine, tmp_path, 4)
    from mailer import desk_sending

    issue = find_issue(engine, f"article:{article_id}")
    from mailer.outbox import Outbox

    Outbox(engine, issue, settings.delivery).enqueue()
    going = desk_sending.progress(engine, issue.id, utcnow())
    assert (going.total, going.waiting, going.sent, going.done) == (4, 4, 0, False)
    with closing(desk.signed_in()) as client:
        page = client.get(f"/desk/issues/{issue.id}")
    assert 'data-done="false"' in page.text and "Sending…" in page.text
    assert '<progress max="4" value="0"' in page.text


def test_a_schedule_is_read_in_the_publications_zone_and_can_be_cancelled(
    engine, settings, desk, tmp_path
):
    article_id = article_of(engine, settings, tmp_path)
    send_page = f"/desk/articles/{article_id}/send"
    zone = ZoneInfo(settings.publication.timezone)
    tomorrow = (datetime.now(zone) + timedelta(days=1)).replace(hour=7, minute=30)
    typed = tomorrow.strftime("%Y-%m-%dT%H:%M")
    with closing(desk.signed_in()) as client:
        page = client.get(send_page)
        assert f"Or send at ({settings.publication.timezone} time)" in page.text
        past = (datetime.now(zone) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        refused = post(client, f"{send_page}/schedule", send_page, when=past)
        assert refused.status_code == 400 and "has passed; choose a later time" in refused.text
        assert find_issue(engine, f"article:{article_id}").status == IssueStatus.DRAFT
        scheduled = post(client, f"{send_page}/schedule", send_page, when=typed)
        assert scheduled.status_code == 303
        issue = find_issue(engine, f"article:{article_id}")
        assert issue.status == IssueStatus.SCHEDULED
        assert issue.scheduled_at == tomorrow.replace(second=0, microsecond=0).astimezone(UTC)
        page = client.get(send_page)
        assert f"Scheduled for {tomorrow:%a %d %b %Y} 07:30" in page.text
        assert "Cancel</button>" in page.text
        report = client.get(f"/desk/issues/{issue.id}")
        assert f"Scheduled for {tomorrow:%a %d %b %Y} 07:30" in report.text
        link = f'href="{send_page}">The article\'s send page</a> (preview, cancel)'
        assert link in report.text
        cancelled = post(client, f"{send_page}/cancel", send_page)
        assert cancelled.status_code == 303
    assert find_issue(engine, f"article:{article_id}").status == IssueStatus.CANCELLED
    assert audit(engine) == [
        ("issue-scheduled", f"issue {issue.id}", issue.scheduled_at.isoformat()),
        ("issue-cancelled", f"issue {issue.id}", ""),
    ]


def test_a_form_without_the_sessions_token_changes_nothing(engine, settings, desk, tmp_path):
    article_id = article_of(engine, settings, tmp_path)
    with closing(desk.signed_in()) as client:
        for action in ("subject", "test", "now", "schedule", "cancel"):
            answer = client.post(
                f"/desk/articles/{article_id}/send/{action}",
                data={"csrf": "guessed", "subject": "x", "when": "2099-01-01T07:00"},
            )
            assert answer.status_code == 403, action
    assert find_issue(engine, f"article:{article_id}").status == IssueStatus.DRAFT
    assert audit(engine) == []


def test_the_issue_page_lists_its_readers_who_bounced_or_left(
    engine, settings, desk, smtp, tmp_path
):
    readers = import_readers(engine, tmp_path, 3)
    article_id = article_of(engine, settings, tmp_path)
    from mailer import runs
    from mailer.articles import find_article

    issue = runs.article_send(engine, settings, find_article(engine, article_id)).issue
    runs.send_article(engine, settings, issue)
    with engine.begin() as connection:
        for address, status in zip(readers[:2], ("bounced", "unsubscribed"), strict=True):
            connection.execute(
                SUBSCRIBERS.update().where(SUBSCRIBERS.c.email == address).values(status=status)
            )
    with closing(desk.signed_in()) as client:
        page = client.get(f"/desk/issues/{issue.id}")
    assert "Readers who bounced or left" in page.text
    assert "1 bounced and 1 unsubscribed since" in page.text
    assert f"{readers[0]}</a> (bounced)" in page.text
    assert f"{readers[1]}</a> (unsubscribed)" in page.text
    assert readers[2] not in page.text


def test_an_edited_subject_stays_through_every_rendering_and_an_empty_one_goes_back(
    engine, settings, tmp_path
):
    """The issue keeps the editor's subject and preheader when rendered again (a draft
    asked for again, a held issue put right); an empty field is the article's own."""
    from mailer import desk_sending
    from mailer.articles import find_article
    from mailer.issues import article_issue, refresh_held
    from mailer.models import ISSUES

    article_id = article_of(engine, settings, tmp_path)
    article = find_article(engine, article_id)
    own = article_issue(engine, settings, article)
    issue = desk_sending.edit_subject(engine, settings, article_id, "Read this", "  In short ")
    assert (issue.subject, issue.preheader) == ("Read this", "In short")
    assert "In short" in issue.html and "<title>Read this</title>" in issue.html
    assert article_issue(engine, settings, article).subject == "Read this"
    with engine.begin() as connection:
        connection.execute(ISSUES.update().values(status=IssueStatus.HELD))
    held = refresh_held(engine, settings, find_issue_by_id(engine, issue.id))
    assert (held.subject, held.preheader) == ("Read this", "In short")
    with pytest.raises(desk_sending.DeskSendError, match="has started"):
        desk_sending.edit_subject(engine, settings, article_id, "Too late", "")
    with engine.begin() as connection:
        connection.execute(ISSUES.update().values(status=IssueStatus.DRAFT))
    back = desk_sending.edit_subject(engine, settings, article_id, "", own.preheader)
    assert (back.subject, back.preheader) == (own.subject, own.preheader)
    assert (back.edited_subject, back.edited_preheader) == (None, None)
    with pytest.raises(desk_sending.DeskSendError, match="keep it to 200"):
        desk_sending.edit_subject(engine, settings, article_id, "x" * 201, "")


def test_with_no_reader_on_every_article_send_now_offers_nothing(engine, settings, desk, tmp_path):
    article_id = article_of(engine, settings, tmp_path)
    with closing(desk.signed_in()) as client:
        confirm = client.get(f"/desk/articles/{article_id}/send/confirm")
    assert "No active reader gets every article, so nothing would go." in confirm.text
    assert "Send to 0 readers" not in confirm.text
