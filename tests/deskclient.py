"""What the desk's tests share: an account to sign in with, a client on the served desk,
and the helpers that read a page's CSRF token and sign in through the form. The `desk`
fixture (in conftest.py) serves the site with this account made."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from mailer.models import AUDIT_EVENTS
from mailer.settings import Settings

PASSWORD = "correct horse battery staple"
ANN = "ann@newsroom.example"  # an admin
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Desk:
    url: str
    settings: Settings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def signed_in(self, email: str = ANN, password: str = PASSWORD) -> httpx.Client:
        """A client whose session is signed in (the caller closes it)."""
        client = self.client()
        assert sign_in(client, email, password).status_code == 303
        return client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def sign_in(client: httpx.Client, email: str = ANN, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/desk/login")
    data = {"csrf": csrf_of(form), "email": email, "password": password}
    return client.post("/desk/login", data=data)


def without_values(page: httpx.Response) -> str:
    """A page without its fields' values (the address typed in, the CSRF token)."""
    return re.sub(r'value="[^"]*"', "", page.text)


def audit_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(AUDIT_EVENTS)).scalar_one())


def sign_in_browser(page: Any, url: str, email: str = ANN, password: str = PASSWORD) -> None:
    """Sign in through the desk's form in a browser page (Playwright), and land on the
    dashboard."""
    from playwright.sync_api import expect

    page.goto(f"{url}/desk/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")
