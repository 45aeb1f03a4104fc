"""The subscriber site through real HTTP (uvicorn on 127.0.0.1, httpx): one-click
unsubscribe from the link a real email carried, the page with one button, refused
tokens, and the health check."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from mailer.articles import ingest_file
from mailer.catcher import free_port
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue
from mailer.models import Article, Subscriber
from mailer.outbox import Outbox
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber
from mailer.testing import RecordingHandler
from mailer.tokens import CONFIRM, UNSUBSCRIBE, make_token
from mailer.web import ONE_CLICK, create_app

ONE_CLICK_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Site:
    url: str
    settings: Settings

    def token(self, subscriber: Subscriber, purpose: str = UNSUBSCRIBE) -> str:
        assert subscriber.id is not None
        return make_token(self.settings.secret_key, purpose, subscriber.id)


@pytest.fixture
def site(engine: Engine, settings: Settings) -> Iterator[Site]:
    """`mailer serve`'s app on a free port; the emails' links point at it."""
    port = free_port()
    served = settings.replace(publication={"base_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(create_app(served, engine), host="127.0.0.1", port=port)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the site did not start"
        time.sleep(0.01)
    yield Site(f"http://127.0.0.1:{port}", served)
    server.should_exit = True
    thread.join(10)


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
    done = httpx.post(url)  # the button: an empty form
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


@pytest.mark.parametrize("how", ["tampered", "confirm token", "no such subscriber"])
def test_a_link_that_is_not_an_unsubscribe_link_changes_nothing(engine, site, reader, how):
    token = {
        "tampered": site.token(reader)[:-2] + "xx",
        "confirm token": site.token(reader, CONFIRM),
        "no such subscriber": make_token(site.settings.secret_key, UNSUBSCRIBE, 999),
    }[how]
    url = f"{site.url}/unsubscribe/{token}"
    assert httpx.get(url).status_code == 400
    page = httpx.post(url)
    assert page.status_code == 400 and "This link is not valid" in page.text
    one_click = httpx.post(url, content=ONE_CLICK, headers=ONE_CLICK_FORM)
    assert one_click.status_code == 400
    assert find_subscriber(engine, reader.id).status == "active"


def test_health_answers_while_the_database_does(site):
    answer = httpx.get(f"{site.url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
