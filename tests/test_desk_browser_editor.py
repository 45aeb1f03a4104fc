"""An editor's journey at the desk in Debian's chromium, driven by Playwright (no
downloaded browser), against `mailer serve` on 127.0.0.1 and a real SMTP server: sign
in, bring in an article from a page served on 127.0.0.1, open its send page, look at
the phone-width preview, send a test to oneself, send to 50 readers, watch the issue
page count them without a reload, and read the report."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from deskclient import sign_in_browser
from mailer import editors
from mailer.issues import find_issue
from mailer.models import EditorRole, IssueStatus
from mailer.settings import Settings
from mailer.testing import RecordingHandler, import_readers, served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVE = "eve@newsroom.example"  # an editor, not an admin
PASSWORD = "a long pass phrase for eve"
READERS = 50
PAGES = Path(__file__).parent / "data" / "sources"
ARTICLE_PAGE = "wordpress-article.html"  # a newsroom's page, with its site around it
ARTICLE_TITLE = "Lavrov’s Dual-Message"

if TYPE_CHECKING:
    from playwright.sync_api import Page


@contextmanager
def newsroom_site() -> Iterator[str]:
    """The newsroom's site on 127.0.0.1: real article pages, as a web server sends them."""
    handler = partial(QuietPages, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietPages(SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


def bring_in_article(page: Page, desk_url: str, article_url: str) -> int:
    """The editor brings the article in from its address on the articles page."""
    from playwright.sync_api import expect

    page.goto(f"{desk_url}/desk/articles")
    page.fill("#url", article_url)
    page.get_by_role("button", name="Bring in from the address").press("Enter")
    page.wait_for_url(re.compile(r"/desk/articles/\d+\?brought=new$"))
    expect(page.locator("main")).to_contain_text("Brought in.")
    found = re.search(r"/desk/articles/(\d+)\?", page.url)
    assert found, page.url
    return int(found.group(1))


# one backend: what a person sees; both backends are tested below the browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_an_editor_previews_tests_sends_and_watches_an_issue_go(
    engine: Engine, settings: Settings, smtp: RecordingHandler, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    readers = import_readers(engine, tmp_path, READERS)
    editors.add_editor(engine, EVE, PASSWORD, EditorRole.EDITOR)
    smtp.stall_data = 0.05  # a relay taking its time: the send lasts a few seconds
    fetching = settings.replace(sources={"allow_private_addresses": True})
    with (
        newsroom_site() as newsroom,
        served(fetching, engine) as (url, _running),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in_browser(page, url, EVE, PASSWORD)

            article_id = bring_in_article(page, url, f"{newsroom}/{ARTICLE_PAGE}")
            expect(page.locator("h1")).to_contain_text(ARTICLE_TITLE)

            page.set_viewport_size({"width": 375, "height": 812})
            page.goto(f"{url}/desk/articles/{article_id}/send")
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, "the send page, forms and frames, fits a phone"
            page.set_viewport_size({"width": 1280, "height": 900})
            phone = page.locator("iframe[width='375']")
            assert phone.get_attribute("sandbox") == "", "no scripts, no same origin"
            assert phone.evaluate("frame => frame.clientWidth") == 375, "a phone's width inside"
            shown = page.frame_locator("iframe[width='375']").locator("body")
            expect(shown).to_contain_text("reader@example.org")  # the sample reader
            expect(page.locator("pre.text")).to_contain_text("reader@example.org")

            expect(page.locator("#addresses")).to_have_value(EVE)
            # The keyboard, as many editors use it: a mouse click scrolled to a button can
            # land in a preview frame (chromium routes it by the frames' old places).
            page.get_by_role("button", name="Send a test").press("Enter")
            expect(page.locator("[role=status]")).to_have_text("Sent a test to 1 address.")
            (copy,) = smtp.wait_for(EVE)
            assert copy["Subject"].startswith("[Test] ")

            page.get_by_role("link", name="Send now…").press("Enter")
            page.get_by_role("button", name=f"Send to {READERS} readers").press("Enter")
            expect(page).to_have_url(re.compile(r"/desk/issues/\d+$"))
            page.evaluate("window.notReloaded = true")
            state = page.locator("[data-field=state]")
            assert state.inner_text() != "Done: every message is settled."
            expect(state).to_have_text("Done: every message is settled.", timeout=60_000)
            assert page.evaluate("window.notReloaded === true"), "the page was not reloaded"
            expect(page.locator("[data-field=sent]")).to_have_text(str(READERS))
            assert page.locator("progress").evaluate("bar => bar.value === bar.max")

            page.reload()  # the report as a page shows it
            sent_row = page.locator("section[aria-labelledby=states] tr", has_text="sent")
            expect(sent_row.first).to_contain_text(str(READERS))
            expect(page.locator("#left ~ p")).to_have_text(
                "None of this issue's readers has bounced or left."
            )

            page.set_viewport_size({"width": 375, "height": 812})
            page.goto(f"{url}/desk/articles/{article_id}/send")
            expect(page.locator("#where ~ p").first).to_contain_text("This article was sent")
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, "no sideways scrolling on a phone"
        finally:
            browser.close()
    issue = find_issue(engine, f"article:{article_id}")
    assert issue is not None and issue.status == IssueStatus.SENT
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted([*readers, EVE])
