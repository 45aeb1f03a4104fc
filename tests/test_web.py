"""The subscriber site through real HTTP (uvicorn on 127.0.0.1, httpx): one-click
unsubscribe from the link a real email carried, the page with one button, refused
tokens, and the health check."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine

from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue
from mailer.models import Article, Subscriber
from mailer.outbox import Outbox
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber
from mailer.testing import RecordingHandler, queued_mails, served
from mailer.tokens import CONFIRM, UNSUBSCRIBE, make_token

# RFC 8058: what a mail client POSTs for a one-click unsubscribe
ONE_CLICK = "List-Unsubscribe=One-Click"
ONE_CLICK_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def press(url: str, **headers: str) -> httpx.Response:
    """A page's one button: what a browser posts for a form with no fields."""
    return httpx.post(url, headers={**ONE_CLICK_FORM, **headers})


@dataclass
class Site:
    url: str
    settings: Settings

    def token(self, subscriber: Subscriber, purpose: str = UNSUBSCRIBE) -> str:
        return make_token(self.settings.secret_key, purpose, subscriber.public_id)


@pytest.fixture
def site(engine: Engine, settings: Settings) -> Iterator[Site]:
    """`mailer serve`'s app on a free port; the emails' links point at it."""
    with served(settings, engine) as (url, running):
        yield Site(url, running)


@pytest.fixture
def reader(engine: Engine) -> Subscriber:
    return add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)


def sample(engine: Engine, settings: Settings) -> Article:
    return ingest_file(engine, settings, SAMPLE_ARTICLE).article


def test_one_click_from_the_email_unsubscribes_and_no_more_mail_comes(
    engine, site, reader, smtp: RecordingHandler, tmp_path
):
    article = sample(engine, site.settings)
    assert deliver(engine, site.settings, article_issue(engine, site.settings, article)).sent == 1
    link = smtp.received[0].message["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{site.url}/unsubscribe/")
    for _ in range(2):  # RFC 8058: no cookie, no page, and the same answer again
        answer = httpx.post(link, content=ONE_CLICK, headers=ONE_CLICK_FORM)
        assert answer.status_code == 200 and answer.text == "Unsubscribed."
    assert find_subscriber(engine, reader.id).status == "unsubscribed"
    add_subscriber(engine, "bo@example.org", confirmed=True)
    later = tmp_path / "later.txt"
    later.write_text("OSLO – The council met again and agreed on the budget.\n")
    other = ingest_file(engine, site.settings, later, title="The next issue").article
    assert deliver(engine, site.settings, article_issue(engine, site.settings, other)).sent == 1
    assert [r for m in smtp.received for r in m.rcpt_tos] == ["ana@example.org", "bo@example.org"]


def test_a_get_only_shows_the_button_and_the_button_unsubscribes(engine, site, reader):
    url = f"{site.url}/unsubscribe/{site.token(reader)}"
    page = httpx.get(url)  # what a link scanner does
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "ana@example.org" in page.text and "Dawat Media Center" in page.text
    assert find_subscriber(engine, reader.id).status == "active"
    done = press(url)  # the button: an empty form
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert find_subscriber(engine, reader.id).status == "unsubscribed"
    assert "You are unsubscribed" in httpx.get(url).text


def test_a_queued_delivery_is_not_sent_once_its_reader_has_left(engine, site, reader, smtp):
    issue = article_issue(engine, site.settings, sample(engine, site.settings))
    Outbox(engine, issue, site.settings.delivery).enqueue()  # queued, not yet sent
    httpx.post(f"{site.url}/unsubscribe/{site.token(reader)}", content=ONE_CLICK,
               headers=ONE_CLICK_FORM)  # fmt: skip
    report = deliver(engine, site.settings, issue)
    assert report.counts == {"skipped": 1} and smtp.received == []


def tampered(token: str) -> str:
    """The token with its signature's first character changed (the last one carries
    padding bits a decoder ignores: changing it may change nothing)."""
    head, signature = token.rsplit(".", 1)
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


@pytest.mark.parametrize("how", ["tampered", "confirm token", "no such subscriber"])
def test_a_link_that_is_not_an_unsubscribe_link_changes_nothing(engine, site, reader, how):
    token = {
        "tampered": tampered(site.token(reader)),
        "confirm token": site.token(reader, CONFIRM),
        "no such subscriber": make_token(site.settings.secret_key, UNSUBSCRIBE, 999),
    }[how]
    url = f"{site.url}/unsubscribe/{token}"
    assert httpx.get(url).status_code == 400
    page = press(url)
    assert page.status_code == 400 and "This link is not valid" in page.text
    one_click = httpx.post(url, content=ONE_CLICK, headers=ONE_CLICK_FORM)
    assert one_click.status_code == 400
    assert find_subscriber(engine, reader.id).status == "active"


def test_health_answers_while_the_database_does(site):
    answer = httpx.get(f"{site.url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


# -- sign-up with double opt-in ----------------------------------------------------------


def sign_up(site: Site, email: str, **fields: str) -> httpx.Response:
    return httpx.post(f"{site.url}/subscribe", data={"email": email, "name": "", **fields})


def confirm_link(message) -> str:  # type: ignore[no-untyped-def]
    text = message.get_body(("plain",)).get_content()
    return next(w for w in text.split() if "/confirm/" in w)


def test_subscribe_confirm_receive_and_leave(engine, site, smtp, tmp_path):
    form = httpx.get(f"{site.url}/subscribe")
    assert form.status_code == 200 and 'name="email"' in form.text and "weekly" in form.text
    answer = sign_up(site, "New.Reader@Example.org", name="Nora")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (welcome,) = smtp.wait_for("new.reader@example.org")
    assert welcome["Subject"] == "Confirm your subscription to Dawat Media Center"
    assert "Yes, subscribe me" in welcome.get_body(("html",)).get_content()
    link = confirm_link(welcome)
    assert link.startswith(f"{site.url}/confirm/")
    reader = next(s for s in list_all(engine) if s.email == "new.reader@example.org")
    assert reader.status == "pending" and reader.name == "Nora"
    button = httpx.get(link)
    assert button.status_code == 200 and "Confirm my subscription" in button.text
    thanks = press(link)
    assert thanks.status_code == 200 and "You are subscribed" in thanks.text
    reader = find_subscriber(engine, reader.id)
    assert reader.status == "active" and reader.confirmed_at and reader.consent_ip == "127.0.0.1"
    assert "You are subscribed" in httpx.get(link).text, "the link works twice, changes once"
    assert "You are subscribed" in press(link).text
    smtp.wait_for("new.reader@example.org", 2)  # the welcome mail (welcome.py)
    issue = article_issue(engine, site.settings, sample(engine, site.settings))
    assert deliver(engine, site.settings, issue).sent == 1
    newsletter = smtp.to("new.reader@example.org")[-1]
    leave = newsletter["List-Unsubscribe"].strip("<>")
    assert httpx.post(leave, content=ONE_CLICK, headers=ONE_CLICK_FORM).status_code == 200
    later = tmp_path / "later.txt"
    later.write_text("OSLO – The council met again and agreed on the budget.\n")
    other = ingest_file(engine, site.settings, later, title="The next issue").article
    deliver(engine, site.settings, article_issue(engine, site.settings, other))
    assert len(smtp.to("new.reader@example.org")) == 3, "the link, the welcome and one issue"


def list_all(engine: Engine) -> list[Subscriber]:
    from mailer.subscribers import list_subscribers

    return list(list_subscribers(engine))


def test_the_answer_is_the_same_whoever_the_address_belongs_to(engine, site, reader, smtp):
    answers = [sign_up(site, address) for address in
               ("fresh@example.org", "fresh@example.org", "ana@example.org")]  # fmt: skip
    assert len({(a.status_code, a.text) for a in answers}) == 1, "new, pending, active alike"
    smtp.wait_for("fresh@example.org")
    assert queued_mails(engine) == {"sent": 1}, "a pending address: no new link within 10 min"
    assert smtp.to("ana@example.org") == [], "no second welcome for a subscriber"


def test_a_bot_filling_the_hidden_field_gets_the_same_page_and_nothing_else(engine, site, smtp):
    answer = sign_up(site, "bot@example.org", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert smtp.received == [] and list_all(engine) == []


def test_one_address_may_try_five_times_in_ten_minutes(engine, site, smtp):
    codes = [sign_up(site, f"r{i}@example.org").status_code for i in range(6)]
    assert codes == [200] * 5 + [429]
    smtp.wait_for_count(5)
    assert queued_mails(engine) == {"sent": 5}


def test_a_malformed_address_is_told_and_the_form_kept(engine, site):
    answer = sign_up(site, "not an address", name="Kept <b>Name</b>")
    assert answer.status_code == 400 and "Kept &lt;b&gt;Name&lt;/b&gt;" in answer.text
    assert list_all(engine) == []


def test_an_expired_link_offers_a_new_one_and_never_activates(engine, site, smtp, monkeypatch):
    sign_up(site, "late@example.org")
    smtp.wait_for("late@example.org")
    reader = list_all(engine)[0]
    with monkeypatch.context() as past:  # a link made eight days ago
        now = time.time()
        past.setattr(time, "time", lambda: now - 8 * 24 * 3600)
        old = site.token(reader, CONFIRM)
    page = httpx.get(f"{site.url}/confirm/{old}")
    assert page.status_code == 410 and "Send me a new link" in page.text
    assert find_subscriber(engine, reader.id).status == "pending"
    assert "Check your inbox" in press(f"{site.url}/confirm/{old}").text
    smtp.wait_for("late@example.org")
    assert queued_mails(engine) == {"sent": 1}, "the first link was sent just now"
    with engine.begin() as connection:  # ten minutes on
        connection.exec_driver_sql("UPDATE subscriber SET confirmation_sent_at = NULL")
    press(f"{site.url}/confirm/{old}")
    fresh = confirm_link(smtp.wait_for("late@example.org", 2)[-1])
    assert "You are subscribed" in press(fresh).text


def test_a_link_scanner_opening_the_confirm_link_subscribes_nobody(engine, site, smtp):
    """Mail scanners fetch every link in a message: only the page's button confirms."""
    sign_up(site, "someone.else@example.org")
    link = confirm_link(smtp.wait_for("someone.else@example.org")[0])
    for _ in range(2):
        page = httpx.get(link)
        assert page.status_code == 200 and "Confirm my subscription" in page.text
        assert '<form method="post">' in page.text
        assert httpx.head(link).status_code == 200
    reader = list_all(engine)[0]
    assert (reader.status, reader.confirmed_at, reader.consent_ip) == ("pending", None, None)
    thanks = press(link)
    assert thanks.status_code == 200 and "You are subscribed" in thanks.text
    assert find_subscriber(engine, reader.id).status == "active"


@pytest.mark.parametrize("how", ["tampered", "unsubscribe token", "after leaving"])
def test_a_confirm_link_that_is_not_one_activates_nobody(engine, site, reader, how):
    if how == "after leaving":  # an old link must not bring back who has left since
        press(f"{site.url}/unsubscribe/{site.token(reader)}")
    token = {
        "tampered": tampered(site.token(reader, CONFIRM)),
        "unsubscribe token": site.token(reader, UNSUBSCRIBE),
        "after leaving": site.token(reader, CONFIRM),
    }[how]
    if how != "after leaving":
        with engine.begin() as connection:  # a reader still to confirm
            connection.exec_driver_sql("UPDATE subscriber SET status = 'pending'")
    refused = httpx.get(f"{site.url}/confirm/{token}")
    assert refused.status_code == 400 and 'href="/subscribe"' in refused.text, "a way on"
    assert press(f"{site.url}/confirm/{token}").status_code == 400
    assert find_subscriber(engine, reader.id).status in ("pending", "unsubscribed")


# -- preferences -------------------------------------------------------------------------


def test_the_preferences_link_in_an_email_changes_frequency_and_name(engine, site, reader, smtp):
    issue = article_issue(engine, site.settings, sample(engine, site.settings))
    deliver(engine, site.settings, issue)
    text = smtp.received[0].message.get_body(("plain",)).get_content()
    link = next(w for w in text.split() if "/preferences/" in w)
    page = httpx.get(link)
    assert page.status_code == 200 and "ana@example.org" in page.text and 'value="Ana"' in page.text
    assert 'value="articles"' in page.text  # every article without the weekly digest
    no_digest = httpx.post(link, data={"action": "save", "name": "Ana", "frequency": "articles"})
    assert no_digest.status_code == 200
    assert find_subscriber(engine, reader.id).frequency == "articles"
    saved = httpx.post(link, data={"action": "save", "name": "Ana B", "frequency": "weekly"})
    assert saved.status_code == 200 and "Saved." in saved.text
    stored = find_subscriber(engine, reader.id)
    assert (stored.name, stored.frequency, stored.status) == ("Ana B", "weekly", "active")
    bad = httpx.post(link, data={"action": "save", "frequency": "hourly"})
    assert bad.status_code == 400 and find_subscriber(engine, reader.id).frequency == "weekly"
    left = httpx.post(link, data={"action": "leave"})
    assert "You are unsubscribed" in left.text
    assert find_subscriber(engine, reader.id).status == "unsubscribed"


def test_a_preferences_page_needs_a_preferences_token(engine, site, reader):
    for token in (site.token(reader), site.token(reader, CONFIRM)):  # other purposes
        assert httpx.get(f"{site.url}/preferences/{token}").status_code == 400
        answer = httpx.post(f"{site.url}/preferences/{token}", data={"action": "leave"})
        assert answer.status_code == 400
    assert find_subscriber(engine, reader.id).status == "active"


# -- read online -------------------------------------------------------------------------


def test_a_sent_issue_reads_online_without_anybodys_links(engine, site, reader, smtp):
    article = sample(engine, site.settings)
    issue = article_issue(engine, site.settings, article)
    slug = f"article-{article.id}"
    assert httpx.get(f"{site.url}/issues/{slug}").status_code == 404, "a draft is private"
    deliver(engine, site.settings, issue)
    html = smtp.received[0].message.get_body(("html",)).get_content()
    link = f"{site.url}/issues/{slug}"
    assert f'href="{link}"' in html, "the email's view-online link"
    assert link in smtp.received[0].message.get_body(("plain",)).get_content()
    page = httpx.get(link)
    assert page.status_code == 200 and article.title.split("’")[0] in page.text
    assert "ana@example.org" not in page.text
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert "__MAILER_" not in page.text
    assert httpx.get(f"{site.url}/issues/article-999").status_code == 404


# -- in a real browser -------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_in_a_browser_a_reader_subscribes_confirms_and_leaves(engine, site, smtp):
    """Debian's chromium, driven by Playwright (no downloaded browser), at a phone's width."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 812})
            page.goto(f"{site.url}/subscribe")
            page.fill("#email", "phone.reader@example.org")
            page.fill("#name", "Pat")
            page.check("input[value=weekly]")
            page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "Check your inbox"
            (welcome,) = smtp.wait_for("phone.reader@example.org")
            page.goto(confirm_link(welcome))
            assert page.locator("h1").inner_text() == "Confirm your subscription"
            pending = next(s for s in list_all(engine) if s.email == "phone.reader@example.org")
            assert pending.status == "pending", "opening the link changes nothing"
            page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "You are subscribed"
            reader = next(s for s in list_all(engine) if s.email == "phone.reader@example.org")
            assert (reader.status, reader.frequency, reader.name) == ("active", "weekly", "Pat")
            page.goto(f"{site.url}/unsubscribe/{site.token(reader)}")
            assert find_subscriber(engine, reader.id).status == "active", "opening changes nothing"
            page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "You are unsubscribed"
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, "no sideways scrolling on a phone"
        finally:
            browser.close()
    assert find_subscriber(engine, reader.id).status == "unsubscribed"
