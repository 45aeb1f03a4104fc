"""Every page of the subscriber site over real HTTP (uvicorn on 127.0.0.1) carries the
security headers fitting its kind, keeps token pages and form answers out of caches,
and answers HEAD wherever it answers GET."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber
from mailer.testing import web_server
from mailer.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token
from mailer.web import create_app

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Pages:
    """One URL of each kind the site serves."""

    site: str
    issue: str  # a sent issue, read online
    confirm: str
    unsubscribe: str
    preferences: str
    reader_id: int
    pending_id: int


@pytest.fixture
def pages(engine: Engine, settings: Settings, smtp) -> Iterator[Pages]:
    made: list[Settings] = []

    def build(base_url: str) -> Any:
        made.append(settings.replace(publication={"base_url": base_url}))
        return create_app(made[0], engine)

    with web_server(build) as url:
        served = made[0]
        reader = add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
        pending = add_subscriber(engine, "pending@example.org")
        article = ingest_file(engine, served, SAMPLE_ARTICLE).article
        deliver(engine, served, article_issue(engine, served, article))
        assert reader.id is not None and pending.id is not None

        def token(purpose: str, subscriber_id: int) -> str:
            return make_token(served.secret_key, purpose, subscriber_id)

        yield Pages(
            url,
            issue=f"{url}/issues/article-{article.id}",
            confirm=f"{url}/confirm/{token(CONFIRM, pending.id)}",
            unsubscribe=f"{url}/unsubscribe/{token(UNSUBSCRIBE, reader.id)}",
            preferences=f"{url}/preferences/{token(PREFERENCES, reader.id)}",
            reader_id=reader.id,
            pending_id=pending.id,
        )


def policy(answer: httpx.Response) -> dict[str, str]:
    """The Content-Security-Policy's directives, by name."""
    parts = (p.strip().split(" ", 1) for p in answer.headers["content-security-policy"].split(";"))
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


def assert_guarded(answer: httpx.Response) -> None:
    headers = answer.headers
    assert headers["x-content-type-options"] == "nosniff"
    # the sign-up form's page alone tells its origin, so its form passes the origin check
    form_page = answer.request.url.path == "/subscribe"
    assert headers["referrer-policy"] == ("same-origin" if form_page else "no-referrer")
    assert headers["x-frame-options"] == "DENY"
    directives = policy(answer)
    assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
    assert "script-src" not in directives, "the site runs no scripts"
    assert directives["base-uri"] == "'none'"


def test_every_page_kind_carries_the_security_headers(pages, engine):
    answers = {
        "home": httpx.get(pages.site),
        "form": httpx.get(f"{pages.site}/subscribe"),
        "form's answer": httpx.post(f"{pages.site}/subscribe", data={"email": "x@example.org"}),
        "confirm": httpx.get(pages.confirm),
        "unsubscribe": httpx.get(pages.unsubscribe),
        "preferences": httpx.get(pages.preferences),
        "preferences saved": httpx.post(pages.preferences, data={"frequency": "weekly"}),
        "issue": httpx.get(pages.issue),
        "health": httpx.get(f"{pages.site}/healthz"),
        "not found": httpx.get(f"{pages.site}/nothing-here"),
        "refused": httpx.post(f"{pages.site}/subscribe", headers={"Origin": "https://x.example"}),
    }
    for kind, answer in answers.items():
        assert answer.status_code < 500, kind
        assert_guarded(answer)
    private = ["form's answer", "confirm", "unsubscribe", "preferences", "preferences saved",
               "refused"]  # fmt: skip
    for kind in private:
        assert answers[kind].headers["cache-control"] == "no-store", kind
    assert "no-store" not in answers["issue"].headers.get("cache-control", "")
    assert "no-store" not in answers["home"].headers.get("cache-control", "")
    assert policy(answers["home"]) == policy(answers["form"]), "a page of the site's own"
    page = policy(answers["form"])
    assert page["style-src"] == "'unsafe-inline'" and page["form-action"] == "'self'"
    issue = policy(answers["issue"])
    assert "https:" in issue["img-src"].split(), "the articles' images show online"
    assert issue["form-action"] == "'none'"
    assert find_subscriber(engine, pages.pending_id).status == "pending"


@pytest.mark.parametrize("kind", ["home", "form", "health", "issue", "confirm",
                                  "unsubscribe", "preferences"])  # fmt: skip
def test_head_answers_wherever_get_does_and_changes_nothing(pages, engine, kind):
    url = {
        "home": pages.site,
        "form": f"{pages.site}/subscribe",
        "health": f"{pages.site}/healthz",
        "issue": pages.issue,
        "confirm": pages.confirm,
        "unsubscribe": pages.unsubscribe,
        "preferences": pages.preferences,
    }[kind]
    got = httpx.get(url)
    head = httpx.head(url)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert_guarded(head)
    assert find_subscriber(engine, pages.pending_id).status == "pending"
    assert find_subscriber(engine, pages.reader_id).status == "active"


def test_a_server_error_carries_the_headers_too(pages, engine):
    """A page that fails (its table gone) still answers with the headers, uncached."""
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE subscriber RENAME TO subscriber_gone")
    answer = httpx.get(pages.preferences)
    assert answer.status_code == 500
    assert_guarded(answer)
    assert answer.headers["cache-control"] == "no-store"
