"""The donors' copy: readers who already give (a gift matched to their address, their own
word on the preferences page, an admin's) get the thank-you block in place of the appeal,
as fixed when their delivery was queued; everyone else, and the read-online page, gets
the appeal. Sent through a real SMTP server, the page driven over real HTTP."""

from __future__ import annotations

import re
from contextlib import closing
from datetime import date, timedelta
from email.message import EmailMessage
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert, select

from deskclient import Desk, csrf_of
from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.donors import extend_donor
from mailer.issues import article_issue, as_rendered
from mailer.links import issue_url, preferences_links
from mailer.messages import MessageBuilder, Recipient
from mailer.models import DELIVERIES, GIFTS, SUBSCRIBERS, Article, DonorBy, Subscriber, utcnow
from mailer.outbox import Outbox
from mailer.render import render_article_issue
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber, remove_subscriber
from mailer.supporting import admin_sets_donor
from mailer.testing import (
    TEST_SECRET_KEY,
    RecordingHandler,
    make_settings,
    new_issue,
    run_mailer,
    served,
)

READERS = ["appeal", "gift", "word", "admin", "expired", "late"]


def address(who: str) -> str:
    return f"{who}@example.org"


@pytest.fixture
def readers(engine: Engine) -> dict[str, Subscriber]:
    return {who: add_subscriber(engine, address(who), who.title(), confirmed=True)
            for who in READERS}  # fmt: skip


def add_gift(engine: Engine, settings: Settings, reader: Subscriber) -> int:
    """A gift matched to the reader's address, as the import records it: the gift, and
    the reader a donor for thank_donors_days (never shortened)."""
    with engine.begin() as connection:
        gift_id = connection.execute(
            insert(GIFTS).returning(GIFTS.c.id),
            {"source": "csv", "source_key": f"csv:{reader.email}", "received_on": date.today(),
             "amount_minor": 50000, "currency": "NOK", "remittance": "DMC-2611",
             "payer_name": "Gift Giver", "email": reader.email, "subscriber_id": reader.id},
        ).scalar_one()  # fmt: skip
        days = timedelta(days=settings.donation.thank_donors_days)
        assert reader.id is not None
        assert extend_donor(connection, reader.id, utcnow() + days, DonorBy.GIFT)
        # a shorter date later (an older gift imported afterwards) takes nothing away
        assert not extend_donor(connection, reader.id, utcnow() + timedelta(days=1), DonorBy.GIFT)
    return int(gift_id)


def say_so_on_the_preferences_page(
    site: str, running: Settings, engine: Engine, reader: Subscriber
) -> str:
    """The reader ticks "I already support you" on their preferences page; the page."""
    link = preferences_links(running)(reader.public_id)
    page = httpx.get(link)
    assert page.status_code == 200 and "I already support you" in page.text
    assert 'name="donor" value="yes">' in page.text, "not ticked yet"
    form = {"action": "save", "name": "Word", "frequency": "every", "donor-asked": "1"}
    # from another site: refused, and nothing changes
    forged = httpx.post(
        link, data={**form, "donor": "yes"}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert reader.id is not None and find_subscriber(engine, reader.id).donor_until is None
    saved = httpx.post(link, data={**form, "donor": "yes"}, headers={"Origin": site})
    assert saved.status_code == 200 and "Saved." in saved.text
    assert 'name="donor" value="yes" checked>' in saved.text
    return saved.text


def admin_says_so(tmp_path: Path, settings: Settings, email: str, *args: str) -> str:
    result = run_mailer(
        tmp_path, "subscribers", "donor", email, *args,
        MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_DATABASE_URL=settings.database.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def images(message: EmailMessage) -> list[str]:
    return [
        part.get_content_type() for part in message.walk() if part.get_content_maintype() == "image"
    ]


def test_donors_get_the_thanks_and_everyone_else_the_appeal_in_both_parts(
    engine: Engine,
    settings: Settings,
    readers: dict[str, Subscriber],
    smtp: RecordingHandler,
    tmp_path: Path,
):
    thanks, appeal = settings.donation.thanks_heading, settings.donation.heading
    assert thanks and appeal
    add_gift(engine, settings, readers["gift"])
    with served(settings, engine) as (site, running):
        page = say_so_on_the_preferences_page(site, running, engine, readers["word"])
        assert "You told us on" in page and "We thank you instead of asking until" in page
        said = admin_says_so(tmp_path, settings, address("admin"))
        assert "admin@example.org is a donor until" in said
        with engine.begin() as connection:  # a donor whose time has run out
            connection.execute(
                SUBSCRIBERS.update()
                .where(SUBSCRIBERS.c.email == address("expired"))
                .values(donor_until=utcnow() - timedelta(hours=1), donor_by=DonorBy.GIFT)
            )
        article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
        issue = article_issue(engine, running, article)
        Outbox(engine, issue, settings.delivery).enqueue()
        # after queueing: the copy already queued stays the appeal
        admin_sets_donor(engine, settings, address("late"))
        report = deliver(engine, running, issue)
        assert report.counts["sent"] == len(READERS)

        received = {r.rcpt_tos[0]: r.message for r in smtp.received}
        donors = {address(w) for w in ("gift", "word", "admin")}
        for email, message in received.items():
            text, html = parts(message)
            if email in donors:
                assert thanks in text and thanks in html, email
                assert appeal not in text and appeal not in html, email
                assert "To give again" in text and "To give again" in html, "the details, small"
                assert images(message) == [], "no QR codes in the donors' copy"
            else:
                assert appeal in text and appeal in html, email
                assert thanks not in text and thanks not in html, email
                assert images(message), "the appeal's QR codes"
        with engine.connect() as connection:
            rows = connection.execute(
                select(SUBSCRIBERS.c.email, DELIVERIES.c.donor).join(
                    DELIVERIES, DELIVERIES.c.subscriber_id == SUBSCRIBERS.c.id
                )
            ).all()
        assert {email for email, donor in rows if donor} == donors

        online = httpx.get(issue_url(site, issue.key))
        assert online.status_code == 200
        assert appeal in online.text and thanks not in online.text


def test_unticking_the_box_takes_the_readers_word_back(engine: Engine, settings: Settings, readers):
    reader = readers["word"]
    with served(settings, engine) as (site, running):
        say_so_on_the_preferences_page(site, running, engine, reader)
        assert find_subscriber(engine, reader.id).donor_by == DonorBy.READER
        link = preferences_links(running)(reader.public_id)
        form = {"action": "save", "name": "Word", "frequency": "every", "donor-asked": "1"}
        saved = httpx.post(link, data=form, headers={"Origin": site})
        assert saved.status_code == 200 and 'name="donor" value="yes">' in saved.text
        stored = find_subscriber(engine, reader.id)
        assert (stored.donor_until, stored.donor_by) == (None, None)
        # a form without the box (an older page) leaves the status alone
        admin_sets_donor(engine, settings, reader.email)
        old_form = {"action": "save", "name": "Word", "frequency": "every"}
        assert httpx.post(link, data=old_form, headers={"Origin": site}).status_code == 200
        assert find_subscriber(engine, reader.id).donor_by == DonorBy.ADMIN


# one backend: the command line is the same on both, and what it stores is tested on both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_admin_command_sets_a_date_and_takes_it_back(
    engine: Engine, settings: Settings, readers, tmp_path: Path
):
    said = admin_says_so(tmp_path, settings, "ADMIN@example.org", "--until", "2099-03-01")
    assert "admin@example.org is a donor until 2099-03-02" in said
    until = find_subscriber(engine, readers["admin"].id).donor_until
    assert until is not None and until.year == 2099
    said = admin_says_so(tmp_path, settings, address("admin"), "--off")
    assert "not a donor" in said
    assert find_subscriber(engine, readers["admin"].id).donor_until is None
    bad = run_mailer(
        tmp_path, "subscribers", "donor", address("admin"), "--until", "someday",
        MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_DATABASE_URL=settings.database.url,
    )  # fmt: skip
    assert bad.returncode == 2 and "--until" in bad.stderr and "Traceback" not in bad.stderr
    nobody = run_mailer(
        tmp_path, "subscribers", "donor", "nobody@example.org",
        MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_DATABASE_URL=settings.database.url,
    )  # fmt: skip
    assert nobody.returncode == 1 and "not on the list" in nobody.stderr


def test_a_purge_erases_the_donor_status_and_the_names_on_their_gifts(
    engine: Engine, settings: Settings, readers
):
    reader = readers["gift"]
    gift_id = add_gift(engine, settings, reader)
    remove_subscriber(engine, reader.email, purge=True, purge_key=settings.purge_key)
    stored = find_subscriber(engine, reader.id)
    assert (stored.donor_until, stored.donor_by) == (None, None)
    with engine.connect() as connection:
        gift = connection.execute(select(GIFTS).where(GIFTS.c.id == gift_id)).one()
    assert (gift.payer_name, gift.email, gift.subscriber_id) == (None, None, None)
    assert (gift.amount_minor, gift.currency) == (50000, "NOK"), "the money stays counted"


def test_without_a_thank_you_configured_donors_get_the_appeal(tmp_path: Path):
    settings = make_settings(tmp_path, donation={"thanks_heading": "", "thanks_text": ""})
    article = Article(id=1, guid="g", title="T", summary="S", body_html="<p>B</p>",
                      published_at=utcnow(), ingested_at=utcnow())  # fmt: skip
    rendered = render_article_issue(settings, article)
    assert (rendered.thanks_html, rendered.thanks_text) == ("", "")
    builder = MessageBuilder(settings, rendered)
    donor = builder.build(Recipient(1, "d@example.org", donor=True)).data
    assert settings.donation.heading.encode() in donor


def test_the_donors_copy_is_stored_with_the_issue(engine: Engine, settings: Settings):
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    rendered = as_rendered(article_issue(engine, settings, article))
    assert settings.donation.thanks_heading in rendered.thanks_html
    assert settings.donation.thanks_heading in rendered.thanks_text
    assert "cid:" not in rendered.thanks_html and "cid:" in rendered.html


def test_an_editor_can_send_themselves_the_donors_copy(
    engine: Engine, settings: Settings, smtp: RecordingHandler, tmp_path: Path
):
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    env = {"MAILER_SECRET_KEY": TEST_SECRET_KEY, "MAILER_DATABASE_URL": settings.database.url,
           "MAILER_SMTP_PORT": str(smtp.port)}  # fmt: skip
    for extra in ([], ["--as-donor"]):
        test_to = ["--test-to", "ed@example.org", *extra]
        sent = run_mailer(tmp_path, "send", "--latest", *test_to, **env)
        assert sent.returncode == 0 and "Test copy sent" in sent.stdout, sent.stderr
    appeal_copy, donors_copy = (r.message for r in smtp.received)
    assert appeal_copy["Subject"].startswith("[Test] ")
    assert donors_copy["Subject"].startswith("[Test, donors' copy] ")
    thanks, appeal = settings.donation.thanks_heading, settings.donation.heading
    assert all(appeal in part and thanks not in part for part in parts(appeal_copy))
    assert all(thanks in part and appeal not in part for part in parts(donors_copy))
    assert images(appeal_copy) and not images(donors_copy)


def test_the_desks_send_page_shows_the_donors_copy_beside_the_appeal(
    engine: Engine, settings: Settings, desk: Desk, tmp_path: Path
):
    article_id = new_issue(engine, settings, tmp_path).article_id_list[0]
    with closing(desk.signed_in()) as client:
        page = client.get(f"/desk/articles/{article_id}/send")
    assert page.status_code == 200 and "The donors' copy" in page.text
    frames = re.findall(r'srcdoc="([^"]*)"', page.text)
    thanks, appeal = settings.donation.thanks_heading, settings.donation.heading
    assert len(frames) == 3
    assert all(appeal in unescape(f) and thanks not in unescape(f) for f in frames[:2])
    assert thanks in unescape(frames[2]) and appeal not in unescape(frames[2])


def test_the_desk_sends_a_test_of_either_copy(
    engine: Engine, settings: Settings, desk: Desk, smtp, tmp_path: Path
):
    article_id = new_issue(engine, settings, tmp_path).article_id_list[0]
    send_page = f"/desk/articles/{article_id}/send"
    with closing(desk.signed_in()) as client:
        for copy, address in (
            ("appeal", "pat@newsroom.example"),
            ("donors", "kim@newsroom.example"),
        ):
            form = client.get(send_page)
            assert 'name="copy" value="donors"' in form.text
            sent = client.post(
                f"{send_page}/test",
                data={"csrf": csrf_of(form), "addresses": address, "copy": copy},
            )
            assert sent.status_code == 303
    assert smtp.wait_for("pat@newsroom.example") and smtp.wait_for("kim@newsroom.example")
    copies = {r.rcpt_tos[0]: r.message for r in smtp.received}
    appeal_copy, donors_copy = copies["pat@newsroom.example"], copies["kim@newsroom.example"]
    assert donors_copy["Subject"].startswith("[Test, donors' copy] ")
    thanks, appeal = settings.donation.thanks_heading, settings.donation.heading
    assert all(appeal in part and thanks not in part for part in parts(appeal_copy))
    assert all(thanks in part and appeal not in part for part in parts(donors_copy))
