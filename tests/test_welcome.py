"""The welcome series (issue 16): a reader who confirms on the site gets one welcome mail
through the transactional outbox and a real SMTP server (what they will receive, the
latest issue online, the appeal with the welcome's own reference, a working unsubscribe
link), never twice and none when it is off; then the follow-ups the scheduler queues
when its clock reaches their day, once each, none to a reader who left. Gifts marked
with the welcome's reference are reported as the welcome mail's."""

from __future__ import annotations

import os
import sys
from contextlib import closing
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from deskclient import Desk
from mailer import fundraising, signup
from mailer.cli import main
from mailer.cli.donations import print_report
from mailer.delivery import deliver
from mailer.links import DESK_DONATIONS_PATH, issue_url
from mailer.models import TRANSACTIONAL_MAILS, MailKind, utcnow
from mailer.references import digest_reference, parse_reference, welcome_reference
from mailer.scheduler import Service
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber, request_subscription, unsubscribe
from mailer.testing import RecordingHandler, new_issue, queued_mails, served
from mailer.tokens import CONFIRM, make_token
from mailer.transactional import send_queued

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
FOLLOW_UPS = {
    "follow_ups": [
        {"day": 3, "template": "who-we-are", "subject": "Who we are"},
        {"day": 10, "template": "how-we-are-funded", "subject": "How we are funded"},
    ]
}


def text_of(message: EmailMessage) -> str:
    return str(message.get_body(("plain",)).get_content())


def html_of(message: EmailMessage) -> str:
    return str(message.get_body(("html",)).get_content())


def link_after(text: str, label: str) -> str:
    return next(line.split()[-1] for line in text.splitlines() if line.startswith(label))


def welcomes(engine: Engine, kind: str = MailKind.WELCOME) -> list[tuple[int, str, str | None]]:
    m = TRANSACTIONAL_MAILS.c
    query = select(m.subscriber_id, m.status, m.step).where(m.kind == kind).order_by(m.id)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def confirmed(engine: Engine, settings: Settings, email: str) -> int:
    """A reader who signed up and followed their confirmation link (in-process)."""
    reader = add_subscriber(engine, email)
    token = make_token(settings.secret_key, CONFIRM, reader.public_id)
    assert signup.confirm(engine, settings, token, "127.0.0.1").outcome == "confirmed"
    assert reader.id is not None
    return reader.id


def test_a_reader_who_confirms_on_the_site_is_welcomed_once(
    engine: Engine, settings: Settings, smtp: RecordingHandler, tmp_path: Path
) -> None:
    # an issue already went out (to a reader an admin added: no welcome for them)
    add_subscriber(engine, "old@example.org", confirmed=True)
    issue = new_issue(engine, settings, tmp_path)
    assert deliver(engine, settings, issue).sent == 1
    with served(settings, engine) as (url, running):
        form = {"email": "Nora@Example.org", "name": "Nora", "frequency": "weekly"}
        assert httpx.post(f"{url}/subscribe", data=form).status_code == 200
        (confirmation,) = smtp.wait_for("nora@example.org")
        link = next(w for w in text_of(confirmation).split() if "/confirm/" in w)
        for _ in range(2):  # followed twice: one welcome
            answer = httpx.post(link, headers=ONE_CLICK)
            assert answer.status_code == 200 and "You are subscribed" in answer.text
        welcome = smtp.wait_for("nora@example.org", 2)[1]
        assert send_queued(engine, running) == {}, "the sender run again: nothing more"

        assert welcome["Subject"] == "Welcome to Dawat Media Center"
        text, html = text_of(welcome), html_of(welcome)
        reference = welcome_reference("DMC", utcnow().year)
        for part in (text, html):
            assert "Dear Nora," in part
            assert "one digest a week of the articles we published that week" in part
            assert "NO15 0530 2294 668" in part and "0530 2294668" in part
            assert reference in part
        online = issue_url(running.publication.base_url, issue.key)
        assert online in text and f'href="{online}"' in html
        assert issue.subject in httpx.get(online).text, "the latest issue reads online"
        assert [p.get_content_type() for p in welcome.walk()].count("image/png") == 1, "EPC"
        unsubscribe_link = link_after(text, "Unsubscribe:")
        assert welcome["List-Unsubscribe"] == f"<{unsubscribe_link}>"
        assert unsubscribe_link in html
        left = httpx.post(unsubscribe_link, content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert left.status_code == 200
    assert queued_mails(engine) == {"sent": 2}, "the confirmation and the welcome"
    nora = find_subscriber(engine, welcomes(engine)[0][0])
    assert nora.email == "nora@example.org" and nora.status == "unsubscribed"
    assert welcomes(engine) == [(nora.id, "sent", None)]
    assert len(smtp.to("nora@example.org")) == 2 and len(smtp.to("old@example.org")) == 1


@SQLITE
def test_no_welcome_when_it_is_off_for_readers_added_as_confirmed_or_back_after_leaving(
    engine: Engine, settings: Settings, smtp: RecordingHandler
) -> None:
    confirmed(engine, settings.replace(welcome={"enabled": False}), "off@example.org")
    add_subscriber(engine, "added@example.org", confirmed=True)
    assert send_queued(engine, settings) == {} and smtp.received == []
    # queued while on, turned off before it went: skipped, not sent
    confirmed(engine, settings, "late@example.org")
    assert send_queued(engine, settings.replace(welcome={"enabled": False})) == {"skipped": 1}
    assert smtp.received == []
    # welcomed, left, and back: confirmed again, not welcomed again
    back = confirmed(engine, settings, "back@example.org")
    assert send_queued(engine, settings) == {"sent": 1}
    unsubscribe(engine, back)
    assert request_subscription(engine, "back@example.org", None, "every") is not None
    token = make_token(settings.secret_key, CONFIRM, find_subscriber(engine, back).public_id)
    assert signup.confirm(engine, settings, token, "127.0.0.1").outcome == "confirmed"
    assert send_queued(engine, settings) == {} and len(smtp.to("back@example.org")) == 1


def test_follow_ups_come_on_their_day_once_and_not_after_a_reader_left(
    engine: Engine, settings: Settings, smtp: RecordingHandler
) -> None:
    series = settings.replace(welcome=FOLLOW_UPS)
    stays, leaves, leaves_late = (
        confirmed(engine, series, f"{who}@example.org") for who in ("stays", "leaves", "late")
    )
    add_subscriber(engine, "before@example.org", confirmed=True)  # confirmed before welcomes
    assert send_queued(engine, series) == {"sent": 3}
    start = utcnow()

    def run_day(day: int) -> dict[str, int]:
        now = start + timedelta(days=day, minutes=1)
        Service(series, engine, clock=lambda: now).follow_ups()
        return dict(send_queued(engine, series, clock=lambda: now))

    assert run_day(2) == {}, "not due yet"
    assert run_day(3) == {"sent": 3}
    assert run_day(4) == {}, "once"
    for who in ("stays", "leaves", "late"):
        mails = smtp.to(f"{who}@example.org")
        assert [m["Subject"] for m in mails] == ["Welcome to Dawat Media Center", "Who we are"]
    day3 = smtp.to("stays@example.org")[1]
    assert "Here is who we are" in text_of(day3) and day3["List-Unsubscribe"]
    unsubscribe(engine, leaves)
    now = start + timedelta(days=10, minutes=1)
    Service(series, engine, clock=lambda: now).follow_ups()
    unsubscribe(engine, leaves_late)  # after it was queued, before it was sent
    assert send_queued(engine, series, clock=lambda: now) == {"sent": 1, "skipped": 1}
    assert smtp.to("stays@example.org")[-1]["Subject"] == "How we are funded"
    assert len(smtp.to("leaves@example.org")) == len(smtp.to("late@example.org")) == 2
    assert smtp.to("before@example.org") == []
    assert run_day(30) == {}
    steps = [(who, step) for who, _, step in welcomes(engine, MailKind.FOLLOW_UP)]
    assert sorted(steps) == sorted(
        [(stays, "who-we-are"), (leaves, "who-we-are"), (leaves_late, "who-we-are"),
         (stays, "how-we-are-funded"), (leaves_late, "how-we-are-funded")]
    )  # fmt: skip


@SQLITE
def test_a_reader_due_for_two_follow_ups_gets_them_one_at_a_time(
    engine: Engine, settings: Settings, smtp: RecordingHandler
) -> None:
    series = settings.replace(welcome=FOLLOW_UPS)
    confirmed(engine, series, "away@example.org")
    send_queued(engine, series)
    now = utcnow() + timedelta(days=11)  # the scheduler was down for both days
    service = Service(series, engine, clock=lambda: now)
    for subject in ("Who we are", "How we are funded"):
        service.follow_ups()
        service.follow_ups()
        assert send_queued(engine, series, clock=lambda: now) == {"sent": 1}
        assert smtp.to("away@example.org")[-1]["Subject"] == subject


def test_a_follow_up_without_its_template_stops_mailer_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mailer.toml"
    shipped = (Path(__file__).parents[1] / "config" / "mailer.toml").read_text()
    config.write_text(
        shipped.replace(
            "follow_ups = []",
            'follow_ups = [{ day = 3, template = "who-we-were", subject = "Hello" }]',
        )
    )
    for variable in [name for name in os.environ if name.startswith("MAILER_")]:
        monkeypatch.delenv(variable)  # as a user runs it: their file only
    monkeypatch.setattr(sys, "argv", ["mailer", "--config", str(config), "subscribers", "list"])
    with pytest.raises(SystemExit) as stopped:
        main()  # the command line, in-process
    assert stopped.value.code == 1
    error = capsys.readouterr().err
    assert "welcome.follow_ups" in error and "email/welcome/who-we-were.html" in error


@SQLITE
def test_gifts_marked_with_the_welcome_reference_are_the_welcome_mails(
    engine: Engine,
    settings: Settings,
    desk: Desk,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference = welcome_reference("DMC", 2026)
    assert reference == "DMC-260003" and parse_reference("dmc 26000 3", "DMC") == reference
    years = [welcome_reference("DMC", year) for year in range(2020, 2040)]
    weeks = {
        digest_reference("DMC", f"{y}-W{w:02d}") for y in range(2020, 2040) for w in range(1, 54)
    }
    assert not set(years) & weeks, "never a digest's"
    mistyped = reference[:-1] + str((int(reference[-1]) + 1) % 10)
    gifts = tmp_path / "gifts.csv"
    gifts.write_text(
        "date,amount,currency,reference,email,name\n"
        f"2026-11-02,500.00,NOK,{reference},,\n"
        f"2026-11-03,250.00,NOK,gave after the welcome {reference.lower()},,\n"
        f"2026-11-04,100.00,NOK,{mistyped},,\n"
    )
    assert fundraising.import_gifts(engine, settings, gifts).new == 3
    shown = fundraising.gifts_report(engine)
    assert (shown.welcome.gifts, shown.welcome.amounts) == (2, {"NOK": 75000})
    assert (shown.unattributed.gifts, shown.unattributed.amounts) == (1, {"NOK": 10000})
    print_report(shown)
    printed = capsys.readouterr().out
    assert "Welcome mail: 2 gifts, 750.00 NOK" in printed
    assert "Not attributed: 1 gift, 100.00 NOK" in printed
    with closing(desk.signed_in()) as client:
        page = " ".join(client.get(DESK_DONATIONS_PATH).text.split())
    assert "Welcome mail: 2 gifts, 750.00 NOK." in page
    assert "Not attributed to an issue: 1 gift, 100.00 NOK." in page
