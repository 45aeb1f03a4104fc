"""A reader signs up in Dari on a phone, in Debian's chromium driven by Playwright (no
downloaded browser): the site served by uvicorn on 127.0.0.1, the mail sent to a real
SMTP server. The pages are right to left and fit 375 px; the confirmation link arrives,
its page is in Dari; the welcome mail is in Dari, with no English chrome around it."""

from __future__ import annotations

import re
import shutil
from email.header import decode_header, make_header
from email.message import EmailMessage

import lxml.html
import pytest

from mailer.render import translator
from mailer.subscribers import list_subscribers
from mailer.testing import served
from test_languages_email import ENGLISH

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LANGUAGES = ("en", "nb", "fa-AF", "ps")
ADDRESS = "nasrin@example.org"

# The page's size, and how far it would scroll sideways.
MEASURE = """() => ({
  lang: document.documentElement.lang, dir: document.documentElement.dir,
  scroll: document.documentElement.scrollWidth, width: window.innerWidth,
  title: document.querySelector('h1').innerText,
})"""


def english_left(text: str, *values: str) -> list[str]:
    text = re.sub(r"https?://\S+", " ", " ".join(text.split()))
    for value in values:
        text = text.replace(value, " ")
    return sorted(p for p in ENGLISH if re.search(rf"\b{re.escape(p)}\b", text))


def link_in(message: EmailMessage, route: str) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return next(word for word in text.split() if route in word)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reader_signs_up_in_dari_on_a_phone_and_is_welcomed_in_dari(engine, settings, smtp):
    from playwright.sync_api import sync_playwright

    several = settings.replace(publication={"languages": LANGUAGES})
    dari = translator(several, "fa-AF")
    with served(several, engine) as (url, running), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport={"width": 375, "height": 812},
                extra_http_headers={"accept-language": "fa-AF,fa;q=0.9,en;q=0.5"},
            )
            page = context.new_page()
            page.goto(f"{url}/subscribe")
            shown = page.evaluate(MEASURE)
            assert (shown["lang"], shown["dir"]) == ("fa-AF", "rtl")
            assert shown["title"] == "اشتراک در Dawat Media Center"
            assert shown["scroll"] <= shown["width"], "no sideways scrolling at 375 px"
            assert page.is_checked("input[name=languages][value=fa-AF]"), "the page's language"
            page.fill("#email", ADDRESS)
            page.fill("#name", "نسرین")
            page.check("input[name=languages][value=en]")
            assert page.input_value("#language") == "fa-AF"
            page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "صندوق ایمیل خود را ببینید"

            (confirmation,) = smtp.wait_for(ADDRESS)
            html = confirmation.get_body(("html",)).get_content()  # type: ignore[union-attr]
            assert 'lang="fa-AF" dir="rtl"' in html
            reader = next(s for s in list_subscribers(engine) if s.email == ADDRESS)
            assert reader.languages == "fa-AF,en" and reader.status == "pending"
            page.goto(link_in(confirmation, "/confirm/"))
            shown = page.evaluate(MEASURE)
            assert (shown["lang"], shown["dir"]) == ("fa-AF", "rtl")
            assert shown["title"] == "اشتراک خود را تأیید کنید"
            page.click("button[type=submit]")
            shown = page.evaluate(MEASURE)
            assert shown["title"] == "اشتراک شما فعال شد" and shown["dir"] == "rtl"
            assert shown["scroll"] <= shown["width"]
        finally:
            browser.close()

    welcome = smtp.wait_for(ADDRESS, 2)[1]
    subject = str(make_header(decode_header(welcome["Subject"])))
    assert subject == dari.gettext("Welcome to %(name)s") % {"name": "Dawat Media Center"}
    body = welcome.get_body(("html",)).get_content()  # type: ignore[union-attr]
    document = lxml.html.fromstring(body)
    assert (document.get("lang"), document.get("dir")) == ("fa-AF", "rtl")
    text = welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    values = ("Dawat Media Center", running.publication.postal_address, "DNB Bank", "Vipps")
    assert english_left(document.body.text_content(), *values) == []
    assert english_left(text, *values) == []
