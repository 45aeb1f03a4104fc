"""The desk's Donations page (issue 15): any editor sees what each issue raised (gifts,
sums per currency to the øre, the appeal links' clicks), per month and not attributed,
with a chart of gifts per issue; an admin imports a bank statement or a CSV there, once
(a second upload adds nothing), and a broken file imports nothing and says why. An editor
who is not an admin may not import; without a session nothing is shown or changed."""

from __future__ import annotations

import html
import re
import shutil
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert, select

from deskclient import ANN, PASSWORD, Desk, csrf_of, sign_in_browser
from mailer import editors
from mailer.models import AUDIT_EVENTS, GIFTS, ISSUE_LINKS, AuditAction, EditorRole, Issue
from mailer.settings import Settings
from mailer.testing import import_readers, new_issue, served
from test_gifts_import import gift_file

EDITOR = "eve@newsroom.example"  # an editor, not an admin
PAGE, IMPORT = "/desk/donations", "/desk/donations/import"


@pytest.fixture
def issues(engine: Engine, settings: Settings, tmp_path: Path) -> tuple[Issue, Issue]:
    import_readers(engine, tmp_path, 3)
    return new_issue(engine, settings, tmp_path), new_issue(engine, settings, tmp_path, 1)


def stored(engine: Engine) -> list[tuple[object, ...]]:
    c = GIFTS.c
    query = select(c.source_key, c.amount_minor, c.currency, c.issue_id).order_by(c.source_key)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def upload(
    client: httpx.Client, path: Path | None, data: bytes | None = None, format: str = ""
) -> httpx.Response:
    page = client.get(PAGE)
    assert page.status_code == 200
    fields = {"csrf": csrf_of(page), "format": format}
    if path is None:  # no file chosen
        return client.post(IMPORT, data=fields, files={"other": ("", b"")})
    content = path.read_bytes() if data is None else data
    return client.post(IMPORT, data=fields, files={"file": (path.name, content, "text/plain")})


def rows_of(page: httpx.Response) -> str:
    """The page's text with its tags as spaces, to find what a person reads."""

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def audit_details(engine: Engine) -> list[tuple[str, str, str]]:
    c = AUDIT_EVENTS.c
    query = select(c.action, c.subject, c.detail).where(c.action == AuditAction.DONATIONS_IMPORTED)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query.order_by(c.id))]


def test_an_admin_imports_a_csv_and_a_statement_and_the_page_shows_each_issues_sums(
    engine, desk: Desk, issues, tmp_path
):
    a, b = issues
    with engine.begin() as connection:  # the appeal's links were followed; another link too
        connection.execute(insert(ISSUE_LINKS), [
            {"issue_id": a.id, "link_id": "donate", "url": "https://x.example/give",
             "appeal": True, "clicks": 12},
            {"issue_id": a.id, "link_id": "vipps", "url": "https://x.example/vipps",
             "appeal": True, "clicks": 0},
            {"issue_id": a.id, "link_id": "1", "url": "https://x.example/story", "appeal": False,
             "clicks": 5},
        ])  # fmt: skip
    csv = gift_file("gifts.csv", tmp_path, a, b)
    with closing(desk.signed_in()) as client:
        empty = client.get(PAGE)
        assert "No gifts imported yet." in empty.text
        done = upload(client, csv)
        assert done.status_code == 303
        assert done.headers["location"].startswith(PAGE + "?imported=csv&new=3&known=0")
        shown = client.get(done.headers["location"])
        text = rows_of(shown)
        assert "Imported (csv): 3 new gifts, 0 already known" in text
        assert "2 attributed to issues, 1 matched to subscribers" in text
        assert f"{a.reference}: {a.subject} 1 250.00 NOK donate: 12, vipps: 0 " in text
        assert f"{b.reference}: {b.subject} 1 40.00 EUR none counted " in text
        assert "1: 5" not in text  # not the appeal's link
        assert "Not attributed to an issue: 1 gift, 1000.50 NOK." in text
        assert f'href="/desk/issues/{a.id}"' in shown.text
        assert 'role="img"' in shown.text and '<title id="gifts-title">' in shown.text

        statement = gift_file("statement-001.02.xml", tmp_path, a, b)
        done = upload(client, statement)
        assert done.status_code == 303
        text = rows_of(client.get(done.headers["location"]))
        assert "Imported (camt): 5 new gifts, 1 already known, 3 entries skipped" in text
        # 250.00 from the CSV, 500.00 and 300.25 from the statement
        assert f"{a.reference}: {a.subject} 3 1050.25 NOK" in text
        assert f"{b.reference}: {b.subject} 2 40.00 EUR 1000.00 NOK" in text
        assert "2026-11" in text
    nok = [(issue, amount) for _, amount, currency, issue in stored(engine) if currency == "NOK"]
    assert sum(amount for issue, amount in nok if issue == a.id) == 105025
    assert sum(amount for issue, amount in nok if issue == b.id) == 100000
    assert len(stored(engine)) == 8
    details = audit_details(engine)
    assert [subject for _, subject, _ in details] == ["donations import"] * 2
    assert details[0][2] == "csv: 3 new, 0 known, 2 attributed, 1 matched"
    assert not any("@" in detail or "Reader" in detail for _, _, detail in details)


def test_the_same_file_again_adds_nothing_and_a_broken_file_imports_nothing(
    engine, desk: Desk, issues, tmp_path
):
    a, b = issues
    csv = gift_file("gifts.csv", tmp_path, a, b)
    with closing(desk.signed_in()) as client:
        assert upload(client, csv).status_code == 303
        before = stored(engine)
        again = upload(client, csv)
        assert again.status_code == 303
        assert "new=0&known=3" in again.headers["location"]
        assert "Imported (csv): 0 new gifts, 3 already known" in rows_of(
            client.get(again.headers["location"])
        )
        assert stored(engine) == before
        broken = csv.read_text(encoding="utf-8") + "2026-11-25,ten,NOK,,,\n"
        refused = upload(client, csv, broken.encode(), "csv")
        assert refused.status_code == 422
        assert "Nothing was imported: gifts.csv" in html.unescape(refused.text)
        assert 'role="alert"' in refused.text
        assert stored(engine) == before
        empty = upload(client, csv, b"")
        assert empty.status_code == 422 and "Nothing was imported: gifts.csv is empty" in empty.text
        nothing = upload(client, None)
        assert nothing.status_code == 422 and "Choose a file to import" in nothing.text
        wrong = upload(client, csv, format="xlsx")
        assert wrong.status_code == 422 and "Choose the file&#39;s format" in wrong.text
        assert stored(engine) == before
    assert len(audit_details(engine)) == 2


def test_an_editor_sees_the_page_but_may_not_import(engine, desk: Desk, issues, tmp_path):
    a, b = issues
    editors.add_editor(engine, EDITOR, PASSWORD, EditorRole.EDITOR)
    csv = gift_file("gifts.csv", tmp_path, a, b)
    with closing(desk.signed_in(EDITOR)) as client:
        page = client.get(PAGE)
        assert page.status_code == 200 and "<h1>Donations</h1>" in page.text
        assert f'<a href="{PAGE}">Donations</a>' in page.text  # in the nav
        assert 'action="/desk/donations/import"' not in page.text
        refused = upload(client, csv)
        assert refused.status_code == 403 and "Only an admin" in refused.text
    assert stored(engine) == [] and audit_details(engine) == []


def test_without_a_session_the_page_sends_to_sign_in_and_the_import_is_refused(
    engine, desk: Desk, issues, tmp_path
):
    a, b = issues
    csv = gift_file("gifts.csv", tmp_path, a, b)
    with desk.client() as client:
        page = client.get(PAGE)
        assert page.status_code == 303 and page.headers["location"] == "/desk/login"
        answer = client.post(
            IMPORT, data={"csrf": "guessed"}, files={"file": ("gifts.csv", csv.read_bytes())}
        )
        assert answer.status_code == 403
    # signed in, but the form's token is not the session's
    with closing(desk.signed_in()) as client:
        answer = client.post(
            IMPORT, data={"csrf": "guessed"}, files={"file": ("gifts.csv", csv.read_bytes())}
        )
        assert answer.status_code == 403
    assert stored(engine) == []


def test_a_crafted_notice_link_puts_no_text_on_the_page(desk: Desk):
    with closing(desk.signed_in()) as client:
        page = client.get(PAGE, params={"imported": "<b>x</b>", "new": "1"})
        assert page.status_code == 200 and 'id="notice"' not in page.text
        forged = client.get(PAGE, params={"imported": "csv", "new": "9 stolen", "known": "0"})
        assert 'id="notice"' not in forged.text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 375, "height": 812}


# one backend: what a person sees; both backends are tested above
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_in_a_browser_at_a_phones_width_the_page_does_not_scroll_sideways(
    engine, settings, issues, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    a, b = issues
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    statement = gift_file("statement-001.02.xml", tmp_path, a, b)
    with served(settings, engine) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=PHONE)
            sign_in_browser(page, url)
            page.get_by_role("link", name="Donations").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Donations")
            page.get_by_label("File", exact=True).set_input_files(str(statement))
            page.get_by_label("Format").select_option("camt")
            page.get_by_role("button", name="Import").click()
            expect(page.get_by_role("status")).to_contain_text("Imported (camt): 5 new gifts")
            expect(page.get_by_role("img", name="Gifts per issue")).to_be_visible()
            assert page.locator("#issues-table tbody tr").count() == 2
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], "no sideways scrolling on a phone"
        finally:
            browser.close()
