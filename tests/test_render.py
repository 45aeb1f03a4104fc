"""The rendered email: what survives CSS inlining, the layout mail clients need, what the
Can I email data says about the CSS we use, and hostile article content."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import lxml.html
import pytest

from mailer.articles import boilerplate
from mailer.demo import SAMPLE_ARTICLE
from mailer.messages import MessageBuilder, Recipient
from mailer.models import Article, utcnow
from mailer.render import EMAIL, UNSUBSCRIBE_URL, render_article_issue
from mailer.settings import Settings
from mailer.sources import read_article
from mailer.testing import make_settings

CANIEMAIL = json.loads((Path(__file__).parent / "data" / "caniemail-css.json").read_text())
# Clients every newsroom reader uses; their CSS support must be full or partial.
CLIENTS = [("gmail", "desktop-webmail"), ("gmail", "android"), ("gmail", "ios"),
           ("apple-mail", "macos"), ("apple-mail", "ios"), ("outlook", "outlook-com"),
           ("outlook", "macos")]  # fmt: skip
# Outlook for Windows renders with Word and ignores these; each is a nicety there: square
# corners, the hidden preheader's belt-and-braces (mso-hide:all hides it), link focus rings.
OUTLOOK_WINDOWS_IGNORES = {"border-radius", "max-height", "opacity", "outline", "overflow"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def sample_article(settings: Settings) -> Article:
    draft = read_article(SAMPLE_ARTICLE, boilerplate(settings))
    return Article(guid=draft.guid, title=draft.title, summary=draft.summary,
                   body_html=draft.body_html, published_at=utcnow())  # fmt: skip


@pytest.fixture
def html(settings: Settings) -> str:
    return render_article_issue(settings, sample_article(settings)).html


def test_phone_layout_survives_inlining_with_its_important_rules(html):
    style = "".join(lxml.html.fromstring(html).xpath("//style/text()"))
    media = re.search(r"@media[^{]*max-width:\s*(\d+)px[^{]*\{(.*)\}", style, re.S)
    assert media, "the phone media query is kept in a <style> tag"
    assert int(media.group(1)) >= 375
    assert "!important" in media.group(2), "premailer's strip_important would break it"


def test_per_recipient_placeholders_survive_inlining_byte_for_byte(html, settings):
    assert f'href="{UNSUBSCRIBE_URL}"' in html
    assert html.count(UNSUBSCRIBE_URL) == 1 and html.count(EMAIL) == 1
    assert "%20" not in html and "{{" not in html
    rendered = render_article_issue(settings, sample_article(settings))
    message = MessageBuilder(settings, rendered).build(Recipient(42, "reader@example.org"))
    body = message.data.decode()
    assert "__MAILER_" not in body


def test_layout_is_tables_one_column_600px_with_lang_dir_and_preheader(html, settings):
    doc = lxml.html.fromstring(html)
    assert doc.get("lang") == "en" and doc.get("dir") == "ltr"
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    assert doc.xpath("//table[@width='600']"), "a fixed 600px column for Outlook"
    assert re.search(r"max-width:\s*600px", html)
    assert doc.xpath("//meta[@name='viewport']")
    preheader = sample_article(settings).summary[:40]
    first_text = " ".join(doc.xpath("//body")[0].text_content().split())
    assert first_text.startswith(preheader), "the preheader comes first, for the inbox preview"
    assert doc.xpath("//h1") and doc.xpath("//h2")
    assert all(img.get("alt") is not None for img in doc.xpath("//img"))


def test_css_used_is_supported_by_gmail_apple_mail_and_outlook(html):
    _assert_supported_css(html)


def test_the_donors_copy_uses_the_same_supported_css(settings):
    thanks = render_article_issue(settings, sample_article(settings)).thanks_html
    assert settings.donation.thanks_heading in thanks
    _assert_supported_css(thanks)


def _assert_supported_css(html: str) -> None:
    used = _css_properties(html)
    assert used, "found the CSS"
    assert not re.search(r"display:\s*(flex|grid)", html)
    for prop in sorted(used):
        support = CANIEMAIL["features"].get(f"css-{prop}")
        if support is None:
            continue
        for family, platform in CLIENTS:
            level = support.get(family, {}).get(platform, "u")
            assert not level.startswith("n"), f"{prop} is not supported by {family} {platform}"
        windows = support.get("outlook", {}).get("windows", "u")
        if windows.startswith("n"):
            assert prop in OUTLOOK_WINDOWS_IGNORES, f"{prop} breaks in Outlook for Windows"


def _css_properties(html: str) -> set[str]:
    doc = lxml.html.fromstring(html)
    declarations = [s for s in doc.xpath("//@style")]
    declarations += doc.xpath("//style/text()")
    found = set()
    for block in declarations:
        found.update(m.lower() for m in re.findall(r"(?:^|[;{\s])([a-z-]+)\s*:", block))
    return {p for p in found if not p.startswith("mso-") and not p.startswith("-")}


def test_hostile_title_and_body_never_become_markup_or_headers(settings, tmp_path):
    hostile = tmp_path / "hostile.txt"
    hostile.write_text(
        "OSLO – A paragraph with <script>alert(1)</script> and <img src=x onerror=alert(2)>.\n"
        "A second paragraph mentioning __MAILER_UNSUBSCRIBE_URL__ to hijack links.\n",
        encoding="utf-8",
    )
    draft = read_article(hostile, boilerplate(settings),
                         title="Breaking\r\nBcc: victim@example.org <b>news</b>")  # fmt: skip
    article = Article(guid=draft.guid, title=draft.title, summary=draft.summary,
                      body_html=draft.body_html, published_at=utcnow())  # fmt: skip
    rendered = render_article_issue(settings, article)
    assert "<script" not in rendered.html and '<img src="x"' not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "&lt;b&gt;news&lt;/b&gt;" in rendered.html
    message = MessageBuilder(settings, rendered).build(Recipient(7, "reader@example.org"))
    received = email.message_from_bytes(message.data, policy=email.policy.default)
    assert received["Subject"] == "Breaking Bcc: victim@example.org <b>news</b>"
    assert received["Bcc"] is None
    # the smuggled placeholder is not replaced by this reader's personal link
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert text.count("/unsubscribe/") == html.count("/unsubscribe/") == 1


def test_a_donation_url_adds_a_button_and_no_details_drop_the_block(tmp_path):
    url = "https://dawatmedia.example/donate"
    with_url = make_settings(tmp_path, donation={"url": url})
    rendered = render_article_issue(with_url, sample_article(with_url))
    doc = lxml.html.fromstring(rendered.html)
    marked = f"{url}?ref={rendered.reference}"
    counted = f"{with_url.publication.base_url}/r/{rendered.reference}/donate"
    assert doc.xpath(f"//a[@href='{counted}']"), "a button readers can press"
    assert counted in rendered.text
    assert ("donate", marked) in {(link.link_id, link.url) for link in rendered.links}
    empty = dict.fromkeys(("heading", "appeal", "bank_name", "account_number", "iban", "vipps"), "")
    without = make_settings(tmp_path, donation=empty)
    bare = render_article_issue(without, sample_article(with_url))
    assert "Support Dawat Media Center" not in bare.html and "IBAN" not in bare.text
    assert UNSUBSCRIBE_URL in bare.html, "the footer stays"


def test_placeholders_in_a_title_or_summary_stay_inert(settings, tmp_path):
    source = tmp_path / "sneaky.txt"
    source.write_text("OSLO – Write to __MAILER_EMAIL__ or __MAILER_UNSUBSCRIBE_URL__.\n")
    draft = read_article(source, boilerplate(settings), title="News for __MAILER_EMAIL__")
    article = Article(guid=draft.guid, title=draft.title, summary=draft.summary,
                      body_html=draft.body_html, published_at=utcnow())  # fmt: skip
    rendered = render_article_issue(settings, article)
    message = MessageBuilder(settings, rendered).build(Recipient(7, "reader@example.org"))
    received = email.message_from_bytes(message.data, policy=email.policy.default)
    html = received.get_body(("html",)).get_content()
    text = received.get_body(("plain",)).get_content()
    assert html.count("reader@example.org") == text.count("reader@example.org") == 1
    assert html.count("/unsubscribe/") == text.count("/unsubscribe/") == 1
