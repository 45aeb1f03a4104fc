"""The donation appeal as readers see it: laid out by a real browser (Debian's chromium,
headless, driven by Playwright) at a desktop's width, at 600 px and at a phone's 375 px,
with real bounding boxes; its HTML built from tables that Outlook can lay out; and the
plain-text part carrying the same appeal."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.donation import donation_block
from mailer.links import click_url
from mailer.messages import preview
from mailer.render import RenderedIssue, environment, render_article_issue
from mailer.settings import Settings
from mailer.testing import make_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser_only = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

DONATE = "https://dawatmedia.example/donate"
VIPPS = "https://qr.vipps.no/donations/557320"
EVERYTHING = {"url": DONATE, "vipps_link": VIPPS}
NO_EPC = {"bic": "", "account_holder": ""}
WIDTHS = (1000, 600, 375)

# Where each part of the appeal is, and what sticks out of the screen sideways.
MEASURE = """() => {
  const box = e => { const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
            width: r.width, height: r.height}; };
  const block = document.querySelector('table.donation');
  const width = document.documentElement.clientWidth;
  const outside = Array.from(document.body.querySelectorAll('*')).filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && (r.left < -0.5 || r.right > width + 0.5); });
  return {
    viewport: window.innerWidth, scroll: document.documentElement.scrollWidth,
    block: box(block),
    buttons: Array.from(block.querySelectorAll('a')).map(
      a => ({text: a.textContent.trim(), ...box(a)})),
    codes: Array.from(block.querySelectorAll('img')).map(
      i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0, ...box(i)})),
    text: block.innerText,
    outside: outside.map(e => e.tagName + '.' + e.className),
    spill: Array.from(block.querySelectorAll('div.col')).flatMap(col => {
      const edge = col.getBoundingClientRect().right;
      return Array.from(col.querySelectorAll('*')).filter(
        e => e.getBoundingClientRect().right > edge + 0.5).map(e => e.textContent.trim()); }),
  };
}"""


def counted(rendered: RenderedIssue, link_id: str) -> str:
    """The address a counted appeal link has in the email (test settings' base_url)."""
    return click_url("https://dawatmedia.example", rendered.reference, link_id)


def appeal_settings(directory: Path, **donation: Any) -> Settings:
    return make_settings(directory, donation=donation)


def issue_of(settings: Settings) -> RenderedIssue:
    """A real issue: the sample article brought into a real database, then rendered."""
    engine = open_database(settings.database.url)
    try:
        article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
        return render_article_issue(settings, article)
    finally:
        engine.dispose()


def with_data_uris(html: str, rendered: RenderedIssue) -> str:
    """The HTML with each code's cid: (which only a mail client resolves) as a data: URI."""
    for image in rendered.images:
        data = "data:image/png;base64," + base64.b64encode(image.png).decode()
        html = html.replace(f'src="cid:{image.cid}"', f'src="{data}"')
    return html


def measure(browser: Any, html: str, width: int) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.set_content(html, wait_until="load")
        result: dict[str, Any] = page.evaluate(MEASURE)
        return result
    finally:
        page.close()


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, RenderedIssue]:
    settings = appeal_settings(tmp_path_factory.mktemp("appeal"), **EVERYTHING)
    return settings, issue_of(settings)


@pytest.fixture(scope="module")
def screens(browser, everything) -> dict[int, dict[str, Any]]:
    settings, rendered = everything
    html = with_data_uris(preview(settings, rendered), rendered)
    return {width: measure(browser, html, width) for width in WIDTHS}


def fits(screen: dict[str, Any]) -> None:
    assert screen["scroll"] <= screen["viewport"], "no sideways scrolling"
    assert screen["outside"] == [], "nothing sticks out of the screen"
    assert screen["block"]["right"] <= screen["viewport"]
    assert screen["spill"] == [], "nothing runs out of its column into the next"


def side_by_side(first: dict[str, float], second: dict[str, float]) -> bool:
    return abs(first["top"] - second["top"]) < 1 and second["left"] >= first["right"]


def stacked(first: dict[str, float], second: dict[str, float]) -> bool:
    return second["top"] >= first["bottom"]


@browser_only
@pytest.mark.parametrize("width", [1000, 600])
def test_on_a_wide_screen_the_buttons_and_the_codes_sit_side_by_side(screens, width):
    screen = screens[width]
    assert screen["viewport"] == width
    fits(screen)
    donate, vipps = screen["buttons"]
    assert (donate["text"], vipps["text"]) == ("Donate", "Give with Vipps")
    assert side_by_side(donate, vipps)
    assert donate["height"] >= 44 and vipps["height"] >= 44, "each easy to tap"
    vipps_code, epc_code = screen["codes"]
    assert "Vipps" in vipps_code["alt"] and "EPC" in epc_code["alt"]
    assert side_by_side(vipps_code, epc_code)
    assert stacked(donate, vipps_code), "the codes come under the buttons"


@browser_only
def test_on_a_phone_the_buttons_and_the_codes_stack_full_width(screens):
    screen = screens[375]
    assert screen["viewport"] == 375
    fits(screen)
    donate, vipps = screen["buttons"]
    assert stacked(donate, vipps) and donate["left"] == vipps["left"]
    block = screen["block"]
    assert donate["width"] >= block["width"] - 2 * 20 - 2 - 1, "a button as wide as the block"
    vipps_code, epc_code = screen["codes"]
    assert stacked(vipps_code, epc_code) and stacked(vipps, vipps_code)


@browser_only
@pytest.mark.parametrize("width", WIDTHS)
def test_the_codes_show_at_160px_with_the_details_readers_can_copy(screens, everything, width):
    screen = screens[width]
    assert [(c["width"], c["height"], c["loaded"]) for c in screen["codes"]] == [
        (160, 160, True),
        (160, 160, True),
    ]
    reference = everything[1].reference
    text = " ".join(screen["text"].split())
    for shown in ("NO15 0530 2294 668", "0530 2294668", "DNBANOKKXXX", "Dawat Media Center",
                  "557320", f"MARK YOUR TRANSFER {reference}",
                  "Scan with your phone's camera to give with Vipps.",
                  "Scan in your banking app to fill in a transfer in euros.",
                  f"Link: {VIPPS}?reference={reference}",
                  "The transfer is in euros, to a Norwegian account."):  # fmt: skip
        assert shown in text


def test_the_cid_images_keep_their_source_and_size(everything):
    """Another part of the pipeline resolves each cid: in messages and on the web."""
    _settings, rendered = everything
    for image in rendered.images:
        assert f'<img src="cid:{image.cid}" width="160" height="160" alt="' in rendered.html


def test_the_block_is_tables_with_columns_outlook_gets_as_a_ghost_table(everything):
    _settings, rendered = everything
    doc = lxml.html.fromstring(rendered.html)
    (block,) = doc.xpath("//table[contains(@class, 'donation')]")
    assert all(t.get("role") == "presentation" for t in block.iter("table"))
    columns = list(block.iter("div"))
    assert len(columns) == 4, "two buttons and two codes, each a column"
    for column in columns:
        assert column.get("class") == "col"
        assert re.search(r"display:\s*inline-block", column.get("style", ""))
        before = column.getprevious()
        assert isinstance(before, lxml.html.HtmlComment)
        assert re.search(r"\[if mso\]>\s*<td width=\"220\"", before.text), "Outlook: a cell"
        after = column.getnext()
        assert isinstance(after, lxml.html.HtmlComment) and "</td>" in after.text
        ghost = column.getparent().xpath("comment()")[0].text
        assert "[if mso]" in ghost and "<table" in ghost, "Outlook: the columns' table"
    outlook = " ".join(c.text for c in block.iter(lxml.etree.Comment))
    assert outlook.count("<v:roundrect") == 2, "both buttons bulletproof in Outlook"
    for link_id in ("donate", "vipps"):  # counted, as the other buttons ([tracking])
        assert f'href="{counted(rendered, link_id)}"' in outlook
    targets = {link.link_id: link.url for link in rendered.links}
    assert targets == {
        "donate": f"{DONATE}?ref={rendered.reference}",
        "vipps": f"{VIPPS}?reference={rendered.reference}",
    }


def test_the_text_part_carries_the_appeal_reference_details_links_and_codes(everything):
    _settings, rendered = everything
    text, reference = rendered.text, rendered.reference
    for line in (
        "Support Dawat Media Center",
        f"Mark your transfer: {reference}",
        "Bank:           DNB Bank",
        "Account holder: Dawat Media Center",
        "Account number: 0530 2294668",
        "IBAN:           NO15 0530 2294 668",
        "BIC:            DNBANOKKXXX",
        "Vipps number:   557320",
        f"Donate: {counted(rendered, 'donate')}",
        f"Give with Vipps: {counted(rendered, 'vipps')}",
        "QR code: give with Vipps (in the HTML version)",
        "  Scan with your phone's camera to give with Vipps.",
        f"  Link: {VIPPS}?reference={reference}",  # what the code holds: straight to Vipps
        "  Same as above: Vipps number",
        "  Scan in your banking app to fill in a transfer in euros.",
        "  Same as above: Account holder, IBAN, BIC, Reference",
        "  The transfer is in euros, to a Norwegian account.",
    ):
        assert line in text.splitlines()
    assert "If there were ever a time to join us" in text
    for part in (rendered.text, rendered.html):
        assert part.count("NO15 0530 2294 668") == part.count("0530 2294668") == 1
    appeal = text[text.index("Support Dawat") : text.index("-" * 72)]
    assert max(len(line) for line in appeal.splitlines() if "://" not in line) <= 80


# -- every field optional ------------------------------------------------------------------

COMBINATIONS = {
    "no buttons": ({}, [], ["epc"]),
    "donate only, no codes": ({"url": DONATE, **NO_EPC}, ["Donate"], []),
    "vipps only, a long link": (
        {"vipps_link": "https://qr.vipps.no/donations/DawatMediaCenterReadersFund2026", **NO_EPC},
        ["Give with Vipps"],
        ["vipps"],
    ),
    "buttons, no codes' bank": (
        {**EVERYTHING, "iban": "", **NO_EPC},
        ["Donate", "Give with Vipps"],
        ["vipps"],
    ),
}


@browser_only
@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_any_part_of_the_appeal_may_be_missing(browser, tmp_path, name):
    donation, buttons, codes = COMBINATIONS[name]
    settings = appeal_settings(tmp_path, **donation)
    rendered = issue_of(settings)
    assert [image.name for image in rendered.images] == codes
    html = with_data_uris(preview(settings, rendered), rendered)
    doc = lxml.html.fromstring(html)
    (block,) = doc.xpath("//table[contains(@class, 'donation')]")
    assert bool(block.xpath(".//td[contains(@class, 'buttons')]")) == bool(buttons)
    assert bool(block.xpath(".//td[contains(@class, 'codes')]")) == bool(codes)
    assert len(list(block.iter("div"))) == len(buttons) + len(codes)
    for width in (600, 375):
        screen = measure(browser, html, width)
        fits(screen)
        assert [b["text"] for b in screen["buttons"]] == buttons
        assert [(c["width"], c["height"]) for c in screen["codes"]] == [(160, 160)] * len(codes)
        if len(buttons) == 2:
            pair = screen["buttons"]
            assert side_by_side(*pair) if width == 600 else stacked(*pair)
        assert f"MARK YOUR TRANSFER\n{rendered.reference}" in screen["text"]
    assert ("Give with Vipps: " in rendered.text) == ("Give with Vipps" in buttons)
    assert ("Donate: " in rendered.text) == ("Donate" in buttons)


@browser_only
def test_in_a_right_to_left_issue_the_columns_run_from_the_right(browser, tmp_path):
    settings = make_settings(tmp_path, publication={"language": "fa"}, donation=EVERYTHING)
    rendered = issue_of(settings)
    html = with_data_uris(preview(settings, rendered), rendered)
    screen = measure(browser, html, 600)
    fits(screen)
    donate, vipps = screen["buttons"]
    assert abs(donate["top"] - vipps["top"]) < 1 and vipps["right"] <= donate["left"]
    block = screen["block"]
    assert block["right"] - donate["right"] == pytest.approx(1 + 20, abs=1), (
        "the first on the right"
    )
    for width in (600, 375):
        assert measure(browser, html, width)["outside"] == []


def test_without_a_reference_or_details_the_block_keeps_only_what_it_has(tmp_path):
    """The partial alone: no reference row, no details table, no empty rows."""
    settings = appeal_settings(
        tmp_path, bank_name="", account_number="", iban="", vipps="", **NO_EPC, url=DONATE
    )
    block = donation_block(settings.donation, "", "dawatmedia.example")
    assert block is not None and block.codes == ()
    env = environment(settings)
    context = {"donation": block, "publication": {"dir": "ltr"}}
    html = env.get_template("email/partials/donation.html").render(context)
    text = env.get_template("email/partials/donation.txt").render(context)
    doc = lxml.html.fromstring(html)
    assert doc.tag == "table" and "donation" in doc.get("class")
    assert len(doc.xpath("./tr | ./tbody/tr")) == 2, "the appeal, then the button"
    assert "Mark your transfer" not in html and "Mark your transfer" not in text
    assert [a.text for a in doc.xpath("//a")] == ["Donate"]
    assert text.strip().endswith(f"Donate: {DONATE}")
    assert "\n\n\n" not in text, "one empty line between parts, never two"
