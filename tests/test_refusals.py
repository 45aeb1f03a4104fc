"""What a relay's refusal counts against: a refusal of the message itself (spam, policy,
size) stops the send, holds the issue and counts against no reader; only a refusal about
the recipient (no such user, mailbox disabled) counts against the reader. Real SMTP
servers on 127.0.0.1 that refuse as told; SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer.articles import ingest_file
from mailer.delivery import IssueHeld, deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue, schedule_issue
from mailer.models import Delivery, Issue, Subscriber, utcnow
from mailer.outbox import Outbox
from mailer.replies import RULES, Stage, Verdict, classify, ran_out, report_verdict
from mailer.runs import resume_unfinished, start_due_issues
from mailer.scheduler import Service
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import (
    RecordingHandler,
    import_readers,
    mailer_on,
    new_issue,
    smtp_server,
)

SPAM = "554 5.7.1 Message rejected as spam"
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown"


# -- the table ----------------------------------------------------------------------------

CASES = [
    (Stage.DATA, SPAM, Verdict.CONTENT),
    (Stage.DATA, "554 5.7.0 Message rejected: content policy", Verdict.CONTENT),
    (Stage.DATA, "550 5.7.1 Message rejected due to DMARC policy", Verdict.CONTENT),
    (Stage.DATA, "554 5.6.0 Message rejected: malformed MIME", Verdict.CONTENT),
    (Stage.DATA, "552 5.3.4 Message size exceeds fixed limit", Verdict.CONTENT),
    (Stage.DATA, "552 Message size exceeds maximum permitted", Verdict.CONTENT),
    (Stage.DATA, "552 Requested mail action aborted: exceeded storage allocation", Verdict.CONTENT),
    (Stage.DATA, "554 5.2.3 Message length exceeds administrative limit", Verdict.CONTENT),
    (Stage.DATA, "554 Transaction failed", Verdict.CONTENT),
    (Stage.DATA, "550 5.1.1 <a@example.org>: User unknown", Verdict.BOUNCE),
    (Stage.DATA, "552 5.2.2 Mailbox full", Verdict.READER),
    (Stage.DATA, "250 2.0.0 Ok: queued as 4F2", Verdict.SENT),
    (Stage.DATA, "451 4.3.0 Temporary failure", Verdict.DEFERRED),
    (
        Stage.RCPT,
        "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown",
        Verdict.BOUNCE,
    ),
    (Stage.RCPT, "550 5.1.10 RESOLVER.ADR.RecipientNotFound", Verdict.BOUNCE),
    (Stage.RCPT, "550 User unknown", Verdict.BOUNCE),
    (Stage.RCPT, "550 No such user here", Verdict.BOUNCE),
    (Stage.RCPT, "550 Requested action not taken: mailbox unavailable", Verdict.BOUNCE),
    (Stage.RCPT, "550 5.2.1 Mailbox disabled, not accepting messages", Verdict.READER),
    (Stage.RCPT, "552 5.2.2 Mailbox full", Verdict.READER),
    (Stage.RCPT, "550 Recipient address rejected: Access denied", Verdict.REFUSED),
    (Stage.RCPT, "554 Message rejected as spam", Verdict.REFUSED),
    (Stage.RCPT, "550 Requested action not taken", Verdict.READER),
    (
        Stage.RCPT,
        "550 5.7.1 <a@example.org>: Recipient address rejected: Access denied",
        Verdict.REFUSED,
    ),
    (Stage.RCPT, "554 5.7.1 <a@example.org>: Relay access denied", Verdict.STOP),
    (Stage.RCPT, "554 Relay access denied", Verdict.STOP),
    (
        Stage.RCPT,
        "553 5.1.8 <n@example.org>: Sender address rejected: Domain not found",
        Verdict.STOP,
    ),
    (
        Stage.RCPT,
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        Verdict.STOP,
    ),
    (Stage.RCPT, "530 5.7.0 Authentication required", Verdict.STOP),
    (Stage.RCPT, "421 4.7.0 Try again later, closing connection", Verdict.DEFERRED),
    (Stage.RCPT, "450 4.2.1 Mailbox busy", Verdict.DEFERRED),
    (Stage.RCPT, "451 4.7.1 Greylisted, try again later", Verdict.DEFERRED),
    (Stage.RCPT, "251 User not local; will forward", Verdict.SENT),
    (Stage.MAIL, "530 5.7.0 Authentication required", Verdict.STOP),
    (Stage.MAIL, "550 5.1.8 Sender address rejected", Verdict.STOP),
    (Stage.MAIL, "451 4.7.1 Sender rate limited, try later", Verdict.DEFERRED),
    (Stage.GREETING, "554 No SMTP service here", Verdict.STOP),
    (Stage.GREETING, "421 4.7.0 Too many concurrent SMTP connections", Verdict.DEFERRED),
]


@pytest.mark.parametrize(("stage", "reply", "verdict"), CASES, ids=[c[1][:40] for c in CASES])
def test_the_table_says_what_a_reply_means(stage, reply, verdict):
    assert classify(stage, int(reply[:3]), reply) == verdict


# what a delivery report (a bounce mail) says of one recipient: (action, status, words)
REPORTS = [
    ("failed", "2.0.0", "smtp; 250 2.0.0 Ok", Verdict.SENT),
    ("failed", "5.1.8", "smtp; 553 5.1.8 Sender address rejected", Verdict.STOP),
    ("delayed", "4.1.7", "", Verdict.STOP),
    ("failed", "5.1.1", "smtp; 550 5.1.1 <a@example.org>: User unknown", Verdict.BOUNCE),
    ("failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", Verdict.BOUNCE),
    ("failed", "5.2.1", "550 5.2.1 Mailbox disabled", Verdict.BOUNCE),
    ("failed", "5.4.4", "Host or domain name not found", Verdict.BOUNCE),
    ("failed", "5.6.0", "554 5.6.0 Message rejected: malformed MIME", Verdict.CONTENT),
    ("failed", "5.2.2", "552 5.2.2 Mailbox full", Verdict.SOFT),
    ("failed", "5.2.3", "552 5.2.3 Message too large", Verdict.SOFT),
    ("failed", "5.7.1", "554 5.7.1 Message rejected as spam", Verdict.SOFT),
    ("delayed", "4.4.7", "Delivery time expired: no such user here", Verdict.SOFT),
    ("delayed", "", "", Verdict.SOFT),
    ("failed", "", "550 sorry, no mailbox here by that name: user unknown", Verdict.BOUNCE),
    ("failed", "5.0.0", "550 The account that you tried to reach does not exist", Verdict.BOUNCE),
    ("failed", "5.0.0", "smtp; 550 Mailbox is full", Verdict.SOFT),
    ("failed", "", "554 delivery error: message looks like spam", Verdict.SOFT),
    ("failed", "", "552 Message for <a@example.org> would exceed mailbox quota", Verdict.SOFT),
    ("failed", "5.0.0", "smtp; 550 Requested action not taken", Verdict.BOUNCE),
    ("failed", "", "", Verdict.BOUNCE),
    ("failed", "5.3.0", "554 5.3.0 Other mail system problem", Verdict.SOFT),
    ("failed", "5.1.0", "550 5.1.0 Address rejected", Verdict.SOFT),
]


@pytest.mark.parametrize(("action", "status", "words", "verdict"), REPORTS,
                         ids=[f"{r[1]} {r[2][:30]}" for r in REPORTS])  # fmt: skip
def test_the_table_says_what_a_delivery_report_means(action, status, words, verdict):
    assert report_verdict(action, status, words) == verdict


def test_a_report_row_never_decides_an_smtp_reply_nor_the_other_way():
    """The report rows are the report's alone: an SMTP reply of the same words still
    means what it meant (a 5.7.1 after DATA is the message's, not a soft bounce)."""
    assert classify(Stage.DATA, 554, "554 5.7.1 Message rejected as spam") == Verdict.CONTENT
    assert {rule.verdict for rule in RULES if Stage.REPORT in rule.stages} == {
        Verdict.SENT, Verdict.STOP, Verdict.BOUNCE, Verdict.CONTENT, Verdict.SOFT
    }  # fmt: skip
    assert all(rule.stages == {Stage.REPORT} for rule in RULES if rule.verdict == Verdict.SOFT)


def test_only_refusals_about_the_recipient_count_against_the_reader():
    blamed = {rule.verdict for rule in RULES if rule.verdict.blames_reader}
    assert blamed == {Verdict.BOUNCE, Verdict.READER, Verdict.SOFT}
    for _stage, reply, verdict in CASES:
        if any(f" 5.{n}." in reply for n in (3, 5, 6, 7)):
            assert not verdict.blames_reader, reply


def test_the_readme_shows_the_table():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for rule in RULES:
        assert f"| {rule.why} |" in readme, f"README lacks the row: {rule.why}"


# -- helpers ----------------------------------------------------------------------------


def rows(engine: Engine, issue: Issue) -> dict[str, Delivery]:
    with Session(engine) as session:
        query = (
            select(Delivery, Subscriber.email).join(Subscriber).where(Delivery.issue_id == issue.id)
        )
        return {address: delivery for delivery, address in session.exec(query).all()}


def stored(engine: Engine, issue: Issue) -> Issue:
    with Session(engine) as session:
        found = session.get(Issue, issue.id)
        assert found is not None
        return found


def subscriber_status(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {s.email: s.status for s in session.exec(select(Subscriber)).all()}


def copies(server: RecordingHandler) -> Counter[str]:
    return Counter(r for message in server.received for r in message.rcpt_tos)


# -- a relay that refuses every message ---------------------------------------------------


def test_a_relay_refusing_every_message_holds_the_issue_and_blames_nobody(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 24)
    issue = new_issue(engine, settings, tmp_path)
    several = settings.replace(smtp={"max_connections": 4})
    smtp.refuse_data = SPAM
    with pytest.raises(IssueHeld, match="Message rejected as spam") as held:
        deliver(engine, several, issue)
    assert f"mailer send --issue {issue.id}" in str(held.value)
    assert held.value.report.sent == 0
    assert (stored(engine, issue).status, stored(engine, issue).held_reason) == ("held", SPAM)
    assert {(r.status, r.attempts, r.blames_reader) for r in rows(engine, issue).values()} == {
        ("queued", 0, None)
    }, "the rest stay queued; no attempt counted against anyone"
    assert set(subscriber_status(engine).values()) == {"active"}
    assert smtp.received == []

    # the scheduler's resume and `mailer send --resume` leave a held issue alone
    assert list(resume_unfinished(engine, settings)) == []
    resumed = mailer_on(settings, tmp_path, "send", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "held" in resumed.stdout and f"mailer send --issue {issue.id}" in resumed.stdout
    assert stored(engine, issue).status == "held" and smtp.received == []
    worker = mailer_on(settings, tmp_path, "send", "--worker", "--article", issue.article_ids, "-y")
    assert worker.returncode == 1 and "is held" in worker.stderr, worker.stderr
    assert stored(engine, issue).status == "held" and smtp.received == []

    listing = mailer_on(settings, tmp_path, "status")
    assert "held" in listing.stdout and SPAM in listing.stdout, listing.stdout
    detail = mailer_on(settings, tmp_path, "status", str(issue.id))
    assert f"({'held'})" in detail.stdout and SPAM in detail.stdout, detail.stdout
    assert f"mailer send --issue {issue.id}" in detail.stdout

    # the relay is put right; an editor resumes it
    smtp.refuse_data = None
    done = mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes")
    assert done.returncode == 0, done.stderr
    assert "Sent 24" in done.stdout, done.stdout
    assert copies(smtp) == Counter(addresses), "each reader exactly once"
    assert stored(engine, issue).status == "sent" and stored(engine, issue).held_reason is None


def test_a_hold_puts_back_the_relays_refusals_before_a_readers_own_too(
    engine, settings, tmp_path, smtp
):
    """The relay refuses every reader in the same words, but one reader's own refusal
    (a full mailbox) comes in between: the row starts again after it, and once it is
    long enough the issue is held. Every reader the relay refused goes back in the
    queue, those before the full mailbox too (they stayed failed, blamed for it)."""
    addresses = import_readers(engine, tmp_path, 20)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse = {address: "550 Requested action not taken" for address in addresses}
    full = addresses[5]
    smtp.refuse[full] = "552 5.2.2 Mailbox full"
    with pytest.raises(IssueHeld):
        deliver(engine, settings.replace(smtp={"max_connections": 1}), issue)
    by_reader = {email: row.status for email, row in rows(engine, issue).items()}
    assert by_reader.pop(full) == "failed"
    assert set(by_reader.values()) == {"queued"}
    assert set(subscriber_status(engine).values()) == {"active"}


def test_a_send_held_in_a_helper_process_reports_what_went(engine, settings, tmp_path, smtp):
    """The relay starts refusing the message after 10: whichever process meets it first
    holds the issue, and the report still counts the 10 the relay took (it said 0)."""
    import_readers(engine, tmp_path, 40)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse_data, smtp.accept_first = SPAM, 10
    with pytest.raises(IssueHeld) as held:
        deliver(engine, settings.replace(smtp={"max_connections": 4}), issue, processes=2)
    assert held.value.report.sent == len(smtp.received) == 10


def test_the_cli_says_what_a_content_refusal_means_and_what_to_do(engine, settings, tmp_path, smtp):
    import_readers(engine, tmp_path, 3)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse_data = SPAM
    article = issue.article_ids
    result = mailer_on(settings, tmp_path, "send", "--article", article, "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refused the message itself, not a reader" in result.stderr
    assert SPAM in result.stderr and f"mailer send --issue {issue.id}" in result.stderr
    assert "Sent 0" in result.stdout
    assert set(subscriber_status(engine).values()) == {"active"}
    smtp.refuse_data = None  # sending the article again resumes it too
    again = mailer_on(settings, tmp_path, "send", "--article", article, "--yes")
    assert again.returncode == 0, again.stderr
    assert "Sent 3" in again.stdout and len(smtp.received) == 3
    assert stored(engine, issue).status == "sent"


def test_three_refused_issues_in_a_row_leave_every_reader_active(engine, settings, tmp_path, smtp):
    """The old fault: each refusal a strike, and after three issues the list was bounced."""
    import_readers(engine, tmp_path, 10)
    smtp.refuse_data = SPAM
    issues = [new_issue(engine, settings, tmp_path, number) for number in range(3)]
    for issue in issues:
        with pytest.raises(IssueHeld):
            deliver(engine, settings, issue)
    assert set(subscriber_status(engine).values()) == {"active"}
    smtp.refuse_data = None
    for issue in issues:
        assert (
            mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes").returncode == 0
        )
        assert stored(engine, issue).status == "sent"
    assert set(copies(smtp).values()) == {3}, "each reader got each issue once"


def test_the_scheduler_holds_a_scheduled_issue_the_relay_refuses_and_leaves_it_held(
    engine, settings, tmp_path, smtp, caplog
):
    import_readers(engine, tmp_path, 5)
    issue = schedule_issue(
        engine, new_issue(engine, settings, tmp_path), utcnow() - timedelta(minutes=1)
    )
    smtp.refuse_data = "552 5.3.4 Message size exceeds fixed limit"
    with caplog.at_level("INFO", logger="mailer"):
        assert list(start_due_issues(engine, settings, utcnow())) == []
    assert stored(engine, issue).status == "held"
    assert f"issue-held issue={issue.id}" in caplog.text and "5.3.4" in caplog.text
    assert list(resume_unfinished(engine, settings)) == [] and smtp.received == []
    assert {r.status for r in rows(engine, issue).values()} == {"queued"}


def test_a_relay_refusing_recipient_after_recipient_for_policy_holds_the_issue(
    engine, settings, tmp_path, smtp
):
    """Refused at RCPT for spam, reader after reader: that is about us, not them. The
    issue is held as for a refused message, and nobody is left failed."""
    addresses = import_readers(engine, tmp_path, 30)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse_all = "554 5.7.1 Message rejected as spam"
    with pytest.raises(IssueHeld, match="recipients in a row") as held:
        deliver(engine, settings.replace(smtp={"max_connections": 4}), issue)
    assert held.value.report.counts.get("failed", 0) == 0
    assert stored(engine, issue).status == "held"
    found = rows(engine, issue).values()
    assert {(r.status, r.attempts, r.smtp_response) for r in found} == {("queued", 0, None)}
    smtp.refuse_all = None
    assert mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes").returncode == 0
    assert copies(smtp) == Counter(addresses)


# -- a relay that refuses one reader --------------------------------------------------------


def test_a_reader_refused_as_unknown_at_rcpt_alone_fails_and_is_bounced(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 12)
    gone = addresses[5]
    smtp.refuse[gone] = UNKNOWN.format(gone)
    issue = new_issue(engine, settings, tmp_path)
    report = deliver(engine, settings.replace(smtp={"max_connections": 3}), issue)
    assert report.counts == {"sent": 11, "failed": 1} and report.bounced == 1
    found = rows(engine, issue)
    assert (found[gone].status, found[gone].blames_reader) == ("failed", True)
    assert {subscriber for subscriber, s in subscriber_status(engine).items() if s != "active"} == {
        gone
    }
    assert copies(smtp) == Counter(a for a in addresses if a != gone)
    assert stored(engine, issue).status == "sent"


def test_a_reader_refused_as_unknown_after_data_alone_fails_and_is_bounced(
    engine, settings, tmp_path, smtp
):
    """Some relays check the recipient only once the message is in: the reply says who."""
    addresses = import_readers(engine, tmp_path, 8)
    gone = addresses[2]
    smtp.refuse_data_to[gone] = UNKNOWN.format(gone)
    issue = new_issue(engine, settings, tmp_path)
    report = deliver(engine, settings, issue)
    assert report.counts == {"sent": 7, "failed": 1} and report.bounced == 1
    assert subscriber_status(engine)[gone] == "bounced"
    assert stored(engine, issue).status == "sent"


def test_a_policy_refusal_of_one_recipient_at_rcpt_counts_against_nobody(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 6)
    refused = addresses[1]
    smtp.refuse[refused] = "550 5.7.1 <x>: Recipient address rejected: Access denied"
    for number in range(4):
        issue = new_issue(engine, settings, tmp_path, number)
        assert deliver(engine, settings, issue).counts == {"sent": 5, "failed": 1}
        assert rows(engine, issue)[refused].blames_reader is False
    assert subscriber_status(engine)[refused] == "active", "four refusals, none of them its own"


def test_a_mailbox_disabled_three_issues_running_bounces_the_reader(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 4)
    disabled = addresses[0]
    smtp.refuse[disabled] = "550 5.2.1 Mailbox disabled, not accepting messages"
    for number in range(3):
        deliver(engine, settings, new_issue(engine, settings, tmp_path, number))
        expected = "bounced" if number == 2 else "active"
        assert subscriber_status(engine)[disabled] == expected, number


def test_a_reader_bounced_wrongly_is_reactivated_with_a_clean_slate(
    engine, settings, tmp_path, smtp
):
    """`mailer subscribers reactivate`: a bounced address gets issues again, and its old
    failures no longer count, so one more does not bounce it at once."""
    addresses = import_readers(engine, tmp_path, 2)
    disabled = addresses[0]
    smtp.refuse[disabled] = "550 5.2.1 Mailbox disabled, not accepting messages"
    for number in range(3):
        deliver(engine, settings, new_issue(engine, settings, tmp_path, number))
    assert subscriber_status(engine)[disabled] == "bounced"
    again = mailer_on(settings, tmp_path, "subscribers", "reactivate", disabled.upper())
    assert again.returncode == 0 and f"Reactivated {disabled}" in again.stdout, again.stderr
    deliver(engine, settings, new_issue(engine, settings, tmp_path, 3))
    assert subscriber_status(engine)[disabled] == "active", "one failure, not four in a row"
    del smtp.refuse[disabled]
    deliver(engine, settings, new_issue(engine, settings, tmp_path, 4))
    assert len(smtp.to(disabled)) == 1
    active = mailer_on(settings, tmp_path, "subscribers", "reactivate", addresses[1])
    assert active.returncode == 1 and "not bounced" in active.stderr


# -- a relay that refuses after 100 accepted ----------------------------------------------


def test_a_relay_refusing_after_100_accepted_holds_the_rest_and_a_resume_sends_them_once(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 130)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse_data, smtp.accept_first = SPAM, 100
    several = settings.replace(smtp={"max_connections": 4})
    with pytest.raises(IssueHeld) as held:
        deliver(engine, several, issue)
    assert held.value.report.sent == 100
    found = rows(engine, issue)
    assert Counter(r.status for r in found.values()) == {"sent": 100, "queued": 30}
    assert {r.attempts for r in found.values() if r.status == "queued"} == {0}
    assert set(copies(smtp)) == {a for a, r in found.items() if r.status == "sent"}
    assert stored(engine, issue).status == "held"
    assert set(subscriber_status(engine).values()) == {"active"}

    assert list(resume_unfinished(engine, settings)) == [], "not resumed by itself"
    assert len(smtp.received) == 100
    smtp.refuse_data = None
    done = mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes")
    assert done.returncode == 0, done.stderr
    assert copies(smtp) == Counter(addresses), "the rest, each once"
    assert stored(engine, issue).status == "sent"


def test_a_held_issue_stops_senders_in_other_processes_from_claiming_more(
    engine, settings, tmp_path, smtp
):
    """Two processes share the send; the one that meets the refusal holds the issue,
    and the other claims no more of it."""
    addresses = import_readers(engine, tmp_path, 40)
    issue = new_issue(engine, settings, tmp_path)
    smtp.refuse_data, smtp.accept_first = SPAM, 10
    with pytest.raises(IssueHeld):
        deliver(engine, settings.replace(smtp={"max_connections": 4}), issue, processes=2)
    found = rows(engine, issue)
    assert Counter(r.status for r in found.values()) == {"sent": 10, "queued": 30}
    assert set(subscriber_status(engine).values()) == {"active"}
    smtp.refuse_data = None
    mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes")
    assert copies(smtp) == Counter(addresses)


# -- a long reply -------------------------------------------------------------------------


def test_a_message_accepted_with_a_reply_longer_than_8_kb_is_recorded_as_sent(
    engine, settings, tmp_path
):
    handler = RecordingHandler(data_reply="250 2.0.0 Ok: queued as " + "X" * 12000)
    with smtp_server(handler) as (_, server):
        addresses = import_readers(engine, tmp_path, 3)
        issue = new_issue(engine, settings, tmp_path)
        one = settings.replace(smtp={"port": server.port, "max_connections": 1})
        assert deliver(engine, one, issue).counts == {"sent": 3}
    found = rows(engine, issue)
    for address in addresses:
        reply = found[address].smtp_response or ""
        assert found[address].status == "sent" and reply.startswith("250 2.0.0 Ok: queued as X")
        assert len(reply) <= 1000, "kept short"
    assert copies(server) == Counter(addresses)
    assert server.connections == 1, "the connection goes on after the long reply"


def test_an_editor_fixes_the_refused_article_and_the_rest_get_the_fixed_text(
    engine, settings, tmp_path, smtp
):
    """The relay objected to the content: the editor changes the article, resumes, and
    the readers still queued get it as it is now; those who had it get nothing more."""
    addresses = import_readers(engine, tmp_path, 12)
    source = tmp_path / "story.txt"
    source.write_text("OSLO – Buy cheap pills now, the council said.\n", "utf-8")
    page = "https://dawatmedia.example/council"  # the same article, changed
    article = ingest_file(engine, settings, source, title="The council", url=page).article
    issue = article_issue(engine, settings, article)
    smtp.refuse_data, smtp.accept_first = SPAM, 5
    with pytest.raises(IssueHeld):
        deliver(engine, settings.replace(smtp={"max_connections": 1}), issue)
    source.write_text("OSLO – The council met again and agreed on the budget.\n", "utf-8")
    fixed = ingest_file(engine, settings, source, title="The council", url=page).article
    assert fixed.id == article.id
    smtp.refuse_data = None
    done = mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes")
    assert done.returncode == 0, done.stderr
    assert copies(smtp) == Counter(addresses), "each reader exactly once"
    bodies = [r.message.get_body(("plain",)).get_content() for r in smtp.received]
    assert sum("cheap pills" in body for body in bodies) == 5
    assert sum("agreed on the budget" in body for body in bodies) == 7
    assert "agreed on the budget" in stored(engine, issue).text


# -- a deferral whose retries ran out -----------------------------------------------------

RAN_OUT = [
    ("452 4.2.2 Mailbox full", Verdict.READER),
    ("452-4.2.2 The email account that you tried to reach is over quota", Verdict.READER),
    ("450 4.2.1 Mailbox disabled for now", Verdict.READER),
    ("450 4.1.1 <a@example.org>: Recipient address rejected: unverified", Verdict.READER),
    ("452 Mailbox full", Verdict.READER),
    ("452 User over quota", Verdict.READER),
    ("451 4.7.1 Try later, spam suspected", Verdict.GAVE_UP),
    ("451 4.7.1 Greylisted, try again later", Verdict.GAVE_UP),
    ("421 4.7.0 Try again later, closing connection", Verdict.GAVE_UP),
    ("451 4.3.0 Temporary lookup failure", Verdict.GAVE_UP),
    ("421 4.4.2 Connection timed out", Verdict.GAVE_UP),
    ("451 Requested action aborted: local error in processing", Verdict.GAVE_UP),
    ("452 Insufficient system storage", Verdict.GAVE_UP),
    ("451 4.7.0 Daily sending quota exceeded", Verdict.GAVE_UP),
    ("450 4.1.8 <n@example.org>: Sender address rejected: Domain not found", Verdict.GAVE_UP),
    ("452 4.2.3 Message too long", Verdict.GAVE_UP),
    ("connection to 127.0.0.1:25 lost: timed out", Verdict.GAVE_UP),
    ("connection to 127.0.0.1:25 lost: Connection unexpectedly closed", Verdict.GAVE_UP),
]


@pytest.mark.parametrize(("reply", "verdict"), RAN_OUT, ids=[c[0][:40] for c in RAN_OUT])
def test_the_table_says_what_a_deferral_that_ran_out_counts_as(reply, verdict):
    """Only a temporary reply about the recipient's address or mailbox counts against
    the reader once the retries are used up; the relay or the line putting everyone off
    does not."""
    assert ran_out(reply) == verdict


def out_of_retries(settings: Settings) -> Settings:
    """Retries used up at the first temporary failure."""
    return settings.replace(delivery={"max_attempts": 1, "retry_hours": 0})


@pytest.mark.parametrize("fault", ["451 4.7.1 Try later, spam suspected", "drop"])
def test_a_relay_putting_everyone_off_till_the_retries_run_out_strikes_nobody(
    engine, settings, tmp_path, smtp, fault
):
    """Three issues, every delivery put off (or its line dropped) until its retries
    ran out: failed, but nobody is struck, let alone bounced."""
    addresses = import_readers(engine, tmp_path, 6)
    if fault == "drop":
        smtp.drop = set(addresses)
    else:
        smtp.refuse_all = fault
    for number in range(3):
        issue = new_issue(engine, settings, tmp_path, number)
        assert deliver(engine, out_of_retries(settings), issue).counts == {"failed": 6}
        assert {(r.status, r.blames_reader) for r in rows(engine, issue).values()} == {
            ("failed", False)
        }
    assert set(subscriber_status(engine).values()) == {"active"}


def test_a_mailbox_full_for_days_three_issues_running_bounces_only_that_reader(
    engine, settings, tmp_path, smtp
):
    addresses = import_readers(engine, tmp_path, 6)
    full = addresses[2]
    smtp.refuse[full] = "452 4.2.2 Mailbox full"
    for number in range(3):
        issue = new_issue(engine, settings, tmp_path, number)
        assert deliver(engine, out_of_retries(settings), issue).counts == {"sent": 5, "failed": 1}
        assert rows(engine, issue)[full].blames_reader is True
        expected = "bounced" if number == 2 else "active"
        assert subscriber_status(engine)[full] == expected, number
    assert {a for a, s in subscriber_status(engine).items() if s != "active"} == {full}


# -- a relay that refuses a whole list at RCPT ----------------------------------------------


def assert_held_and_untouched(engine: Engine, issue: Issue) -> None:
    assert stored(engine, issue).status == "held"
    found = rows(engine, issue).values()
    assert {(r.status, r.attempts, r.smtp_response, r.blames_reader) for r in found} == {
        ("queued", 0, None, None)
    }, "back in the queue, no attempt counted against anyone"
    assert set(subscriber_status(engine).values()) == {"active"}


@pytest.mark.parametrize(
    "refusal",
    [
        "550 5.7.1 Recipient address rejected: Access denied",  # policy, fewer than ten
        "550 Rejected",  # the same words for each reader, fewer than ten
        "554 <{}>: Transaction failed",
    ],
)
def test_a_small_list_refused_whole_at_rcpt_is_held_and_nobody_is_struck(
    engine, settings, tmp_path, smtp, refusal
):
    addresses = import_readers(engine, tmp_path, 5)
    for address in addresses:
        smtp.refuse[address] = refusal.format(address)
    issues = [new_issue(engine, settings, tmp_path, number) for number in range(3)]
    for issue in issues:
        with pytest.raises(IssueHeld, match="none accepted") as held:
            deliver(engine, settings.replace(smtp={"max_connections": 2}), issue)
        assert f"mailer send --issue {issue.id}" in str(held.value)
        assert held.value.report.counts.get("failed", 0) == 0
        assert_held_and_untouched(engine, issue)
    smtp.refuse.clear()
    for issue in issues:
        assert (
            mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes").returncode == 0
        )
    assert set(copies(smtp).values()) == {3} and set(copies(smtp)) == set(addresses)


@pytest.mark.parametrize(
    "refusal",
    [
        "550 Rejected",
        "554 <{0}>: Transaction failed",
        "550 Recipient {1} rejected (ref 8F{2:04X}, 12:00:{2:02})",  # name, queue id, time
    ],
)
def test_a_relay_refusing_every_rcpt_in_the_same_words_holds_the_issue(
    engine, settings, tmp_path, smtp, refusal
):
    """A generic refusal counts against the reader, but the same one for reader after
    reader (whatever names the reader or numbers the reply) is the relay refusing us:
    held, and nobody struck."""
    addresses = import_readers(engine, tmp_path, 30)
    for number, address in enumerate(addresses):
        smtp.refuse[address] = refusal.format(address, address.partition("@")[0], number)
    issue = new_issue(engine, settings, tmp_path)
    with pytest.raises(IssueHeld, match="recipients in a row") as held:
        deliver(engine, settings.replace(smtp={"max_connections": 4}), issue)
    assert held.value.report.counts.get("failed", 0) == 0
    assert_held_and_untouched(engine, issue)
    smtp.refuse.clear()
    assert mailer_on(settings, tmp_path, "send", "--issue", str(issue.id), "--yes").returncode == 0
    assert copies(smtp) == Counter(addresses)


def test_a_reader_struck_out_by_a_relay_refusing_everyone_is_active_again(
    engine, settings, tmp_path, smtp
):
    """A reader with two strikes of its own, then the relay refuses everyone in the same
    words: the third refusal was not theirs, and they stay on the list."""
    addresses = import_readers(engine, tmp_path, 12)
    disabled = addresses[0]
    smtp.refuse[disabled] = "550 5.2.1 Mailbox disabled, not accepting messages"
    one = settings.replace(smtp={"max_connections": 1})
    for number in range(2):
        assert deliver(engine, one, new_issue(engine, settings, tmp_path, number)).sent == 11
    smtp.refuse.clear()
    smtp.refuse_all = "550 Rejected"
    issue = new_issue(engine, settings, tmp_path, 2)
    with pytest.raises(IssueHeld, match="recipients in a row"):
        deliver(engine, one, issue)
    assert_held_and_untouched(engine, issue)


def test_a_few_readers_refused_in_a_normal_list_fail_and_the_rest_are_sent(
    engine, settings, tmp_path, smtp
):
    """Two unknown addresses and two mailboxes disabled (in the same words) out of
    thirty: they fail, the rest are sent, the issue is not held."""
    addresses = import_readers(engine, tmp_path, 30)
    unknown, disabled = addresses[4:6], addresses[20:22]
    for address in unknown:
        smtp.refuse[address] = UNKNOWN.format(address)
    for address in disabled:
        smtp.refuse[address] = "550 5.2.1 Mailbox disabled, not accepting messages"
    issue = new_issue(engine, settings, tmp_path)
    report = deliver(engine, settings.replace(smtp={"max_connections": 3}), issue)
    assert report.counts == {"sent": 26, "failed": 4} and report.bounced == 2
    assert stored(engine, issue).status == "sent"
    assert {a for a, s in subscriber_status(engine).items() if s != "active"} == set(unknown)
    assert set(copies(smtp)) == set(addresses) - set(unknown) - set(disabled)


def test_a_lone_reader_refused_as_a_reader_is_not_held(engine, settings, tmp_path, smtp):
    """One reader, one refusal of its mailbox: that is the reader's, not the relay
    refusing us (the in-words rule needs two or more readers)."""
    (only,) = import_readers(engine, tmp_path, 1)
    smtp.refuse[only] = "550 5.2.1 Mailbox disabled, not accepting messages"
    issue = new_issue(engine, settings, tmp_path)
    assert deliver(engine, settings, issue).counts == {"failed": 1}
    assert stored(engine, issue).status == "sent"
    assert rows(engine, issue)[only].blames_reader is True


# -- a held issue in the scheduler and in `send --resume` ------------------------------------


def test_a_digest_the_relay_refuses_is_logged_held_and_the_service_goes_on(
    engine, settings, tmp_path, smtp, caplog
):
    import_readers(engine, tmp_path, 3)
    monday = datetime(2026, 11, 30, 7, 10, tzinfo=UTC)  # 08:10 in Oslo: the digest is due
    ingest_file(engine, settings, SAMPLE_ARTICLE, published=monday - timedelta(days=1))
    weekly = settings.replace(schedule={"digest_cron": "0 8 * * mon"})
    service = Service(weekly, engine, clock=lambda: monday)
    smtp.refuse_data = SPAM
    with caplog.at_level("INFO", logger="mailer"):
        service.digest()  # raised IssueHeld out of the job before
        service.outbox()  # the service goes on: not tried again, nothing else breaks
    with Session(engine) as session:
        (digest,) = session.exec(select(Issue)).all()
    assert digest.status == "held" and digest.held_reason == SPAM
    line = next(line for line in caplog.text.splitlines() if "digest-held" in line)
    assert "week=2026-W49" in line and f"issue={digest.id}" in line and "5.7.1" in line
    assert f'resume="mailer send --issue {digest.id}"' in line
    assert "job-failed" not in caplog.text and "Traceback" not in caplog.text
    assert smtp.received == [] and set(subscriber_status(engine).values()) == {"active"}


def test_send_resume_goes_on_with_the_other_issues_when_one_is_held(
    engine, settings, tmp_path, smtp
):
    """Two issues left unfinished; the relay refuses the first: it is held and said so,
    and the second is still sent."""
    addresses = import_readers(engine, tmp_path, 4)
    first, second = (new_issue(engine, settings, tmp_path, number) for number in (1, 2))
    Outbox(engine, second, settings.delivery).enqueue()
    late = add_subscriber(engine, "late@example.org", confirmed=True).email
    Outbox(engine, first, settings.delivery).enqueue()  # the only one `late` gets
    smtp.refuse_data_to[late] = SPAM
    result = mailer_on(settings, tmp_path, "send", "--resume")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and SPAM in result.stderr
    assert f"mailer send --issue {first.id}" in result.stderr
    assert stored(engine, first).status == "held"
    assert stored(engine, second).status == "sent"
    assert copies(smtp) == Counter(addresses * 2), "the first to all but `late`, the second to all"
    assert set(subscriber_status(engine).values()) == {"active"}
