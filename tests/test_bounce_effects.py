"""What a bounce that came back by mail does to a reader: a hard bounce bounces them at
once, a soft one is a point a day on their score (bounced at [bounces] soft_limit, the
score lapsing after score_days), a complaint or a mail to unsubscribe unsubscribes them,
and a refusal of the message's content or of our sender counts against nobody. Each
counted event is kept once, however often its message is read, and shown (`mailer
subscribers show`, the desk), where a bounce is undone (`reactivate`). Bounces built as
the reader (bounces.parse) hands them over; SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
import shutil
from contextlib import closing
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from deskclient import PASSWORD, csrf_of
from mailer import editors
from mailer.bounce_processing import BounceReport, LineKind, apply_bounce, check_paths, process
from mailer.bounces.findings import Action, Bounce, Failure
from mailer.errors import MailerError, SubscriberError
from mailer.issues import as_rendered
from mailer.messages import MessageBuilder
from mailer.models import (
    AUDIT_EVENTS,
    BounceEvent,
    Delivery,
    DeliveryStatus,
    EditorRole,
    Subscriber,
)
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, reactivate, remove_subscriber
from mailer.testing import TEST_SECRET_KEY, mailer_on, new_issue
from mailer.tokens import VERP_DELIVERY, VERP_UNSUBSCRIBE, verp_address

ANA = "ana@example.org"
DAY = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
UNKNOWN = Failure(Action.FAILED, ANA, "5.1.1", "smtp; 550 5.1.1 <ana@example.org>: User unknown")
FULL = Failure(Action.FAILED, ANA, "5.2.2", "smtp; 552 5.2.2 Mailbox full")


_KEYS = count()


def bounce(*failures: Failure, key: str = "", **more: object) -> Bounce:
    """A message about `failures`; its key (the message's hash) names it: a new one
    unless `key` says it is a message read before."""
    return Bounce(key or f"message-{next(_KEYS)}", failures, **more)  # type: ignore[arg-type]


def apply(engine: Engine, settings: Settings, message: Bounce, now: datetime = DAY) -> BounceReport:
    report = BounceReport()
    apply_bounce(engine, settings, message, "1.eml", "bounces/1.eml", now, report)
    return report


def reader(engine: Engine, address: str = ANA) -> Subscriber:
    with Session(engine) as session:
        found = session.exec(select(Subscriber).where(Subscriber.email == address)).one()
        return found


def events(engine: Engine) -> list[BounceEvent]:
    with Session(engine) as session:
        return list(session.exec(select(BounceEvent).order_by(col(BounceEvent.id))).all())


@pytest.fixture
def ana(engine: Engine) -> Subscriber:
    return add_subscriber(engine, ANA, "Ana", confirmed=True)


def test_a_hard_bounce_bounces_the_reader_at_once_and_is_kept(engine, settings, ana):
    report = apply(engine, settings, bounce(UNKNOWN, key="k1", date=DAY - timedelta(hours=2)))
    assert reader(engine).status == "bounced"
    [line] = report.lines
    assert (line.source, line.recipient, line.kind) == ("1.eml", ANA, LineKind.HARD)
    assert line.reason == "smtp; 550 5.1.1 <ana@example.org>: User unknown: bounced"
    assert (report.bounced, report.unsubscribed, report.counts["hard"]) == (1, 0, 1)
    [event] = events(engine)
    assert (event.subscriber_id, event.kind, event.status, event.message_key) == (
        ana.id, "hard", "5.1.1", "k1"
    )  # fmt: skip
    assert event.source == "bounces/1.eml" and "User unknown" in event.reason
    assert event.occurred_at == DAY - timedelta(hours=2)


def test_one_soft_bounce_leaves_the_reader_active_with_a_point(engine, settings, ana):
    report = apply(engine, settings, bounce(FULL))
    found = reader(engine)
    assert (found.status, found.bounce_score, found.bounce_score_at) == ("active", 1, DAY)
    assert report.lines[0].kind == LineKind.SOFT
    assert report.lines[0].reason.endswith("Mailbox full: bounce score 1 of 5")
    assert [e.kind for e in events(engine)] == ["soft"]


def test_two_soft_bounces_the_same_day_are_one_point(engine, settings, ana):
    apply(engine, settings, bounce(FULL, key="a"))
    report = apply(engine, settings, bounce(FULL, key="b"), DAY + timedelta(hours=5))
    assert reader(engine).bounce_score == 1
    assert "a point a day at most" in report.lines[0].reason
    assert len(events(engine)) == 2  # both kept, one counted


def test_soft_bounces_on_five_days_bounce_the_reader(engine, settings, ana):
    for day in range(4):
        apply(engine, settings, bounce(FULL, key=f"d{day}"), DAY + timedelta(days=day))
    assert (reader(engine).status, reader(engine).bounce_score) == ("active", 4)
    report = apply(engine, settings, bounce(FULL, key="d4"), DAY + timedelta(days=4))
    assert (reader(engine).status, reader(engine).bounce_score) == ("bounced", 5)
    assert report.lines[0].reason.endswith("bounce score 5 of 5: bounced")
    assert report.bounced == 1


def test_the_score_starts_again_after_score_days_without_a_point(engine, settings, ana):
    for day in range(3):
        apply(engine, settings, bounce(FULL, key=f"d{day}"), DAY + timedelta(days=day))
    later = DAY + timedelta(days=2 + settings.bounces.score_days)
    apply(engine, settings, bounce(FULL, key="later"), later)
    found = reader(engine)
    assert (found.status, found.bounce_score, found.bounce_score_at) == ("active", 1, later)


def test_the_score_counts_by_the_reports_own_date(engine, settings, ana):
    """A folder of bounces read at once counts each on the day it was written."""
    for day in range(5):
        apply(engine, settings, bounce(FULL, key=f"d{day}", date=DAY + timedelta(days=day)),
              DAY + timedelta(days=9))  # fmt: skip
    assert reader(engine).status == "bounced"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_complaint_unsubscribes_the_reader_and_names_the_issue(engine, settings, ana, tmp_path):
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    complaint = Failure(Action.COMPLAINT, ANA)
    # the Message-ID of our message to Ana, which it quotes
    ours = MessageBuilder(settings, as_rendered(issue), issue_id=issue.id).message_id(ana.id)
    report = apply(engine, settings, bounce(complaint, original_message_id=ours))
    found = reader(engine)
    assert found.status == "unsubscribed" and found.unsubscribed_at is not None
    assert (report.unsubscribed, report.lines[0].kind) == (1, LineKind.COMPLAINT)
    assert report.lines[0].reason == "marked as spam: unsubscribed"
    [event] = events(engine)
    assert (event.kind, event.issue_id, event.delivery_id) == ("complaint", issue.id, delivery)


def sent(engine: Engine, issue_id: int | None, subscriber_id: int | None) -> int:
    with Session(engine) as session:
        row = Delivery(issue_id=issue_id, subscriber_id=subscriber_id, status=DeliveryStatus.SENT)
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def test_the_verp_delivery_names_the_reader_whatever_address_the_report_names(
    engine, settings, ana, tmp_path
):
    """A bounce of a forwarded address, or one that names none, is still Ana's."""
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    forwarded = Failure(Action.FAILED, "ana.old@elsewhere.example", "5.1.1", "User unknown")
    report = apply(engine, settings, bounce(forwarded, verp=(VERP_DELIVERY, delivery)))
    assert reader(engine).status == "bounced"
    [event] = events(engine)
    assert (event.issue_id, event.delivery_id) == (issue.id, delivery)
    assert report.lines[0].recipient == "ana.old@elsewhere.example"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_mail_to_the_unsubscribe_address_unsubscribes_its_reader(engine, settings, ana, tmp_path):
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    request = Failure(Action.UNSUBSCRIBE, "someone@forwarder.example")
    report = apply(engine, settings, bounce(request, verp=(VERP_UNSUBSCRIBE, delivery)))
    assert reader(engine).status == "unsubscribed"
    assert (report.lines[0].kind, report.unsubscribed) == (LineKind.UNSUBSCRIBE, 1)
    assert [e.kind for e in events(engine)] == ["unsubscribe"]


def test_a_bounce_about_an_address_not_on_the_list_changes_nothing_and_says_so(
    engine, settings, ana
):
    stranger = Failure(Action.FAILED, "nobody@example.org", "5.1.1", "User unknown")
    report = apply(engine, settings, bounce(stranger))
    assert report.lines[0].reason == (
        "5.1.1 User unknown: nobody@example.org is not a subscriber, nothing changed"
    )
    assert (reader(engine).status, events(engine), report.bounced) == ("active", [], 0)


def test_a_message_read_twice_counts_once(engine, settings, ana):
    """The same file processed again the next day, or fetched twice, adds no point."""
    apply(engine, settings, bounce(FULL, key="same"))
    again = apply(engine, settings, bounce(FULL, key="same"), DAY + timedelta(days=1))
    assert reader(engine).bounce_score == 1
    assert again.lines[0].reason.endswith("counted already")
    assert len(events(engine)) == 1


@pytest.mark.parametrize(
    ("status", "words", "said"),
    [
        ("5.6.0", "554 5.6.0 Message rejected: malformed MIME", "the message's content"),
        ("5.1.8", "553 5.1.8 Sender address rejected", "our sender"),
    ],
)
def test_a_refusal_of_the_content_or_of_our_sender_counts_against_nobody(
    engine, settings, ana, status, words, said
):
    report = apply(engine, settings, bounce(Failure(Action.FAILED, ANA, status, words)))
    assert (reader(engine).status, reader(engine).bounce_score, events(engine)) == (
        "active", 0, []
    )  # fmt: skip
    [line] = report.lines
    assert line.kind == LineKind.IGNORED
    assert line.reason == f"{words}: {said} was refused, which counts against nobody"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reader_who_left_stays_so_and_the_event_is_still_kept(engine, settings):
    add_subscriber(engine, "left@example.org", confirmed=False)
    with Session(engine) as session:
        found = session.exec(select(Subscriber)).one()
        found.status = "unsubscribed"
        session.add(found)
        session.commit()
    unknown = Failure(Action.FAILED, "left@example.org", "5.1.1", "User unknown")
    report = apply(engine, settings, bounce(unknown))
    assert reader(engine, "left@example.org").status == "unsubscribed"
    assert (
        report.lines[0].reason
        == "5.1.1 User unknown: already unsubscribed: recorded, nothing changed"
    )
    assert [e.kind for e in events(engine)] == ["hard"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_auto_reply_or_a_message_naming_nobody_changes_nothing(engine, settings, ana):
    report = apply(engine, settings, bounce(ignored="auto-reply (Auto-Submitted: auto-replied)"))
    report2 = apply(engine, settings, bounce(key="empty"))
    assert [line.kind for line in report.lines + report2.lines] == ["ignored", "ignored"]
    assert report.lines[0].reason.startswith("auto-reply")
    assert (reader(engine).status, events(engine)) == ("active", [])


# -- what an admin sees and undoes: `subscribers show`, `reactivate`, the desk ----------


def bounced_ana(engine: Engine, settings: Settings, tmp_path) -> tuple[int, int]:
    """Ana with a soft bounce, then a hard one of an issue: (her id, the issue's)."""
    ana = add_subscriber(engine, ANA, "Ana", confirmed=True)
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    apply(engine, settings, bounce(FULL, date=DAY - timedelta(days=1)))
    apply(engine, settings, bounce(UNKNOWN, verp=(VERP_DELIVERY, delivery), date=DAY))
    assert ana.id is not None
    return ana.id, issue.id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_subscribers_show_tells_the_state_the_score_and_the_history(engine, settings, tmp_path):
    _, issue = bounced_ana(engine, settings, tmp_path)
    shown = mailer_on(settings, tmp_path, "subscribers", "show", "Ana@Example.org")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "Status:       bounced" in lines and "Name:         Ana" in lines
    assert "Bounce score: 1 of 5 (last point 2026-11-01 10:30 CET)" in lines
    assert "Bounces and complaints, latest first (2):" in lines
    hard, soft = lines[-2:]
    assert hard.startswith("  2026-11-02 10:30 CET  issue ")
    assert f"issue {issue}" in hard and "hard" in hard and "5.1.1" in hard
    assert hard.endswith("User unknown")
    assert "no issue" in soft and "soft" in soft and soft.endswith("552 5.2.2 Mailbox full")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reactivate_undoes_a_bounce_and_starts_the_score_again(engine, settings, tmp_path):
    bounced_ana(engine, settings, tmp_path)
    done = mailer_on(settings, tmp_path, "subscribers", "reactivate", ANA)
    assert done.returncode == 0, done.stderr
    assert "Reactivated ana@example.org" in done.stdout
    found = reader(engine)
    assert (found.status, found.bounce_score, found.bounce_score_at) == ("active", 0, None)
    assert len(events(engine)) == 2  # the history stays


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_complaint_about_a_bounced_reader_leaves_them_unsubscribed(engine, settings, ana):
    """So that no reactivation mails somebody who said it is spam; a redacted complaint
    (no address, no return path of ours) names no one."""
    apply(engine, settings, bounce(UNKNOWN))
    report = apply(engine, settings, bounce(Failure(Action.COMPLAINT, ANA)))
    assert reader(engine).status == "unsubscribed" and report.unsubscribed == 1
    redacted = apply(engine, settings, bounce(Failure(Action.COMPLAINT, "")))
    assert redacted.lines[0].reason == "marked as spam: names no one, nothing changed"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reader_who_complained_is_not_reactivated(engine, settings, ana):
    apply(engine, settings, bounce(Failure(Action.COMPLAINT, ANA)))
    with pytest.raises(SubscriberError, match="unsubscribed, not bounced"):
        reactivate(engine, ANA)
    assert reader(engine).status == "unsubscribed"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_desk_shows_the_history_and_an_admin_reactivates_a_bounced_reader(
    engine, settings, desk, tmp_path
):
    ana, issue = bounced_ana(engine, settings, tmp_path)
    editors.add_editor(engine, "bob@newsroom.example", PASSWORD, EditorRole.EDITOR)
    path = f"/desk/subscribers/{ana}"
    with closing(desk.signed_in()) as client:
        page = client.get(path)
        assert page.status_code == 200
        text = page_text(page.text)
        assert "Bounce score 1 of 5" in text
        assert "Bounces and complaints When Issue Kind Status Reason" in text
        assert f"{issue} hard 5.1.1 smtp; 550 5.1.1 <ana@example.org>: User unknown" in text
        assert "soft 5.2.2 smtp; 552 5.2.2 Mailbox full" in text
        assert f'<form method="post" action="{path}/reactivate">' in page.text
        with closing(desk.signed_in("bob@newsroom.example")) as editor:
            refused = editor.post(f"{path}/reactivate", data={"csrf": csrf_of(editor.get("/desk"))})
        assert refused.status_code == 403 and reader(engine).status == "bounced"
        forged = client.post(f"{path}/reactivate", data={"csrf": "forged"})
        assert forged.status_code == 403 and reader(engine).status == "bounced"
        done = client.post(f"{path}/reactivate", data={"csrf": csrf_of(page)})
        assert (done.status_code, done.headers["location"]) == (303, f"{path}?done=reactivated")
        after = client.get(done.headers["location"])
        again = client.post(f"{path}/reactivate", data={"csrf": csrf_of(page)})
    assert "Reactivated: they get the next issue" in page_text(after.text)
    assert "/reactivate" not in after.text  # active now: no button
    assert again.status_code == 409 and "active, not bounced" in page_text(again.text)
    found = reader(engine)
    assert (found.status, found.bounce_score) == ("active", 0)
    with engine.connect() as connection:
        log = connection.execute(select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.subject)).all()
    assert [tuple(row) for row in log if row[0] == "subscriber-reactivated"] == [
        ("subscriber-reactivated", f"subscriber {ana}")
    ]


def page_text(page: str) -> str:
    """A page's text as a person reads it: tags out, entities read, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


# -- `mailer bounces process` -------------------------------------------------------------

CORPUS = Path(__file__).parent / "data" / "bounces"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bounces_process_reads_a_folder_prints_a_line_each_and_a_summary(
    engine, settings, tmp_path
):
    folder = tmp_path / "came-back"
    folder.mkdir()
    for name in ("postfix_user_unknown.eml", "gmail_over_quota.eml", "vacation_reply.eml"):
        shutil.copy(CORPUS / name, folder / name)
    readers = ("nobody.here@example.org", "full.inbox@example.net", "holiday.reader@example.org")
    for address in readers:
        add_subscriber(engine, address, confirmed=True)
    done = mailer_on(settings, tmp_path, "bounces", "process", str(folder))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        f"{folder}/gmail_over_quota.eml  full.inbox@example.net  soft  552 5.2.2 The email"
    )
    assert lines[0].endswith(": bounce score 1 of 5")
    assert lines[1] == (
        f"{folder}/postfix_user_unknown.eml  nobody.here@example.org  hard  550 5.1.1 "
        "<nobody.here@example.org>: Recipient address rejected: User unknown in virtual "
        "mailbox table: bounced"
    )
    assert lines[2] == f"{folder}/vacation_reply.eml  -  ignored  auto-reply"
    assert lines[3] == "3 messages: 1 hard, 1 soft, 1 ignored; 1 reader bounced, 0 unsubscribed."
    assert [reader(engine, a).status for a in readers] == ["bounced", "active", "active"]
    assert {e.source for e in events(engine)} == {
        f"{folder}/gmail_over_quota.eml", f"{folder}/postfix_user_unknown.eml"
    }  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_path_that_cannot_be_read_stops_the_run_before_anything_is_applied(
    engine, settings, tmp_path
):
    add_subscriber(engine, "nobody.here@example.org", confirmed=True)
    paths = [CORPUS / "postfix_user_unknown.eml", tmp_path / "no-such-folder"]
    with pytest.raises(MailerError, match="no-such-folder: no such file or folder"):
        check_paths(paths)
    assert reader(engine, "nobody.here@example.org").status == "active"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bounce_to_its_verp_address_is_its_deliverys_reader_end_to_end(
    engine, settings, ana, tmp_path
):
    """A report naming an address the list does not have, sent to the VERP return path
    of Ana's delivery (signed with this installation's key), bounces Ana."""
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    base = "bounces@dawatmedia.example"
    ours = verp_address(TEST_SECRET_KEY, base, VERP_DELIVERY, delivery)
    data = (CORPUS / "dsn_to_verp.eml").read_bytes()
    data = re.sub(rb"bounces\+d[a-z0-9]+@dawatmedia\.example", ours.encode(), data)
    report = process(
        engine, settings.replace(bounces={"address": base}), [("x.eml", data)], "imap:INBOX", DAY
    )
    assert [(line.recipient, line.kind) for line in report.lines] == [
        ("moved.away@example.net", LineKind.HARD)
    ]
    assert reader(engine).status == "bounced"
    [event] = events(engine)
    assert (event.delivery_id, event.issue_id, event.source) == (
        delivery,
        issue.id,
        "imap:INBOX x.eml",
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bounce_of_an_erased_readers_delivery_keeps_nothing(engine, settings, ana, tmp_path):
    issue = new_issue(engine, settings, tmp_path)
    delivery = sent(engine, issue.id, ana.id)
    remove_subscriber(engine, ANA, purge=True, purge_key="k" * 40)
    report = apply(engine, settings, bounce(UNKNOWN, verp=(VERP_DELIVERY, delivery)))
    assert report.lines[0].reason.endswith(": erased, nothing kept")
    assert events(engine) == []


def test_a_report_with_a_huge_message_id_or_a_nul_in_its_words_is_applied(engine, settings, ana):
    """Anyone may mail the bounce address: a report quoting a Message-ID whose number
    no integer column holds, or with a NUL in its words (PostgreSQL stores none), made
    the database refuse the message, and a mailbox read oldest first never got past it."""
    huge = "<99999999999999999999999.a@example.org>"
    nul = Failure(Action.FAILED, ANA, "5.1.1", "smtp; 550 5.1.1 User\x00 unknown")
    report = apply(engine, settings, bounce(nul, original_message_id=huge))
    assert [line.kind for line in report.lines] == [LineKind.HARD]
    assert reader(engine).status == "bounced"
    [event] = events(engine)
    assert event.reason == "smtp; 550 5.1.1 User unknown"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_late_bounce_of_an_erased_readers_mail_touches_nobody_else(engine, settings):
    """A's confirmation went out, then A was erased; B's mail came next. A's late
    bounce names A's mail by its number: on SQLite that number was B's once A's row was
    deleted, and B was bounced."""
    from sqlalchemy import update

    from mailer.models import TRANSACTIONAL_MAILS
    from mailer.subscribers import confirm_subscription, request_subscription
    from mailer.tokens import VERP_MAIL
    from mailer.transactional import queue_confirmation

    a = request_subscription(engine, "a@example.org", None, "every")
    assert a.id is not None and queue_confirmation(engine, a.id)
    with engine.begin() as connection:
        connection.execute(update(TRANSACTIONAL_MAILS).values(status="sent"))
        sent = connection.execute(select(TRANSACTIONAL_MAILS.c.id)).scalar_one()
    remove_subscriber(engine, "a@example.org", purge=True, purge_key=settings.purge_key)
    b = request_subscription(engine, "b@example.org", None, "every")
    assert b.id is not None
    confirm_subscription(engine, b.id, "127.0.0.1")
    assert queue_confirmation(engine, b.id)  # any later mail to B
    late = Failure(Action.FAILED, "a@example.org", "5.1.1", "smtp; 550 5.1.1 User unknown")
    report = apply(engine, settings, bounce(late, verp=(VERP_MAIL, sent)))
    assert reader(engine, "b@example.org").status == "active"
    assert report.bounced == 0


def test_a_reader_back_after_bouncing_starts_with_a_clean_slate(engine, settings, ana, tmp_path):
    """Bounced by soft bounces on five days, Ana subscribes again and confirms (her
    mailbox works): the next soft bounce is one point, and an old failed delivery no
    longer counts towards the failures in a row that bounce a reader."""
    from mailer.subscribers import confirm_subscription, request_subscription

    for day in range(5):
        apply(engine, settings, bounce(FULL), DAY + timedelta(days=day))
    assert reader(engine).status == "bounced"
    issue = new_issue(engine, settings, tmp_path)
    with Session(engine) as session:
        session.add(
            Delivery(issue_id=issue.id, subscriber_id=ana.id, status="failed", blames_reader=True)
        )
        session.commit()
    again = request_subscription(engine, ANA, None, "every")
    assert again is not None and again.id is not None
    confirm_subscription(engine, again.id, "127.0.0.1")
    apply(engine, settings, bounce(FULL), DAY + timedelta(days=6))
    found = reader(engine)
    assert (found.status, found.bounce_score) == ("active", 1)
    with Session(engine) as session:
        assert not any(d.blames_reader for d in session.exec(select(Delivery)).all())


def test_with_a_return_path_a_report_anybody_could_write_counts_against_nobody(
    engine, settings, ana, tmp_path
):
    """With [bounces] address set every message goes out with a signed return path. A
    report to the bounce address that carries neither it nor our Message-ID for the
    reader it names could come from anybody who knows the address and a reader's: it
    used to bounce (or, as a complaint, unsubscribe) that reader."""
    verp = settings.replace(bounces={"address": "bounces@example.org"})
    forged = apply(engine, verp, bounce(UNKNOWN, original_message_id="<1.forged@example.org>"))
    assert reader(engine).status == "active" and events(engine) == []
    assert "anybody could write" in forged.lines[0].reason
    complaint = apply(engine, verp, bounce(Failure(Action.COMPLAINT, ANA)))
    assert reader(engine).status == "active" and complaint.unsubscribed == 0

    issue = new_issue(engine, settings, tmp_path)  # a report quoting our copy to Ana
    sent(engine, issue.id, ana.id)
    builder = MessageBuilder(verp, as_rendered(issue), issue_id=issue.id)
    apply(engine, verp, bounce(UNKNOWN, original_message_id=builder.message_id(ana.id)))
    assert reader(engine).status == "bounced"
