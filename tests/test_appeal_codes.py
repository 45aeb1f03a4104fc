"""The appeal's QR codes as readers get them: an issue sent through a real SMTP server,
the message taken as the server received it, each code cut out of its image part and
decoded with a real decoder (zxing-cpp), its payload checked field by field against the
EPC's QR code standard (EPC069-12) and the Vipps link format; and the same codes served
by the read-online page over real HTTP."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import Engine

from deskclient import sign_in_browser
from mailer import editors, runs
from mailer.articles import ingest_file
from mailer.demo import SAMPLE_ARTICLE
from mailer.desk_overview import digest_preview
from mailer.digest import week_of
from mailer.issues import article_issue, as_rendered, find_issue
from mailer.models import Article, EditorRole, Issue, utcnow
from mailer.references import digest_reference, parse_reference
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, served

VIPPS_LINK = "https://qr.vipps.no/donations/557320"
# Gmail clips a message whose HTML is over 102 KB ("[Message clipped] View entire message")
GMAIL_CLIPS_AT = 102 * 1024
# Vipps takes a reference of 50 characters at most, of these
VIPPS_REFERENCE = re.compile(r"[A-Za-z0-9 _-]{1,50}")


@pytest.fixture(params=[None, 25], ids=["no amount", "suggested 25 euros"])
def appeal(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The shipped bank details with a Vipps link; with or without a suggested amount."""
    donation: dict[str, object] = {"vipps_link": VIPPS_LINK}
    if request.param is not None:
        donation["suggested_amount_eur"] = request.param
    return settings.replace(donation=donation)


def sent_issue(engine: Engine, settings: Settings) -> tuple[Article, Issue]:
    """The sample article sent to one reader the normal way (`mailer send`'s use case)."""
    add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    prepared = runs.article_send(engine, settings, article)
    run = runs.send_article(engine, settings, prepared.issue)
    assert run.outcome == runs.RunOutcome.SENT
    issue = find_issue(engine, prepared.issue.key)
    assert issue is not None and issue.reference
    return article, issue


def decoded(png: bytes) -> zxingcpp.Result:
    """The one QR code in the image, as a phone's scanner reads it."""
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found.valid and found.format == zxingcpp.BarcodeFormat.QRCode
    return found


def codes_of(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    """The message's image parts by file name: their Content-ID and PNG."""
    return {
        str(part.get_filename()): (str(part["Content-ID"]), part.get_content())
        for part in message.walk()
        if part.get_content_type() == "image/png"
    }


def mod_97(iban: str) -> int:
    """ISO 13616's check, by hand: the first four characters moved to the end, letters as
    numbers (A = 10 ... Z = 35); a right IBAN leaves 1."""
    moved = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in moved)
    return int(digits) % 97


def check_epc(payload: zxingcpp.Result, settings: Settings, reference: str) -> None:
    """EPC069-12 version 002, field by field."""
    donation = settings.donation
    raw = payload.bytes
    assert len(raw) <= 331, "an EPC QR code holds 331 bytes at most"
    assert payload.ec_level == "M", "EPC069-12 asks for error correction M"
    fields = raw.decode("utf-8").split("\n")
    assert len(fields) in (11, 12)  # the last, the note to the payer, may be left off
    (service, version, charset, identification, bic, name, iban, amount, purpose,
     structured, text, *note) = fields  # fmt: skip
    assert service == "BCD"
    assert version == "002"
    assert charset == "1", "1 = UTF-8"
    assert identification == "SCT", "a SEPA credit transfer"
    assert bic == donation.bic == "DNBANOKKXXX"
    assert name == donation.account_holder and 0 < len(name) <= 70
    assert iban == donation.iban.replace(" ", "") == "NO1505302294668"
    assert re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}", iban)
    assert mod_97(iban) == 1
    assert mod_97("NO1605302294668") != 1, "the check catches a changed digit"
    if donation.suggested_amount_eur:
        assert amount == f"EUR{donation.suggested_amount_eur:.2f}" == "EUR25.00"
        assert re.fullmatch(r"EUR[0-9]{1,9}(\.[0-9]{1,2})?", amount)
    else:
        assert amount == "", "no amount unless the newsroom suggests one"
    assert purpose == ""
    assert structured == "", "a structured reference and a text are never both set"
    assert text == reference and len(text) <= 140
    assert note in ([], [""])


def check_vipps(payload: zxingcpp.Result, reference: str) -> None:
    """A Vipps donation link: https://qr.vipps.no/donations/<alias>?reference=..."""
    link = urlsplit(payload.text)
    assert (link.scheme, link.netloc, link.path) == ("https", "qr.vipps.no", "/donations/557320")
    assert re.fullmatch(r"/donations/[A-Za-z0-9]+", link.path)
    assert parse_qs(link.query) == {"reference": [reference]}
    assert VIPPS_REFERENCE.fullmatch(reference)


def test_the_codes_in_a_delivered_message_decode_to_the_issues_payment_details(
    engine: Engine, appeal: Settings, smtp: RecordingHandler
):
    _article, issue = sent_issue(engine, appeal)
    (received,) = smtp.received
    message = received.message
    reference = issue.reference or ""
    assert parse_reference(reference, "DMC") == reference, "a reference with its check"
    codes = codes_of(message)
    assert set(codes) == {"vipps.png", "epc.png"}
    check_epc(decoded(codes["epc.png"][1]), appeal, reference)
    check_vipps(decoded(codes["vipps.png"][1]), reference)

    # the HTML shows each code from its part, with alt text and a caption beside it
    html_part = message.get_body(("html",)).get_content()
    images = re.findall(r"<img\b[^>]*>", html_part)
    shown = {
        re.search(r'src="cid:([^"]+)"', tag).group(1): html.unescape(
            re.search(r'alt="([^"]*)"', tag).group(1)
        )
        for tag in images
        if 'src="cid:' in tag
    }
    assert set(shown) == {content_id.strip("<>") for content_id, _png in codes.values()}
    assert all(alt.startswith("QR code") for alt in shown.values())
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_part)).split())
    assert "Scan with your phone's camera to give with Vipps." in words
    assert "Scan in your banking app to fill in a transfer in euros." in words

    # far under Gmail's clipping: the HTML, and the whole message with its images
    assert len(html_part.encode("utf-8")) < GMAIL_CLIPS_AT
    assert len(received.data) < GMAIL_CLIPS_AT / 2, f"{len(received.data)} bytes"
    print(f"message: {len(received.data)} bytes, HTML {len(html_part.encode())} bytes")


def test_the_read_online_page_shows_the_codes_from_the_site(
    engine: Engine, settings: Settings, smtp: RecordingHandler, tmp_path: Path
):
    """Over real HTTP: the page's images are the site's addresses (a browser cannot show
    cid:), each a PNG that decodes to the same payment details; an unknown image, and
    the images of an issue not yet out, are not found."""
    appeal = settings.replace(donation={"vipps_link": VIPPS_LINK})
    with served(appeal, engine) as (url, running):
        article, issue = sent_issue(engine, running)
        page = httpx.get(f"{url}/issues/article-{article.id}")
        assert page.status_code == 200
        assert "cid:" not in page.text
        sources = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page.text)
        base = f"{url}/issues/article-{article.id}/images/"
        served_codes = [src for src in sources if src.startswith(base)]
        assert served_codes == [base + "vipps.png", base + "epc.png"]
        for source in served_codes:
            image = httpx.get(source)
            assert image.status_code == 200
            assert image.headers["content-type"] == "image/png"
            assert "max-age=86400" in image.headers["cache-control"]
            found = decoded(image.content)
            if source.endswith("epc.png"):
                check_epc(found, running, issue.reference or "")
            else:
                check_vipps(found, issue.reference or "")
        assert httpx.get(base + "other.png").status_code == 404
        assert httpx.get(f"{url}/issues/article-999/images/epc.png").status_code == 404

        draft = article_issue(engine, running, ingest_text(engine, running, tmp_path))
        assert draft.images and "epc" in draft.images
        unpublished = f"{url}/issues/{draft.key.replace(':', '-')}"
        assert httpx.get(unpublished).status_code == 404
        assert httpx.get(unpublished + "/images/epc.png").status_code == 404


def ingest_text(engine: Engine, settings: Settings, tmp_path: Path) -> Article:
    path = tmp_path / "draft.txt"
    path.write_text("Not out yet\n\nA paragraph long enough to read as an article, not sent.\n")
    return ingest_file(engine, settings, path).article


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVE = "eve@newsroom.example"
PASSWORD = "a long pass phrase for eve"
# each image of a page (or of its preview frames) that shows a QR code: its alt text, and
# how wide it came out (0: the browser did not show it, a broken image or one refused)
SHOWN_CODES = """root => Array.from(root.querySelectorAll('img[alt^="QR code"]'))
    .map(img => [img.alt, img.complete ? img.naturalWidth : 0])"""


# one backend: what a person sees; both backends are tested above
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_desk_preview_and_the_read_online_page_show_the_codes_in_chromium(
    engine: Engine, settings: Settings, smtp: RecordingHandler
):
    """In a browser, where cid: means nothing: the send page's previews show the codes
    (data: URIs, within the desk's content policy), and so does the read-online page (the
    site's addresses, within the issue pages' policy)."""
    from playwright.sync_api import expect, sync_playwright

    editors.add_editor(engine, EVE, PASSWORD, EditorRole.EDITOR)
    appeal = settings.replace(donation={"vipps_link": VIPPS_LINK})
    with served(appeal, engine) as (url, running), sync_playwright() as playwright:
        article, issue = sent_issue(engine, running)
        widths = [Image.open(io.BytesIO(image.png)).width for image in as_rendered(issue).images]
        assert len(widths) == 2
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in_browser(page, url, EVE, PASSWORD)
            page.goto(f"{url}/desk/articles/{article.id}/send")
            for width in ("375", "600"):
                frame = page.frame_locator(f"iframe[width='{width}']")
                expect(frame.locator('img[alt^="QR code"]')).to_have_count(2)
                shown = frame.locator("body").evaluate(SHOWN_CODES)
                assert [w for _alt, w in shown] == widths, shown

            page.goto(f"{url}/issues/article-{article.id}")
            page.wait_for_load_state("load")
            shown = page.locator("body").evaluate(SHOWN_CODES)
            assert [w for _alt, w in shown] == widths, shown
        finally:
            browser.close()


def test_the_desks_digest_preview_carries_the_codes_as_data_uris(
    engine: Engine, settings: Settings
):
    """The digest page's preview frame, like the send page's: no cid: left, each code a
    data: image that decodes to the digest's own reference."""
    appeal = settings.replace(donation={"vipps_link": VIPPS_LINK})
    ingest_file(engine, appeal, SAMPLE_ARTICLE)
    preview = digest_preview(engine, appeal, utcnow())
    assert preview.articles and "cid:" not in preview.html
    sources = re.findall(r'<img\b[^>]*\bsrc="data:image/png;base64,([^"]+)"', preview.html)
    assert len(sources) == 2
    vipps, epc = (decoded(base64.b64decode(source)) for source in sources)
    reference = parse_qs(urlsplit(vipps.text).query)["reference"][0]
    assert reference == digest_reference("DMC", week_of(utcnow(), appeal.publication.timezone))
    check_vipps(vipps, reference)
    check_epc(epc, appeal, reference)
