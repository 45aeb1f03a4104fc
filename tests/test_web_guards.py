"""The subscriber site against abuse, through real HTTP (uvicorn on 127.0.0.1): forms
posted from other sites change nothing, one mailbox gets few confirmations however its
address is spelled, and X-Forwarded-For is believed only from a trusted proxy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from mailer.catcher import free_port
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, find_subscriber, list_subscribers
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, queued_mails, web_server
from mailer.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token
from mailer.web import create_app
from mailer.web.guards import SWEEP_ABOVE, RateLimit, canonical_mailbox

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# RFC 8058: what a mail client POSTs for a one-click unsubscribe
ONE_CLICK = "List-Unsubscribe=One-Click"
EVIL = "https://evil.example"


@dataclass
class Site:
    url: str
    settings: Settings

    def link(self, purpose: str, subscriber_id: int | None) -> str:
        assert subscriber_id is not None
        path = {CONFIRM: "confirm", UNSUBSCRIBE: "unsubscribe", PREFERENCES: "preferences"}
        token = make_token(self.settings.secret_key, purpose, subscriber_id)
        return f"{self.url}/{path[purpose]}/{token}"


@pytest.fixture
def start(engine: Engine, settings: Settings) -> Iterator[Callable[..., Site]]:
    """Starts the site with some [web] keys: start(trusted_proxies=["127.0.0.1"])."""
    with ExitStack() as stack:

        def started(**web: Any) -> Site:
            made: list[Settings] = []

            def build(base_url: str) -> Any:
                made.append(settings.replace(publication={"base_url": base_url}, web=web))
                return create_app(made[0], engine)

            url = stack.enter_context(web_server(build))
            return Site(url, made[0])

        yield started


def sign_up(site: Site, email: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{site.url}/subscribe", data={"email": email, "name": ""},
                      headers=headers)  # fmt: skip


def statuses(engine: Engine) -> dict[str, str]:
    return {s.email: s.status for s in list_subscribers(engine)}


# -- where a form comes from -------------------------------------------------------------

CROSS_SITE = {
    "another site's page": {"Origin": EVIL},
    "a sandboxed page (Origin: null)": {"Origin": "null"},
    "another site, Referer only": {"Referer": f"{EVIL}/page.html"},
    "a text/plain form": {"Content-Type": "text/plain"},
    "a look-alike host": {"Origin": "http://127.0.0.1.evil.example"},
}


@pytest.mark.parametrize("how", CROSS_SITE)
def test_a_form_posted_from_elsewhere_is_refused_and_changes_nothing(engine, start, smtp, how):
    site = start()
    pending = add_subscriber(engine, "pending@example.org")
    reader = add_subscriber(engine, "ana@example.org", confirmed=True)
    headers = {**FORM, **CROSS_SITE[how]}
    posts = [
        (f"{site.url}/subscribe", "email=victim%40example.org&name=Click+here"),
        (site.link(CONFIRM, pending.id), ""),
        (site.link(PREFERENCES, reader.id), "action=leave"),
        (site.link(UNSUBSCRIBE, reader.id), ""),  # the page's button, not one-click
    ]
    if how == "a sandboxed page (Origin: null)":
        posts = posts[:1]  # token pages post so themselves (no-referrer): see below
    for url, body in posts:
        answer = httpx.post(url, content=body, headers=headers)
        assert answer.status_code == 403 and "Not accepted" in answer.text, url
    assert statuses(engine) == {"pending@example.org": "pending", "ana@example.org": "active"}
    assert queued_mails(engine) == {} and smtp.received == []


def test_forms_from_the_site_an_allowed_site_or_no_browser_are_taken(engine, start, smtp):
    site = start(allowed_origins=["https://newsroom.example"])
    origins = [
        {"Origin": site.url},  # the site's own form
        {"Origin": "https://newsroom.example"},  # embedded on the newsroom's site
        {"Referer": "https://newsroom.example/about/newsletter?x=1"},  # no Origin sent
        {},  # curl or a script: no browser, so no forged page either
    ]
    for number, headers in enumerate(origins):
        answer = sign_up(site, f"reader{number}@example.org", **headers)
        assert answer.status_code == 200 and "Check your inbox" in answer.text, headers
    smtp.wait_for_count(4)
    reader = add_subscriber(engine, "ana@example.org", confirmed=True)
    left = httpx.post(site.link(PREFERENCES, reader.id), data={"action": "leave"},
                      headers={"Origin": site.url})  # fmt: skip
    assert left.status_code == 200 and find_subscriber(engine, reader.id).status == "unsubscribed"


@pytest.mark.parametrize("origin", [None, "https://mail.example", "null"])
@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_mail_clients_one_click_unsubscribe_needs_no_origin(engine, start, origin, encoding):
    """RFC 8058: mail providers post `List-Unsubscribe=One-Click` from their servers,
    or a webmail page does it from the reader's browser; as multipart/form-data, the
    encoding the RFC prefers, too (it was refused with an Origin)."""
    site = start()
    reader = add_subscriber(engine, "ana@example.org", confirmed=True)
    link = site.link(UNSUBSCRIBE, reader.id)
    more = {} if origin is None else {"Origin": origin}
    if encoding == "urlencoded":
        answer = httpx.post(link, content=ONE_CLICK, headers={**FORM, **more})
    else:
        one_click = {"List-Unsubscribe": (None, "One-Click")}  # a field, not a file
        answer = httpx.post(link, files=one_click, headers=more)
    assert answer.status_code == 200 and answer.text == "Unsubscribed."
    assert find_subscriber(engine, reader.id).status == "unsubscribed"


# -- how often one mailbox is written to -------------------------------------------------


def test_one_mailbox_gets_three_confirmations_however_its_address_is_spelled(engine, start, smtp):
    site = start()
    spellings = ["victim@gmail.com", "victim+1@gmail.com", "Victim+2@gmail.com",
                 "v.i.c.t.i.m@gmail.com", "vic.tim+news@googlemail.com"]  # fmt: skip
    answers = [sign_up(site, address) for address in spellings]
    assert len({(a.status_code, a.text) for a in answers}) == 1, "refused looks like taken"
    assert answers[0].status_code == 200 and "Check your inbox" in answers[0].text
    assert queued_mails(engine) == {"sent": 3}
    assert len(smtp.received) == 3, "the mailbox's limit: no more mail after three"


def test_dots_count_only_where_the_provider_ignores_them(engine, start, smtp):
    site = start()
    for address in ["a.b@example.org", "ab@example.org", "a.b+x@example.org", "A.B@example.org"]:
        assert sign_up(site, address).status_code == 200
    queued_mails(engine)
    received = sorted(r for m in smtp.received for r in m.rcpt_tos)
    # a.b@ and ab@ are two mailboxes at example.org; A.B@ is a.b@ again (pending)
    assert received == ["a.b+x@example.org", "a.b@example.org", "ab@example.org"]


# -- who the client is -------------------------------------------------------------------


def confirm(site: Site, engine: Engine, address: str, **headers: str) -> str | None:
    """Signs `address` up and presses its confirm button: the consent IP stored."""
    assert sign_up(site, address).status_code == 200
    queued_mails(engine)  # the sign-up is made a moment later, by the site's sender
    (subscriber,) = [s for s in list_subscribers(engine) if s.email == address]
    assert httpx.post(site.link(CONFIRM, subscriber.id), headers={**FORM, **headers}).is_success
    return find_subscriber(engine, subscriber.id).consent_ip


def test_without_trusted_proxies_x_forwarded_for_is_ignored(engine, start):
    site = start()
    codes = [sign_up(site, f"r{n}@example.org", **{"X-Forwarded-For": f"203.0.113.{n}"})
             .status_code for n in range(6)]  # fmt: skip
    assert codes == [200] * 5 + [429], "one client, however it says it is forwarded"
    other = start()
    assert confirm(other, engine, "late@example.org", **{"X-Forwarded-For": "203.0.113.9"}) == (
        "127.0.0.1"
    )


def test_behind_a_trusted_proxy_its_client_counts_and_a_spoofed_entry_does_not(engine, start):
    site = start(trusted_proxies=["127.0.0.1", "10.0.0.0/8"])

    def from_(forwarded: str, n: int) -> int:
        return sign_up(site, f"r{n}@example.org", **{"X-Forwarded-For": forwarded}).status_code

    assert [from_("203.0.113.7", n) for n in range(5)] == [200] * 5
    assert from_("198.51.100.1, 203.0.113.7", 5) == 429, "the left-most entry is the client's say"
    assert from_("203.0.113.8", 6) == 200, "another client behind the same proxy"
    assert from_("203.0.113.7, 10.1.2.3", 7) == 429, "a second trusted hop is skipped"
    chain = "192.0.2.1, 203.0.113.5, 10.1.2.3"  # spoofed, the client, the inner proxy
    assert confirm(start(trusted_proxies=["127.0.0.1", "10.0.0.0/8"]), engine, "c@example.org",
                   **{"X-Forwarded-For": chain}) == "203.0.113.5"  # fmt: skip


def test_an_ipv6_client_is_limited_by_its_64_network(engine, start):
    """A home line gets a whole /64: changing address within it is one client."""
    site = start(trusted_proxies=["127.0.0.1"])
    codes = [sign_up(site, f"r{n}@example.org", **{"X-Forwarded-For": f"2001:db8::{n + 1}"})
             .status_code for n in range(6)]  # fmt: skip
    assert codes == [200] * 5 + [429]
    other = sign_up(site, "s@example.org", **{"X-Forwarded-For": "2001:db8:0:1::1"})
    assert other.status_code == 200, "the next /64 is another client"
    mapped = "::ffff:203.0.113.4"  # an IPv4 client as a dual-stack proxy may write it
    assert confirm(site, engine, "m@example.org", **{"X-Forwarded-For": mapped}) == "203.0.113.4"


def test_mailer_serve_leaves_x_forwarded_for_to_the_site(tmp_path, smtp: RecordingHandler):
    """uvicorn reads X-Forwarded-For from 127.0.0.1 by default; `mailer serve` must not
    let it, or any local client could pick its own address."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_SMTP_PORT=str(smtp.port),
               MAILER_PUBLICATION_BASE_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/subscribe"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and process.poll() is None, "not serving"
                time.sleep(0.1)
        codes = [httpx.post(url, data={"email": f"r{n}@example.org"}, timeout=30,
                            headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                 for n in range(6)]  # fmt: skip
        assert codes == [200] * 5 + [429]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("Victim+news@Example.org", "victim@example.org"),
        ("v.i.c.t.i.m+1@gmail.com", "victim@gmail.com"),
        ("vic.tim@googlemail.com", "victim@gmail.com"),
        ("a.b@example.org", "a.b@example.org"),  # dots matter elsewhere
        ("+x@example.org", "@example.org"),
    ],
)
def test_an_address_folds_to_the_mailbox_it_reaches(address, mailbox):
    assert canonical_mailbox(address) == mailbox


def test_a_limiter_flooded_with_distinct_keys_forgets_the_stale_ones(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    limit = RateLimit(1, 60)
    for n in range(SWEEP_ABOVE):
        assert limit.allow(f"k{n}")
    assert not limit.allow("k0"), "still within its window"
    clock[0] += 61
    assert limit.allow("fresh") and limit.allow("fresh2")
    assert set(limit.seen) == {"fresh", "fresh2"}, "the stale keys are gone"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_in_a_browser_the_form_works_embedded_on_an_allowed_site_only(engine, start, smtp):
    """Debian's chromium, driven by Playwright: a page of the newsroom's own site holds
    the sign-up form; the same form on another site is refused."""
    from playwright.sync_api import Route, sync_playwright

    site = start(allowed_origins=["http://newsroom.example"])
    embed = f"""<!doctype html><form method="post" action="{site.url}/subscribe">
        <input id="email" name="email"><button type="submit">Subscribe</button></form>"""

    def serve_embed(route: Route) -> None:
        route.fulfill(body=embed, content_type="text/html")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("http://*.example/**", serve_embed)
            for host, address in [("newsroom", "embedded@example.org"),
                                  ("evil", "victim@example.org")]:  # fmt: skip
                page.goto(f"http://{host}.example/newsletter")
                page.fill("#email", address)
                page.click("button[type=submit]")
                page.wait_for_url(f"{site.url}/subscribe")
                results = page.locator("h1").inner_text()
                assert results == ("Check your inbox" if host == "newsroom" else "Not accepted")
        finally:
            browser.close()
    smtp.wait_for("embedded@example.org")
    assert queued_mails(engine) == {"sent": 1}
    assert [r for m in smtp.received for r in m.rcpt_tos] == ["embedded@example.org"]
    assert [s.email for s in list_subscribers(engine)] == ["embedded@example.org"]


def test_a_token_pages_own_form_posts_with_a_null_origin(engine, start):
    """Token pages say `Referrer-Policy: no-referrer`, so browsers post their buttons
    with `Origin: null`: the token, which no forged page can know, vouches for them."""
    site = start()
    pending = add_subscriber(engine, "pending@example.org")
    reader = add_subscriber(engine, "ana@example.org", confirmed=True)
    null = {**FORM, "Origin": "null"}
    confirmed = httpx.post(site.link(CONFIRM, pending.id), content="", headers=null)
    assert confirmed.status_code == 200 and find_subscriber(engine, pending.id).status == "active"
    left = httpx.post(site.link(PREFERENCES, reader.id), content="action=leave", headers=null)
    assert left.status_code == 200 and find_subscriber(engine, reader.id).status == "unsubscribed"
    plain = {"Content-Type": "text/plain", "Origin": "null"}
    refused = httpx.post(site.link(UNSUBSCRIBE, pending.id), content="", headers=plain)
    assert refused.status_code == 403
