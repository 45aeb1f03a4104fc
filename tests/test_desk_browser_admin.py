"""An admin's subscriber work at the desk in a real browser: Debian's chromium driven by
Playwright (no downloaded browser), at a phone's width. Ann signs in through the form,
opens Subscribers, uploads a CSV with some bad rows, reads the report, finds one reader
by searching, purges them after the confirmation page, and finds them gone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from deskclient import ANN, PASSWORD, Desk
from mailer import editors
from mailer.models import AUDIT_EVENTS, SUBSCRIBERS, EditorRole
from mailer.settings import Settings
from mailer.testing import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 375, "height": 812}

UPLOAD = (
    "email,name,frequency\n"
    "amina.rahimi@example.org,Amina Rahimi,weekly\n"
    "farid.noori@example.org,Farid Noori,\n"  # line 3
    "no-at-sign.example.org,Broken Row,\n"  # line 4
    "lars.hansen@example.org,Lars Hansen,fortnightly\n"  # line 5
    "sofia.berg@example.org,Sofia Berg,articles\n"
)


@pytest.fixture
def admin_desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    """The site served with the desk (its usual idle timeout) and Ann, an admin."""
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


def readers(engine: Engine) -> dict[str, tuple[int, str, str | None]]:
    """Every subscriber row: address -> (id, status, name)."""
    s = SUBSCRIBERS.c
    with engine.connect() as connection:
        rows = connection.execute(select(s.email, s.id, s.status, s.name)).all()
    return {email: (int(i), status, name) for email, i, status, name in rows}


def fits_a_phone(page: object) -> bool:
    width: int = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    return width <= PHONE["width"]


# one backend: what a person sees; both backends are tested below the browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_in_a_browser_an_admin_imports_a_csv_finds_a_reader_and_purges_them(engine, admin_desk):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(f"{admin_desk.url}/desk")
            page.get_by_label("Email").fill(ANN)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Subscribers").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Subscribers")
            expect(page.get_by_role("heading", name="0 found")).to_be_visible()

            page.get_by_role("link", name="Import a CSV").click()
            page.get_by_label("CSV file", exact=True).set_input_files(
                files=[{"name": "newsroom.csv", "mimeType": "text/csv",
                        "buffer": UPLOAD.encode()}]
            )  # fmt: skip
            page.get_by_role("button", name="Import").click()
            report = page.get_by_role("status")
            expect(report).to_have_text("Imported 3; skipped 0 already on the list; rejected 2.")
            rejected = page.locator("#rejected li").all_inner_texts()
            assert [line.split(":")[0] for line in rejected] == ["line 4", "line 5"]
            assert "not a valid email address" in rejected[0]
            assert "unknown frequency 'fortnightly'" in rejected[1]
            assert fits_a_phone(page), "the report: no sideways scrolling on a phone"

            page.get_by_role("link", name="All subscribers").click()
            expect(page.get_by_role("heading", name="3 found")).to_be_visible()
            page.get_by_label("Address or name contains").fill("noori")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_role("heading", name="1 found")).to_be_visible()
            assert fits_a_phone(page), "the list: no sideways scrolling on a phone"
            page.get_by_role("link", name="farid.noori@example.org").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("farid.noori@example.org")

            page.get_by_role("link", name="Purge this subscriber…").click()
            farid = readers(engine)["farid.noori@example.org"][0]
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Purge farid.noori@example.org?"
            )
            expect(page.get_by_text("This cannot be undone.")).to_be_visible()
            assert "farid.noori@example.org" in readers(engine), "asking changes nothing"
            page.get_by_role("button", name=f"Purge subscriber {farid}").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                f"Subscriber {farid} (erased)"
            )
            expect(page.get_by_role("status")).to_contain_text("Purged")
            assert "Farid" not in page.content() and "noori" not in page.content()

            page.get_by_role("link", name="All subscribers").click()
            page.get_by_label("Address or name contains").fill("noori")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_role("heading", name="0 found")).to_be_visible()
            expect(page.get_by_text("No reader matches.")).to_be_visible()
        finally:
            browser.close()
    stored = readers(engine)
    assert set(stored) - {"amina.rahimi@example.org", "sofia.berg@example.org"} == {
        email for email in stored if email.startswith("erased:hmac:")
    }
    erased = next(row for email, row in stored.items() if email.startswith("erased:"))
    assert erased == (farid, "unsubscribed", None)
    with engine.connect() as connection:
        log = connection.execute(select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.subject)).all()
    assert ("subscriber-purged", f"subscriber {farid}") in log
    assert ("subscribers-imported", "subscribers") in log
    assert "noori" not in repr(log).lower()
